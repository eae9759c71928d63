"""Cut-out benchmark (`--cutout`): one-time cost, per-frame cost, alpha stability, and a contact sheet.

    python benchmarks/cutout.py                  # the bundled Mona Lisa + ../shared/data/portraits
    python benchmarks/cutout.py --portraits 4    # a quicker run on the first few

Per portrait (512 px):
* once: the person segmentation (model load + run) and the matte refinement + edge colours (CPU ms,
  all threads; the whole cut-out also in wall ms);
  whether the model found the person or the head-mask fallback was used;
* per frame (CPU ms, calls alternated), on the same motion: the render of the RGB portrait and of the
  cut-out (RGBA) one, and
  what the outputs add for alpha: the overlay's WebP with lossless alpha vs without, the virtual
  webcam's blend onto its background vs a copy (an MP4 flattens the portrait once, so it adds nothing);
* flicker: mean |alpha_t - alpha_{t-1}| in grey levels over a still head (mouth, eyes, brows moving;
  head pose zero), over all pixels and over the matte's edge band (0 < alpha < 255, dilated by 4 px);
  the same with the generator's head motion is reported too (there the alpha moves with the head).

Writes docs/cutout.png: the first frames of the cut-out avatars on a checkerboard.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from facecast.app.cutout import cut_out  # noqa: E402
from facecast.bridges.frame_codec import encode_frame  # noqa: E402
from facecast.bridges.vcam_compositor import VcamCompositor  # noqa: E402
from facecast.face.cutout import person_alpha, with_alpha  # noqa: E402
from facecast.face.portrait import analyze_portrait  # noqa: E402
from facecast.face.tracker import PersonSegmenter  # noqa: E402
from facecast.media import decode_mono  # noqa: E402
from facecast.motion import HeadPose  # noqa: E402
from facecast.render.renderer import Renderer  # noqa: E402
from facecast.speech.rule import generate_motion  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_PORTRAITS = REPO.parent / "shared" / "data" / "portraits"
SPEECH = REPO / "samples" / "grid_s1_speech.flac"
SIZE = 512
FPS = 25
SHEET = REPO / "docs" / "cutout.png"
#: On the contact sheet (when present): photos, paintings, a statue, a 3D cartoon, digital art.
SHEET_NAMES = ("mona_lisa.jpg", "liveportrait_s1.jpg", "liveportrait_d19.jpg", "liveportrait_s6.jpg",
               "liveportrait_s7.jpg", "liveportrait_s10.jpg", "sadtalker_art_4.png", "sadtalker_art_6.png")


def checkerboard(size: int, square: int = 16) -> np.ndarray:
    y, x = np.indices((size, size))
    return np.where(((x // square + y // square) % 2 == 0)[..., None], 200, 120).astype(np.uint8).repeat(3, axis=2)


def over_checkerboard(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:].astype(np.float32) / 255
    return (rgba[..., :3] * alpha + checkerboard(rgba.shape[0]) * (1 - alpha) + 0.5).astype(np.uint8)


def per_frame_ms(function, items, repeats: int = 1) -> float:
    """Mean CPU milliseconds per call (process time: on a shared, loaded machine wall time mostly measures
    the other processes)."""
    started = time.process_time()
    for _ in range(repeats):
        for item in items:
            function(item)
    return (time.process_time() - started) * 1000 / (repeats * len(items))


def paired_ms(first, second, items, repeats: int = 3) -> tuple[float, float]:
    """Per-call CPU ms of two functions on the same items, alternated call by call so load hits both alike."""
    totals = [0.0, 0.0]
    for _ in range(repeats):
        for item in items:
            for k, function in enumerate((first, second)):
                started = time.process_time()
                function(item)
                totals[k] += time.process_time() - started
    count = repeats * len(items)
    return totals[0] * 1000 / count, totals[1] * 1000 / count


def measure(path: Path, motion: list, still: list) -> tuple[dict[str, float | str], np.ndarray]:
    rig = analyze_portrait(path, size=SIZE)
    started = time.process_time()
    with PersonSegmenter() as segmenter:
        segmenter.confidence(rig.image)
    segment_s = time.process_time() - started
    started = time.process_time()
    matte = person_alpha(rig.image, rig.landmarks)      # segmentation again, with the refinement
    with_alpha(rig, matte if matte is not None else np.ones((SIZE, SIZE), np.float32))
    refine_s = time.process_time() - started - segment_s
    started, wall = time.process_time(), time.perf_counter()
    cut = cut_out(rig)
    total_s, total_wall = time.process_time() - started, time.perf_counter() - wall

    opaque = replace(rig, image=np.ascontiguousarray(rig.image[..., :3]))
    plain, cutout = Renderer(opaque, device="cpu"), Renderer(cut, device="cpu")
    for frame in motion[:5]:
        plain.render(frame), cutout.render(frame)  # warm-up
    rgb_ms, rgba_ms = paired_ms(plain.render, cutout.render, motion)
    rgba_frames = [cutout.render(f) for f in motion[:20]]
    webp_rgb, webp_rgba = paired_ms(lambda im: encode_frame(im[..., :3], 0, 0.0), lambda im: encode_frame(im, 0, 0.0),
                                    rgba_frames)
    vcam = VcamCompositor(background=(0, 177, 64))
    vcam_rgb, vcam_rgba = paired_ms(lambda im: vcam.compose(np.ascontiguousarray(im[..., :3])), vcam.compose,
                                    rgba_frames, repeats=5)
    vcam_copy = per_frame_ms(lambda im: np.ascontiguousarray(im[..., :3]), rgba_frames, repeats=5)
    vcam_rgb -= vcam_copy   # the slicing copy is the benchmark's, not the compositor's

    alpha = cut.image[..., 3]
    band = cv2.dilate(((alpha > 0) & (alpha < 255)).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    flicker = {}
    for name, frames in (("still", still), ("moving", motion)):
        previous, diffs, band_diffs = None, [], []
        for frame in frames:
            a = cutout.render(frame)[..., 3].astype(np.int16)
            if previous is not None:
                change = np.abs(a - previous)
                diffs.append(change.mean())
                band_diffs.append(change[band].mean())
            previous = a
        flicker[name] = (float(np.mean(diffs)), float(np.mean(band_diffs)))
    row: dict[str, float | str] = {
        "portrait": path.name, "matte": "person" if matte is not None else "head mask",
        "segment_ms": segment_s * 1000, "refine_ms": refine_s * 1000, "cutout_ms": total_s * 1000,
        "cutout_wall_ms": total_wall * 1000,
        "render_rgb": rgb_ms, "render_rgba": rgba_ms, "webp_extra": webp_rgba - webp_rgb,
        "vcam_extra": vcam_rgba - vcam_rgb,
        "still_all": flicker["still"][0], "still_band": flicker["still"][1],
        "moving_all": flicker["moving"][0], "moving_band": flicker["moving"][1],
    }
    return row, cutout.render(motion[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--portraits", type=int, default=None, help="only the first N portraits")
    parser.add_argument("--seconds", type=float, default=4.0, help="motion length per portrait (default 4 s)")
    args = parser.parse_args()

    paths = [REPO / "samples" / "mona_lisa.jpg"]
    if SHARED_PORTRAITS.is_dir():
        paths += sorted(p for p in SHARED_PORTRAITS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    paths = paths[:args.portraits]
    speech = decode_mono(SPEECH)[: int(args.seconds * 16000)]
    motion = list(generate_motion(np.array_split(speech, max(1, len(speech) // 1024)), fps=FPS))
    still = [replace(frame, head=HeadPose()) for frame in motion]

    columns = ("portrait", "matte", "segment_ms", "refine_ms", "cutout_ms", "cutout_wall_ms", "render_rgb",
               "render_rgba", "webp_extra", "vcam_extra", "still_all", "still_band", "moving_all", "moving_band")
    print(" | ".join(columns))
    rows, firsts = [], {}
    for path in paths:
        row, first = measure(path, motion, still)
        rows.append(row)
        firsts[path.name] = first
        print(" | ".join(f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in columns), flush=True)
    numeric = [c for c in columns if isinstance(rows[0][c], float)]
    print(" | ".join(["mean", f"{sum(r['matte'] == 'person' for r in rows)}/{len(rows)} person"]
                     + [f"{np.mean([r[c] for r in rows]):.2f}" for c in numeric]))
    print(f"per-frame cut-out cost (mean render_rgba - render_rgb): "
          f"{np.mean([r['render_rgba'] - r['render_rgb'] for r in rows]):.2f} ms at {SIZE} px")

    tiles = [over_checkerboard(firsts[name]) for name in SHEET_NAMES if name in firsts] or \
        [over_checkerboard(f) for f in firsts.values()]
    tiles = [cv2.resize(t, (256, 256), interpolation=cv2.INTER_AREA) for t in tiles[:8]]
    while len(tiles) % 4:
        tiles.append(checkerboard(256))
    sheet = np.vstack([np.hstack(tiles[i:i + 4]) for i in range(0, len(tiles), 4)])
    SHEET.parent.mkdir(exist_ok=True)
    cv2.imwrite(str(SHEET), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {SHEET}", file=sys.stderr)


if __name__ == "__main__":
    main()
