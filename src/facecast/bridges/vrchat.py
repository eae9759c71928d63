"""VRChat OSC encoding: drive any avatar's eyes, and face-tracking avatars the way VRCFaceTracking does (pure).

VRChat receives OSC on UDP 9000. facecast sends it three things per frame:

1. **VRChat's native eye tracking** (docs.vrchat.com "OSC Eye Tracking"):
   ``/tracking/eye/EyesClosedAmount`` (0 open .. 1 closed, both eyes) and
   ``/tracking/eye/LeftRightPitchYaw`` (left pitch, left yaw, right pitch,
   right yaw in degrees; **+pitch looks down, +yaw looks to the user's
   right**). Every avatar with eye look / eyelids set up in its descriptor
   blinks and looks with these, face tracking or not; VRChat falls back to
   its own auto-blink and auto-look 10 s after the last message. When the
   avatar's parameter list shows it animates its own eyelids or gaze from
   face-tracking parameters, that part is left out (as VRCFaceTracking does).
2. **VRCFaceTracking "Unified Expressions" v2 floats**,
   ``/avatar/parameters/<prefix><Name>`` (`DEFAULT_PREFIX` ``"FT/v2/"``, the
   folder of the widely used VRCFaceTracking templates; ``"v2/"`` for avatars
   set up without it). Names, ranges and formulas follow VRCFaceTracking's
   ``UnifiedExpressionsParameters`` with ARKit input as its LiveLink module
   maps it (`unified_expressions`).
3. **Binary parameters** beside the floats: ``<Name>1``, ``<Name>2``,
   ``<Name>4`` ... and ``<Name>Negative`` (OSC booleans). The templates keep
   most floats *local* and sync them to other players only as these bits
   ("Binary decode only animates for remote users"), so without bits nobody
   else sees the face move. The encoding is VRCFaceTracking's current
   ``BinaryBaseParameter`` rule (`binary_bits`). Default bit counts are those
   of template 7.0.2 (`TEMPLATE_BINARY`); an avatar's own OSC config, when
   known (`AvatarParameters`), decides instead.

Plus the template's ``EyeTrackingActive`` / ``LipTrackingActive`` flags (true
while facecast runs, false in `VrchatEncoder.farewell`): the templates gate
their face-tracking layers on them.

**Only changes are sent** (as VRCFaceTracking does), plus everything once per
`REFRESH_S` so a restarted VRChat, a new avatar or a lost datagram catches up
within a second. Each datagram is a bundle of at most `MAX_DATAGRAM` bytes.

Left/Right are the subject's (avatar's) sides, as in the motion contract.
VRCFaceTracking's gaze X is positive when the eye looks to the avatar's
right, which is image *left*: facecast's gaze yaw > 0 (image right) gives a
negative X. VRCFaceTracking's gaze value is tan(angle) (its ``ToYaw`` is
``atan(x)``), so ±1 is ±45°.

VRChat's built-in ``Voice`` and ``Viseme`` parameters are read-only (VRChat
computes them from its own microphone input) and are not sent.
`facecast.bridges.osc_udp.VrchatSender` sends what `VrchatEncoder` builds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from facecast.bridges.osc import MAX_DATAGRAM, OSC_RESERVED, OscMessageSpec, clamp, osc_bundles
from facecast.motion import MotionFrame

__all__ = [
    "DEFAULT_HOST", "DEFAULT_PORT", "DEFAULT_PREFIX", "AvatarParameters", "AvatarReport", "TEMPLATE_BINARY",
    "VrchatEncoder", "binary_bits", "native_eye_tracking", "parse_binary_spec", "unified_expressions",
]

DEFAULT_HOST = "127.0.0.1"
#: VRChat's OSC input port (it sends on 9001).
DEFAULT_PORT = 9000
DEFAULT_PREFIX = "FT/v2/"
PARAMETER_ROOT = "/avatar/parameters/"
EYES_CLOSED_ADDRESS = "/tracking/eye/EyesClosedAmount"
EYE_LOOK_ADDRESS = "/tracking/eye/LeftRightPitchYaw"
#: Template flags (bare names, synced and saved on the avatar) that gate its face-tracking layers.
TRACKING_FLAGS = ("EyeTrackingActive", "LipTrackingActive")
#: Seconds between full re-sends; in between only changed values go out.
REFRESH_S = 1.0

#: EyeLid value of a relaxed open eye: 0..0.75 is openness, 0.75..1 widening.
EYELID_OPEN = 0.75

#: v2 parameters whose range is -1..1 (the rest are 0..1). A binary encoding adds ``<Name>Negative`` for them.
SIGNED = frozenset({
    "EyeLeftX", "EyeLeftY", "EyeRightX", "EyeRightY", "EyeX", "EyeY", "JawX", "MouthX",
    "SmileFrownLeft", "SmileFrownRight", "SmileFrown", "BrowExpressionLeft", "BrowExpressionRight",
    "CheekPuffSuckLeft", "CheekPuffSuckRight", "CheekPuffSuck", "TongueX", "TongueY",
})

#: Bit counts of VRCFaceTracking-Templates 7.0.2 (Unified Expressions, ``MA_UE_VRCFT.prefab``) for the
#: names facecast drives: synced as bits (floats local only). The signed ones (`SIGNED`) also have
#: ``<Name>Negative``. JawOpen, MouthClosed, EyeLidLeft/Right, EyeLeftX, EyeRightX and EyeY are synced
#: as floats there, so they get no bits.
TEMPLATE_BINARY: dict[str, int] = {
    **{name: 3 for name in (
        "EyeSquintLeft", "EyeSquintRight", "NoseSneer", "JawForward", "LipSuckUpper", "LipSuckLower",
        "LipFunnel", "LipPucker", "MouthUpperUpLeft", "MouthUpperUpRight", "MouthLowerDown",
        "MouthStretchLeft", "MouthStretchRight", "MouthRaiserUpper", "MouthRaiserLower", "MouthPress",
        "TongueOut")},
    **{name: 3 for name in (
        "BrowExpressionLeft", "BrowExpressionRight", "CheekPuffSuckLeft", "CheekPuffSuckRight", "JawX", "MouthX",
        "SmileFrownLeft", "SmileFrownRight")},
}
#: More bits than this would need more than 8 booleans per parameter; no template uses over 4.
MAX_BITS = 8


def _gaze_tan(degrees: float) -> float:
    """VRCFaceTracking's gaze value for an angle: tan(angle), ±1 at ±45°."""
    if not math.isfinite(degrees):
        return 0.0
    return clamp(math.tan(math.radians(clamp(degrees, -89.0, 89.0))), -1.0, 1.0)


