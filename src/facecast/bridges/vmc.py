"""VMC protocol encoding: drive a 3D (VRM) avatar in VSeeFace, VMagicMirror, Warudo, VNyan, VirtualMotionCapture ...

`VmcEncoder` turns one `MotionFrame` into the datagrams a VMC sender sends
per frame (pure: no sockets, no clock); `facecast.bridges.osc_udp.VmcSender`
sends them over UDP. facecast plays one of the protocol's two sending roles
(protocol.vmc.info, ``performer-spec``):

**Performer** (to a Marionette, usually port 39539), per frame:

1. a bundle of ``/VMC/Ext/Bone/Pos`` for ``Neck`` then ``Head``
   (``s`` name + 7 ``f``: local position, local rotation quaternion);
2. bundles of ``/VMC/Ext/Blend/Val`` (``s`` name, ``f`` value) for every
   blendshape of the chosen name set, the last one ending with
   ``/VMC/Ext/Blend/Apply``;
3. a bundle of ``/VMC/Ext/OK`` (``i`` 1) and ``/VMC/Ext/T`` (``f`` frame time).

**Assistant** (to a Performer, usually port 39540): a Performer accepts only
blendshapes, ``Set/Eye`` and virtual trackers from an Assistant, not bones,
so per frame:

1. a bundle with one ``/VMC/Ext/Tra/Pos`` (``s`` serial `TRACKER_SERIAL`,
   7 ``f``: position, rotation): the head as a virtual tracker, which the
   user assigns to the head in the Performer (e.g. VirtualMotionCapture's
   tracker settings);
2. the blendshape bundles, as above.

No ``Bone/Pos``, ``Root/Pos``, ``OK`` or ``T`` then: those are the
Performer's own messages to its Marionette.

Every datagram stays within `MAX_DATAGRAM` (1,472 bytes): the 52 "perfect
sync" blendshapes (about 2.5 kB) go out as several complete bundles, with
``Blend/Apply`` in the last (receivers such as uOSC handle a bundle like
consecutive messages, so splitting is safe; the reference Performer splits at
1,200 bytes).

``/VMC/Ext/Root/Pos`` is deliberately not sent: it places the whole avatar in
the receiver's world, which a head-only sender has no business doing. Head
translation (``x``/``y``/``distance``) therefore has no VMC output.
"""

from __future__ import annotations

import math
from typing import Callable

from facecast.bridges.osc import MAX_DATAGRAM, OscInt, OscMessageSpec, clamp, osc_bundle, osc_bundles
from facecast.motion import GAZE_FULL_SCALE_DEG, MotionFrame

__all__ = [
    "ASSISTANT_PORT", "BONE_OFFSETS", "DEFAULT_HOST", "NAME_SETS", "PERFORMER_PORT", "ROLES", "TRACKER_SERIAL",
    "VmcEncoder", "arkit_blendshapes", "parse_bone_offsets", "role_for_port", "unity_rotation",
    "vrm0_blendshapes", "vrm1_blendshapes",
]

DEFAULT_HOST = "127.0.0.1"
#: A Marionette (the avatar renderer) listens here for a Performer.
PERFORMER_PORT = 39539
#: A Performer listens here for Assistants that add bones or expressions.
ASSISTANT_PORT = 39540

#: Share of the head rotation given to the neck; the head bone turns by the rest.
NECK_SHARE = 0.4

#: The two sending roles: to a Marionette (all bones) or to a Performer (trackers and blendshapes).
ROLES = ("performer", "assistant")

Vector = tuple[float, float, float]
BoneOffsets = tuple[Vector, Vector]  # Neck, Head
Quaternion = tuple[float, float, float, float]  # x, y, z, w

#: Local bone positions (metres, parent space) of a typical VRM humanoid: Neck
#: above the upper chest, Head above the neck. Most receivers apply only
#: rotations for these bones, but some (EasyVirtualMotionCaptureForUnity and
#: apps built on it, with "BonePositionSynchronize", its default) also apply
#: positions, which then replace the model's own proportions: such users
#: either untick that option or give their model's offsets
#: (``--vmc-bone-offsets``, `parse_bone_offsets`).
BONE_OFFSETS: BoneOffsets = ((0.0, 0.10, 0.0), (0.0, 0.08, 0.0))
NECK_POSITION, HEAD_POSITION = BONE_OFFSETS

#: The virtual tracker an Assistant sends for the head, and its fixed position
#: (metres, avatar scale, Unity world: a seated head about 1.4 m up).
TRACKER_SERIAL = "facecast_head"
TRACKER_POSITION: Vector = (0.0, 1.4, 0.0)


def role_for_port(port: int) -> str:
    """"assistant" for the Performer's usual Assistant port (39540), else "performer"."""
    return "assistant" if port == ASSISTANT_PORT else "performer"


