"""The motion representation: the one contract between every part of facecast.

Generators (rule-based, learned, extracted from video) produce `MotionFrame`s;
the renderer and every bridge (VMC, VRChat, VTube Studio, WebSocket) consume
them. Keeping one small, explicit, versioned structure means a new output or a
new generator never needs to know about the others.

Conventions (image space of a non-mirrored portrait, the viewer's point of view):

* angles in degrees. ``yaw > 0``: the nose turns towards image right.
  ``pitch > 0``: the nose turns up (chin up). ``roll > 0``: the head tilts
  counter-clockwise as seen by the viewer.
* ``x``, ``y``: head translation as a fraction of the width and height of a
  frame in which the face (forehead to chin) is 40 % of the height (the
  renderer scales it to the portrait's framing, so a head moves the same
  share of its own size however tightly it is framed); ``x > 0`` moves
  right, ``y > 0`` moves up.
* ``distance``: head-to-camera distance relative to the portrait (1.0 = as in
  the portrait, 1.1 = 10 % further away, so the face looks smaller).
* gaze: the same angle convention as the head, relative to the head.
* ``left``/``right`` (blinks, ARKit ``...Left``/``...Right``) are the
  *subject's* sides, as in ARKit: the subject's left eye appears on image right.
* expression coefficients and blinks are in [0, 1]; viseme weights are in
  [0, 1] and sum to 1; ``voice`` is the voice level in [0, 1].

Serialisation is JSON Lines: a header line, then one line per frame, so users
can inspect and edit motion with any text tool (`facecast motion` writes it,
`facecast render --motion` reads it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Iterable, Iterator

import numpy as np

from facecast.errors import InputError

MOTION_FORMAT = "facecast.motion"
MOTION_VERSION = 1

#: Apple ARKit's 52 blendshape names, the vocabulary for expression coefficients.
ARKIT_BLENDSHAPES: tuple[str, ...] = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight", "tongueOut",
)
_ARKIT_SET = frozenset(ARKIT_BLENDSHAPES)

#: Blink and gaze have their own fields; these ARKit names are derived from them
#: (see `MotionFrame.arkit`) and may not be set as free expression coefficients.
DERIVED_BLENDSHAPES = frozenset(
    n for n in ARKIT_BLENDSHAPES if n.startswith("eyeBlink") or n.startswith("eyeLook")
)

#: The expression channels facecast generates, renders and extracts, in the order of the motion
#: vector (learned model rows, dataset cache columns); the face model (`facecast.face_model`)
#: says what each does to the face.
EXPRESSION_CHANNELS: tuple[str, ...] = (
    "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker",
    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "mouthPressLeft", "mouthPressRight", "browInnerUp", "browDownLeft", "browDownRight",
    "browOuterUpLeft", "browOuterUpRight", "eyeWideLeft", "eyeWideRight",
    "eyeSquintLeft", "eyeSquintRight", "cheekPuff",
)

#: Mouth-shape classes: silence plus the five vowels VRM avatars animate.
VISEMES: tuple[str, ...] = ("sil", "A", "I", "U", "E", "O")

#: Gaze angle (degrees) at which ARKit's eyeLook* coefficients reach 1.
GAZE_FULL_SCALE_DEG = 30.0


@dataclass
class HeadPose:
    """Rigid head motion relative to the portrait (see module docstring for units)."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    x: float = 0.0
    y: float = 0.0
    distance: float = 1.0


@dataclass
class Gaze:
    """Eye direction relative to the head, in degrees."""

    yaw: float = 0.0
    pitch: float = 0.0


@dataclass
class Blink:
    """Eyelid closure per eye (subject's sides): 0 open, 1 closed."""

    left: float = 0.0
    right: float = 0.0


def _silence_visemes() -> dict[str, float]:
    return {name: (1.0 if name == "sil" else 0.0) for name in VISEMES}