def unified_expressions(frame: MotionFrame) -> dict[str, float]:
    """Unified Expressions v2 parameter name -> value (0..1, or -1..1 for `SIGNED`) for one frame.

    ARKit input is mapped as VRCFaceTracking's LiveLink module does (mouthRoll
    -> LipSuck, mouthShrug -> MouthRaiser, mouthClose -> MouthClosed,
    cheekPuff -> CheekPuffSuck), then combined with VRCFaceTracking's formulas:
    EyeLid = 0.75·openness + 0.25·wide; SmileFrown = smile − frown;
    BrowExpression = min(1, ½·innerUp + ½·outerUp) − browDown (+1 worried,
    −1 angry); MouthSad = max(frown, stretch); MouthX = right − left; gaze
    X/Y = tan(angle).
    """
    a = {name: clamp(value, 0.0, 1.0) for name, value in frame.arkit().items()}

    def mean(left: str, right: str) -> float:
        return (a[left] + a[right]) / 2.0

    open_left = 1.0 - clamp(frame.blink.left, 0.0, 1.0)
    open_right = 1.0 - clamp(frame.blink.right, 0.0, 1.0)
    eye_x = _gaze_tan(-frame.gaze.yaw)
    eye_y = _gaze_tan(frame.gaze.pitch)
    upper_up = mean("mouthUpperUpLeft", "mouthUpperUpRight")
    lower_down = mean("mouthLowerDownLeft", "mouthLowerDownRight")
    smile_frown_left = a["mouthSmileLeft"] - a["mouthFrownLeft"]
    smile_frown_right = a["mouthSmileRight"] - a["mouthFrownRight"]
    brow_left = min(1.0, 0.5 * a["browInnerUp"] + 0.5 * a["browOuterUpLeft"]) - a["browDownLeft"]
    brow_right = min(1.0, 0.5 * a["browInnerUp"] + 0.5 * a["browOuterUpRight"]) - a["browDownRight"]
    params = {
        # jaw and lips
        "JawOpen": a["jawOpen"],
        "JawForward": a["jawForward"],
        "JawX": a["jawRight"] - a["jawLeft"],
        "MouthClosed": a["mouthClose"],
        "LipFunnel": a["mouthFunnel"],
        "LipPucker": a["mouthPucker"],
        "LipSuckUpper": a["mouthRollUpper"],
        "LipSuckLower": a["mouthRollLower"],
        "MouthUpperUpLeft": a["mouthUpperUpLeft"],
        "MouthUpperUpRight": a["mouthUpperUpRight"],
        "MouthUpperUp": upper_up,
        "MouthLowerDownLeft": a["mouthLowerDownLeft"],
        "MouthLowerDownRight": a["mouthLowerDownRight"],
        "MouthLowerDown": lower_down,
        "MouthOpen": (upper_up + lower_down) / 2.0,
        "MouthX": a["mouthRight"] - a["mouthLeft"],
        "MouthStretchLeft": a["mouthStretchLeft"],
        "MouthStretchRight": a["mouthStretchRight"],
        "MouthSmileLeft": a["mouthSmileLeft"],
        "MouthSmileRight": a["mouthSmileRight"],
        "MouthFrownLeft": a["mouthFrownLeft"],
        "MouthFrownRight": a["mouthFrownRight"],
        "MouthSadLeft": max(a["mouthFrownLeft"], a["mouthStretchLeft"]),
        "MouthSadRight": max(a["mouthFrownRight"], a["mouthStretchRight"]),
        "SmileFrownLeft": smile_frown_left,
        "SmileFrownRight": smile_frown_right,
        "SmileFrown": (smile_frown_left + smile_frown_right) / 2.0,
        "MouthPressLeft": a["mouthPressLeft"],
        "MouthPressRight": a["mouthPressRight"],
        "MouthPress": mean("mouthPressLeft", "mouthPressRight"),
        "MouthRaiserUpper": a["mouthShrugUpper"],
        "MouthRaiserLower": a["mouthShrugLower"],
        "TongueOut": a["tongueOut"],
        # eyes
        "EyeLidLeft": EYELID_OPEN * open_left + (1.0 - EYELID_OPEN) * a["eyeWideLeft"],
        "EyeLidRight": EYELID_OPEN * open_right + (1.0 - EYELID_OPEN) * a["eyeWideRight"],
        "EyeLid": EYELID_OPEN * (open_left + open_right) / 2.0 + (1.0 - EYELID_OPEN) * mean("eyeWideLeft",
                                                                                              "eyeWideRight"),
        "EyeOpenLeft": open_left,
        "EyeOpenRight": open_right,
        "EyeOpen": (open_left + open_right) / 2.0,
        "EyeClosedLeft": 1.0 - open_left,
        "EyeClosedRight": 1.0 - open_right,
        "EyeClosed": 1.0 - (open_left + open_right) / 2.0,
        "EyeSquintLeft": a["eyeSquintLeft"],
        "EyeSquintRight": a["eyeSquintRight"],
        "EyeSquint": max(a["eyeSquintLeft"], a["eyeSquintRight"]),
        "EyeWideLeft": a["eyeWideLeft"],
        "EyeWideRight": a["eyeWideRight"],
        "EyeWide": max(a["eyeWideLeft"], a["eyeWideRight"]),
        "EyeLeftX": eye_x,
        "EyeLeftY": eye_y,
        "EyeRightX": eye_x,
        "EyeRightY": eye_y,
        "EyeX": eye_x,
        "EyeY": eye_y,
        # brows, cheeks, nose
        "BrowInnerUp": a["browInnerUp"],
        "BrowOuterUpLeft": a["browOuterUpLeft"],
        "BrowOuterUpRight": a["browOuterUpRight"],
        "BrowOuterUp": mean("browOuterUpLeft", "browOuterUpRight"),
        "BrowDownLeft": a["browDownLeft"],
        "BrowDownRight": a["browDownRight"],
        "BrowExpressionLeft": brow_left,
        "BrowExpressionRight": brow_right,
        "CheekPuffSuckLeft": a["cheekPuff"],
        "CheekPuffSuckRight": a["cheekPuff"],
        "CheekPuffSuck": a["cheekPuff"],
        "CheekSquintLeft": a["cheekSquintLeft"],
        "CheekSquintRight": a["cheekSquintRight"],
        "NoseSneerLeft": a["noseSneerLeft"],
        "NoseSneerRight": a["noseSneerRight"],
        "NoseSneer": mean("noseSneerLeft", "noseSneerRight"),
    }
    return {name: clamp(value, -1.0 if name in SIGNED else 0.0, 1.0) for name, value in params.items()}


