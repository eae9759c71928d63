"""Picture benchmark: how much of the output is the user's own picture, before (legacy framing) and after.

    python benchmarks/picture.py                      # every portrait in ../shared/data/portraits, one table
    python benchmarks/picture.py --sheet docs/picture_framing.png   # also the contact sheet README shows

For each portrait, a 10 s render with head motion (the rule generator on the
bundled speech, looped) at 512², in the legacy framing ("before": eyes
levelled, face 40 % of the height), `auto` and `full` ("after"). Columns:

* invented: share of output pixels that come from outside the source picture
  in any frame: each output pixel is mapped back through the renderer's warp
  (where it sampled the rig, beyond the rig's own edge included) and the crop
  (the rig's transform) into the picture;
* face in: whether the whole face (its oval, forehead to chin) is inside the
  first frame;
* face %: the face's length (forehead to chin) as a share of the output height;
  scale: output pixels per picture pixel of the face;
* paste ms: paste-back cost per 512 px frame (framing `full`; the other framings
  cost nothing per frame, their crop is made once per portrait), median of the
  10 s render.

Every second frame is rendered by default (`--stride`): head motion is smooth,
so the union over them matches every frame's.

The held-out first frames of the quality benchmark need the dataset cache
(`facecast dataset build`, far longer than this benchmark); with `--held-out`
they are added when the cache exists.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import facecast.render.renderer as renderer_module  # noqa: E402
from facecast import face_regions as fr  # noqa: E402
from facecast.errors import FacecastError  # noqa: E402
from facecast.face.portrait import LEGACY_FRAMING, analyze_portrait  # noqa: E402
from facecast.media import decode_mono  # noqa: E402
from facecast.render.renderer import Renderer  # noqa: E402
from facecast.rig import PortraitRig  # noqa: E402
from facecast.speech.rule import RuleMotionGenerator, generate_motion  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PORTRAITS = REPO.parent / "shared" / "data" / "portraits"
SPEECH = REPO / "samples" / "grid_s1_speech.flac"
SIZE, FPS, SECONDS = 512, 25, 10.0
FRAMINGS = (LEGACY_FRAMING, "auto", "full")
FACE = list(fr.FACE_OVAL) + [fr.FOREHEAD_TOP, fr.CHIN]
THUMB = 160


def motion(seed: int = 0) -> list:
    """10 s of the rule generator's motion (head turns, nods, sway, blinks) on the bundled speech, looped."""
    speech = np.resize(decode_mono(SPEECH), int(SECONDS * RuleMotionGenerator.SAMPLE_RATE))
    return list(generate_motion([speech], fps=FPS, seed=seed))[:int(SECONDS * FPS)]


class SampledPositions:
    """Records where the renderer samples its rig for each output pixel (the last resampling of a frame)."""

    def __init__(self, renderer: Renderer) -> None:
        self._image = renderer._warper._image
        self._original = renderer_module._remap
        self.positions: np.ndarray | None = None

    def __enter__(self) -> "SampledPositions":
        def remap(image: np.ndarray, positions: np.ndarray, border: int) -> np.ndarray:
            if image is self._image:
                self.positions = positions
            return self._original(image, positions, border)
        renderer_module._remap = remap
        return self

    def __exit__(self, *exc: object) -> None:
        renderer_module._remap = self._original


def _outside_picture(rig: PortraitRig, xy: np.ndarray) -> np.ndarray:
    """Which rig positions (..., 2) map to a point outside the source picture (or beyond the rig's own edge,
    where the renderer repeats the edge pixel)."""
    inverse = np.linalg.inv(rig.transform)
    picture = xy @ inverse[:2, :2].T + inverse[:2, 2]
    width, height = rig.picture_size
    side = rig.size
    beyond_rig = (xy < -0.5).any(-1) | (xy > side - 0.5).any(-1)
    beyond_picture = ((picture[..., 0] < -0.5) | (picture[..., 0] > width - 0.5)
                      | (picture[..., 1] < -0.5) | (picture[..., 1] > height - 0.5))
    return beyond_rig | beyond_picture