@dataclass
class MotionFrame:
    """Everything that moves in one output frame.

    ``t`` is the frame's presentation time in seconds from the start of the
    audio. ``capture_time`` is set only on the live path: the monotonic time at
    which the newest audio sample that influenced this frame was captured, so
    outputs can measure mic-to-frame latency.
    """

    t: float
    head: HeadPose = field(default_factory=HeadPose)
    gaze: Gaze = field(default_factory=Gaze)
    blink: Blink = field(default_factory=Blink)
    expressions: dict[str, float] = field(default_factory=dict)
    visemes: dict[str, float] = field(default_factory=_silence_visemes)
    voice: float = 0.0
    capture_time: float | None = None

    def expression(self, name: str) -> float:
        """The coefficient of one ARKit expression (0 when not set)."""
        return self.expressions.get(name, 0.0)

    def arkit(self) -> dict[str, float]:
        """All 52 ARKit blendshapes, including those derived from blink and gaze.

        Bridges that speak ARKit ("perfect sync", VRCFaceTracking) use this so
        they never re-derive eye coefficients on their own.
        """
        out = {name: 0.0 for name in ARKIT_BLENDSHAPES}
        out.update(self.expressions)
        out["eyeBlinkLeft"] = self.blink.left
        out["eyeBlinkRight"] = self.blink.right
        horizontal = _clamp01(abs(self.gaze.yaw) / GAZE_FULL_SCALE_DEG)
        vertical = _clamp01(abs(self.gaze.pitch) / GAZE_FULL_SCALE_DEG)
        # Subject's left eye is on image right. Looking towards image right
        # (yaw > 0) turns the subject's left eye outwards, right eye inwards.
        if self.gaze.yaw > 0:
            out["eyeLookOutLeft"] = out["eyeLookInRight"] = horizontal
        elif self.gaze.yaw < 0:
            out["eyeLookInLeft"] = out["eyeLookOutRight"] = horizontal
        if self.gaze.pitch > 0:
            out["eyeLookUpLeft"] = out["eyeLookUpRight"] = vertical
        elif self.gaze.pitch < 0:
            out["eyeLookDownLeft"] = out["eyeLookDownRight"] = vertical
        return out

    def to_dict(self) -> dict:
        """A plain JSON-ready dict (the wire form of one frame)."""
        out = {
            "t": round(self.t, 6),
            "head": {k: round(v, 5) for k, v in vars(self.head).items()},
            "gaze": {k: round(v, 5) for k, v in vars(self.gaze).items()},
            "blink": {k: round(v, 5) for k, v in vars(self.blink).items()},
            "expressions": {k: round(v, 5) for k, v in sorted(self.expressions.items())},
            "visemes": {k: round(v, 5) for k, v in self.visemes.items()},
            "voice": round(self.voice, 5),
        }
        if self.capture_time is not None:
            out["capture_time"] = self.capture_time
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "MotionFrame":
        """Parse one frame; missing parts default to neutral, wrong parts raise InputError."""
        if not isinstance(data, dict):
            raise InputError("a motion frame must be a JSON object")
        t = _finite(data.get("t"), "a motion frame needs a finite numeric time 't'")
        head = HeadPose(**_floats(data.get("head", {}), HeadPose, "head"))
        gaze = Gaze(**_floats(data.get("gaze", {}), Gaze, "gaze"))
        blink = Blink(**_floats(data.get("blink", {}), Blink, "blink"))
        expressions = _named_floats(data.get("expressions", {}), "expressions")
        unknown = sorted(set(expressions) - _ARKIT_SET)
        if unknown:
            raise InputError(f"unknown expression name(s) {', '.join(unknown)}: use ARKit blendshape names")
        derived = sorted(set(expressions) & DERIVED_BLENDSHAPES)
        if derived:
            raise InputError(f"{', '.join(derived)}: set eyes through 'blink' and 'gaze', not 'expressions'")
        visemes = _named_floats(data.get("visemes", {}), "visemes") or _silence_visemes()
        unknown = sorted(set(visemes) - set(VISEMES))
        if unknown:
            raise InputError(f"unknown viseme(s) {', '.join(unknown)}: use {', '.join(VISEMES)}")
        capture = data.get("capture_time")
        return cls(
            t=t, head=head, gaze=gaze, blink=blink,
            expressions={k: _clamp01(v) for k, v in expressions.items()},
            visemes={name: _clamp01(visemes.get(name, 0.0)) for name in VISEMES},
            voice=_clamp01(_finite(data.get("voice", 0.0), "motion field 'voice' must be a finite number")),
            capture_time=None if capture is None else _finite(capture, "'capture_time' must be a finite number"),
        )