#: Every v2 name facecast sends, in sending order.
FLOAT_NAMES: tuple[str, ...] = tuple(unified_expressions(MotionFrame(t=0.0)))
#: An avatar with any of these animates its own eyelids / gaze: VRChat's native eye tracking then stays off
#: for that part, as VRCFaceTracking does (its NativeParameter conditions), so two sources never fight.
EYELID_NAMES = frozenset({"EyeLidLeft", "EyeLidRight", "EyeLid", "EyeOpenLeft", "EyeOpenRight", "EyeOpen",
                          "EyeClosedLeft", "EyeClosedRight", "EyeClosed"})
GAZE_NAMES = frozenset({"EyeLeftX", "EyeLeftY", "EyeRightX", "EyeRightY", "EyeX", "EyeY"})


def native_eye_tracking(frame: MotionFrame, lids: bool = True, gaze: bool = True) -> list[OscMessageSpec]:
    """VRChat's own eye-tracking input: eyelids closed (0..1) and both eyes' pitch/yaw in degrees.

    VRChat's convention is the user's: +pitch = down, +yaw = to the user's
    right. facecast's gaze is the viewer's: pitch > 0 up, yaw > 0 towards image
    right, which is the subject's left; so both change sign. VRChat takes one
    eyelid value for both eyes (no winks yet): the mean of the two blinks.
    """
    closed = clamp((clamp(frame.blink.left, 0.0, 1.0) + clamp(frame.blink.right, 0.0, 1.0)) / 2.0, 0.0, 1.0)
    pitch = clamp(-frame.gaze.pitch, -89.0, 89.0)
    yaw = clamp(-frame.gaze.yaw, -89.0, 89.0)
    # Both eyes get the same angles (facecast has one gaze), so the pairs' order cannot be mixed up.
    return [*([(EYES_CLOSED_ADDRESS, (closed,))] if lids else []),
            *([(EYE_LOOK_ADDRESS, (pitch, yaw, pitch, yaw))] if gaze else [])]


