"""User controls layered on generated motion: emotion, mouth and head intensity, main gaze direction, head distance,
mute.

VASA-1 conditions its generator on these; facecast applies them to any
generator's output, so the rule-based and learned generators, the renderer and
every bridge all honour them the same way. The live daemon updates them from
control messages; offline renders can set them once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from facecast.errors import InputError
from facecast.motion import ARKIT_BLENDSHAPES, DERIVED_BLENDSHAPES, MotionFrame, scale_head, scale_mouth

#: Bounds shared by the command line and the live control messages: gaze targets beyond this (degrees
#: from the camera) look like eye-rolling; head distance is relative to the portrait (1.0 as pictured).
MAX_GAZE_DEG = 45.0
MIN_DISTANCE, MAX_DISTANCE = 0.5, 2.0
#: Mouth intensity: how far the lips move with speech (`motion.scale_mouth`): 0 keeps them still, 1 as generated,
#: 2 twice as wide (livelier lips for a small avatar or a quiet voice; below 1 calmer).
MAX_MOUTH_INTENSITY = 2.0
#: Head intensity: how far the head moves (`motion.scale_head`): 0 holds it as pictured, 1 as generated (or as the
#: webcam drives it), 2 twice as far (below 1 a calmer, steadier head; the lips and eyes are not touched).
MAX_HEAD_INTENSITY = 2.0

#: ARKit expression offsets at full intensity for each emotion preset (the eight MEAD emotions).
#: Renderers show the channels they animate; ARKit-speaking bridges receive them all. Negative offsets
#: take back what the generator did that the emotion contradicts (a smile while sad: the learned model
#: smiles a little as real speakers do, and that had cancelled most of the frown).
EMOTION_OFFSETS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"mouthSmileLeft": 0.55, "mouthSmileRight": 0.55, "cheekSquintLeft": 0.35, "cheekSquintRight": 0.35,
              "eyeSquintLeft": 0.25, "eyeSquintRight": 0.25},
    "sad": {"browInnerUp": 0.6, "mouthFrownLeft": 0.5, "mouthFrownRight": 0.5, "mouthPressLeft": 0.15,
            "mouthPressRight": 0.15, "eyeSquintLeft": 0.1, "eyeSquintRight": 0.1, "mouthSmileLeft": -0.5,
            "mouthSmileRight": -0.5},
    "angry": {"browDownLeft": 0.7, "browDownRight": 0.7, "noseSneerLeft": 0.3, "noseSneerRight": 0.3,
              "mouthPressLeft": 0.35, "mouthPressRight": 0.35, "eyeSquintLeft": 0.3, "eyeSquintRight": 0.3},
    "surprised": {"browInnerUp": 0.7, "browOuterUpLeft": 0.7, "browOuterUpRight": 0.7, "eyeWideLeft": 0.6,
                  "eyeWideRight": 0.6, "jawOpen": 0.12},
    "fear": {"browInnerUp": 0.7, "eyeWideLeft": 0.55, "eyeWideRight": 0.55, "mouthStretchLeft": 0.4,
             "mouthStretchRight": 0.4},
    "disgusted": {"noseSneerLeft": 0.6, "noseSneerRight": 0.6, "mouthUpperUpLeft": 0.4, "mouthUpperUpRight": 0.4,
                  "browDownLeft": 0.35, "browDownRight": 0.35},
    "contempt": {"mouthSmileLeft": 0.4, "mouthDimpleLeft": 0.3, "browDownRight": 0.15},
}
EMOTION_PRESETS: tuple[str, ...] = tuple(EMOTION_OFFSETS)


@dataclass
class Controls:
    """The current control state; `apply` returns a new frame with it layered on."""

    emotion: str = "neutral"
    intensity: float = 1.0
    offset: dict[str, float] = field(default_factory=dict)
    gaze_yaw: float = 0.0        # main gaze direction (degrees); glances happen around it
    gaze_pitch: float = 0.0
    distance: float = 1.0        # multiplies the generated head distance
    mouth: float = 1.0           # mouth intensity: scales the speaking mouth (0..MAX_MOUTH_INTENSITY)
    head: float = 1.0            # head intensity: scales the head's motion (0..MAX_HEAD_INTENSITY)
    muted: bool = False

    def expression_offsets(self) -> dict[str, float]:
        offsets = {name: value * self.intensity for name, value in EMOTION_OFFSETS[self.emotion].items()}
        for name, value in self.offset.items():
            offsets[name] = offsets.get(name, 0.0) + value
        return offsets

    def apply(self, frame: MotionFrame) -> MotionFrame:
        """`frame` with its mouth and head scaled by their intensities, then emotion offsets (clamped to [0, 1]),
        gaze target and distance applied (the intensities scale the speech and the head's motion, not the
        emotion's own mouth or the distance the user chose)."""
        frame = scale_head(scale_mouth(frame, self.mouth), self.head)
        offsets = self.expression_offsets()
        if not offsets and not (self.gaze_yaw or self.gaze_pitch) and self.distance == 1.0:
            return frame
        expressions = dict(frame.expressions)
        for name, value in offsets.items():
            expressions[name] = min(1.0, max(0.0, expressions.get(name, 0.0) + value))
        gaze = replace(frame.gaze, yaw=frame.gaze.yaw + self.gaze_yaw, pitch=frame.gaze.pitch + self.gaze_pitch)
        head = replace(frame.head, distance=frame.head.distance * self.distance)
        return replace(frame, expressions=expressions, gaze=gaze, head=head)

    def update(self, command: dict[str, Any]) -> None:
        """Apply one validated control message (see `CONTROL_SCHEMA`)."""
        kind = command["type"]
        if kind == "emotion":
            if "preset" in command:
                self.emotion = command["preset"]
            if "intensity" in command:
                self.intensity = float(command["intensity"])
            if "offset" in command:
                self.offset = {k: float(v) for k, v in command["offset"].items()}
        elif kind == "gaze":
            self.gaze_yaw, self.gaze_pitch = float(command["yaw"]), float(command["pitch"])
        elif kind == "distance":
            self.distance = float(command["value"])
        elif kind == "mouth":
            self.mouth = float(command["intensity"])
        elif kind == "head":
            self.head = float(command["intensity"])
        elif kind == "mute":
            self.muted = bool(command["muted"])
        else:
            raise ValueError(f"control '{kind}' is not handled here")


def parse_emotion(text: str) -> tuple[str, float]:
    """'happy' or 'happy:0.5' -> (preset, intensity); ValueError with a one-line reason otherwise."""
    name, _, amount = text.partition(":")
    if name not in EMOTION_OFFSETS:
        raise ValueError(f"unknown emotion '{name}': use {', '.join(EMOTION_PRESETS)}")
    intensity = 1.0
    if amount:
        try:
            intensity = float(amount)
        except ValueError:
            raise ValueError(f"emotion intensity must be a number in 0-1 (got '{amount}')") from None
        if not (0.0 <= intensity <= 1.0) or math.isnan(intensity):
            raise ValueError(f"emotion intensity must be in 0-1 (got {intensity:g})")
    return name, intensity


def parse_gaze(text: str) -> tuple[float, float]:
    """'YAW,PITCH' in degrees (0,0 = the camera; yaw > 0 towards image right, pitch > 0 up) -> floats."""
    parts = [part.strip() for part in str(text).split(",")]
    try:
        yaw, pitch = (float(part) for part in parts)
    except ValueError:
        raise ValueError(f"gaze must be YAW,PITCH in degrees, for example 10,-5 (got '{text}')") from None
    if not all(math.isfinite(v) and abs(v) <= MAX_GAZE_DEG for v in (yaw, pitch)):
        raise ValueError(f"gaze angles must be within +-{MAX_GAZE_DEG:g} degrees (got '{text}')")
    return yaw, pitch


def check_distance(value: float) -> float:
    """Head distance relative to the portrait (1 = as pictured, 2 = twice as far)."""
    if not (math.isfinite(value) and MIN_DISTANCE <= value <= MAX_DISTANCE):
        raise ValueError(f"distance must be {MIN_DISTANCE:g}-{MAX_DISTANCE:g} (1 = as in the portrait; got {value:g})")
    return float(value)


def check_intensity(value: float, part: str) -> float:
    """The mouth's or the head's intensity (`part`), 0 to its maximum (1 = as generated)."""
    maximum = {"mouth": MAX_MOUTH_INTENSITY, "head": MAX_HEAD_INTENSITY}[part]
    if not (math.isfinite(value) and 0.0 <= value <= maximum):
        raise ValueError(f"{part} intensity must be 0-{maximum:g} (1 = as generated; got {value:g})")
    return float(value)


def controls_from(emotion: str | None = None, gaze: str | None = None, distance: float | None = None,
                  mouth_intensity: float | None = None, head_intensity: float | None = None) -> Controls:
    """The starting controls of a render or a live run from its options; InputError with a one-line reason."""
    controls = Controls()
    try:
        if mouth_intensity is not None:
            controls.mouth = check_intensity(float(mouth_intensity), "mouth")
        if head_intensity is not None:
            controls.head = check_intensity(float(head_intensity), "head")
        if emotion:
            controls.emotion, controls.intensity = parse_emotion(emotion)
        if gaze:
            controls.gaze_yaw, controls.gaze_pitch = parse_gaze(gaze)
        if distance is not None:
            controls.distance = check_distance(float(distance))
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc)) from None
    return controls