#: The expressions that articulate speech: how far and in what shape the lips part. The voice gate shuts them on
#: sound that is not a voice and the mouth-intensity control widens or narrows them (`scale_mouth`); smiles,
#: frowns and presses are expression (emotion), left alone.
MOUTH_CHANNELS: tuple[str, ...] = (
    "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "mouthStretchLeft", "mouthStretchRight",
)


def scale_mouth(frame: MotionFrame, factor: float) -> MotionFrame:
    """`frame` with its speaking mouth scaled by `factor` (0 = shut and silent, 1 = as is, 2 = twice as wide):
    MOUTH_CHANNELS (clamped to [0, 1]), the vowel visemes (silence takes the rest) and the voice level, so every
    output (renderer, VMC, VTube Studio's voice-driven mouths) agrees. The same frame object when factor is 1."""
    if factor == 1.0:
        return frame
    factor = max(0.0, float(factor))
    expressions = dict(frame.expressions)
    for name in MOUTH_CHANNELS:
        if name in expressions:
            expressions[name] = _clamp01(expressions[name] * factor)
    vowels = {name: weight for name, weight in frame.visemes.items() if name != "sil"}
    mass = sum(vowels.values())
    scale = min(factor, 1.0 / mass) if mass > 0 else 0.0
    visemes = {name: weight * scale for name, weight in vowels.items()}
    visemes = {"sil": max(0.0, 1.0 - mass * scale), **visemes}
    return replace(frame, expressions=expressions, visemes={name: visemes.get(name, 0.0) for name in VISEMES},
                   voice=_clamp01(frame.voice * factor))


def scale_head(frame: MotionFrame, factor: float) -> MotionFrame:
    """`frame` with its head motion scaled by `factor` about the pose of the picture (0 = held as pictured,
    1 = as is, 2 = twice as far): rotation, sideways and vertical shift, and the distance's change. A calm
    speaker turns less far and so also more slowly, which scaling the whole path gives at once (speed,
    spread and shake all scale by `factor`). The same frame object when factor is 1."""
    if factor == 1.0:
        return frame
    factor = max(0.0, float(factor))
    head = frame.head
    return replace(frame, head=HeadPose(yaw=head.yaw * factor, pitch=head.pitch * factor, roll=head.roll * factor,
                                        x=head.x * factor, y=head.y * factor,
                                        distance=1.0 + (head.distance - 1.0) * factor))