def binary_bits(value: float, bits: int, negative: bool = True) -> tuple[tuple[bool, ...], bool]:
    """VRCFaceTracking's binary encoding of `value` in `bits` bits: (bit 0 .. bit N-1, Negative).

    The rule of VRCFaceTracking's ``BinaryBaseParameter`` (since 2025-07,
    "Fixed incorrect float to binary conversion"): k = floor(|v|·2^N), or
    every bit set when |v| > 0.99999; Negative = v < 0. Without a Negative
    parameter (`negative` False) a negative value sends all bits false, as
    VRCFaceTracking does. The avatar decodes ±k / (2^N − 1), within 1/2^N of v.
    """
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be 1-{MAX_BITS}, got {bits}")
    if not math.isfinite(value):
        value = 0.0
    magnitude = abs(value)
    top = (1 << bits) - 1
    k = top if magnitude > 0.99999 else min(int(magnitude * (1 << bits)), top)
    if value < 0 and not negative:
        k = 0
    return tuple(bool(k >> i & 1) for i in range(bits)), value < 0


def parse_binary_spec(text: str | None) -> dict[str, int]:
    """Bit counts per parameter from ``"Name=N,Name=N"`` over `TEMPLATE_BINARY` (N = 0: float only).

    ``""``/None keeps the template's counts; ``"none"`` sends no bits at all.
    Raises ValueError (one line) for unknown names or counts.
    """
    counts = dict(TEMPLATE_BINARY)
    raw = (text or "").strip()
    if not raw:
        return counts
    if raw.lower() == "none":
        return {}
    for item in raw.split(","):
        name, sep, count = item.strip().partition("=")
        name = name.strip()
        if not sep or name not in FLOAT_NAMES or not count.strip().isdigit() \
                or not 0 <= int(count) <= MAX_BITS:
            raise ValueError(f"--vrchat-binary: {item.strip()!r} must be NAME=BITS with a v2 name facecast sends "
                             f"and BITS 0-{MAX_BITS}, e.g. JawOpen=4,MouthX=3")
        if int(count):
            counts[name] = int(count)
        else:
            counts.pop(name, None)
    return counts


