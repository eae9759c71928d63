"""VRChat OSC encoding: drive a face-tracking avatar the way VRCFaceTracking does (pure).

VRChat receives OSC on UDP 9000 and maps ``/avatar/parameters/<Name>`` to
the avatar's parameters. Face-tracking avatars are built for VRCFaceTracking's
"Unified Expressions" v2 parameters (``v2/JawOpen``, ``v2/EyeLidLeft`` ...),
which VRCFaceTracking finds under any prefix. facecast sends them under
`DEFAULT_PREFIX` ``"FT/v2/"`` (``/avatar/parameters/FT/v2/JawOpen``), the
folder common face-tracking avatar setups use; pass ``prefix="v2/"`` for
avatars set up without it. An avatar simply ignores names it lacks.

* Only floats are sent: face-tracking floats are 0..1, or -1..1 for the
  signed ones (eye gaze). Binary-encoded variants (``JawOpen1/2/4/8``) are
  not produced.
* VRChat's built-in ``Voice`` and ``Viseme`` parameters are read-only
  (VRChat computes them from its own microphone input), so they are not sent.
* Bundles, not single messages: the receiver handles two datagrams per frame
  instead of ~40 (VRChat accepts both). Each bundle stays within one
  Ethernet frame (`MAX_DATAGRAM`) so a standalone headset on Wi-Fi never
  depends on IP fragments arriving.
* Left/Right are the subject's (avatar's) sides, as in the motion contract.
  VRCFaceTracking's gaze X is positive when the eye looks to the avatar's
  right, which is image *left*: facecast's gaze yaw > 0 (image right) gives
  a negative X.

`VrchatEncoder` builds the datagrams; `facecast.bridges.osc_udp.VrchatSender`
sends them over UDP.
"""

from __future__ import annotations

from facecast.bridges.osc import MAX_DATAGRAM, OSC_RESERVED, clamp, osc_bundles
from facecast.motion import MotionFrame

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DEFAULT_PREFIX", "VrchatEncoder", "unified_expressions"]

DEFAULT_HOST = "127.0.0.1"
#: VRChat's OSC input port (it sends on 9001).
DEFAULT_PORT = 9000
DEFAULT_PREFIX = "FT/v2/"
PARAMETER_ROOT = "/avatar/parameters/"

#: EyeLid value of a relaxed open eye: 0..0.75 is openness, 0.75..1 widening.
EYELID_OPEN = 0.75
#: Gaze angle (degrees) that maps to |EyeX/Y| = 1 (VRCFaceTracking normalises 0..45 degrees to 0..1).
VRCFT_GAZE_FULL_SCALE_DEG = 45.0


def _eyelid(blink: float, wide: float) -> float:
    openness = 1.0 - clamp(blink, 0.0, 1.0)
    return openness * (EYELID_OPEN + (1.0 - EYELID_OPEN) * clamp(wide, 0.0, 1.0))


def unified_expressions(frame: MotionFrame) -> dict[str, float]:
    """Unified Expressions v2 parameter name -> value (floats in range) for one frame."""
    a = frame.arkit()

    def mean(left: str, right: str) -> float:
        return (a[left] + a[right]) / 2.0

    upper_up = mean("mouthUpperUpLeft", "mouthUpperUpRight")
    lower_down = mean("mouthLowerDownLeft", "mouthLowerDownRight")
    eye_x = clamp(-frame.gaze.yaw / VRCFT_GAZE_FULL_SCALE_DEG, -1.0, 1.0)
    eye_y = clamp(frame.gaze.pitch / VRCFT_GAZE_FULL_SCALE_DEG, -1.0, 1.0)
    params = {
        "JawOpen": a["jawOpen"],
        "MouthClosed": a["mouthClose"],
        "LipFunnel": a["mouthFunnel"],
        "LipPucker": a["mouthPucker"],
        "MouthUpperUp": upper_up,
        "MouthLowerDown": lower_down,
        "MouthOpen": (upper_up + lower_down) / 2.0,
        "MouthStretchLeft": a["mouthStretchLeft"],
        "MouthStretchRight": a["mouthStretchRight"],
        "MouthSmileLeft": a["mouthSmileLeft"],
        "MouthSmileRight": a["mouthSmileRight"],
        "MouthSadLeft": a["mouthFrownLeft"],
        "MouthSadRight": a["mouthFrownRight"],
        "MouthPressLeft": a["mouthPressLeft"],
        "MouthPressRight": a["mouthPressRight"],
        "EyeLidLeft": _eyelid(frame.blink.left, a["eyeWideLeft"]),
        "EyeLidRight": _eyelid(frame.blink.right, a["eyeWideRight"]),
        "EyeSquintLeft": a["eyeSquintLeft"],
        "EyeSquintRight": a["eyeSquintRight"],
        "EyeLeftX": eye_x,
        "EyeLeftY": eye_y,
        "EyeRightX": eye_x,
        "EyeRightY": eye_y,
        "EyeX": eye_x,
        "EyeY": eye_y,
        "BrowInnerUp": a["browInnerUp"],
        "BrowOuterUpLeft": a["browOuterUpLeft"],
        "BrowOuterUpRight": a["browOuterUpRight"],
        "BrowDownLeft": a["browDownLeft"],
        "BrowDownRight": a["browDownRight"],
        "CheekPuffSuck": a["cheekPuff"],
        "CheekSquintLeft": a["cheekSquintLeft"],
        "CheekSquintRight": a["cheekSquintRight"],
        "NoseSneerLeft": a["noseSneerLeft"],
        "NoseSneerRight": a["noseSneerRight"],
        "JawX": a["jawRight"] - a["jawLeft"],
        "TongueOut": a["tongueOut"],
    }
    signed = {"EyeLeftX", "EyeLeftY", "EyeRightX", "EyeRightY", "EyeX", "EyeY", "JawX"}
    return {name: clamp(value, -1.0 if name in signed else 0.0, 1.0) for name, value in params.items()}


class VrchatEncoder:
    """MotionFrame -> one OSC bundle of ``/avatar/parameters/<prefix><Name>`` floats (pure)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        bad = sorted(set(prefix) & OSC_RESERVED)
        if bad or prefix.startswith("/") or "//" in prefix:
            raise ValueError(f"invalid VRChat parameter prefix {prefix!r}: no leading '/', no '//', "
                             f"none of {''.join(sorted(OSC_RESERVED))!r}")
        self.prefix = prefix

    def address(self, name: str) -> str:
        """The OSC address of one parameter."""
        return f"{PARAMETER_ROOT}{self.prefix}{name}"

    def encode(self, frame: MotionFrame) -> list[bytes]:
        """The frame's datagrams: bundles of at most `MAX_DATAGRAM` bytes."""
        return osc_bundles([(self.address(name), (value,)) for name, value in unified_expressions(frame).items()],
                           MAX_DATAGRAM)
