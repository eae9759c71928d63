"""Blink closure: how shut a full rendered blink reads on the face mesh, per portrait, and what real shut eyes read.

    python benchmarks/blink_closure.py                       # the portraits' table
    python benchmarks/blink_closure.py --sheet docs/blink_closure.png --portraits liveportrait_s1.jpg,...
    python benchmarks/blink_closure.py --real [--grid] [--real-sheet /tmp/real_shut_eyes.png]

Portraits: the measurement of `tests/render/test_blink_closure.py`: both eyes' face-mesh openness (static mode)
at blink = 1 over the open eyes', mean of the two, with the painted lid (`render/closed_lids.py`) and with the
blink warp alone; and with the painted lid read across the eye only (`eye_openness_across`: the mesh's top and
bottom lid points lie apart along a shut eye's lash line, which the straight reading counts as gap). The sheet
shows eye crops: open, warp alone, blink 0.8 and blink 1.

--real: the same measurement on real people's blinks, for the floor a rendered blink can be held to. In every
in-the-wild and motion-only clip of the dataset cache (`--grid`: GRID s1 too), each blink's dip of the cached eye
openness (`motion_quality.blink_depths`) gives its deepest frame; the open reference is the nearest frame 5-25
frames away whose openness is within 5 % of the clip's open level. Both frames are measured again in static mode,
as the test measures a portrait, both ways. Only dips below 0.35 of open in the cache count (a blink, not a squint or a
glance down); the sheet shows open | shut crops ordered by the ratio, for checking by eye that they are shut.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from facecast import face_regions as fr  # noqa: E402
from facecast.face.measure import FaceMeasurer, eye_openness, eye_openness_across  # noqa: E402
from facecast.face.portrait import analyze_portrait  # noqa: E402
from facecast.media import load_image  # noqa: E402
from facecast.motion import Blink, MotionFrame  # noqa: E402
from facecast.render.renderer import Renderer  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SIDES = ("left", "right")
#: A real blink counts when the cached openness dipped below this share of open.
REAL_DIP = 0.35
#: The open reference: this many frames from the shut one at least / at most, openness within this of open.
REF_NEAR, REF_FAR, REF_TOLERANCE = 5, 25, 0.05


def shut_over_open(measure: FaceMeasurer, shut: np.ndarray, opened: np.ndarray) -> tuple[float, float] | None:
    """Both eyes' openness in `shut` over `opened` (RGB frames), mean of the two, as `eye_openness` reads it and
    as `eye_openness_across` does; None where no face is found."""
    a, b = measure.landmarks(np.ascontiguousarray(shut)), measure.landmarks(np.ascontiguousarray(opened))
    if a is None or b is None:
        return None
    return tuple(float(np.mean([read(a, side) / read(b, side) for side in SIDES]))  # type: ignore[return-value]
                 for read in (eye_openness, eye_openness_across))


def eye_crop(image: np.ndarray, points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Both eyes, centred, 1.5 eye-line widths across."""
    eyes = points[list(fr.LEFT_EYE) + list(fr.RIGHT_EYE), :2]
    (x0, y0), (x1, y1) = eyes.min(0), eyes.max(0)
    k = width / (1.5 * (x1 - x0))
    m = np.array([[k, 0, width / 2 - (x0 + x1) / 2 * k], [0, k, height / 2 - (y0 + y1) / 2 * k]])
    return cv2.warpAffine(np.ascontiguousarray(image[..., :3]), m, (width, height), flags=cv2.INTER_CUBIC)


def label(tile: np.ndarray, text: str, at: tuple[int, int], scale: float = 0.55) -> None:
    cv2.putText(tile, text, at, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 0), 1 + (scale > 0.5), cv2.LINE_AA)


