"""Where the rendered head's shake comes from: each generator's motion rendered as it is, with the head held still,
with the mouth held still, with the eyes held open, and with all of them, measured with the face mesh like the
quality benchmark (issue 18).

    python benchmarks/steadiness.py --group grid --clips 8 --generators learned,rule

The quality benchmark reads head jitter (distance of the rotation from its smoothed path) and rotation change
(mean frame-to-frame change) off the rendered frames. Both include what the face mesh reads as head rotation
when only the jaw moves or the lids close; holding the head still shows how much that is, holding the mouth
still how much the generated head adds, holding the eyes open (no blinks) how much the blinks add. Same clips,
portraits (each speaker's first frame, today's fixed framing) and 512² renders as `benchmarks/quality.py`; each
number is the mean over the clips.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import quality  # noqa: E402

from facecast.dataset import cache as dataset  # noqa: E402
from facecast.evaluation.motion_quality import (  # noqa: E402
    head_motion,
    jitter,
    learned_motion,
    measure_frames,
    motion_head_and_blink,
    rotation_change,
    rule_motion,
)
from facecast.motion import Blink, HeadPose, MotionFrame, _silence_visemes  # noqa: E402

GENERATORS = {"learned": learned_motion, "rule": rule_motion}


def _replaced(motion: list[MotionFrame], **fields: object) -> list[MotionFrame]:
    """Copies of the frames with these fields set."""
    out = []
    for frame in motion:
        frame = copy.copy(frame)
        for name, value in fields.items():
            setattr(frame, name, value)
        out.append(frame)
    return out


def head_still(motion: list[MotionFrame]) -> list[MotionFrame]:
    return _replaced(motion, head=HeadPose())


def mouth_still(motion: list[MotionFrame]) -> list[MotionFrame]:
    out = []
    for frame in motion:
        frame = copy.copy(frame)
        frame.visemes = _silence_visemes()
        frame.expressions = {k: v for k, v in frame.expressions.items() if not k.startswith(("jaw", "mouth"))}
        out.append(frame)
    return out


def eyes_open(motion: list[MotionFrame]) -> list[MotionFrame]:
    return _replaced(motion, blink=Blink())


VARIANTS = {"as generated": lambda m: m, "head still": head_still, "mouth still": mouth_still,
            "eyes open": eyes_open, "both still": lambda m: mouth_still(head_still(m)),
            "both still, eyes open": lambda m: eyes_open(mouth_still(head_still(m)))}


def _scores(head: np.ndarray, fps: float) -> tuple[float, float, float, float]:
    return (jitter(head, fps), rotation_change(head), *head_motion(head, fps))


def main(argv: list[str] | None = None) -> int:
    import cv2
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--group", choices=("grid", "wild"), default="grid")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--generators", default="learned,rule")
    parser.add_argument("--data", type=Path, default=dataset.DEFAULT_DATA)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    names = [g for g in args.generators.split(",") if g]
    if unknown := [g for g in names if g not in GENERATORS]:
        parser.error(f"unknown generator(s) {', '.join(unknown)}; choose from {', '.join(GENERATORS)}")
    clips = quality.held_out(None, None, group=args.group)[: args.clips]
    if not clips:
        print("no held-out clips in the dataset cache: run `facecast dataset build` first", file=sys.stderr)
        return 1
    rows: dict[str, list[tuple[float, ...]]] = {}
    for clip in clips:
        relpath = str(clip["path"])
        clip, fps, count, renderer, samples = quality.clip_renderer(relpath, args.data, None)
        rows.setdefault("real video", []).append(_scores(clip["head"], fps))
        for name in names:
            motion = GENERATORS[name](samples, fps, count)
            rows.setdefault(f"{name}: its own motion, before rendering", []).append(
                _scores(motion_head_and_blink(motion)[0], fps))
            for variant, change in VARIANTS.items():
                measured = measure_frames((renderer.render(f)[:, :, :3] for f in change(motion)), fps)
                rows.setdefault(f"{name}: rendered, {variant}", []).append(_scores(measured.head, fps))
        print(f"  {relpath}", file=sys.stderr, flush=True)
    print(f"\n{args.group}, {len(clips)} held-out clips, mean over clips:\n")
    print("| motion | jitter ° | Δrot °/frame | head °/s | spread ° |")
    print("|---|---|---|---|---|")
    for label, values in rows.items():
        mean = np.nanmean(np.array(values), 0)
        print(f"| {label} | {mean[0]:.3f} | {mean[1]:.3f} | {mean[2]:.2f} | {mean[3]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
