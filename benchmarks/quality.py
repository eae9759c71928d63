"""Quality benchmark: every motion generator against real people, on speakers no model trained on.

    python benchmarks/quality.py                     # every held-out clip, all generators (the README table)
    python benchmarks/quality.py --clips 6           # a quick look (3 GRID s4 + 3 in-the-wild clips)
    python benchmarks/quality.py --generators rule --model alt=out/alt.pt   # other learned weights as row "alt"

Needs the dataset cache (`facecast dataset build`, about 30 minutes once). For
each held-out talking clip (`src/facecast/dataset/split.json`: GRID s4 and the
validation in-the-wild speakers) and each generator: the generator turns the
clip's audio into motion at the clip's frame rate, the renderer renders it on
the clip's first frame (512²), and the output frames are measured with the face
mesh exactly as the real videos were (`facecast.evaluation.motion_quality`). The
"real" row is the original video, measured the same way.

Columns (means over clips unless said):
* mouth r: Pearson correlation of the generated with the real mouth opening
  (all held-out clips; then GRID s4 and in-the-wild alone); lag: the median
  lag (frames) that maximises it, positive = generated late; mouth size: the
  output's widest mouth opening (90th percentile) over the real speaker's, median
  over clips (correlation is blind to how far the mouth opens);
* sync conf / off: our lip-sync scorer (`facecast.evaluation.sync_scorer`, the
  SyncNet protocol) on the output's mouth and the clip's audio: mean
  confidence, median offset (frames at 25 fps, positive = audio late), and the
  share of clips found within +-1 frame;
* closed b/p/m, other: share of GRID s4's bilabial words (bin, blue, by,
  place, please, b, p, m) during which the mouth closes, and of all other words
  (a mouth that closes everywhere is not lip sync);
* head °/s, spread °: mean head rotation speed (of the rotation smoothed by a
  60 ms Gaussian, so the face mesh's per-frame noise does not count as motion) and
  rotation spread, in-the-wild clips only (GRID speakers barely move);
* blinks/min: over all held-out footage; jitter °: mean distance of the head
  rotation from its smoothed path (shake: tracking noise plus any real
  tremble), all clips; face %: output frames where the face mesh found the face;
* motion °/s, motion spread °, motion blinks/min: the same head and blink
  measures of the generator's own motion before rendering (for the real row,
  the video's extracted motion). The renderer turns the head less than asked
  (0.8-0.9 of yaw, benchmarks/extraction.py) and the face mesh
  never reads a rendered eye fully shut, so the rendered columns understate
  what a generator produced; these say what it asked for.

A second table, "Steadiness and blinks", puts each of these beside its GRID s4 and in-the-wild values (the
weaker group is where a generator falls short): jitter; Δrot °/frame, the mean frame-to-frame change of the
unsmoothed head rotation (shake as a viewer sees it, tracking noise included); head speed and spread (wild);
blinks/min; blink depth, the median over blinks of the smallest eye openness over the clip's open level (its
median), per dip below 0.75 of it (`dips`: how many); and the motion's own jitter and Δrot before rendering.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np  # noqa: E402

from facecast.dataset import cache as dataset  # noqa: E402
from facecast.evaluation.motion_quality import (  # noqa: E402
    GENERATORS,
    Measured,
    blink_depths,
    count_blinks,
    head_motion,
    jitter,
    lagged_correlation,
    learned_motion,
    measure_frames,
    motion_head_and_blink,
    rotation_change,
    word_closures,
)
from facecast.evaluation.sync_scorer import MAX_OFFSET, SyncScorer, enough_face, scorable  # noqa: E402

SIZE = 512


def _init_worker() -> None:
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def render_clip(relpath: str, generators: list[str], data: Path, cache: Path | None,
                models: dict[str, Path] | None = None) -> dict[str, object]:
    """Render every generator's motion for one held-out clip and measure the output frames; `models` adds
    learned generators with other weights (name -> weights file)."""
    from functools import partial

    from facecast.face.extraction import iter_video_frames
    from facecast.face.portrait import LEGACY_FRAMING, analyze_portrait
    from facecast.media import decode_mono
    from facecast.render.renderer import Renderer

    clip = dataset.load_clip(relpath, cache)
    fps, count = float(clip["fps"]), len(clip["found"])
    first = int(np.argmax(clip["found"]))
    portrait = next(frame for i, frame in enumerate(iter_video_frames(data / relpath)) if i == first)
    # today's fixed framing, so the numbers stay comparable across issues
    renderer = Renderer(analyze_portrait(portrait, size=SIZE, framing=LEGACY_FRAMING), device="cpu")
    samples = decode_mono(data / relpath)
    out: dict[str, object] = {"seconds": {}}
    for name in generators:
        started = time.perf_counter()
        generate = partial(learned_motion, model_path=models[name]) if models and name in models else GENERATORS[name]
        motion = generate(samples, fps, count)
        out[name + ":motion"] = motion_head_and_blink(motion)
        out[name] = measure_frames((renderer.render(frame)[:, :, :3] for frame in motion), fps)
        out["seconds"][name] = time.perf_counter() - started  # type: ignore[index]
    return out


def _median(values: list[float]) -> float:
    values = [v for v in values if np.isfinite(v)]
    return float(statistics.median(values)) if values else float("nan")


def _mean(values: list[float]) -> float:
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def _wide_opening(opening: np.ndarray) -> float:
    finite = opening[np.isfinite(opening)]
    return float(np.percentile(finite, 90)) if len(finite) else float("nan")


def summarise(name: str, clips: list[dict], measured: list[Measured], scorer: SyncScorer,
              motion: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """One table row: `measured[i]` is this row's measurement of `clips[i]`, `motion[i]` the generator's own
    head and blinks for it (for the real row: the video's extracted motion)."""
    r_all, r_grid, r_wild, lags, conf, offsets, size = [], [], [], [], [], [], []
    bilabial, other, speed, spread, own_speed, own_spread = [], [], [], [], [], []
    own_blinks, minutes, found, frames = 0, 0.0, 0, 0
    group: dict[str, dict[str, list[float]]] = {g: {"jitter": [], "change": [], "depth": [], "own_jitter": [],
                                                    "own_change": [], "blinks": [], "minutes": []}
                                                for g in ("all", "grid", "wild")}
    for clip, m, (own_head, own_blink) in zip(clips, measured, motion):
        real = Measured.from_clip(clip)
        wild = "/wild/" in str(clip["path"])
        for g in ("all", "wild" if wild else "grid"):
            group[g]["jitter"].append(jitter(m.head, m.fps))
            group[g]["change"].append(rotation_change(m.head))
            group[g]["own_jitter"].append(jitter(own_head, m.fps))
            group[g]["own_change"].append(rotation_change(own_head))
            group[g]["depth"] += blink_depths(m.eye_openness)
            group[g]["blinks"].append(count_blinks(m.blink))
            group[g]["minutes"].append(len(m.found) / m.fps / 60.0)
        r, lag = lagged_correlation(m.mouth_opening, real.mouth_opening)
        r_all.append(r)
        (r_wild if wild else r_grid).append(r)
        lags.append(lag)
        real_wide = _wide_opening(real.mouth_opening)
        size.append(_wide_opening(m.mouth_opening) / real_wide if real_wide > 0 else float("nan"))
        if enough_face(m.found, m.fps):
            score = scorer.score(m.lips, m.found, m.fps, clip["audio"])
            conf.append(score.confidence)
            offsets.append(score.offset)
        closed_b, closed_other = word_closures(m.mouth_opening, m.fps, clip["words"], clip["word_start"],
                                               clip["word_end"])
        bilabial += closed_b
        other += closed_other
        if wild:
            s, sd = head_motion(m.head, m.fps)
            speed.append(s)
            spread.append(sd)
            s, sd = head_motion(own_head, m.fps)
            own_speed.append(s)
            own_spread.append(sd)
        own_blinks += count_blinks(own_blink)
        minutes += len(m.found) / m.fps / 60.0
        found += int(m.found.sum())
        frames += len(m.found)
    return {
        "generator": name, "clips": len(clips), "mouth_r": _mean(r_all), "mouth_r_grid": _mean(r_grid),
        "mouth_r_wild": _mean(r_wild), "lag": _median(lags), "mouth_size": _median(size), "sync_conf": _mean(conf),
        "sync_offset": _median(offsets),
        "sync_in_1": float(np.mean([abs(o) <= 1 for o in offsets])) if offsets else float("nan"),
        "closed_bilabial": float(np.mean(bilabial)) if bilabial else float("nan"),
        "closed_other": float(np.mean(other)) if other else float("nan"),
        "head_speed": _mean(speed), "head_spread": _mean(spread),
        "face_found": found / frames if frames else float("nan"),
        "motion_head_speed": _mean(own_speed), "motion_head_spread": _mean(own_spread),
        "motion_blinks_per_min": own_blinks / minutes if minutes else float("nan"),
    } | {f"{key}{suffix}": value for g, suffix in (("all", ""), ("grid", "_grid"), ("wild", "_wild"))
         for key, value in _steadiness(group[g]).items()}


def _steadiness(g: dict[str, list[float]]) -> dict[str, float]:
    """Jitter, frame-to-frame rotation change and blinks of one group of clips (all, GRID s4, wild)."""
    minutes = sum(g["minutes"])
    return {"jitter": _mean(g["jitter"]), "rotation_change": _mean(g["change"]),
            "motion_jitter": _mean(g["own_jitter"]), "motion_rotation_change": _mean(g["own_change"]),
            "blinks_per_min": sum(g["blinks"]) / minutes if minutes else float("nan"),
            "blink_depth": _median(g["depth"]), "blink_dips": float(len(g["depth"]))}


COLUMNS = (  # (title, key, format)
    ("generator", "generator", "{:<10}"), ("mouth r", "mouth_r", "{:7.3f}"), ("GRID s4", "mouth_r_grid", "{:7.3f}"),
    ("wild", "mouth_r_wild", "{:6.3f}"), ("lag", "lag", "{:4.0f}"), ("mouth size", "mouth_size", "{:10.2f}"),
    ("sync conf", "sync_conf", "{:9.3f}"),
    ("off", "sync_offset", "{:4.0f}"), ("±1", "sync_in_1", "{:5.0%}"), ("closed b/p/m", "closed_bilabial", "{:12.0%}"),
    ("other", "closed_other", "{:6.0%}"), ("head °/s", "head_speed", "{:8.1f}"), ("spread °", "head_spread", "{:8.2f}"),
    ("blinks/min", "blinks_per_min", "{:10.1f}"), ("jitter °", "jitter", "{:8.2f}"),
    ("face %", "face_found", "{:7.1%}"),
    ("motion °/s", "motion_head_speed", "{:10.1f}"), ("motion spread °", "motion_head_spread", "{:15.2f}"),
    ("motion blinks/min", "motion_blinks_per_min", "{:17.1f}"),
)
#: Steadiness and blinks, each beside its GRID s4 / in-the-wild values (issue 18: a steady head, real blinks).
STEADINESS_COLUMNS = (
    ("generator", "generator", "{:<10}"),
    ("jitter °", "jitter", "{:.2f}"), ("GRID", "jitter_grid", "{:.2f}"), ("wild", "jitter_wild", "{:.2f}"),
    ("Δrot °/frame", "rotation_change", "{:.2f}"), ("GRID", "rotation_change_grid", "{:.2f}"),
    ("wild", "rotation_change_wild", "{:.2f}"),
    ("head °/s (wild)", "head_speed", "{:.1f}"), ("spread ° (wild)", "head_spread", "{:.2f}"),
    ("blinks/min", "blinks_per_min", "{:.1f}"), ("GRID", "blinks_per_min_grid", "{:.1f}"),
    ("wild", "blinks_per_min_wild", "{:.1f}"),
    ("blink depth", "blink_depth", "{:.2f}"), ("GRID", "blink_depth_grid", "{:.2f}"),
    ("wild", "blink_depth_wild", "{:.2f}"), ("dips", "blink_dips", "{:.0f}"),
    ("motion jitter °", "motion_jitter", "{:.2f}"), ("motion Δrot °/frame", "motion_rotation_change", "{:.2f}"),
)


def table(rows: list[dict[str, float]], columns: tuple[tuple[str, str, str], ...] = COLUMNS) -> list[str]:
    """Markdown table lines."""
    lines = ["| " + " | ".join(title for title, _, _ in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            value = row[key]
            cells.append(fmt.format(value).strip() if isinstance(value, str) or np.isfinite(value) else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def held_out(cache: Path | None, limit: int | None) -> list[dict]:
    clips = [c for c in dataset.iter_clips(split="validation", kind="talking", cache=cache) if scorable(c)]
    if limit:
        grid = [c for c in clips if "/wild/" not in str(c["path"])]
        wild = [c for c in clips if "/wild/" in str(c["path"])]
        clips = grid[: (limit + 1) // 2] + wild[: limit // 2]
    return clips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=None,
                        help="at most this many held-out clips (half GRID s4, half wild)")
    parser.add_argument("--generators", default=",".join(GENERATORS),
                        help=f"comma-separated, of {', '.join(GENERATORS)}")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", type=Path, default=dataset.DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=WEIGHTS",
                        help="also score the learned generator with these weights, as row NAME (repeatable)")
    args = parser.parse_args(argv)
    generators = [g.strip() for g in args.generators.split(",") if g.strip()]
    models = {}
    for spec in args.model:
        name, _, weights = spec.partition("=")
        if not name or not Path(weights).is_file():
            parser.error(f"--model wants NAME=WEIGHTS with an existing weights file, got {spec!r}")
        models[name] = Path(weights)
        if name not in generators:          # `--generators alt --model alt=...` renders it once
            generators.append(name)
    unknown = [g for g in generators if g not in GENERATORS and g not in models]
    if unknown:
        parser.error(f"unknown generator(s) {', '.join(unknown)}; choose from {', '.join(GENERATORS)}")
    started = time.perf_counter()
    clips = held_out(args.cache, args.clips)
    if not clips:
        print("no held-out clips in the dataset cache: run `facecast dataset build` first", file=sys.stderr)
        return 2
    frames = sum(len(c["found"]) for c in clips)
    print(f"{len(clips)} held-out clips ({frames} frames), generators: {', '.join(generators)}", file=sys.stderr)
    results: list[dict] = [{}] * len(clips)
    with ProcessPoolExecutor(max_workers=args.workers, initializer=_init_worker) as pool:
        futures = {pool.submit(render_clip, str(c["path"]), generators, args.data, args.cache, models): i
                   for i, c in enumerate(clips)}
        for done, future in enumerate(as_completed(futures), 1):
            results[futures[future]] = future.result()
            print(f"  {done}/{len(clips)} {clips[futures[future]]['path']}  {time.perf_counter() - started:5.0f} s",
                  file=sys.stderr, flush=True)
    scorer = SyncScorer()
    real = [Measured.from_clip(c) for c in clips]
    rows = [summarise("real", clips, real, scorer, [(m.head, m.blink) for m in real])]
    rows += [summarise(name, clips, [r[name] for r in results], scorer, [r[name + ":motion"] for r in results])
             for name in generators]
    elapsed = time.perf_counter() - started
    grid = sum("/wild/" not in str(c["path"]) for c in clips)
    print(f"\nQuality on held-out speakers: {grid} GRID s4 clips + {len(clips) - grid} in-the-wild clips "
          f"({frames} frames), rendered at {SIZE}², scorer offsets searched over ±{MAX_OFFSET} frames; "
          f"{elapsed / 60:.1f} min with {args.workers} workers\n")
    for line in table(rows):
        print(line)
    print("\nSteadiness and blinks (all clips, then GRID s4 and in-the-wild alone; blink depth: median smallest "
          "eye openness over the open level per dip below 0.75 of it, `dips` of them):\n")
    for line in table(rows, STEADINESS_COLUMNS):
        print(line)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
