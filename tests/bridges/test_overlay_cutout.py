"""`facecast live --cutout` in OBS's place: the overlay page in headless Chromium shows the Mona Lisa (an RGB
picture, no alpha of its own) cut out: the corners transparent, the face opaque (real daemon, real browser)."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from test_overlay_browser import DevTools, checkerboard, chromium
from test_overlay_browser import pytestmark as browser_mark  # skips without Chromium
from websockets.asyncio.client import connect

from facecast.app.daemon import QUALITY_SCALES

pytestmark = browser_mark
WINDOW = 256
#: The canvas's alpha at its top corners and around the face's centre (the aligned crop puts the eyes at 42 %
#: of the height, the mouth near 60 %).
PROBE = """(() => {
  const canvas = document.getElementById("avatar");
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const alpha = (x, y) => data[(y * canvas.width + x) * 4 + 3];
  const w = canvas.width, h = canvas.height, face = [];
  for (let y = Math.round(0.45 * h); y < Math.round(0.55 * h); y++)
    for (let x = Math.round(0.45 * w); x < Math.round(0.55 * w); x++) face.push(alpha(x, y));
  const corners = [];
  for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) corners.push(alpha(x, y), alpha(w - 1 - x, y));
  return {size: [w, h], faceMin: Math.min(...face), cornerMax: Math.max(...corners)};
})()"""


def test_live_cutout_overlay_is_transparent_around_an_opaque_face(tmp_path: Path, sample_portrait: Path,
                                                                  sample_speech: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "facecast.app.cli", "live", "--portrait", str(sample_portrait), "--audio",
         str(sample_speech), "--size", "256", "--ws", "0", "--cutout", "--generator", "rule"],
        stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in process.stderr:
            assert "Traceback" not in line
            if "overlay page" in line:
                url = line.split("overlay page ")[1].split(" ")[0]
                break
        assert url, "the overlay server did not start"
        with chromium(url, tmp_path / "profile") as page_url:
            asyncio.run(check_overlay(page_url, tmp_path))
    finally:
        process.terminate()
        process.wait(timeout=20)


async def check_overlay(page_url: str, tmp_path: Path) -> None:
    async with connect(page_url, max_size=None) as ws:
        page = DevTools(ws)
        await page.call("Emulation.setDeviceMetricsOverride", width=WINDOW, height=WINDOW, deviceScaleFactor=1,
                        mobile=False)
        await page.wait_for("window.facecastOverlay && facecastOverlay.frames >= 5", timeout=60)
        probe = await page.evaluate(PROBE)
        # 256 px, or smaller while the daemon is behind on a busy machine (QUALITY_SCALES: the page scales it up)
        assert probe["size"] in [[round(256 * scale)] * 2 for scale in QUALITY_SCALES], probe
        assert probe["cornerMax"] == 0, probe
        assert probe["faceMin"] == 255, probe
        # what OBS composites: the page over a transparent background keeps the avatar's alpha
        await page.call("Emulation.setDefaultBackgroundColorOverride", color={"r": 0, "g": 0, "b": 0, "a": 0})
        shot = await page.call("Page.captureScreenshot", format="png")
        bgra = cv2.imdecode(np.frombuffer(base64.b64decode(shot["data"]), np.uint8), cv2.IMREAD_UNCHANGED)
        assert bgra.shape == (WINDOW, WINDOW, 4)
        assert bgra[:8, :8, 3].max() == 0 and bgra[:8, -8:, 3].max() == 0
        assert bgra[WINDOW // 2, WINDOW // 2, 3] == 255
        alpha = bgra[..., 3:].astype(np.float32) / 255
        over = (bgra[..., :3] * alpha + checkerboard(alpha.shape[:2]) * (1 - alpha)).astype(np.uint8)
        cv2.imwrite(str(tmp_path / "cutout_overlay_over_checkerboard.png"), over)