# --------------------------------------------------------------------------- an avatar's parameters

_V2 = re.compile(r"^/avatar/parameters/(?:.*/)?v2/(?P<name>[A-Za-z]+?)(?P<suffix>\d+|Negative)?$")
_FLAG = re.compile(r"^/avatar/parameters/(?:.*/)?(?P<name>" + "|".join(TRACKING_FLAGS) + ")$")


@dataclass(frozen=True)
class _Binary:
    name: str
    bits: tuple[str, ...]           # address of bit i (worth 2^i)
    negative: str | None            # address of <Name>Negative, if any


@dataclass
class AvatarParameters:
    """The writable parameters of one avatar, from the OSC config VRChat writes for it.

    VRChat writes ``OSC/<user id>/Avatars/<avatar id>.json`` (docs.vrchat.com
    "OSC Avatar Parameters"): ``{"id", "name", "parameters": [{"name",
    "input": {"address", "type": "Int"|"Bool"|"Float"}, "output": {...}}]}``.
    Parameters without ``input`` are read-only and ignored.
    """

    id: str
    name: str
    inputs: dict[str, str] = field(default_factory=dict)  # OSC address -> "Float" | "Bool" | "Int"

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> "AvatarParameters":
        """Parse VRChat's avatar OSC config (a decoded JSON object); ValueError if it is not one."""
        if not isinstance(data, Mapping) or not isinstance(data.get("parameters"), list):
            raise ValueError("not a VRChat avatar OSC config (no 'parameters' list)")
        inputs: dict[str, str] = {}
        for parameter in data["parameters"]:
            source = parameter.get("input") if isinstance(parameter, Mapping) else None
            if isinstance(source, Mapping) and isinstance(source.get("address"), str) \
                    and source.get("type") in ("Float", "Bool", "Int"):
                inputs[source["address"]] = source["type"]
        return cls(str(data.get("id", "")), str(data.get("name", "")), inputs)


