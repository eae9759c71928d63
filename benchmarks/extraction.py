"""Extraction benchmark: does extracted motion, re-rendered, move like the original video?

    python benchmarks/extraction.py                   # 5 grid_s4 + 5 in-the-wild clips, two tables (~3 min)
    python benchmarks/extraction.py --reference neutral --max-frames 150 CLIP.mp4 ...

For each clip: extract motion (`facecast.face.extraction`) relative to a
reference frame, take that frame as the portrait (`analyze_portrait` on it,
512²), render the motion with the renderer, and measure the output frames with
the face mesh exactly as the original frames were measured. Two tables: the
portrait is the video's first frame, or extraction's neutral reference frame
(eyes open, mouth most closed). The motion representation is relative to a
neutral portrait (expression coefficients are >= 0), so a first frame caught
mid-word cannot close its mouth further; the neutral table shows what the
representation itself can carry.

Columns: "r" is the Pearson correlation between the original and the
re-rendered per-frame signal, "gain" the least-squares slope of re-rendered on
original (1 = same amplitude), "sd" the original signal's spread (GRID heads
hardly move, so their pose correlations are of near-constant signals). Signals:
mouth opening (`face_measure.mouth_opening`), head yaw, pitch and roll (rigid
fit to the mean face, as extraction does) and `head_yaw_proxy` (a fit-free
check of yaw).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np  # noqa: E402

from facecast.evaluation.motion_quality import pearson  # noqa: E402
from facecast.face.extraction import extract, fit_rigid, iter_video_frames, load_template, rotation_angles  # noqa: E402
from facecast.face.measure import FaceMeasurer, head_yaw_proxy, mouth_opening  # noqa: E402
from facecast.face.portrait import LEGACY_FRAMING, analyze_portrait  # noqa: E402
from facecast.render.renderer import Renderer  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "talking"
DEFAULT_CLIPS = (
    [DATA / "grid_s4" / f"{name}.mp4" for name in ("bbaf2a", "lgar9n", "pric2a", "sgbc6a", "swau8a")]
    + [DATA / "wild" / f"{name}.mp4" for name in ("styletalk_Obama_clip1", "styletalk_feifeili_clip1",
                                                  "pcavs_Audio_Source_741400104", "pcavs_Audio_Source_00015",
                                                  "styletalk_andrew_clip_1")]
)


def gain(original: np.ndarray, rendered: np.ndarray) -> float:
    """Least-squares slope of the re-rendered signal on the original: 1 = the same amplitude."""
    original, rendered = np.asarray(original, float), np.asarray(rendered, float)
    if original.std() < 1e-12:
        return float("nan")
    return float(np.polyfit(original, rendered, 1)[0])


def measure(frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Face-mesh measurements of a frame sequence: mouth opening, yaw/pitch/roll, yaw proxy, found mask."""
    template = load_template()
    opening, angles, proxy, found = [], [], [], []
    with FaceMeasurer() as measurer:
        for rgb in frames:
            points = measurer.landmarks(rgb)
            found.append(points is not None)
            if points is None:
                opening.append(np.nan), angles.append(np.full(3, np.nan)), proxy.append(np.nan)
                continue
            opening.append(mouth_opening(points))
            angles.append(rotation_angles(fit_rigid(points[None].astype(np.float64), template).rotation)[0])
            proxy.append(head_yaw_proxy(points))
    return np.array(opening), np.array(angles), np.array(proxy), np.array(found)


