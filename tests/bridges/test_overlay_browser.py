"""The overlay page in headless Chromium, driven over the DevTools protocol (real server, real browser, no mocks).

Checks what OBS's Browser Source relies on: the avatar is drawn with its alpha,
everything else on the page is transparent, the query parameters place it, and
the page reconnects by itself when the daemon restarts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from test_ws_server import DISC_RGB, FrameProducer, disc_avatar
from websockets.asyncio.client import ClientConnection, connect

from facecast.bridges.ws_server import WsServer

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian: apt-get install chromium)")

WINDOW = (400, 300)
AVATAR_SIZE = 200
START_TIMEOUT_S = 30.0
WAIT_S = 15.0
#: Reads the canvas back: its size, where it sits, a few pixels, and the page's backgrounds.
PAGE_PROBE = """(() => {
  const canvas = document.getElementById("avatar");
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const pixel = (x, y) => Array.from(data.slice((y * canvas.width + x) * 4, (y * canvas.width + x + 1) * 4));
  return {
    size: [canvas.width, canvas.height], rect: canvas.getBoundingClientRect().toJSON(),
    centre: pixel(canvas.width >> 1, canvas.height >> 1), corner: pixel(0, 0),
    farCorner: pixel(canvas.width - 1, canvas.height - 1),
    body: getComputedStyle(document.body).backgroundColor,
    html: getComputedStyle(document.documentElement).backgroundColor,
  };
})()"""


class DevTools:
    """The few Chrome DevTools Protocol calls the tests need, over one page's WebSocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        await self.ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:  # skip events until our answer
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT_S))
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while not await self.evaluate(expression):
            if time.monotonic() > deadline:
                state = await self.evaluate("window.facecastOverlay")
                raise TimeoutError(f"page never satisfied {expression!r}; overlay state {state}")
            await asyncio.sleep(0.05)


@contextmanager
def chromium(url: str, profile: Path) -> Iterator[str]:
    """Headless Chromium showing `url`; yields the page's DevTools WebSocket URL."""
    assert CHROMIUM is not None
    process = subprocess.Popen([
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-background-timer-throttling", "--disable-renderer-backgrounding", "--hide-scrollbars",
        "--mute-audio", f"--user-data-dir={profile}", "--remote-debugging-port=0",
        url,
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            assert process.poll() is None, f"Chromium exited with code {process.returncode}"
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=WAIT_S) as answer:
                pages = [t for t in json.load(answer) if t["type"] == "page" and t["url"].startswith(url)]
            if pages:
                yield pages[0]["webSocketDebuggerUrl"]
                return
            assert time.monotonic() < deadline, "Chromium never opened the overlay page"
            time.sleep(0.05)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def checkerboard(shape: tuple[int, int], square: int = 16) -> np.ndarray:
    y, x = np.indices(shape)
    return np.where(((x // square + y // square) % 2 == 0)[..., None], 200, 120).astype(np.uint8).repeat(3, axis=2)


def assert_colour(pixel: list[int] | np.ndarray, rgb: tuple[int, int, int], tolerance: int = 6) -> None:
    assert np.abs(np.asarray(pixel[:3], int) - rgb).max() <= tolerance, f"{list(pixel)} is not {rgb}"


def test_overlay_draws_avatar_with_alpha_on_a_transparent_page(tmp_path: Path) -> None:
    server = WsServer(port=0)
    server.start()
    producer = FrameProducer(server, disc_avatar(AVATAR_SIZE), count=10_000)
    try:
        with producer, chromium(f"{server.url}/overlay", tmp_path / "profile") as page_url:
            asyncio.run(check_page(page_url, server, tmp_path))
    finally:
        server.stop()


async def check_page(page_url: str, server: WsServer, tmp_path: Path) -> None:
    async with connect(page_url, max_size=None) as ws:
        page = DevTools(ws)
        # Like OBS's Browser Source width/height settings: a fixed viewport.
        await page.call("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1],
                        deviceScaleFactor=1, mobile=False)
        await page.wait_for("window.facecastOverlay && facecastOverlay.frames >= 3")

        probe = await page.evaluate(PAGE_PROBE)
        assert probe["size"] == [AVATAR_SIZE, AVATAR_SIZE]
        assert probe["centre"][3] == 255
        assert_colour(probe["centre"], DISC_RGB)
        assert probe["corner"][3] == 0 and probe["farCorner"][3] == 0
        assert probe["body"] == probe["html"] == "rgba(0, 0, 0, 0)"
        # fitted into the 400x300 window: 300x300, centred
        assert probe["rect"]["width"] == probe["rect"]["height"] == WINDOW[1]
        assert probe["rect"]["left"] == (WINDOW[0] - WINDOW[1]) / 2 and probe["rect"]["top"] == 0

        # What OBS composites: a screenshot with a transparent default background keeps the page's alpha.
        await page.call("Emulation.setDefaultBackgroundColorOverride", color={"r": 0, "g": 0, "b": 0, "a": 0})
        shot = await page.call("Page.captureScreenshot", format="png")
        bgra = cv2.imdecode(np.frombuffer(base64.b64decode(shot["data"]), np.uint8), cv2.IMREAD_UNCHANGED)
        assert bgra.shape == (WINDOW[1], WINDOW[0], 4)
        rgba = bgra[..., [2, 1, 0, 3]]
        centre = rgba[WINDOW[1] // 2, WINDOW[0] // 2]
        assert centre[3] == 255
        assert_colour(centre, DISC_RGB)
        for y, x in ((0, 0), (WINDOW[1] - 1, WINDOW[0] - 1), (10, WINDOW[0] // 2), (WINDOW[1] // 2, 60)):
            assert rgba[y, x, 3] == 0, f"pixel {(x, y)} is not transparent: {rgba[y, x]}"
        alpha = rgba[..., 3:].astype(np.float32) / 255
        board = checkerboard(alpha.shape[:2])
        over = (rgba[..., :3] * alpha + board * (1 - alpha)).astype(np.uint8)
        cv2.imwrite(str(tmp_path / "overlay_over_checkerboard.png"), over[..., ::-1])

        # Query parameters place the avatar box.
        await page.call("Page.navigate", url=f"{server.url}/overlay?x=10&y=20&width=100&height=100")
        await page.wait_for("window.facecastOverlay && facecastOverlay.frames >= 1")
        rect = (await page.evaluate(PAGE_PROBE))["rect"]
        assert (rect["left"], rect["top"], rect["width"], rect["height"]) == (10, 20, 100, 100)

        # The daemon restarts on the same port: the page reconnects by itself.
        port = server.port
        await asyncio.get_running_loop().run_in_executor(None, server.stop)
        await page.wait_for("!facecastOverlay.connected")
        drawn = await page.evaluate("facecastOverlay.frames")
        restarted = WsServer(port=port)
        restarted.start()
        try:
            # opaque frames (an RGB avatar) come as JPEG: drawn the same way, and opaque to the corners
            opaque = np.ascontiguousarray(disc_avatar(AVATAR_SIZE, (30, 200, 90))[..., :3])
            with FrameProducer(restarted, opaque, count=10_000):
                await page.wait_for(f"facecastOverlay.connected && facecastOverlay.frames >= {drawn + 3}")
                probe = await page.evaluate(PAGE_PROBE)
                assert_colour(probe["centre"], (30, 200, 90), tolerance=8)
                assert probe["corner"][3] == 255 and probe["farCorner"][3] == 255
        finally:
            await asyncio.get_running_loop().run_in_executor(None, restarted.stop)
