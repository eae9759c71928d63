"""What the lip-sync scorer reads beyond the inner-lip gap: real mouths reduced to what a few numbers explain.

    python benchmarks/sync_shape.py            # the 59 held-out clips, about a minute

The scorer (`evaluation.sync_scorer`) judges the 40 lip landmarks, not the gap alone. Each held-out clip's real
lips are replaced by their least-squares fit (per clip, per landmark coordinate) from a few per-frame numbers of
the same clip, and scored again:

* gap: the inner-lip gap only (what the mouth-gap nets set the jaw by);
* gap + shape groups: the gap and the mean measured coefficient of each SHAPE_GROUPS group (funnel, pucker,
  lower lip down, upper lip up, stretch);
* gap + width + height: the gap and the lips' outer width and height.

A generated mouth whose gap is perfect and whose shape never moves scores about the "gap" row; the real mouth is
the "real" row. Speaker-weighted (each held-out speaker counts once), in-the-wild speakers and GRID s4 apart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from facecast.dataset import cache as dataset  # noqa: E402
from facecast.evaluation.sync_scorer import SyncScorer, scorable  # noqa: E402
from facecast.motion import EXPRESSION_CHANNELS, MOUTH_CHANNELS  # noqa: E402


def _articulator_groups() -> tuple[tuple[str, ...], ...]:
    """The speech articulators beside the jaw (`motion.MOUTH_CHANNELS` less jawOpen and mouthClose), each
    left-right pair as one group, in their order there."""
    groups: dict[str, list[str]] = {}
    for name in MOUTH_CHANNELS:
        if name not in ("jawOpen", "mouthClose"):
            groups.setdefault(name.removesuffix("Left").removesuffix("Right"), []).append(name)
    return tuple(map(tuple, groups.values()))


#: funnel, pucker, lower lip down, upper lip up, stretch
SHAPE_GROUPS = _articulator_groups()
VARIANTS = ("real", "gap", "gap + shape groups", "gap + width + height")


def fitted_lips(lips: np.ndarray, found: np.ndarray, numbers: list[np.ndarray]) -> np.ndarray:
    """The lips (T, 40, 2) as their per-clip least-squares fit from `numbers` (each (T,)) and a constant."""
    flat = lips.reshape(len(lips), -1).astype(np.float64)
    ok = found.astype(bool) & np.isfinite(flat).all(1)
    design = np.column_stack([np.ones(len(lips))] + [np.nan_to_num(n) for n in numbers])
    coefficients, *_ = np.linalg.lstsq(design[ok], flat[ok], rcond=None)
    out = flat.copy()
    out[ok] = design[ok] @ coefficients
    return out.reshape(lips.shape).astype(np.float32)


def variants(clip: dict) -> dict[str, np.ndarray]:
    lips, found = clip["lips"], clip["found"]
    gap = np.asarray(clip["mouth_opening"], np.float64)[: len(lips)]
    expressions = np.asarray(clip["expressions"], np.float64)
    groups = [expressions[:, [EXPRESSION_CHANNELS.index(n) for n in group]].mean(1) for group in SHAPE_GROUPS]
    points = np.asarray(lips, np.float64)
    width = points[:, :, 0].max(1) - points[:, :, 0].min(1)
    height = points[:, :, 1].max(1) - points[:, :, 1].min(1)
    return {"real": lips, "gap": fitted_lips(lips, found, [gap]),
            "gap + shape groups": fitted_lips(lips, found, [gap, *groups]),
            "gap + width + height": fitted_lips(lips, found, [gap, width, height])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args(argv)
    scorer = SyncScorer()
    scores: dict[str, dict[str, list[float]]] = {name: {} for name in VARIANTS}
    clips = [c for c in dataset.iter_clips(split="validation", kind="talking", cache=args.cache) if scorable(c)]
    for clip in clips:
        for name, lips in variants(clip).items():
            confidence = scorer.score(lips, clip["found"], float(clip["fps"]), clip["audio"]).confidence
            scores[name].setdefault(str(clip["speaker"]), []).append(confidence)
    speakers = sorted(scores["real"])
    wild = [s for s in speakers if not s.startswith("grid")]
    print(f"sync confidence of the 40 real lip landmarks and of their fits ({len(clips)} held-out clips, "
          "speaker-weighted)\n")
    print("| lips | in the wild | weakest wild speaker | GRID s4 | " + " | ".join(wild) + " |")
    print("|---|---|---|---|" + "---|" * len(wild))
    for name in VARIANTS:
        per = {s: float(np.mean(v)) for s, v in scores[name].items()}
        weakest = min(wild, key=per.get)
        grid = np.mean([per[s] for s in speakers if s.startswith("grid")])
        print(f"| {name} | {np.mean([per[s] for s in wild]):.3f} | {weakest} {per[weakest]:.3f} | {grid:.3f} | "
              + " | ".join(f"{per[s]:.3f}" for s in wild) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