def measure(path: Path, framing: str, frames: list) -> dict:
    """One portrait in one framing: invented share over the render, face inside, face size, costs, first frame."""
    rig = analyze_portrait(path, size=SIZE, framing=framing)
    renderer = Renderer(rig, device="cpu")
    side = rig.size
    grid = np.stack(np.meshgrid(np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32)), -1)
    invented = _outside_picture(rig, grid)        # the still crop's own pixels
    paste_ms = []
    first = None
    with SampledPositions(renderer) as sampled:
        for frame in frames:
            sampled.positions = None
            square = renderer._render_square(frame)
            if sampled.positions is not None:
                y0, x0 = _box_origin(sampled.positions)
                h, w = sampled.positions.shape[:2]
                invented[y0:y0 + h, x0:x0 + w] |= _outside_picture(rig, sampled.positions)
            if renderer._paste is not None:
                started = time.perf_counter()
                out = renderer._paste(square)
                paste_ms.append(1000 * (time.perf_counter() - started))
            else:
                out = square
            if first is None:
                first = out
    height, width = rig.frame_shape
    share = invented.sum() / (height * width)
    face = rig.landmarks[FACE, :2] + rig.placement
    inside = bool((face >= 0).all() and (face[:, 0] <= width - 1).all() and (face[:, 1] <= height - 1).all())
    length_out = float(np.linalg.norm(rig.landmarks[fr.FOREHEAD_TOP, :2] - rig.landmarks[fr.CHIN, :2]))
    scale = float(np.sqrt(abs(np.linalg.det(rig.transform[:2, :2]))))
    return {"invented": share, "inside": inside, "face": length_out / height, "scale": scale,
            "paste_ms": float(np.median(paste_ms)) if paste_ms else 0.0, "first": first, "shape": (width, height),
            "picture": rig.picture_size}


def _box_origin(positions: np.ndarray) -> tuple[int, int]:
    """(y, x) of the resampled box in the square: its corner lies in the still margin (`BOX_MARGIN`), where
    each output pixel samples its own position."""
    return int(round(float(positions[0, 0, 1]))), int(round(float(positions[0, 0, 0])))