@dataclass(frozen=True)
class AvatarReport:
    """What an avatar's parameter list changed: which of facecast's parameters it lacks."""

    avatar: AvatarParameters
    driven: tuple[str, ...]          # v2 names (and flags) the avatar has, as float or bits
    lacking: tuple[str, ...]         # names facecast would send that the avatar has in no form
    binary: dict[str, int]           # name -> bit count found on the avatar
    native: tuple[str, ...] = ()     # the native eye-tracking parts still sent: "eyelids", "gaze"

    def summary(self) -> str:
        """The one log line: which avatar, how many parameters are driven, which it lacks."""
        who = f"VRChat avatar {self.avatar.name or '(unnamed)'!r} ({self.avatar.id or 'no id'})"
        native = f"VRChat's native eye tracking ({' and '.join(self.native)})" if self.native else ""
        if not self.driven:
            return (f"{who} has no VRCFaceTracking parameters: sending only {native or 'nothing'} "
                    f"({len(self.avatar.inputs)} parameters in its OSC config)")
        bits = f", {len(self.binary)} with binary sync" if self.binary else ", none with binary sync"
        also = f", plus {native}" if native else ""
        lacking = f"; it lacks {len(self.lacking)}: {', '.join(self.lacking)}" if self.lacking else "; it lacks none"
        return f"{who}: sending {len(self.driven)} face-tracking parameters{bits}{also}{lacking}"


# --------------------------------------------------------------------------- the encoder

