"""Which training recordings are out of step with their own sound: the measurement behind `dataset/av_offsets.json`.

    python benchmarks/av_offsets.py            # both parts, about 12 minutes on 2 cores
    python benchmarks/av_offsets.py --part lrc_ar

A net that never heard a recording asks for a mouth gap in step with its sound; the lag (frames at 25 fps) at which
that gap correlates best with the recording's own mouth is the recording's offset (positive: its sound is late).
Nets are the shipped offline recipe, one seed, 600 steps, trained on targets as recorded (`Recipe.av_aligned`
off, so the offsets file cannot steer its own measurement), and scored against them.

* wild: the in-the-wild training clips, each scored by the net refit without its speaker fold
  (`dataset.folds`); prints every clip's best lag and the correlation there and at lag 0.
* lrc_ar: a net trained without `lrc_ar`, scored on 400 of its 1.2 s word clips (too short to trust one by one):
  the mean correlation per lag, and the same net on GRID s4 (held out, a studio recording) as the check that the
  net itself is not early or late.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from facecast.dataset import cache as dataset  # noqa: E402
from facecast.dataset.folds import load_folds  # noqa: E402
from facecast.evaluation.motion_quality import correlation_at  # noqa: E402
from facecast.speech.mouth_gap import OFFLINE_LOOKAHEAD, MouthGap  # noqa: E402
from facecast.training.mouth_gap import OFFLINE_RECIPE, _clip_targets, fold_inputs, train_nets, without_fold  # noqa: E402

RECIPE = replace(OFFLINE_RECIPE, av_aligned=False)
LAGS = range(-5, 6)
STEPS = 600


def _net(clips: list[dict]):
    state = train_nets(clips, OFFLINE_LOOKAHEAD, STEPS, seeds=(0,), recipe=RECIPE, progress=lambda m: None)
    return MouthGap(state, np.zeros(1)), state


def lag_curve(net, clip: dict) -> np.ndarray | None:
    """The correlation of the net's asked-for gap with the clip's mouth as recorded, per lag in LAGS."""
    model, state = net
    audio, gap, _, _, found = _clip_targets(clip, None, None, aligned=False)
    if found.sum() < 20:
        return None
    asked = np.where(found, model.target(*fold_inputs(clip, audio, state)), np.nan)
    real = np.where(found, gap, np.nan)
    return np.array([correlation_at(asked, real, lag) for lag in LAGS])


def _mean_row(curves: list[np.ndarray]) -> str:
    mean = np.nanmean(np.array(curves), 0)
    return " | ".join(f"{v:.3f}" for v in mean) + f" | {LAGS[int(np.nanargmax(mean))]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("wild", "lrc_ar", "all"), default="all")
    args = parser.parse_args(argv)
    clips = [c for c in dataset.iter_clips(split="train", kind="talking") if len(c["audio"])]
    if args.part in ("wild", "all"):
        print("| fold | clip | speaker | seconds | r at lag 0 | best lag | r there |\n|---|---|---|---|---|---|---|")
        for fold, speakers in enumerate(load_folds(), 1):
            net = _net(without_fold(clips, fold))
            for clip in (c for c in clips if str(c["speaker"]) in set(speakers)):
                curve = lag_curve(net, clip)
                if curve is None:
                    continue
                best = int(np.nanargmax(curve))
                print(f"| {fold} | {clip['path']} | {clip['speaker']} | {len(clip['found']) / float(clip['fps']):.1f} "
                      f"| {curve[LAGS.index(0)]:.3f} | {LAGS[best]} | {curve[best]:.3f} |", flush=True)
    if args.part in ("lrc_ar", "all"):
        net = _net([c for c in clips if "lrc_ar" not in str(c["path"])])
        lrc = [c for c in clips if "lrc_ar" in str(c["path"])]
        sample = [lrc[i] for i in np.random.default_rng(0).choice(len(lrc), min(400, len(lrc)), replace=False)]
        grid = [c for c in dataset.iter_clips(split="validation", kind="talking") if "grid_s4" in str(c["path"])]
        print("\nmean r per lag, a net trained without lrc_ar:\n")
        print("| clips | " + " | ".join(f"{lag:+d}" for lag in LAGS) + " | best |\n|" + "---|" * (len(LAGS) + 2))
        for name, group in (("lrc_ar (400)", sample), (f"GRID s4 ({len(grid)}, held out)", grid)):
            curves = [c for c in (lag_curve(net, clip) for clip in group) if c is not None]
            print(f"| {name} | {_mean_row(curves)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
