"""Quality benchmark: every motion generator against real people, on speakers no model trained on.

    python benchmarks/quality.py                     # every held-out clip, all generators (the README table)
    python benchmarks/quality.py --clips 6           # a quick look (3 GRID s4 + 3 in-the-wild clips)
    python benchmarks/quality.py --generators rule --model alt=out/alt.pt   # other learned weights as row "alt"
    python benchmarks/quality.py --group wild        # the headline alone
    python benchmarks/quality.py --generators learned,learned-live,learned-sync   # render; live, low / sync latency
    python benchmarks/quality.py --generators extracted,extracted-gap,extracted-still   # real motion re-rendered
    python benchmarks/quality.py --fold 2 --generators loudness --model cand=out/cand_fold2.pt --json f2.json
    python benchmarks/quality.py --fold-summary f1.json f2.json f3.json       # fold mean, spread, weakest
    python benchmarks/quality.py --generators learned --head-intensity 1,0.5   # the head-intensity control

Needs the dataset cache (`facecast dataset build`, about 30 minutes once). For
each held-out talking clip (`src/facecast/dataset/split.json`: GRID s4 and the
validation in-the-wild speakers) and each generator: the generator turns the
clip's audio into motion at the clip's frame rate, the renderer renders it on
the clip's first frame (512²), and the output frames are measured with the face
mesh exactly as the real videos were (`facecast.evaluation.motion_quality`). The
"real" row is the original video, measured the same way.

Two tables, every number speaker-weighted (`motion_quality.speaker_weighted`):
each held-out speaker counts once, whatever its number of clips (a speaker's
clips are pooled first, then the speakers), never clip-weighted. The headline
is the in-the-wild held-out speakers (every streamer is a voice the model has
never heard), with its weakest speaker beside it; GRID s4 (one studio speaker,
one sentence grammar) is its own table; a third gives each in-the-wild
speaker's mouth r. `--json` keeps every clip's scores, `--from-json` prints the
tables again from them. Columns:
* mouth r: Pearson correlation of the generated with the real mouth opening;
  weakest: the lowest speaker's; lag: the median lag (frames) that maximises it,
  positive = generated late; mouth size: the output's widest mouth opening (90th
  percentile) over the real speaker's, median (correlation is blind to how far
  the mouth opens);
* r, AV-aligned: the same correlation against the real mouth moved by the real
  video's own audio-video offset, where a recording's sound and picture are out
  of step (`recording_lag`: the lip-sync scorer's offset on the real video, used
  when it is over 1 frame on a clip of 6 s or more; otherwise the same as mouth
  r). A generator hears the sound, so against such a video it is scored as late
  or early by the recording's own error; fold runs (no scorer) leave it as mouth r;
* sync conf / off: our lip-sync scorer (`facecast.evaluation.sync_scorer`, the
  SyncNet protocol; trained on training speakers only) on the output's mouth and
  the clip's audio: mean confidence, median offset (frames at 25 fps, positive =
  audio late), and the share of clips found within +-1 frame;
* closed b/p/m, other: share of GRID s4's bilabial words (bin, blue, by,
  place, please, b, p, m) during which the mouth closes, and of all other words
  (a mouth that closes everywhere is not lip sync);
* head °/s, spread °: mean head rotation speed (of the rotation smoothed by a
  60 ms Gaussian, so the face mesh's per-frame noise does not count as motion) and
  rotation spread, in-the-wild table only (GRID speakers barely move);
* blinks/min: each speaker's blinks over its minutes; jitter °: mean distance of the head
  rotation from its smoothed path (shake: tracking noise plus any real
  tremble); face %: output frames where the face mesh found the face;
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
median), per dip below 0.75 of it (`dips`: how many); dips ≤ 0.2, the share of those dips that close to 0.2
of the open level or less (`motion_quality.SHUT_DEPTH`: issue 18's "each closing to <= 0.2"; a speaker's dips
pooled, then the mean over speakers); across ≤ 0.2, the same with the lids read across the eye only
(`face.measure.eye_openness_across`: the mesh's top and bottom lid points lie apart along a shut eye's lash line;
rendered output only, as the dataset keeps no landmarks of the real videos); and the motion's own jitter and Δrot
before rendering.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np  # noqa: E402

from facecast.controls import check_intensity  # noqa: E402
from facecast.dataset import cache as dataset  # noqa: E402
from facecast.dataset.folds import load_folds  # noqa: E402
from facecast.evaluation.motion_quality import (  # noqa: E402
    GENERATORS,
    SHUT_DEPTH,
    Measured,
    blink_depths,
    by_speaker,
    correlation_at,
    count_blinks,
    head_motion,
    jitter,
    lagged_correlation,
    learned_live_motion,
    learned_motion,
    measure_frames,
    motion_head_and_blink,
    rotation_change,
    speaker_scores,
    speaker_weighted,
    word_closures,
)
from facecast.evaluation.sync_scorer import FPS as SYNC_FPS  # noqa: E402
from facecast.evaluation.sync_scorer import MAX_OFFSET, SyncScorer, enough_face, scorable  # noqa: E402
from facecast.motion import EXPRESSION_CHANNELS, MOUTH_CHANNELS, scale_head  # noqa: E402

SIZE = 512
#: A real clip's own audio-video offset (`recording_lag`) is trusted on clips this long: the scorer's misses on
#: real video come from short clips (its model card: GRID's 3 s clips make most of them).
AV_MIN_SECONDS = 6.0


def _init_worker() -> None:
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def clip_renderer(relpath: str, data: Path, cache: Path | None):
    """(the cached clip, its fps, its frame count, a renderer of the speaker's first frame with a face, the
    clip's 16 kHz audio): what every held-out clip is rendered and measured with."""
    from facecast.face.extraction import iter_video_frames
    from facecast.face.portrait import LEGACY_FRAMING, analyze_portrait
    from facecast.media import decode_mono
    from facecast.render.renderer import Renderer

    clip = dataset.load_clip(relpath, cache)
    first = int(np.argmax(clip["found"]))
    portrait = next(frame for i, frame in enumerate(iter_video_frames(data / relpath)) if i == first)
    # today's fixed framing, so the numbers stay comparable across issues
    renderer = Renderer(analyze_portrait(portrait, size=SIZE, framing=LEGACY_FRAMING), device="cpu")
    return clip, float(clip["fps"]), len(clip["found"]), renderer, decode_mono(data / relpath)


#: Rows of real motion re-rendered, the renderer's ceiling (what a generator could score at best through this
#: renderer and the face mesh): "extracted", the clip's own extracted motion (the dataset cache), played on its
#: first frame like a generator's; "extracted-gap", the same with the articulators beside the jaw (funnel,
#: pucker, lips up and down, stretch) taken out and their share of the gap given to the jaw: the real gap alone;
#: "extracted-still", the whole motion with the head and gaze held still: what the rendered head's motion costs.
REAL_MOTION = ("extracted", "extracted-gap", "extracted-still")
ARTICULATORS = tuple(name for name in MOUTH_CHANNELS if name not in ("jawOpen", "mouthClose"))


def extracted_motion(clip: dict, row: str = "extracted") -> list:
    """A cached clip's own extracted motion as a REAL_MOTION row plays it, one frame per video frame."""
    from facecast.face.extraction import motion_frames
    from facecast.speech.learned import WEIGHTS_PATH, read_model
    from facecast.speech.mouth_gap import GAP_GEOMETRY_KEY, JAW, rendered_gap

    expressions = np.asarray(clip["expressions"], np.float64).copy()
    head, gaze = np.asarray(clip["head"], np.float64), np.asarray(clip["gaze"], np.float64)
    if row == "extracted-still":
        head = np.zeros_like(head)
        head[:, 5] = 1.0    # distance: as in the picture
        gaze = np.zeros_like(gaze)
    if row == "extracted-gap":
        per = read_model(WEIGHTS_PATH)[GAP_GEOMETRY_KEY].numpy()
        gap = rendered_gap(expressions, per)
        expressions[:, [EXPRESSION_CHANNELS.index(name) for name in ARTICULATORS]] = 0.0
        expressions[:, JAW] = np.clip(expressions[:, JAW] + (gap - rendered_gap(expressions, per)) / per[JAW], 0, 1)
    return motion_frames(float(clip["fps"]), head, gaze, clip["blink"], expressions, clip["visemes"], clip["voice"])


def head_row(name: str, intensity: float) -> str:
    """The row of a generator rendered with the head-intensity control at `intensity` (1: the generator's own)."""
    return name if intensity == 1.0 else f"{name}, head {intensity:g}"


def row_intensities(name: str, head_intensities: tuple[float, ...]) -> tuple[float, ...]:
    """The head intensities a row is rendered at: real motion only as recorded, a generator at each asked for."""
    return (1.0,) if name in REAL_MOTION else head_intensities


def render_clip(relpath: str, generators: list[str], data: Path, cache: Path | None,
                models: dict[str, Path] | None = None, head_intensities: tuple[float, ...] = (1.0,)
                ) -> dict[str, object]:
    """Render every generator's motion for one held-out clip and measure the output frames; `models` adds
    learned generators with other weights (name -> weights file); each generator is rendered once per
    head intensity (`controls.Controls.head`, as `--head-intensity` sets it; real motion only as recorded)."""
    clip, fps, count, renderer, samples = clip_renderer(relpath, data, cache)
    out: dict[str, object] = {"seconds": {}}
    for name in generators:
        started = time.perf_counter()
        if name in REAL_MOTION:
            motion = extracted_motion(clip, name)
        elif models and name in models:     # a name ending in "-live" streams those weights as `live` does
            learned = learned_live_motion if name.endswith("-live") else learned_motion
            motion = learned(samples, fps, count, model_path=models[name])
        else:
            motion = GENERATORS[name](samples, fps, count)
        for intensity in row_intensities(name, head_intensities):
            controlled = [scale_head(frame, intensity) for frame in motion]
            row = head_row(name, intensity)
            out[row + ":motion"] = motion_head_and_blink(controlled)
            out[row] = measure_frames((renderer.render(frame)[:, :, :3] for frame in controlled), fps)
        out["seconds"][name] = time.perf_counter() - started  # type: ignore[index]
    return out


def group_of(relpath: str) -> str:
    """"wild" (in-the-wild speakers: the headline) or "grid" (GRID s4: studio, one sentence grammar)."""
    return "wild" if "/wild/" in relpath else "grid"


def _wide_opening(opening: np.ndarray) -> float:
    finite = opening[np.isfinite(opening)]
    return float(np.percentile(finite, 90)) if len(finite) else float("nan")


def recording_lag(real_record: dict, fps: float) -> int:
    """The real video's own audio-video offset in its frames (positive: its sound is late), as the lip-sync scorer
    found it on the video (`clip_record`'s real row), where the scorer can tell: beyond its +-1-frame precision, on
    a clip of at least AV_MIN_SECONDS. Otherwise 0."""
    offset, seconds = real_record["sync_offset"], real_record["minutes"] * 60.0
    if not np.isfinite(offset) or abs(offset) <= 1 or seconds < AV_MIN_SECONDS:
        return 0
    return int(round(offset * fps / SYNC_FPS))


def clip_record(clip: dict, m: Measured, scorer: SyncScorer | None, motion: tuple[np.ndarray, np.ndarray],
                av_lag: int = 0) -> dict:
    """One generator's scores on one clip (`m`: its rendered output measured; `motion`: the generator's own head
    and blinks, for the real row the video's; `av_lag`: the real video's own audio-video offset, `recording_lag`):
    plain numbers, pooled per speaker by `speaker_weighted`. No `scorer`: no sync scores (a fold's speakers trained
    the scorer, which must not judge its own speakers)."""
    real = Measured.from_clip(clip)
    own_head, own_blink = motion
    r, lag = lagged_correlation(m.mouth_opening, real.mouth_opening)
    real_wide = _wide_opening(real.mouth_opening)
    conf = offset = nan = float("nan")
    if scorer is not None and enough_face(m.found, m.fps):
        score = scorer.score(m.lips, m.found, m.fps, clip["audio"])
        conf, offset = float(score.confidence), float(score.offset)
    bilabial, other = word_closures(m.mouth_opening, m.fps, clip["words"], clip["word_start"], clip["word_end"])
    speed, spread = head_motion(m.head, m.fps)
    own_speed, own_spread = head_motion(own_head, m.fps)
    depths, across = blink_depths(m.eye_openness), blink_depths(m.eye_openness_across)
    return {
        "path": str(clip["path"]), "speaker": str(clip["speaker"]), "group": group_of(str(clip["path"])),
        "mouth_r": r, "mouth_r_av": correlation_at(m.mouth_opening, real.mouth_opening, av_lag), "lag": float(lag),
        "av_lag": float(av_lag),
        "mouth_size": _wide_opening(m.mouth_opening) / real_wide if real_wide > 0 else nan,
        "sync_conf": conf, "sync_offset": offset, "sync_in_1": float(abs(offset) <= 1) if np.isfinite(offset) else nan,
        "bilabial_closed": float(sum(bilabial)), "bilabial_words": float(len(bilabial)),
        "other_closed": float(sum(other)), "other_words": float(len(other)),
        "head_speed": speed, "head_spread": spread, "motion_head_speed": own_speed, "motion_head_spread": own_spread,
        "jitter": jitter(m.head, m.fps), "rotation_change": rotation_change(m.head),
        "motion_jitter": jitter(own_head, m.fps), "motion_rotation_change": rotation_change(own_head),
        "blink_depth": float(np.median(depths)) if depths else nan, "blinks": float(count_blinks(m.blink)),
        "shut_dips": float(sum(d <= SHUT_DEPTH for d in depths)), "blink_dips": float(len(depths)),
        "shut_dips_across": float(sum(d <= SHUT_DEPTH for d in across)), "blink_dips_across": float(len(across)),
        "motion_blinks": float(count_blinks(own_blink)), "minutes": len(m.found) / m.fps / 60.0,
        "found": float(m.found.sum()), "frames": float(len(m.found)),
    }


#: (title, key, format) of the two tables: the in-the-wild headline and GRID s4. GRID speakers barely move their
#: heads (no head columns there); only GRID has word timings (the closure columns).
_COMMON = (("mouth r", "mouth_r", "{:7.3f}"), ("r, AV-aligned", "mouth_r_av", "{:7.3f}"))
_SYNC = (("lag", "lag", "{:4.0f}"), ("mouth size", "mouth_size", "{:10.2f}"), ("sync conf", "sync_conf", "{:9.3f}"),
         ("off", "sync_offset", "{:4.0f}"), ("±1", "sync_in_1", "{:5.0%}"))
_FACE = (("blinks/min", "blinks_per_min", "{:10.1f}"), ("jitter °", "jitter", "{:8.2f}"),
         ("face %", "face_found", "{:7.1%}"))
COLUMNS = {
    "wild": (("generator", "generator", "{:<10}"), *_COMMON, ("weakest", "weakest_r", "{:7.3f}"),
             ("weakest speaker", "weakest", "{}"), *_SYNC, ("head °/s", "head_speed", "{:8.1f}"),
             ("spread °", "head_spread", "{:8.2f}"), *_FACE, ("motion °/s", "motion_head_speed", "{:10.1f}"),
             ("motion spread °", "motion_head_spread", "{:15.2f}"),
             ("motion blinks/min", "motion_blinks_per_min", "{:17.1f}")),
    "grid": (("generator", "generator", "{:<10}"), *_COMMON, *_SYNC, ("closed b/p/m", "closed_bilabial", "{:12.0%}"),
             ("other", "closed_other", "{:6.0%}"), *_FACE, ("motion blinks/min", "motion_blinks_per_min", "{:17.1f}")),
}
TITLES = {"wild": "In-the-wild held-out speakers (the headline)", "grid": "GRID s4 (a held-out studio speaker)"}
#: Steadiness and blinks (issue 18: a steady head, real blinks), one row per generator and group.
STEADINESS_COLUMNS = (
    ("generator", "generator", "{:<10}"), ("group", "group", "{}"), ("jitter °", "jitter", "{:.2f}"),
    ("Δrot °/frame", "rotation_change", "{:.2f}"), ("head °/s", "head_speed", "{:.1f}"),
    ("spread °", "head_spread", "{:.2f}"), ("blinks/min", "blinks_per_min", "{:.1f}"),
    ("blink depth", "blink_depth", "{:.2f}"), ("dips ≤ 0.2", "blinks_shut", "{:.0%}"),
    ("across ≤ 0.2", "blinks_shut_across", "{:.0%}"),
    ("motion jitter °", "motion_jitter", "{:.2f}"),
    ("motion Δrot °/frame", "motion_rotation_change", "{:.2f}"),
)


def table(rows: list[dict], columns: tuple = COLUMNS["wild"]) -> list[str]:
    """Markdown table lines."""
    lines = ["| " + " | ".join(title for title, _, _ in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            value = row[key]
            cell = fmt.format(value).strip() if isinstance(value, str) or np.isfinite(value) else "—"
            cells.append(cell[1:] if cell.startswith("-") and not cell.strip("-0.%") else cell)   # "-0" is 0
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def report(records: dict[str, list[dict]], fold: int | None = None) -> list[str]:
    """The benchmark's tables from per-clip records (generator -> one record per clip, "real" first): the
    in-the-wild headline, GRID s4, and each in-the-wild speaker's mouth r; every number speaker-weighted."""
    lines: list[str] = []
    for group in ("wild", "grid"):
        rows = []
        for name, clips in records.items():
            chosen = [c for c in clips if c["group"] == group]
            if chosen:
                rows.append({"generator": name, **speaker_weighted(chosen)})
        if not rows:
            continue
        title = TITLES[group] if fold is None else f"Fold {fold}: in-the-wild training speakers, refit without them"
        lines += ["", f"{title}: {rows[0]['speakers']} speakers, {rows[0]['clips']} clips, "
                  "each speaker counted once", ""]
        lines += table(rows, COLUMNS[group])
    per_speaker = {name: speaker_scores([c for c in clips if c["group"] == "wild"]) for name, clips in records.items()}
    speakers = sorted({s for scores in per_speaker.values() for s in scores})
    clips_of = by_speaker([c for c in next(iter(records.values())) if c["group"] == "wild"])
    for key, title in (("mouth_r", "Mouth r"), ("mouth_r_av", "Mouth r, AV-aligned,")):
        if not speakers:
            break
        lines += ["", f"{title} per in-the-wild held-out speaker (clips):", ""]
        lines += ["| generator | " + " | ".join(f"{s} ({len(clips_of.get(s, []))})" for s in speakers) + " |",
                  "|" + "|".join("---" for _ in range(len(speakers) + 1)) + "|"]
        for name, scores in per_speaker.items():
            cells = [f"{scores[s][key]:.3f}" if s in scores and np.isfinite(scores[s][key]) else "—"
                     for s in speakers]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def steadiness_rows(records: dict[str, list[dict]]) -> list[dict]:
    """Per generator, the steadiness table's row for the in-the-wild speakers, then GRID s4."""
    rows = []
    for name, clips in records.items():
        for group in ("wild", "grid"):
            chosen = [c for c in clips if c["group"] == group]
            if chosen:
                rows.append({"generator": name, "group": group, **speaker_weighted(chosen)})
    return rows


def fold_summary(runs: list[dict[str, list[dict]]]) -> list[str]:
    """Per generator, the speaker-weighted mouth r of each fold run (generator -> per-clip records), their mean,
    standard deviation and the weakest fold: folds choose between candidates by mean and spread."""
    names = [name for name in runs[0] if all(name in run for run in runs)]
    lines = ["| generator | " + " | ".join(f"fold {i}" for i in range(1, len(runs) + 1)) + " | mean | sd | weakest |",
             "|" + "---|" * (len(runs) + 4)]
    for name in names:
        values = [float(speaker_weighted(run[name])["mouth_r"]) for run in runs]
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values)
                     + f" | {np.nanmean(values):.3f} | {np.nanstd(values):.3f} | {np.nanmin(values):.3f} |")
    return lines


def held_out(cache: Path | None, limit: int | None, group: str | None = None, fold: int | None = None) -> list[dict]:
    """The scorable held-out talking clips: all, or one group's (`group_of`); at most `limit`, half of each group.
    With `fold` (1..k): instead the training clips of that fold's speakers (`dataset.folds`)."""
    if fold is not None:
        speakers = set(load_folds()[fold - 1])
        return [c for c in dataset.iter_clips(split="train", kind="talking", cache=cache)
                if str(c["speaker"]) in speakers and scorable(c)][:limit]
    clips = [c for c in dataset.iter_clips(split="validation", kind="talking", cache=cache) if scorable(c)
             and group in (None, group_of(str(c["path"])))]
    if limit:
        grid = [c for c in clips if group_of(str(c["path"])) == "grid"]
        wild = [c for c in clips if group_of(str(c["path"])) == "wild"]
        clips = grid[: (limit + 1) // 2] + wild[: limit // 2]
    return clips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=None,
                        help="at most this many held-out clips (half GRID s4, half wild)")
    parser.add_argument("--fold", type=int, default=None, metavar="I",
                        help="score on fold I's training speakers (src/facecast/dataset/folds.json, 1..k) instead, "
                             "with --model weights trained without them; no sync columns (the scorer heard them)")
    parser.add_argument("--fold-summary", nargs="+", type=Path, default=None, metavar="JSON",
                        help="mean, spread and weakest fold of the wild mouth r of --json runs of each fold")
    parser.add_argument("--group", choices=tuple(TITLES), default=None,
                        help="only this group's clips (wild: the headline alone, about half the time)")
    parser.add_argument("--generators", default=",".join(GENERATORS),
                        help=f"comma-separated, of {', '.join(GENERATORS)}, or real motion re-rendered: "
                             f"{', '.join(REAL_MOTION)} (the renderer's ceiling)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", type=Path, default=dataset.DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write every clip's scores here")
    parser.add_argument("--from-json", type=Path, default=None, metavar="JSON",
                        help="print the tables of a saved --json run (nothing is rendered)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=WEIGHTS",
                        help="also score the learned generator with these weights, as row NAME (repeatable; a NAME "
                             "ending in -live streams them as the live daemon does)")
    parser.add_argument("--head-intensity", default="1", metavar="H[,H...]",
                        help="render each generator with the head-intensity control at each of these (0-2; "
                             "default 1, the generator's own head), as rows 'NAME, head H'")
    args = parser.parse_args(argv)
    if args.from_json:
        for line in report(json.loads(args.from_json.read_text(encoding="utf-8"))["clips"]):
            print(line)
        return 0
    if args.fold_summary:
        for line in fold_summary([json.loads(p.read_text(encoding="utf-8"))["clips"] for p in args.fold_summary]):
            print(line)
        return 0
    if args.fold is not None and not 1 <= args.fold <= len(load_folds()):
        parser.error(f"--fold must be 1-{len(load_folds())} (src/facecast/dataset/folds.json)")
    generators = [g.strip() for g in args.generators.split(",") if g.strip()]
    models = {}
    for spec in args.model:
        name, _, weights = spec.partition("=")
        if not name or not Path(weights).is_file():
            parser.error(f"--model wants NAME=WEIGHTS with an existing weights file, got {spec!r}")
        models[name] = Path(weights)
        if name not in generators:          # `--generators alt --model alt=...` renders it once
            generators.append(name)
    unknown = [g for g in generators if g not in GENERATORS and g not in models and g not in REAL_MOTION]
    if unknown:
        parser.error(f"unknown generator(s) {', '.join(unknown)}; choose from {', '.join((*GENERATORS, *REAL_MOTION))}")
    try:
        head_intensities = tuple(check_intensity(float(h), "head") for h in args.head_intensity.split(","))
    except ValueError as exc:
        parser.error(f"--head-intensity: {exc}")
    started = time.perf_counter()
    clips = held_out(args.cache, args.clips, args.group, args.fold)
    if not clips:
        print("no held-out clips in the dataset cache: run `facecast dataset build` first", file=sys.stderr)
        return 2
    frames = sum(len(c["found"]) for c in clips)
    print(f"{len(clips)} held-out clips ({frames} frames), generators: {', '.join(generators)}", file=sys.stderr)
    results: list[dict] = [{}] * len(clips)
    with ProcessPoolExecutor(max_workers=args.workers, initializer=_init_worker) as pool:
        futures = {pool.submit(render_clip, str(c["path"]), generators, args.data, args.cache, models,
                               head_intensities): i for i, c in enumerate(clips)}
        for done, future in enumerate(as_completed(futures), 1):
            results[futures[future]] = future.result()
            print(f"  {done}/{len(clips)} {clips[futures[future]]['path']}  {time.perf_counter() - started:5.0f} s",
                  file=sys.stderr, flush=True)
    scorer = SyncScorer() if args.fold is None else None
    real = [Measured.from_clip(c) for c in clips]
    records = {"real": [clip_record(c, m, scorer, (m.head, m.blink)) for c, m in zip(clips, real)]}
    av_lags = [recording_lag(record, float(c["fps"])) for c, record in zip(clips, records["real"])]
    rows = [head_row(name, h) for name in generators for h in row_intensities(name, head_intensities)]
    for name in rows:
        # re-rendered real motion keeps the recording's own timing: it is in step with the real mouth as recorded
        records[name] = [clip_record(c, r[name], scorer, r[name + ":motion"], 0 if name in REAL_MOTION else av_lag)
                         for c, r, av_lag in zip(clips, results, av_lags)]
    elapsed = time.perf_counter() - started
    grid = sum(group_of(str(c["path"])) == "grid" for c in clips)
    print(f"\nQuality on held-out speakers: {grid} GRID s4 clips + {len(clips) - grid} in-the-wild clips "
          f"({frames} frames), rendered at {SIZE}², scorer offsets searched over ±{MAX_OFFSET} frames; "
          f"{elapsed / 60:.1f} min with {args.workers} workers")
    for line in report(records, args.fold):
        print(line)
    print("\nSteadiness and blinks, speaker-weighted (blink depth: median smallest eye openness over the open "
          "level per dip below 0.75 of it):\n")
    for line in table(steadiness_rows(records), STEADINESS_COLUMNS):
        print(line)
    if args.json:
        args.json.write_text(json.dumps({"clips": records}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