def _short(value: object, limit: int = 40) -> str:
    """A value for a one-line message: repr-escaped for non-strings, control characters as spaces, cut."""
    text = value if isinstance(value, str) else repr(value)
    text = " ".join("".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _finite(value: object, message: str) -> float:
    """A JSON number as a finite float; InputError(`message`) for anything else (strings, huge integers, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(message)
    try:
        number = float(value)
    except OverflowError:  # an integer with hundreds of digits
        raise InputError(message) from None
    if not math.isfinite(number):
        raise InputError(message)
    return number


def _clamp01(value: float) -> float:
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value


def _floats(part: object, kind: type, label: str) -> dict[str, float]:
    values = _named_floats(part, label)
    allowed = set(kind.__dataclass_fields__)
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise InputError(f"unknown {label} field(s) {', '.join(unknown)}: expected {', '.join(sorted(allowed))}")
    return values


def _named_floats(part: object, label: str) -> dict[str, float]:
    if not isinstance(part, dict):
        raise InputError(f"motion field '{label}' must be a JSON object")
    out = {}
    for key, value in part.items():
        out[str(key)] = _finite(value, f"motion field '{label}.{key}' must be a finite number")
    return out


@dataclass
class MotionHeader:
    """First line of a motion file: what produced it and at which frame rate."""

    fps: float
    generator: str = "unknown"
    seed: int | None = None
    source: str | None = None
    format: str = MOTION_FORMAT
    version: int = MOTION_VERSION

    def to_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if v is not None}


def check_motion_output(path: Path) -> None:
    """A motion file is JSON Lines named .jsonl: another name (an .mp4) would mislead whoever opens it."""
    if path.suffix.lower() != ".jsonl":
        raise InputError(f"the motion file is JSON Lines: name it .jsonl (got {path.name})")


def write_motion(path: str | Path | IO[str], header: MotionHeader, frames: Iterable[MotionFrame]) -> int:
    """Stream frames to a JSONL motion file; returns the number of frames written."""
    if isinstance(path, (str, Path)):
        with open(path, "w", encoding="utf-8") as fh:
            return write_motion(fh, header, frames)
    path.write(json.dumps(header.to_dict()) + "\n")
    count = 0
    for frame in frames:
        path.write(json.dumps(frame.to_dict(), separators=(",", ":")) + "\n")
        count += 1
    return count


def read_motion(path: str | Path) -> tuple[MotionHeader, Iterator[MotionFrame]]:
    """Open a motion file: the header now (validated), the frames lazily.

    Frames are parsed one line at a time so hours-long motion files stay in
    constant memory. Every problem is one InputError line naming the file and
    line: bad JSON (nesting too deep for the parser included), bad UTF-8,
    wrong or missing fields, numbers that are not finite.
    """
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read motion file {path}: {exc.strerror or exc}") from None
    try:
        first = fh.readline()
        header_data = json.loads(first) if first.strip() else None
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        fh.close()
        raise InputError(f"{path} is not a facecast motion file (line 1 is not JSON)") from None
    if not isinstance(header_data, dict) or header_data.get("format") != MOTION_FORMAT:
        fh.close()
        raise InputError(f"{path} is not a facecast motion file (no '{MOTION_FORMAT}' header on line 1)")
    version = header_data.get("version")
    if version != MOTION_VERSION:
        fh.close()
        raise InputError(f"{path} has motion format version {_short(version)}; "
                         f"this facecast reads version {MOTION_VERSION}")
    try:
        fps = _finite(header_data.get("fps"), "")
        if not (0 < fps <= 240):
            raise ValueError
    except (InputError, ValueError):
        fh.close()
        raise InputError(f"{path}: header needs a frame rate 'fps' between 0 and 240") from None
    header = MotionHeader(
        fps=fps,
        generator=str(header_data.get("generator", "unknown")),
        seed=header_data.get("seed"),
        source=header_data.get("source"),
    )

    def frames() -> Iterator[MotionFrame]:
        with fh:
            number = 1
            while True:
                number += 1
                try:
                    line = fh.readline()
                except UnicodeDecodeError:
                    raise InputError(f"{path}:{number}: not UTF-8 text") from None
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except (ValueError, RecursionError):  # bad JSON, too deeply nested, an integer too long to parse
                    raise InputError(f"{path}:{number}: not valid JSON") from None
                try:
                    frame = MotionFrame.from_dict(data)
                except InputError as exc:
                    raise InputError(f"{path}:{number}: {_short(str(exc), 300)}") from None
                yield frame

    return header, frames()


def resample_frames(values: np.ndarray, fps: float, target_fps: float, count: int | None = None) -> np.ndarray:
    """Linear resampling of per-frame rows (T, D) of motion from `fps` to `target_fps` (same start time;
    float32 or wider kept); `count` defaults to the frames that fit the same duration."""
    values = np.asarray(values, dtype=np.result_type(values, np.float32))
    if count is None:
        count = max(1, int(math.floor(len(values) / fps * target_fps + 1e-6)))
    if abs(fps - target_fps) < 1e-6 and count <= len(values):
        return values[:count]
    source = np.arange(len(values)) / fps
    target = np.arange(count) / target_fps
    return np.stack([np.interp(target, source, values[:, j]) for j in range(values.shape[1])], 1).astype(values.dtype)


def gaussian_radius(sigma: float) -> int:
    """Samples each way that scipy's `gaussian_filter1d` (its default truncate, 4 sigma) reaches for `sigma`: what
    a stream filtering motion in pieces must wait for ahead and keep behind to match filtering it whole."""
    return int(4.0 * sigma + 0.5)