def portraits(names: list[str], sheet: Path | None) -> None:
    rows, heads = [], ["open", "blink 1, warp alone", "blink 0.8", "blink 1, painted lid"]
    print(f"{'portrait':24s} {'warp alone':>10s} {'painted lid':>11s} {'across the eye':>14s}   "
          "(face-mesh openness shut / open; across: the painted lid's gap across the eye)")
    with FaceMeasurer(static_images=True) as measure:
        for name in names:
            rig = analyze_portrait(load_image(DATA / "portraits" / name), size=512)
            renderer = Renderer(rig, device="cpu")
            opened = renderer.render(MotionFrame(t=0.0))[..., :3]
            frames = {b: renderer.render(MotionFrame(t=0.0, blink=Blink(b, b)))[..., :3] for b in (0.8, 1.0)}
            painted = shut_over_open(measure, frames[1.0], opened)
            # the warp alone: the same renderer with its painted lids left out
            renderer._lids.patches = lambda points, blinks: []  # type: ignore[method-assign]
            warp = renderer.render(MotionFrame(t=0.0, blink=Blink(1.0, 1.0)))[..., :3]
            alone = shut_over_open(measure, warp, opened)
            print(f"{name:24s} {_number(alone):>10s} {_number(painted):>11s} {_number(painted, 1):>14s}", flush=True)
            crops = [eye_crop(f, rig.landmarks, 400, 160) for f in (opened, warp, frames[0.8], frames[1.0])]
            label(crops[0], name.split(".")[0], (8, 20), 0.5)
            for crop, value in ((crops[1], alone), (crops[3], painted)):
                label(crop, "no face found" if value is None else f"{value[0]:.2f} of open", (8, 150))
            rows.append(np.concatenate(crops, 1))
    if sheet is not None:
        head = np.full((30, 1600, 3), 255, np.uint8)
        for i, text in enumerate(heads):
            cv2.putText(head, text, (i * 400 + 8, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        # PNG's strongest compression: OpenCV's default level makes a sheet nearly three times as large
        cv2.imwrite(str(sheet), cv2.cvtColor(np.concatenate([head, *rows]), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"sheet: {sheet}")


def _number(value: tuple[float, float] | None, reading: int = 0) -> str:
    """One of `shut_over_open`'s readings (0: `eye_openness`, 1: across the eye), or "-" where no face was found."""
    return "-" if value is None else f"{value[reading]:.2f}"


def real_blinks(groups: tuple[str, ...]) -> list[dict]:
    """Each cached blink's deepest frame and its open reference, measured in static mode."""
    from facecast.dataset import cache as dataset  # benchmarks may read the dataset; the runtime never does
    from facecast.evaluation.motion_quality import blink_depths

    out = []
    with FaceMeasurer(static_images=True) as measure:
        for path in sorted(rel for rel in dataset.load_index() if rel.startswith(groups)):
            clip = dataset.load_clip(path)
            mean = np.asarray(clip["eye_openness"], float).mean(1)
            finite = mean[np.isfinite(mean)]
            if len(finite) < 10:
                continue
            ratio = mean / np.median(finite)     # as blink_depths computes it, so each depth is one frame's ratio
            for depth in blink_depths(clip["eye_openness"]):
                if depth >= REAL_DIP:
                    continue
                shut = int(np.flatnonzero(ratio == depth)[0])
                near = sorted((j for j in range(shut - REF_FAR, shut + REF_FAR + 1)
                               if REF_NEAR <= abs(j - shut) and 0 <= j < len(ratio)
                               and abs(ratio[j] - 1) < REF_TOLERANCE), key=lambda j: abs(j - shut))
                if not near:
                    continue
                frames = [_frame(DATA / path, i) for i in (shut, near[0])]
                if any(f is None for f in frames):
                    continue
                value = shut_over_open(measure, frames[0], frames[1])
                if value is not None:
                    points = measure.landmarks(np.ascontiguousarray(frames[1]))
                    out.append({"clip": path, "speaker": str(clip["speaker"]), "frame": shut, "cached": depth,
                                "static": value[0], "across": value[1],
                                "crops": [eye_crop(f, points, 240, 80) for f in frames[::-1]]})
    return out


def _frame(path: Path, index: int) -> np.ndarray | None:
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, bgr = capture.read()
    capture.release()
    return np.ascontiguousarray(bgr[..., ::-1]) if ok else None


def real(groups: tuple[str, ...], sheet: Path | None) -> None:
    blinks = real_blinks(groups)
    if not blinks:
        print("no blinks: the dataset cache is missing or empty (facecast dataset build)", file=sys.stderr)
        return
    values = np.array([b["static"] for b in blinks])
    speakers: dict[str, list[float]] = {}
    for b in blinks:
        speakers.setdefault(b["speaker"], []).append(b["static"])
    typical = np.array([np.median(v) for v in speakers.values()])
    print(f"real blinks (cached dip < {REAL_DIP} of open): {len(values)}, {len(speakers)} speakers")
    low, high = np.percentile(values, [10, 90])
    print(f"  shut / open, static face mesh: median {np.median(values):.2f}, 10th percentile {low:.2f}, "
          f"90th {high:.2f}, <= 0.2: {np.mean(values <= 0.2):.0%}")
    print(f"  per speaker (median of their blinks): median {np.median(typical):.2f}, range "
          f"{typical.min():.2f}-{typical.max():.2f}, <= 0.2: {np.mean(typical <= 0.2):.0%}")
    across = np.array([b["across"] for b in blinks])
    low, high = np.percentile(across, [10, 90])
    print(f"  across the eye only (eye_openness_across): median {np.median(across):.2f}, 10th percentile "
          f"{low:.2f}, 90th {high:.2f}, <= 0.2: {np.mean(across <= 0.2):.0%}")
    if sheet is not None:
        order = sorted(blinks, key=lambda b: b["static"])
        tiles = []
        for i, b in enumerate(order):
            tile = np.concatenate(b["crops"], 1).copy()
            label(tile, f"#{i} {b['static']:.2f} {b['speaker'][:16]}", (244, 12), 0.38)
            tiles.append(tile)
        tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 3)
        grid = np.concatenate([np.concatenate(tiles[r:r + 3], 1) for r in range(0, len(tiles), 3)])
        cv2.imwrite(str(sheet), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        print(f"sheet: {sheet}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--portraits", default="liveportrait_s1.jpg,liveportrait_s9.jpg,liveportrait_s7.jpg",
                        help="comma-separated names in ../shared/data/portraits, or 'all'")
    parser.add_argument("--sheet", type=Path, default=None, help="eye-crop contact sheet of the portraits (PNG)")
    parser.add_argument("--real", action="store_true", help="real people's shut eyes instead (the dataset cache)")
    parser.add_argument("--grid", action="store_true", help="with --real: GRID s1 too (about 2,000 dips, slow)")
    parser.add_argument("--real-sheet", type=Path, default=None, help="with --real: open | shut crops (PNG)")
    args = parser.parse_args(argv)
    if args.real:
        groups = ("talking/wild/", "motion_only/") + (("talking/grid_s1/",) if args.grid else ())
        real(groups, args.real_sheet)
        return 0
    names = (sorted(p.name for p in (DATA / "portraits").iterdir()) if args.portraits == "all"
             else args.portraits.split(","))
    portraits(names, args.sheet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