# --- control messages: what the live daemon accepts at run time (the WebSocket server carries them) -------

class ControlError(ValueError):
    """A control command was refused; the message says why (it goes back to the client)."""


#: Longest portrait path a `portrait` command may carry, and longest folder or file name in it (bytes of
#: UTF-8; Linux's NAME_MAX): longer ones could only fail later, inside the file system calls.
MAX_PATH_CHARS = 1024
MAX_PATH_PART_BYTES = 255
_OFFSET_NAMES = frozenset(ARKIT_BLENDSHAPES) - DERIVED_BLENDSHAPES


def _shown(names: list[str], count: int = 5, width: int = 40) -> str:
    """Names from a client for a one-line message: control characters as '?', each cut to `width`."""
    def clean(name: str) -> str:
        text = "".join("?" if ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF else c for c in name)
        return text if len(text) <= width else text[:width - 3] + "..."
    return ", ".join(clean(name) for name in names[:count]) + (", ..." if len(names) > count else "")


def _number(low: float, high: float) -> Callable[[str, object], float]:
    def check(name: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ControlError(f"'{name}' must be a number")
        if not low <= value <= high:
            raise ControlError(f"'{name}' must be between {low:g} and {high:g}")
        return float(value)
    return check


def _boolean(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ControlError(f"'{name}' must be true or false")
    return value


def _preset(name: str, value: object) -> str:
    if value not in EMOTION_PRESETS:
        raise ControlError(f"'{name}' must be one of {', '.join(EMOTION_PRESETS)}")
    return str(value)


_offset_value = _number(-1.0, 1.0)


def _offsets(name: str, value: object) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ControlError(f"'{name}' must be an object of ARKit expression names to numbers")
    unknown = sorted(str(key) for key in value if key not in _OFFSET_NAMES)
    if unknown:
        raise ControlError(f"'{name}': unknown or eye expression name(s) {_shown(unknown)}")
    return {key: _offset_value(f"{name}.{key}", number) for key, number in value.items()}


def _path(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_PATH_CHARS:
        raise ControlError(f"'{name}' must be a file path of 1-{MAX_PATH_CHARS} characters")
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ControlError(f"'{name}' must not contain control characters or unpaired surrogates")
    if any(len(part.encode("utf-8")) > MAX_PATH_PART_BYTES for part in value.replace("\\", "/").split("/")):
        raise ControlError(f"'{name}': a folder or file name may have at most {MAX_PATH_PART_BYTES} bytes")
    return value


_Field = tuple[Callable[[str, object], Any], bool]  # (validator, required)

#: Control commands: type -> field -> (validator, required).
CONTROL_SCHEMA: dict[str, dict[str, _Field]] = {
    # preset with an intensity, and/or a global offset of ARKit expressions (VASA-1's "emotion offset")
    "emotion": {"preset": (_preset, False), "intensity": (_number(0.0, 1.0), False), "offset": (_offsets, False)},
    # main gaze direction in degrees (0, 0 = the camera); the same convention as MotionFrame.gaze
    "gaze": {"yaw": (_number(-MAX_GAZE_DEG, MAX_GAZE_DEG), True),
             "pitch": (_number(-MAX_GAZE_DEG, MAX_GAZE_DEG), True)},
    "distance": {"value": (_number(MIN_DISTANCE, MAX_DISTANCE), True)},
    # how far the lips move with speech: 0 still, 1 as generated, 2 twice as wide
    "mouth": {"intensity": (_number(0.0, MAX_MOUTH_INTENSITY), True)},
    # how far the head moves: 0 held as pictured, 1 as generated, 2 twice as far
    "head": {"intensity": (_number(0.0, MAX_HEAD_INTENSITY), True)},
    "mute": {"muted": (_boolean, True)},
    "portrait": {"path": (_path, True)},
    # take the webcam user's neutral head pose and eye openness again from the next second (facecast.face.live)
    "calibrate": {},
    # stop the daemon cleanly (outputs closed, summary logged): how the OBS script ends it on every OS, since
    # Windows has no SIGTERM to send (Popen.terminate() there kills the process outright)
    "stop": {},
}
#: Commands that need at least one of these (otherwise optional) fields.
_NEEDS_ONE_OF = {"emotion": ("preset", "offset")}


def check_control(message: dict[str, Any]) -> dict[str, Any]:
    """One control command checked against `CONTROL_SCHEMA`: the command with numbers as floats, or ControlError."""
    kind = message.get("type")
    schema = CONTROL_SCHEMA.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise ControlError(f"'type' must be one of {', '.join(CONTROL_SCHEMA)}")
    unknown = sorted(set(message) - set(schema) - {"type"})
    if unknown:
        raise ControlError(f"unknown field(s) for '{kind}': {_shown(unknown)}")
    out: dict[str, Any] = {"type": kind}
    for name, (check, required) in schema.items():
        if name in message:
            out[name] = check(name, message[name])
        elif required:
            raise ControlError(f"'{kind}' needs '{name}'")
    one_of = _NEEDS_ONE_OF.get(kind, ())
    if one_of and not any(name in out for name in one_of):
        raise ControlError(f"'{kind}' needs {' or '.join(repr(name) for name in one_of)}")
    return out