def sheet(rows: list[tuple[str, dict]], path: Path, labels: bool = True) -> None:
    """First frames, before | auto | full, four portraits to a row, each labelled (with the invented shares
    of the 10 s render when it was measured)."""
    cells = []
    for name, result in rows:
        thumbs = []
        for framing in FRAMINGS:
            image = result[framing]["first"]
            if image.shape[2] == 4:  # transparent pixels on a checkerboard, as an editor shows them
                board = ((np.indices(image.shape[:2]).sum(0) // 16) % 2 * 60 + 160).astype(np.float32)[..., None]
                alpha = image[..., 3:4] / 255.0
                image = (image[..., :3] * alpha + board * (1 - alpha)).astype(np.uint8)
            h, w = image.shape[:2]
            k = THUMB / max(h, w)
            small = cv2.resize(image[..., :3], (max(1, round(w * k)), max(1, round(h * k))),
                               interpolation=cv2.INTER_AREA)
            tile = np.full((THUMB, THUMB, 3), 255, np.uint8)
            ty, tx = (THUMB - small.shape[0]) // 2, (THUMB - small.shape[1]) // 2
            tile[ty:ty + small.shape[0], tx:tx + small.shape[1]] = small
            thumbs.append(tile)
        cell = np.full((THUMB + 22, 3 * THUMB + 8, 3), 255, np.uint8)
        cell[22:, 0:THUMB] = thumbs[0]
        cell[22:, THUMB + 4:2 * THUMB + 4] = thumbs[1]
        cell[22:, 2 * THUMB + 8:] = thumbs[2]
        label = f"{name}: before {100 * result[LEGACY_FRAMING]['invented']:.0f}% | auto " \
                f"{100 * result['auto']['invented']:.0f}% | full" if labels else f"{name}: before | auto | full"
        cv2.putText(cell, label, (2, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        cells.append(np.pad(cell, ((4, 4), (4, 4), (0, 0)), constant_values=255))
    per_row = 4
    while len(cells) % per_row:
        cells.append(np.full_like(cells[0], 255))
    grid = np.vstack([np.hstack(cells[i:i + per_row]) for i in range(0, len(cells), per_row)])
    header = np.full((30, grid.shape[1], 3), 255, np.uint8)
    cv2.putText(header, "first frame of each portrait: before (legacy framing) | after: auto | full"
                + ("; % = output pixels invented beyond the picture over a 10 s render" if labels else ""), (6, 20),
                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack([header, grid]), cv2.COLOR_RGB2BGR))


def held_out_first_frames(limit: int, cache: Path | None = None) -> list[tuple[str, np.ndarray]]:
    """The first face frames of `limit` of the quality benchmark's held-out clips (half GRID s4, half wild),
    from the dataset cache (`cache`, or the default one); none when the cache or the data is missing (said on
    stderr)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import quality  # type: ignore[import-not-found]  # its held-out selection, so both judge the same clips

    from facecast.face.extraction import iter_video_frames

    frames = []
    try:
        for clip in quality.held_out(cache, limit):
            relpath = str(clip["path"])
            first = int(np.argmax(quality.dataset.load_clip(relpath, cache)["found"]))
            frame = next(f for i, f in enumerate(iter_video_frames(quality.dataset.DEFAULT_DATA / relpath))
                         if i == first)
            frames.append((Path(relpath).stem, frame))
    except (OSError, ValueError, KeyError, StopIteration, FacecastError) as exc:
        print(f"held-out first frames skipped: {exc}", file=sys.stderr)
        return []
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sheet", type=Path, default=None, help="write the contact sheet PNG here")
    parser.add_argument("--portraits", type=Path, default=PORTRAITS,
                        help=f"the portraits' folder (default {PORTRAITS})")
    parser.add_argument("--stride", type=int, default=2,
                        help="render every Nth frame of the 10 s (the head moves smoothly; 1 = every frame)")
    parser.add_argument("--sheet-only", action="store_true",
                        help="only the contact sheet (first frames; no 10 s render, no table)")
    parser.add_argument("--only", nargs="*", default=None, help="only these portrait file names")
    parser.add_argument("--held-out", type=int, default=0, metavar="N",
                        help="add the first frames of N of the quality benchmark's held-out clips (needs its cache)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="the dataset cache holding them (as quality.py's --cache; default: the user cache)")
    args = parser.parse_args()
    if args.cache is not None and not args.cache.is_dir():
        parser.error(f"--cache {args.cache}: no such folder")
    paths = sorted(p for p in args.portraits.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    if args.only:
        paths = [p for p in paths if p.name in args.only]
    sources: list[tuple[str, object]] = [(p.name, p) for p in paths]
    if args.held_out:
        sources += held_out_first_frames(args.held_out, args.cache)
    if not sources:
        parser.error("nothing to measure: no portrait matched and no held-out first frame was found")
    frames = motion()[::args.stride]
    if args.sheet_only:
        frames = frames[:1]
    rows = []
    print("| portrait | picture | invented before | auto | full | face in before / auto | face % of height "
          "before / auto | scale before / auto | paste-back ms (full) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, source in sources:
        result = {framing: measure(source, framing, frames) for framing in FRAMINGS}
        rows.append((name, result))
        if args.sheet_only:
            continue
        before, auto, full = result[LEGACY_FRAMING], result["auto"], result["full"]
        print(f"| {name} | {before['picture'][0]}x{before['picture'][1]} | {100 * before['invented']:.1f} % | "
              f"{100 * auto['invented']:.1f} % | {100 * full['invented']:.1f} % | "
              f"{'yes' if before['inside'] else 'NO'} / {'yes' if auto['inside'] else 'NO'} | "
              f"{100 * before['face']:.0f} / {100 * auto['face']:.0f} | {before['scale']:.2f} / {auto['scale']:.2f} | "
              f"{full['paste_ms']:.2f} |", flush=True)
    for framing in FRAMINGS if not args.sheet_only else ():
        shares = np.array([r[framing]["invented"] for _, r in rows]) * 100
        print(f"{framing}: invented median {np.median(shares):.1f} %, mean {shares.mean():.1f} %, "
              f"max {shares.max():.1f} %, above 2 %: {(shares > 2).sum()} of {len(shares)}")
    if not args.sheet_only:
        paste = [r["full"]["paste_ms"] for _, r in rows]
        print(f"paste-back: median {np.median(paste):.2f} ms per frame (full; frames up to {SIZE} px)")
    if args.sheet:
        sheet(rows, args.sheet, labels=not args.sheet_only)
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
