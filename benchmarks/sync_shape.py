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

    python benchmarks/sync_shape.py --rendered [--workers 2]   # where the renderer loses it, about 10 minutes

--rendered: where the renderer loses what the scorer reads. Each clip's own extracted motion is re-rendered on its
first frame (the quality benchmark's `extracted` row: the renderer's ceiling) and its lips measured; they are
scored as rendered, and with one part of their motion replaced by the real lips' (each landmark's deviation from
its mean over the clip, kept about the rendered landmark's mean): each lip contour (corners, outer and inner,
upper and lower), every landmark's x, every landmark's y; and with each rendered landmark's deviations scaled to
the real one's spread. The rows that gain most say what the renderer (or the extraction it replays) draws least
like the real mouth.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from facecast import face_regions as fr  # noqa: E402
from facecast.dataset import cache as dataset  # noqa: E402
from facecast.evaluation.sync_scorer import SyncScorer, scorable  # noqa: E402
from facecast.face.extraction import LIP_POINTS  # noqa: E402
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


_CORNERS = {fr.MOUTH_LEFT, fr.MOUTH_RIGHT, 78, 308}
#: The lip contours as rows of the 40 lip landmarks (`extraction.LIP_POINTS`), corners apart.
LIP_PARTS = {"corners": _CORNERS} | {name: set(points) - _CORNERS for name, points in (
    ("outer upper lip", fr.UPPER_LIP_OUTER), ("outer lower lip", fr.LOWER_LIP_OUTER),
    ("inner upper lip", fr.UPPER_LIP_INNER), ("inner lower lip", fr.LOWER_LIP_INNER))}
RENDERED_VARIANTS = ("real", "rendered", *(f"rendered, real {part}" for part in LIP_PARTS), "rendered, real x",
                     "rendered, real y", "rendered, scaled to real spread")


def _render_lips(relpath: str, data: Path, cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The lips (T, 40, 2) and found frames of a clip's own extracted motion rendered on its first frame."""
    import quality  # the benchmark beside this one: its renderer ceiling row

    quality._init_worker()
    measured = quality.render_clip(relpath, ["extracted"], data, cache)["extracted"]
    return measured.lips, measured.found


def rendered_variants(clip: dict, lips: np.ndarray, found: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """RENDERED_VARIANTS of one clip's rendered `lips` (see the module docstring), and the frames both found."""
    real = np.asarray(clip["lips"], np.float64)
    n = min(len(real), len(lips))
    real, rendered = real[:n], np.asarray(lips, np.float64)[:n]
    both = np.asarray(found[:n], bool) & np.asarray(clip["found"][:n], bool)
    rendered_mean, real_mean = np.nanmean(rendered[both], 0), np.nanmean(real[both], 0)

    def real_motion(rows: list[int], axes: tuple[int, ...] = (0, 1)) -> np.ndarray:
        out = rendered.copy()
        for axis in axes:
            out[:, rows, axis] = rendered_mean[rows, axis] + real[:, rows, axis] - real_mean[rows, axis]
        return out

    every = list(range(len(LIP_POINTS)))
    spread = np.nanstd(real[both], 0) / np.maximum(np.nanstd(rendered[both], 0), 1e-9)
    out = {"real": real, "rendered": rendered}
    for part, points in LIP_PARTS.items():
        out[f"rendered, real {part}"] = real_motion([i for i, p in enumerate(LIP_POINTS) if p in points])
    out |= {"rendered, real x": real_motion(every, (0,)), "rendered, real y": real_motion(every, (1,)),
            "rendered, scaled to real spread": rendered_mean + (rendered - rendered_mean) * spread}
    return {name: v.astype(np.float32) for name, v in out.items()}, both


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=dataset.DEFAULT_DATA, help="with --rendered: the videos")
    parser.add_argument("--rendered", action="store_true", help="re-render each clip's real motion (see above)")
    parser.add_argument("--workers", type=int, default=2, help="with --rendered: processes rendering clips")
    parser.add_argument("--clips", type=int, default=None, help="at most this many held-out clips")
    args = parser.parse_args(argv)
    scorer = SyncScorer()
    names = RENDERED_VARIANTS if args.rendered else VARIANTS
    scores: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    clips = [c for c in dataset.iter_clips(split="validation", kind="talking", cache=args.cache)
             if scorable(c)][:args.clips]
    if args.rendered:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            renders = list(pool.map(_render_lips, [str(c["path"]) for c in clips], [args.data] * len(clips),
                                    [args.cache] * len(clips)))
    for i, clip in enumerate(clips):
        if args.rendered:
            lip_variants, found = rendered_variants(clip, *renders[i])
        else:
            lip_variants, found = variants(clip), clip["found"]
        for name, lips in lip_variants.items():
            confidence = scorer.score(lips, found, float(clip["fps"]), clip["audio"]).confidence
            scores[name].setdefault(str(clip["speaker"]), []).append(confidence)
    speakers = sorted(scores["real"])
    wild = [s for s in speakers if not s.startswith("grid")]
    what = ("real motion re-rendered, parts of it replaced by the real lips'" if args.rendered
            else "the 40 real lip landmarks and of their fits")
    print(f"sync confidence of {what} ({len(clips)} held-out clips, speaker-weighted)\n")
    print("| lips | in the wild | weakest wild speaker | GRID s4 | " + " | ".join(wild) + " |")
    print("|---|---|---|---|" + "---|" * len(wild))
    grid = [s for s in speakers if s.startswith("grid")]
    for name in names:
        per = {s: float(np.mean(v)) for s, v in scores[name].items()}
        weakest = f"{min(wild, key=per.get)} {min(per[s] for s in wild):.3f}" if wild else "-"
        print(f"| {name} | {_mean(per, wild)} | {weakest} | {_mean(per, grid)} | "
              + " | ".join(f"{per[s]:.3f}" for s in wild) + " |")
    return 0


def _mean(per: dict[str, float], speakers: list[str]) -> str:
    """The speakers' mean score, or "-" when the clips held none of them."""
    return f"{np.mean([per[s] for s in speakers]):.3f}" if speakers else "-"


if __name__ == "__main__":
    raise SystemExit(main())
