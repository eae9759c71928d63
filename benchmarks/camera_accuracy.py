"""Camera tracking accuracy: the live webcam path on held-out real talking clips, judged on the rendered avatar.

    python benchmarks/camera_accuracy.py                 # every held-out in-the-wild clip (~10 min on 2 cores)
    python benchmarks/camera_accuracy.py --frames 150    # a quick look

For each in-the-wild clip of the validation speakers (`src/facecast/dataset/split.json`), every frame goes
through the live camera path exactly as `facecast live --camera-file CLIP --no-mirror` runs it, but without
the real-time clock (so a busy machine drops no frames and the numbers do not depend on load; the latency
rows are `benchmarks/live.py --camera`): OpenCV decodes the frame, the face mesh tracks it
(`face.measure.FaceMeasurer`, video mode), `face.live.LiveFace` calibrates on the first second and turns the
landmarks into motion, and `app.hybrid.Hybrid` lays it over the rule generator's motion for the clip's voice
(the default drive: head, eyes, brows, expressions from the camera, the mouth blended). The motion is rendered
on the clip's first frame (512², the quality benchmark's fixed framing) and the rendered frames are measured
with the face mesh exactly as the real video is (`evaluation.motion_quality`: extraction with a neutral
reference). From 1.5 s on (after calibration and the ease-in):

* head r: Pearson correlation of the rendered with the real head rotation, per axis, and their mean;
* blinks: the real video's blinks (`motion_quality.blink_onsets`) the avatar also blinks within
  +-BLINK_TOLERANCE frames, and blinks the avatar makes that the video does not (false);
* brow r: the correlation of the brow raise (browInnerUp + outer raise - lowering, from the fitted expression
  channels) of the rendered and the real face;
* the same head, blink and brow scores of the camera path's motion before rendering ("motion" columns):
  what the tracking got right, apart from what the renderer shows of it.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from facecast.app.camera_input import Tracked  # noqa: E402
from facecast.app.hybrid import Hybrid  # noqa: E402
from facecast.dataset.cache import load_split  # noqa: E402
from facecast.evaluation.motion_quality import blink_onsets, pearson, rule_motion  # noqa: E402
from facecast.face.extraction import extract_from_landmarks, track_frames  # noqa: E402
from facecast.face.live import CALIBRATION_S, LiveFace  # noqa: E402
from facecast.face.measure import FaceMeasurer  # noqa: E402
from facecast.face.portrait import LEGACY_FRAMING, analyze_portrait  # noqa: E402
from facecast.media import decode_mono  # noqa: E402
from facecast.motion import EXPRESSION_CHANNELS, MotionFrame  # noqa: E402
from facecast.render.renderer import Renderer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SIZE = 512
#: Scores start here: the first second calibrates, then the camera eases in.
SKIP_S = CALIBRATION_S + 0.5
#: A real blink counts as detected when the avatar's starts within this many frames of it.
BLINK_TOLERANCE = 3


def held_out_wild(data: Path) -> list[str]:
    """The in-the-wild talking clips of the validation speakers, relative to the data folder."""
    clips = sorted(str(p.relative_to(data)) for p in (data / "talking" / "wild").glob("*.mp4"))
    patterns = [pattern for s in load_split() if s.split == "validation" for pattern in s.clips]
    return [c for c in clips if any(fnmatch.fnmatchcase(c, p) for p in patterns)]


def camera_path(path: Path, frames: int | None) -> tuple[list[np.ndarray], list[MotionFrame], np.ndarray, float]:
    """The live camera path on every frame: (the decoded RGB frames, the hybrid's motion, the tracked landmarks
    (T, 478, 3) with NaN where lost, fps)."""
    capture = cv2.VideoCapture(str(path))
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 25.0)
    pictures = []
    while frames is None or len(pictures) < frames:
        ok, bgr = capture.read()
        if not ok:
            break
        pictures.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    voice = rule_motion(decode_mono(path), fps, len(pictures))
    live = LiveFace(fps)
    tracked: list[Tracked | None] = [None]
    hybrid = Hybrid(lambda: tracked[0], calibrations=lambda: live.calibrations, clock=lambda: 0.0)
    motion, landmarks = [], np.full((len(pictures), 478, 3), np.nan, np.float32)
    with FaceMeasurer() as measurer:
        for i, rgb in enumerate(pictures):
            t = i / fps
            points = measurer.landmarks(rgb)
            if points is not None:
                landmarks[i] = points
            tracked[0] = Tracked(live.update(points, t), t, t, i)
            motion.append(hybrid.combine(voice[i], t))
    return pictures, motion, landmarks, fps


def brow_raise(expressions: np.ndarray) -> np.ndarray:
    """(T,) brow raise from (T, channels) expression coefficients: inner and outer raise minus lowering."""
    column = {name: expressions[:, k] for k, name in enumerate(EXPRESSION_CHANNELS)}
    return (column["browInnerUp"] + (column["browOuterUpLeft"] + column["browOuterUpRight"]) / 2
            - (column["browDownLeft"] + column["browDownRight"]) / 2)


def scores(head: np.ndarray, blink: np.ndarray, brows: np.ndarray, real_head: np.ndarray, real_blink: np.ndarray,
           real_brows: np.ndarray, start: int) -> dict:
    axes = [pearson(head[start:, k], real_head[start:, k]) for k in range(3)]
    real_onsets = [i for i in blink_onsets(real_blink) if i >= start]
    onsets = [i for i in blink_onsets(blink) if i >= start]
    detected = sum(any(abs(i - j) <= BLINK_TOLERANCE for j in onsets) for i in real_onsets)
    false = sum(not any(abs(i - j) <= BLINK_TOLERANCE for j in real_onsets) for i in onsets)
    return {"yaw_r": axes[0], "pitch_r": axes[1], "roll_r": axes[2], "head_r": float(np.mean(axes)),
            "real_blinks": len(real_onsets), "detected": detected, "false_blinks": false,
            "brow_r": pearson(brows[start:], real_brows[start:])}


def measure_clip(relpath: str, frames: int | None) -> dict:
    pictures, motion, landmarks, fps = camera_path(DATA / relpath, frames)
    found = np.isfinite(landmarks[:, 0, 0])
    real = extract_from_landmarks(landmarks, found, fps)     # the real video, through the same face mesh pass
    first = int(np.argmax(found))
    renderer = Renderer(analyze_portrait(pictures[first], size=SIZE, framing=LEGACY_FRAMING), device="cpu")
    rendered_landmarks, rendered_found = track_frames(renderer.render(f)[:, :, :3] for f in motion)
    rendered = extract_from_landmarks(rendered_landmarks, rendered_found, fps)
    start = round(SKIP_S * fps)
    real_brows = brow_raise(real.expressions)
    out = {"clip": relpath, "frames": len(motion), "fps": fps, "real_face": float(found.mean()),
           "rendered_face": float(rendered_found.mean())}
    out["rendered"] = scores(rendered.head, rendered.blink, brow_raise(rendered.expressions), real.head, real.blink,
                             real_brows, start)
    head = np.array([[f.head.yaw, f.head.pitch, f.head.roll] for f in motion])
    blink = np.array([[f.blink.left, f.blink.right] for f in motion])
    brows = brow_raise(np.array([[f.expression(n) for n in EXPRESSION_CHANNELS] for f in motion]))
    out["motion"] = scores(head, blink, brows, real.head, real.blink, real_brows, start)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=None, help="at most this many frames per clip")
    parser.add_argument("--json", type=Path, default=None, help="keep every clip's scores here")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    records = []
    for relpath in held_out_wild(DATA):
        record = measure_clip(relpath, args.frames)
        records.append(record)
        print(json.dumps(record), file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))
    print("\n| clip | frames | head r (yaw / pitch / roll) | blinks detected | false blinks | brow r | "
          "motion: head r | motion: blinks detected | motion: brow r |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in records + [_total(records)]:
        a, m = r["rendered"], r["motion"]
        print(f"| {r['clip'].split('/')[-1]} | {r['frames']} | {a['head_r']:.2f} ({a['yaw_r']:.2f} / "
              f"{a['pitch_r']:.2f} / {a['roll_r']:.2f}) | {a['detected']} of {a['real_blinks']} | "
              f"{a['false_blinks']} | {a['brow_r']:.2f} | {m['head_r']:.2f} | {m['detected']} of {m['real_blinks']} | "
              f"{m['brow_r']:.2f} |")
    return 0


def _total(records: list[dict]) -> dict:
    """All clips: mean correlations (clip-weighted), blinks summed."""
    def pooled(kind: str) -> dict:
        rows = [r[kind] for r in records]
        out = {k: float(np.nanmean([row[k] for row in rows])) for k in ("yaw_r", "pitch_r", "roll_r", "head_r",
                                                                         "brow_r")}
        out.update({k: sum(row[k] for row in rows) for k in ("real_blinks", "detected", "false_blinks")})
        return out
    return {"clip": "all (mean r, blinks summed)", "frames": sum(r["frames"] for r in records),
            "rendered": pooled("rendered"), "motion": pooled("motion")}


if __name__ == "__main__":
    raise SystemExit(main())