class VrchatEncoder:
    """MotionFrame -> OSC bundles for VRChat: native eye tracking, v2 floats, their bits, the template flags.

    Without an avatar parameter list every message goes to the default
    addresses (``/avatar/parameters/<prefix><Name>``, bits per `binary`, the
    flags under their bare names): an avatar ignores what it lacks. With one
    (`set_avatar`), only the avatar's own addresses are sent, under whatever
    prefix it uses (any ``…/v2/<Name>``), with the bit counts it declares.
    """

    def __init__(self, prefix: str = DEFAULT_PREFIX, *, binary: Mapping[str, int] | None = None,
                 native_eyes: bool = True, refresh_s: float = REFRESH_S) -> None:
        bad = sorted(set(prefix) & OSC_RESERVED)
        if bad or prefix.startswith("/") or "//" in prefix:
            raise ValueError(f"invalid VRChat parameter prefix {prefix!r}: no leading '/', no '//', "
                             f"none of {''.join(sorted(OSC_RESERVED))!r}")
        binary = dict(TEMPLATE_BINARY if binary is None else binary)
        unknown = sorted(set(binary) - set(FLOAT_NAMES))
        if unknown or any(not 1 <= n <= MAX_BITS for n in binary.values()):
            raise ValueError(f"binary bit counts must be 1-{MAX_BITS} for names facecast sends (got {binary})")
        self.prefix = prefix
        self.native_eyes = native_eyes
        self.refresh_s = refresh_s
        self.binary = binary
        self.avatar: AvatarParameters | None = None
        self._native = (native_eyes, native_eyes)  # eyelids, gaze
        self._last: dict[str, tuple] = {}
        self._refreshed_at: float | None = None
        self._default_layout()

    def address(self, name: str) -> str:
        """The default OSC address of one v2 parameter."""
        return f"{PARAMETER_ROOT}{self.prefix}{name}"

    # ---- where each value goes

    def _default_layout(self) -> None:
        self._floats: dict[str, tuple[str, ...]] = {name: (self.address(name),) for name in FLOAT_NAMES}
        self._bits: list[_Binary] = [
            _Binary(name, tuple(self.address(f"{name}{1 << i}") for i in range(count)),
                    self.address(f"{name}Negative") if name in SIGNED else None)
            for name, count in self.binary.items()]
        self._flags: tuple[str, ...] = tuple(PARAMETER_ROOT + flag for flag in TRACKING_FLAGS)

    def set_avatar(self, avatar: AvatarParameters | None) -> AvatarReport | None:
        """Send only what `avatar` has (None: back to the default addresses); report what it lacks."""
        self.avatar = avatar
        self._last.clear()
        self._refreshed_at = None
        if avatar is None:
            self._native = (self.native_eyes, self.native_eyes)
            self._default_layout()
            return None
        floats: dict[str, list[str]] = {}
        bits: dict[str, dict[int, str]] = {}
        negatives: dict[str, str] = {}
        flags: list[str] = []
        for address, kind in sorted(avatar.inputs.items()):
            flag = _FLAG.match(address)
            if flag and kind == "Bool":
                flags.append(address)
                continue
            match = _V2.match(address)
            if not match or match["name"] not in FLOAT_NAMES:
                continue
            name, suffix = match["name"], match["suffix"]
            if suffix is None and kind == "Float":
                floats.setdefault(name, []).append(address)
            elif suffix == "Negative" and kind == "Bool":
                negatives[name] = address
            elif suffix is not None and suffix.isdigit() and kind == "Bool":
                power = int(suffix)
                if power > 0 and power & (power - 1) == 0:  # VRCFaceTracking keeps powers of two only
                    bits.setdefault(name, {})[power] = address
        self._floats = {name: tuple(floats[name]) for name in FLOAT_NAMES if name in floats}
        self._bits = [_Binary(name, tuple(found[p] for p in sorted(found))[:MAX_BITS], negatives.get(name))
                      for name, found in ((n, bits[n]) for n in FLOAT_NAMES if n in bits)]
        self._flags = tuple(flags)
        present_flags = {_FLAG.match(a)["name"] for a in flags}
        driven = [n for n in FLOAT_NAMES if n in self._floats or n in bits]
        lacking = [n for n in (*FLOAT_NAMES, *TRACKING_FLAGS)
                   if n not in self._floats and n not in bits and n not in present_flags]
        self._native = (self.native_eyes and not EYELID_NAMES & set(driven),
                        self.native_eyes and not GAZE_NAMES & set(driven))
        native = tuple(part for part, on in zip(("eyelids", "gaze"), self._native) if on)
        return AvatarReport(avatar, tuple(driven + sorted(present_flags)), tuple(lacking),
                            {b.name: len(b.bits) for b in self._bits}, native)

    # ---- what one frame sends

    def messages(self, frame: MotionFrame) -> list[OscMessageSpec]:
        """Every message of one frame, in order (pure: `encode` sends only the changed ones)."""
        out: list[OscMessageSpec] = []
        if any(self._native):
            out.extend(native_eye_tracking(frame, *self._native))
        values = unified_expressions(frame)
        for name, addresses in self._floats.items():
            out.extend((address, (values[name],)) for address in addresses)
        for binary in self._bits:
            flags, negative = binary_bits(values[binary.name], len(binary.bits), binary.negative is not None)
            out.extend((address, (bit,)) for address, bit in zip(binary.bits, flags))
            if binary.negative is not None:
                out.append((binary.negative, (negative,)))
        out.extend((address, (True,)) for address in self._flags)
        return out

    def encode(self, frame: MotionFrame) -> list[bytes]:
        """The frame's datagrams: what changed since the last frame, or everything once per `refresh_s`."""
        messages = self.messages(frame)
        since = None if self._refreshed_at is None else frame.t - self._refreshed_at
        if since is None or not 0.0 <= since < self.refresh_s:  # first frame, refresh due, or time went back
            self._refreshed_at = frame.t
            changed = messages
        else:
            changed = [(address, args) for address, args in messages if self._last.get(address) != tuple(args)]
        self._last.update((address, tuple(args)) for address, args in changed)
        return osc_bundles(changed, MAX_DATAGRAM) if changed else []

    def farewell(self) -> list[bytes]:
        """Datagrams to send when stopping: the tracking flags off, so the avatar's own animation returns."""
        if not self._flags:
            return []
        return osc_bundles([(address, (False,)) for address in self._flags], MAX_DATAGRAM)