def run_clip(path: Path, reference: int | str, max_frames: int) -> dict[str, float]:
    started = time.perf_counter()
    result = extract(path, reference=reference, max_frames=max_frames)
    originals = []
    for i, rgb in enumerate(iter_video_frames(path)):
        if i >= len(result.found):
            break
        originals.append(rgb)
    rig = analyze_portrait(originals[result.reference], size=512, framing=LEGACY_FRAMING)  # comparable runs
    renderer = Renderer(rig, device="cpu")
    rendered = [renderer.render(frame)[:, :, :3] for frame in result.frames()]
    orig_open, orig_angles, orig_proxy, orig_found = measure(originals)
    out_open, out_angles, out_proxy, out_found = measure(rendered)
    both = orig_found & out_found
    row = {"frames": len(rendered), "lost": result.lost, "out_lost": int((~out_found).sum()),
           "reference": result.reference, "seconds": 0.0}
    signals = {"mouth": (orig_open, out_open), "yaw_proxy": (orig_proxy, out_proxy)}
    signals.update({name: (orig_angles[:, k], out_angles[:, k]) for k, name in enumerate(("yaw", "pitch", "roll"))})
    for name, (original, output) in signals.items():
        row[name] = pearson(original[both], output[both])
        row[f"{name}_gain"] = gain(original[both], output[both])
        row[f"{name}_sd"] = float(np.nanstd(original))
    row["seconds"] = time.perf_counter() - started
    return row


COLUMNS = (  # (title, key, format)
    ("frames", "frames", "{:6d}"), ("lost", "lost", "{:4d}"), ("ref", "reference", "{:4d}"),
    ("mouth r", "mouth", "{:7.3f}"), ("gain", "mouth_gain", "{:5.2f}"),
    ("yaw r", "yaw", "{:6.3f}"), ("gain", "yaw_gain", "{:5.2f}"), ("sd°", "yaw_sd", "{:5.1f}"),
    ("pitch r", "pitch", "{:7.3f}"), ("gain", "pitch_gain", "{:5.2f}"), ("sd°", "pitch_sd", "{:5.1f}"),
    ("roll r", "roll", "{:6.3f}"), ("gain", "roll_gain", "{:5.2f}"), ("sd°", "roll_sd", "{:5.1f}"),
    ("yawpx r", "yaw_proxy", "{:7.3f}"), ("s", "seconds", "{:5.1f}"),
)
MEANS = ("mouth", "mouth_gain", "yaw", "yaw_gain", "pitch", "pitch_gain", "roll", "roll_gain", "yaw_proxy")


def print_table(title: str, clips: list[Path], reference: int | str, max_frames: int) -> None:
    """Run every clip with one choice of portrait frame and print its table (rows as they finish)."""
    widths = [max(len(t), len(f.format(0))) for t, _, f in COLUMNS]
    header = f"{'clip':30s} " + " ".join(t.rjust(w) for (t, _, _), w in zip(COLUMNS, widths))
    print(f"\n{title}\n{header}\n{'-' * len(header)}", flush=True)
    rows = []
    for clip in clips:
        row = run_clip(clip, reference, max_frames)
        rows.append(row)
        cells = [f.format(row[k]).rjust(w) for (_, k, f), w in zip(COLUMNS, widths)]
        print(f"{clip.stem[:30]:30s} " + " ".join(cells), flush=True)
    print("-" * len(header))
    for label, group in (("grid_s4 mean", [r for c, r in zip(clips, rows) if "grid" in c.parent.name]),
                         ("in-the-wild mean", [r for c, r in zip(clips, rows) if "grid" not in c.parent.name]),
                         ("all mean", rows)):
        if group:
            cells = [(f.format(float(np.nanmean([r[k] for r in group]))) if k in MEANS else "").rjust(w)
                     for (_, k, f), w in zip(COLUMNS, widths)]
            print(f"{label:30s} " + " ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*", type=Path, help="videos (default: 5 grid_s4 + 5 in-the-wild clips)")
    parser.add_argument("--reference", choices=("both", "first", "neutral"), default="both",
                        help="which frame plays the portrait: the first, the neutral reference, "
                             "or both tables (default)")
    parser.add_argument("--max-frames", type=int, default=300, help="frames per clip (default 300)")
    args = parser.parse_args()
    clips = args.clips or DEFAULT_CLIPS
    choices = {"first": [("portrait = the first frame (reference 0)", 0)],
               "neutral": [("portrait = the neutral reference frame (eyes open, mouth most closed)", "neutral")]}
    choices["both"] = choices["first"] + choices["neutral"]
    for title, reference in choices[args.reference]:
        print_table(title, clips, reference, args.max_frames)


if __name__ == "__main__":
    main()