def parse_bone_offsets(text: str) -> BoneOffsets:
    """``"NECK_Y,HEAD_Y"`` or ``"NX,NY,NZ,HX,HY,HZ"`` (metres) -> the Neck and Head local positions.

    Raises ValueError with a one-line message for anything else.
    """
    try:
        numbers = [float(part) for part in text.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) not in (2, 6) or not all(math.isfinite(n) and abs(n) <= 10.0 for n in numbers):
        raise ValueError(f"--vmc-bone-offsets: {text!r} must be NECK_Y,HEAD_Y or NX,NY,NZ,HX,HY,HZ in metres, "
                         "e.g. 0.10,0.08")
    if len(numbers) == 2:
        return (0.0, numbers[0], 0.0), (0.0, numbers[1], 0.0)
    return (numbers[0], numbers[1], numbers[2]), (numbers[3], numbers[4], numbers[5])


def _axis_rotation(axis: int, degrees: float) -> Quaternion:
    half = math.radians(degrees) / 2.0
    xyz = [0.0, 0.0, 0.0]
    xyz[axis] = math.sin(half)
    return xyz[0], xyz[1], xyz[2], math.cos(half)


def _multiply(a: Quaternion, b: Quaternion) -> Quaternion:
    """Hamilton product a*b (apply b, then a), the same formula Unity's `Quaternion *` uses."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz)


def unity_rotation(yaw: float, pitch: float, roll: float) -> Quaternion:
    """A facecast head rotation (degrees) as a Unity local-rotation quaternion (x, y, z, w).

    Unity is left-handed with +X right, +Y up, +Z forward, and a humanoid
    avatar faces +Z, so its own right is +X. A camera in front of it looks
    along -Z, so *image right is the avatar's left (-X)*, matching facecast's
    non-mirrored image convention (the subject's left eye is on image right).
    Unity rotations follow the left-hand rule; numerically
    ``Euler(0, +90, 0)`` turns +Z (forward) to +X, ``Euler(+90, 0, 0)`` turns
    forward to -Y (down) and ``Euler(0, 0, +90)`` turns +Y (up) to -X.
    Hence all three facecast angles change sign:

    * yaw > 0 (nose to image right, the avatar's -X)  -> Unity Y angle = -yaw
    * pitch > 0 (chin up, nose to +Y)                 -> Unity X angle = -pitch
    * roll > 0 (counter-clockwise for the viewer: the top of the head moves
      to image left, the avatar's +X)                 -> Unity Z angle = -roll

    composed like Unity's ``Quaternion.Euler``: Z first, then X, then Y
    (q = qY * qX * qZ), so receivers that log Euler angles show ours back.
    """
    qx = _axis_rotation(0, -pitch)
    qy = _axis_rotation(1, -yaw)
    qz = _axis_rotation(2, -roll)
    return _multiply(qy, _multiply(qx, qz))


def _mean(frame: MotionFrame, left: str, right: str) -> float:
    return clamp((frame.expression(left) + frame.expression(right)) / 2.0, 0.0, 1.0)


def vrm0_blendshapes(frame: MotionFrame) -> dict[str, float]:
    """VRM 0.x preset clip weights, the names every VMC receiver knows.

    * ``A I U E O`` are the viseme weights (they already include how voiced the
      frame is, and sum to at most 1 with silence taking the rest).
    * ``Blink`` carries the part both eyes share and ``Blink_L``/``Blink_R``
      the rest, so models with only ``Blink`` still blink and models with all
      three never close an eye twice (clips add up). ``Blink_L`` is the
      subject's (avatar's) left eye, on image right.
    * ``Joy`` from the smile, ``Angry`` from lowered brows, ``Sorrow`` from
      mouth-corner frowns. ``Fun`` has no source in the motion and is not sent
      (a constant 0 would only override the user's own hotkeys).
    * ``Look*`` are the avatar's own directions (UniVRM's look-at applies
      ``LookLeft`` for targets on the avatar's left, which is image right):
      gaze yaw > 0 -> ``LookLeft``. Full scale at `GAZE_FULL_SCALE_DEG`.
    """
    both = min(frame.blink.left, frame.blink.right)
    horizontal = clamp(frame.gaze.yaw / GAZE_FULL_SCALE_DEG, -1.0, 1.0)
    vertical = clamp(frame.gaze.pitch / GAZE_FULL_SCALE_DEG, -1.0, 1.0)
    shapes = {vowel: frame.visemes.get(vowel, 0.0) for vowel in ("A", "I", "U", "E", "O")}
    shapes.update({
        "Blink": both,
        "Blink_L": frame.blink.left - both,
        "Blink_R": frame.blink.right - both,
        "Joy": _mean(frame, "mouthSmileLeft", "mouthSmileRight"),
        "Angry": _mean(frame, "browDownLeft", "browDownRight"),
        "Sorrow": _mean(frame, "mouthFrownLeft", "mouthFrownRight"),
        "LookUp": max(vertical, 0.0),
        "LookDown": max(-vertical, 0.0),
        "LookLeft": max(horizontal, 0.0),
        "LookRight": max(-horizontal, 0.0),
    })
    return {name: clamp(value, 0.0, 1.0) for name, value in shapes.items()}


#: VRM 1.0 expression names for the VRM 0.x presets we send (VRMC_vrm-1.0 expressions.md).
VRM0_TO_VRM1 = {
    "A": "aa", "I": "ih", "U": "ou", "E": "ee", "O": "oh",
    "Blink": "blink", "Blink_L": "blinkLeft", "Blink_R": "blinkRight",
    "Joy": "happy", "Angry": "angry", "Sorrow": "sad",
    "LookUp": "lookUp", "LookDown": "lookDown", "LookLeft": "lookLeft", "LookRight": "lookRight",
}


def vrm1_blendshapes(frame: MotionFrame) -> dict[str, float]:
    """The `vrm0_blendshapes` weights under VRM 1.0 expression names (aa, blinkLeft, happy, lookUp ...)."""
    return {VRM0_TO_VRM1[name]: value for name, value in vrm0_blendshapes(frame).items()}


def arkit_blendshapes(frame: MotionFrame) -> dict[str, float]:
    """All 52 ARKit coefficients as "perfect sync" clip names: UpperCamelCase (JawOpen, EyeBlinkLeft ...)."""
    return {name[0].upper() + name[1:]: clamp(value, 0.0, 1.0) for name, value in frame.arkit().items()}


NAME_SETS: dict[str, Callable[[MotionFrame], dict[str, float]]] = {
    "vrm0": vrm0_blendshapes,
    "vrm1": vrm1_blendshapes,
    "arkit": arkit_blendshapes,
}


class VmcEncoder:
    """MotionFrame -> the per-frame VMC datagrams of a Performer or an Assistant (pure: no sockets, no clock)."""

    def __init__(self, names: str = "vrm0", neck_share: float = NECK_SHARE, *, role: str = "performer",
                 bone_offsets: BoneOffsets = BONE_OFFSETS, max_datagram: int = MAX_DATAGRAM) -> None:
        if names not in NAME_SETS:
            raise ValueError(f"unknown blendshape name set {names!r}: use {', '.join(NAME_SETS)}")
        if not 0.0 <= neck_share <= 1.0:
            raise ValueError(f"neck_share must be between 0 and 1, got {neck_share}")
        if role not in ROLES:
            raise ValueError(f"unknown VMC role {role!r}: use {' or '.join(ROLES)}")
        self.names = names
        self.neck_share = neck_share
        self.role = role
        self.bone_offsets = bone_offsets
        self.max_datagram = max_datagram
        self._blendshapes = NAME_SETS[names]

    @staticmethod
    def _angles(frame: MotionFrame) -> tuple[float, float, float]:
        head = frame.head
        return tuple(v if math.isfinite(v) else 0.0 for v in (head.yaw, head.pitch, head.roll))  # type: ignore

    def bones(self, frame: MotionFrame) -> list[OscMessageSpec]:
        """``Neck`` and ``Head`` local poses; together they turn the head by the frame's yaw/pitch/roll."""
        yaw, pitch, roll = self._angles(frame)
        out = []
        for bone, share, position in (("Neck", self.neck_share, self.bone_offsets[0]),
                                      ("Head", 1.0 - self.neck_share, self.bone_offsets[1])):
            rotation = unity_rotation(share * yaw, share * pitch, share * roll)
            out.append(("/VMC/Ext/Bone/Pos", (bone, *position, *rotation)))
        return out

    def tracker(self, frame: MotionFrame) -> list[OscMessageSpec]:
        """The head as a virtual tracker (``/VMC/Ext/Tra/Pos``): fixed position, the head's full rotation."""
        rotation = unity_rotation(*self._angles(frame))
        return [("/VMC/Ext/Tra/Pos", (TRACKER_SERIAL, *TRACKER_POSITION, *rotation))]

    def blendshapes(self, frame: MotionFrame) -> dict[str, float]:
        """Blendshape name -> weight in [0, 1] for the configured name set."""
        return self._blendshapes(frame)

    def encode(self, frame: MotionFrame) -> list[bytes]:
        """The frame's datagrams: head (bones or tracker), blendshapes + Apply, and (Performer) OK + time."""
        blend: list[OscMessageSpec] = [("/VMC/Ext/Blend/Val", (name, value))
                                       for name, value in self.blendshapes(frame).items()]
        blend.append(("/VMC/Ext/Blend/Apply", ()))
        if self.role == "assistant":
            return [osc_bundle(self.tracker(frame)), *osc_bundles(blend, self.max_datagram)]
        return [
            osc_bundle(self.bones(frame)),
            *osc_bundles(blend, self.max_datagram),
            osc_bundle([("/VMC/Ext/OK", (OscInt(1),)), ("/VMC/Ext/T", (frame.t,))]),
        ]
