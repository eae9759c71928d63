"""Motion quality against real people: the measurements behind `benchmarks/quality.py`.

Why: "lifelike" has to be a number before a learned generator can be trained
towards it or a default chosen. Every generator is judged the same way: its
motion for a held-out clip's audio is rendered on that speaker's first frame,
the output frames are measured with the face mesh (`extraction`), and the
measurements are compared with the real video's (the dataset cache).

Generators are plain functions `(samples_16k, fps, frames) -> [MotionFrame]`
in `GENERATORS`, each running a generator of `speech.generator.make_generator`
as render or live runs it, so a new one is one more entry.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d

from facecast.face.extraction import extract_from_landmarks, track_frames
from facecast.face.measure import eye_openness_across
from facecast.motion import MotionFrame
from facecast.speech.generator import exactly, make_generator
from facecast.speech.learned import WEIGHTS_PATH

MAX_LAG = 10
#: A word "closes" the mouth when its smallest opening comes within this fraction of the clip's opening
#: range (5th..95th percentile) of the clip's 5th percentile. Calibrated on the real GRID s4 videos:
#: 91 % of bilabial words close, 36 % of the other words (`benchmarks/quality.py` prints both).
CLOSED_FRACTION = 0.2
WORD_MARGIN_S = 0.04
#: GRID words with a bilabial (b, p, m) closure; letters as spoken ("bee", "pee", "em").
BILABIAL_WORDS = frozenset({"bin", "blue", "by", "place", "please", "b", "p", "m"})
#: Sigma (seconds) of the head-rotation smoothing that separates motion from tracking noise.
SMOOTHING_S = 0.06
#: Blink hysteresis on the mean closure of both eyes (1 = closed).
BLINK_ON, BLINK_OFF = 0.7, 0.4
#: A blink's dip for `blink_depths`: openness below DIP_ON of the open level, over once back above DIP_OFF.
DIP_ON, DIP_OFF = 0.75, 0.85
#: A dip counts as a shut blink when it reaches this share of the open level (issue 18: "each closing to <= 0.2").
SHUT_DEPTH = 0.2


# ----------------------------------------------------------------------------- generators

def loudness_motion(samples: np.ndarray, fps: float, frames: int, rate: int = 16000) -> list[MotionFrame]:
    """The baseline: jaw opening = the audio envelope (40 ms RMS in dB, the clip's loud level = open), nothing else."""
    half = int(0.02 * rate)
    samples = np.asarray(samples, np.float64)
    levels = []
    for i in range(frames):
        centre = int(round(i / fps * rate))
        window = samples[max(0, centre - half): centre + half]
        levels.append(10 * math.log10(float(np.mean(window**2)) + 1e-10) if len(window) else -100.0)
    db = np.array(levels)
    loud = np.percentile(db, 95) if len(db) else 0.0
    jaw = np.clip((db - (loud - 30.0)) / 30.0, 0.0, 1.0) * 0.7
    return [MotionFrame(t=i / fps, expressions={"jawOpen": float(j)} if j > 0 else {}) for i, j in enumerate(jaw)]


def rule_motion(samples: np.ndarray, fps: float, frames: int, seed: int = 0) -> list[MotionFrame]:
    """The rule-based generator, exactly as `facecast render` runs it."""
    generator = make_generator("rule", fps=fps, seed=seed, streaming=False, frames=frames)
    return generator.push(np.asarray(samples, np.float64)) + list(generator.finish())


def learned_motion(samples: np.ndarray, fps: float, frames: int, model_path: Path | None = None) -> list[MotionFrame]:
    """The learned diffusion-transformer generator (`speech.learned`) over the whole clip, as `facecast render`
    runs it (its shipped weights, or `model_path`)."""
    generator = make_generator("learned", fps=fps, model_path=model_path, streaming=False, frames=frames)
    return generator.push(samples) + list(generator.finish())


def learned_live_motion(samples: np.ndarray, fps: float, frames: int,
                        model_path: Path | None = None, latency: str = "low") -> list[MotionFrame]:
    """The learned generator as the live daemon streams it (10 ms blocks, bounded lookahead, `latency` as
    `facecast live --latency`; its shipped weights, or `model_path`)."""
    generator = make_generator("learned", fps=fps, model_path=model_path, streaming=True, latency=latency)
    out: list[MotionFrame] = []
    for start in range(0, len(samples), 160):
        out += generator.push(samples[start: start + 160])
    return list(exactly(out + list(generator.finish()), fps, frames))


Generator = Callable[[np.ndarray, float, int], list[MotionFrame]]
GENERATORS: dict[str, Generator] = {"loudness": loudness_motion, "rule": rule_motion}
if WEIGHTS_PATH.exists():
    GENERATORS["learned"] = learned_motion
    GENERATORS["learned-live"] = learned_live_motion
    GENERATORS["learned-sync"] = functools.partial(learned_live_motion, latency="sync")


# ----------------------------------------------------------------------------- measuring output

@dataclass
class Measured:
    """Face-mesh measurements of one video (real or rendered), frame by frame."""

    fps: float
    found: np.ndarray          # (T,) bool
    mouth_opening: np.ndarray  # (T,) face heights
    head: np.ndarray           # (T, 6) yaw, pitch, roll (degrees), x, y, distance
    blink: np.ndarray          # (T, 2)
    lips: np.ndarray           # (T, 40, 2) for the lip-sync scorer
    eye_openness: np.ndarray | None = None   # (T, 2) face_measure.eye_openness, pose removed (blink depth)
    eye_openness_across: np.ndarray | None = None   # (T, 2) face_measure.eye_openness_across, pose removed

    @classmethod
    def from_clip(cls, clip: dict[str, np.ndarray]) -> "Measured":
        """The real video's measurements, as the dataset cached them."""
        return cls(float(clip["fps"]), clip["found"].astype(bool), clip["mouth_opening"].astype(np.float64),
                   clip["head"].astype(np.float64), clip["blink"].astype(np.float64), clip["lips"],
                   clip["eye_openness"].astype(np.float64) if "eye_openness" in clip else None)


def motion_head_and_blink(motion: Sequence[MotionFrame]) -> tuple[np.ndarray, np.ndarray]:
    """A generator's own head (T, 6: yaw, pitch, roll in degrees, x, y, distance) and blinks (T, 2),
    before rendering: what it asked for, next to what the face mesh reads off the rendered output."""
    head = np.array([[f.head.yaw, f.head.pitch, f.head.roll, f.head.x, f.head.y, f.head.distance] for f in motion],
                    float).reshape(-1, 6)
    blink = np.array([[f.blink.left, f.blink.right] for f in motion], float).reshape(-1, 2)
    return head, blink


def measure_frames(frames: Iterable[np.ndarray], fps: float) -> Measured:
    """Measure RGB frames (rendered output) exactly as the dataset measured the real videos."""
    landmarks, found = track_frames(frames)
    count = len(found)
    if not found.any():
        nan = np.full(count, np.nan)
        return Measured(fps, found, nan, np.full((count, 6), np.nan), np.full((count, 2), np.nan),
                        np.full((count, 40, 2), np.nan, np.float32), np.full((count, 2), np.nan),
                        np.full((count, 2), np.nan))
    result = extract_from_landmarks(landmarks, found, fps, reference="neutral")
    across = np.array([[eye_openness_across(p, "left"), eye_openness_across(p, "right")] for p in result.aligned])
    return Measured(fps, found, result.mouth_opening, result.head, result.blink, result.lip_shape(),
                    result.eye_openness, across.reshape(-1, 2))


# ----------------------------------------------------------------------------- metrics

def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when either signal is constant or too short."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() < 1e-12 or b[ok].std() < 1e-12:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def correlation_at(generated: np.ndarray, real: np.ndarray, lag: int) -> float:
    """Pearson correlation of `generated` delayed by `lag` frames against `real` (positive: generated late)."""
    g = generated[lag:] if lag >= 0 else generated[:lag]
    r = real[: len(real) - lag] if lag >= 0 else real[-lag:]
    return pearson(g, r)


def lagged_correlation(generated: np.ndarray, real: np.ndarray, max_lag: int = MAX_LAG) -> tuple[float, int]:
    """(correlation at lag 0, the lag in frames that maximises it); a positive lag: the generated signal is late."""
    best_lag, best = 0, -np.inf
    for lag in range(-max_lag, max_lag + 1):
        value = correlation_at(generated, real, lag)
        if np.isfinite(value) and value > best:
            best, best_lag = value, lag
    return pearson(generated, real), best_lag


def closed_level(opening: np.ndarray) -> float:
    """The opening at or below which a mouth counts as closed: within CLOSED_FRACTION of its range (5th to 95th
    percentile of the finite `opening`) of its 5th percentile."""
    low, high = np.percentile(opening, [5, 95])
    return float(low + CLOSED_FRACTION * max(high - low, 1e-9))


def word_closures(opening: np.ndarray, fps: float, words: Iterable[str], starts: Iterable[float],
                  ends: Iterable[float]) -> tuple[list[bool], list[bool]]:
    """Whether the mouth closes during each bilabial word, and during each other word (see CLOSED_FRACTION)."""
    opening = np.asarray(opening, float)
    finite = opening[np.isfinite(opening)]
    if len(finite) < 3:
        return [], []
    threshold = closed_level(finite)
    bilabial, other = [], []
    for word, start, end in zip(words, starts, ends):
        if not (np.isfinite(start) and np.isfinite(end)):
            continue
        a = max(0, int(math.floor((start - WORD_MARGIN_S) * fps)))
        b = min(len(opening), int(math.ceil((end + WORD_MARGIN_S) * fps)) + 1)
        window = opening[a:b]
        window = window[np.isfinite(window)]
        if not len(window):
            continue
        (bilabial if str(word).lower() in BILABIAL_WORDS else other).append(bool(window.min() <= threshold))
    return bilabial, other


def _rotation(head: np.ndarray) -> np.ndarray:
    rotation = np.asarray(head, float)[:, :3]
    return rotation[np.isfinite(rotation).all(1)]


def smooth_rotation(rotation: np.ndarray, fps: float) -> np.ndarray:
    """Head rotation with frame-to-frame tracking noise removed: a Gaussian of SMOOTHING_S (keeps ~75 % of
    a 2 Hz nod, nothing of a frame-to-frame flicker)."""
    if len(rotation) < 2:
        return rotation.copy()
    return gaussian_filter1d(rotation, SMOOTHING_S * fps, axis=0, mode="nearest")


def head_motion(head: np.ndarray, fps: float) -> tuple[float, float]:
    """(mean rotation speed in degrees per second of the smoothed rotation, mean standard deviation of
    yaw, pitch and roll in degrees). Smoothing first keeps the face mesh's own per-frame noise (which
    makes a still head "move" ~20 degrees per second) out of the speed; `jitter` reports that noise."""
    rotation = _rotation(head)
    if len(rotation) < 3:
        return float("nan"), float("nan")
    speed = np.linalg.norm(np.diff(smooth_rotation(rotation, fps), axis=0), axis=1).mean() * fps
    return float(speed), float(rotation.std(0).mean())


def jitter(head: np.ndarray, fps: float) -> float:
    """Mean distance (degrees) of the head rotation from its smoothed path: shake, not motion."""
    rotation = _rotation(head)
    if len(rotation) < 4:
        return float("nan")
    return float(np.linalg.norm(rotation - smooth_rotation(rotation, fps), axis=1).mean())


def rotation_change(head: np.ndarray) -> float:
    """Mean frame-to-frame change of the head rotation (degrees per frame, unsmoothed): what a viewer sees as
    shake, tracking noise of a still head included."""
    rotation = _rotation(head)
    if len(rotation) < 2:
        return float("nan")
    return float(np.linalg.norm(np.diff(rotation, axis=0), axis=1).mean())


def blink_depths(openness: np.ndarray | None) -> list[float]:
    """How far each blink closes the eyes: per dip of both eyes' mean openness below DIP_ON of the clip's open
    level (its median: eyes are open most of the time), the smallest openness over the open level (0 = shut).
    Dips are found on the openness itself, not through `count_blinks`' threshold, so shallow blinks count too."""
    if openness is None:
        return []
    mean = np.asarray(openness, float).mean(1)
    finite = mean[np.isfinite(mean)]
    if len(finite) < 3 or np.median(finite) <= 0:
        return []
    ratio = mean / np.median(finite)
    depths: list[float] = []
    low = None
    for value in ratio:
        if not np.isfinite(value):
            continue
        if low is None and value < DIP_ON:
            low = value
        elif low is not None:
            low = min(low, value)
            if value > DIP_OFF:
                depths.append(float(low))
                low = None
    if low is not None:
        depths.append(float(low))
    return depths


def blink_onsets(blink: np.ndarray) -> list[int]:
    """The frames where blinks start: both eyes' mean closure rising above BLINK_ON, counted again only after
    it fell below BLINK_OFF (a mouth-driven wobble around one level is not a blink)."""
    onsets, armed = [], True
    for i, value in enumerate(np.nan_to_num(np.asarray(blink, float).mean(1))):
        if armed and value > BLINK_ON:
            onsets.append(i)
            armed = False
        elif value < BLINK_OFF:
            armed = True
    return onsets


def count_blinks(blink: np.ndarray) -> int:
    """How many blinks (`blink_onsets`)."""
    return len(blink_onsets(blink))


def blinks_per_minute(blink: np.ndarray, fps: float) -> float:
    """`count_blinks` per minute of footage (NaN for under two frames)."""
    if len(blink) < 2:
        return float("nan")
    return count_blinks(blink) / (len(blink) / fps / 60.0)


# ----------------------------------------------------------------------------- speaker-weighted summaries

#: How each per-clip score of `benchmarks/quality.py` is pooled, first over one speaker's clips, then over the
#: speakers of a group: "mean" (mean of the speaker means), "median" (median of the speaker medians), "share"
#: (of true outcomes: a speaker's share, then the mean over speakers), or a rate key[0] / key[1] summed over the
#: speaker's clips (blinks per minute, face found per frame), then the mean over speakers.
POOLING: dict[str, str | tuple[str, str]] = {
    "mouth_r": "mean", "mouth_r_av": "mean", "lag": "median", "mouth_size": "median", "sync_conf": "mean",
    "sync_offset": "median", "sync_in_1": "share", "closed_bilabial": ("bilabial_closed", "bilabial_words"),
    "closed_other": ("other_closed", "other_words"), "head_speed": "mean", "head_spread": "mean",
    "motion_head_speed": "mean", "motion_head_spread": "mean", "jitter": "mean", "rotation_change": "mean",
    "motion_jitter": "mean", "motion_rotation_change": "mean", "blink_depth": "median",
    "blinks_shut": ("shut_dips", "blink_dips"), "blinks_shut_across": ("shut_dips_across", "blink_dips_across"),
    "blinks_per_min": ("blinks", "minutes"), "motion_blinks_per_min": ("motion_blinks", "minutes"),
    "face_found": ("found", "frames"),
}


def _finite(values: Iterable[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _pool(values: list[float], how: str) -> float:
    values = _finite(values)
    if not values:
        return float("nan")
    return float(np.median(values)) if how == "median" else float(np.mean(values))


def by_speaker(clips: Sequence[dict]) -> dict[str, list[dict]]:
    """Per-clip score records grouped by their "speaker" (in first-seen order)."""
    speakers: dict[str, list[dict]] = {}
    for clip in clips:
        speakers.setdefault(str(clip["speaker"]), []).append(clip)
    return speakers


def speaker_scores(clips: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Each speaker's scores (POOLING keys) from its clips' records: what one speaker counts as, whatever
    number of clips it has."""
    out = {}
    for speaker, records in by_speaker(clips).items():
        scores = {}
        for key, how in POOLING.items():
            if isinstance(how, tuple):
                numerator, denominator = (sum(_finite(r.get(k, float("nan")) for r in records)) for k in how)
                scores[key] = numerator / denominator if denominator > 0 else float("nan")
            else:
                values = [r.get(key, float("nan")) for r in records]
                scores[key] = _pool(values, "mean" if how == "share" else how)
        out[speaker] = scores
    return out


def speaker_weighted(clips: Sequence[dict]) -> dict[str, float | str | int]:
    """One summary row of per-clip records in which every speaker counts once (never clip-weighted: one
    speaker with many clips would otherwise decide the number), with the weakest speaker by mouth r."""
    speakers = speaker_scores(clips)
    row: dict[str, float | str | int] = {"clips": len(clips), "speakers": len(speakers)}
    for key, how in POOLING.items():
        row[key] = _pool([s[key] for s in speakers.values()], "median" if how == "median" else "mean")
    ranked = sorted(((s["mouth_r"], name) for name, s in speakers.items() if math.isfinite(s["mouth_r"])))
    row["weakest_r"], row["weakest"] = ranked[0] if ranked else (float("nan"), "")
    return row
