"""The face model: what each motion channel does to the face mesh.

Each landmark channel (the expression channels of `facecast.motion.EXPRESSION_CHANNELS`
plus four head-turn parallax channels) is a sparse, anatomically motivated forward
displacement of mediapipe's 478 face-mesh landmarks at strength 1: jawOpen rotates the
lower lip and chin about the jaw hinge, a smile pulls the corners up and out, head yaw
and pitch move near points more than far ones, ... Blinks and gaze act per eye (`Eye`).

The renderer draws this model (`facecast.render.warp_basis` turns it into dense warp
fields) and motion extraction inverts it (`facecast.face.extraction` fits the landmark
motion of real video with these same displacements), so a channel means the same thing
in both. Changing a number here changes rendered output and extracted training data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facecast import face_regions as fr
from facecast.motion import EXPRESSION_CHANNELS

#: Head-turn parallax channels (image-space yaw and pitch, each direction on its own).
HEAD_CHANNELS = ("yaw+", "yaw-", "pitch+", "pitch-")
#: Channels defined by landmark displacements (the renderer also moves landmarks with them).
LANDMARK_CHANNELS = EXPRESSION_CHANNELS + HEAD_CHANNELS

#: Head turn the parallax channels are built for; other angles scale linearly. Much larger
#: turns (beyond ~20 deg) would need occlusion, which a 2-D warp cannot show.
PARALLAX_REF_DEG = 20.0
#: Share of mediapipe's landmark depth used for parallax: at 1.0 rendered turns measure closest
#: to the yaw asked for (see "Measurement notes" in benchmarks/README.md).
PARALLAX_DEPTH_GAIN = 1.0
#: Gaze angle (degrees) for the iris shifts below; gaze scales linearly.
GAZE_REF_DEG = 30.0
GAZE_SHIFT_X = 0.2    # of the eye width
GAZE_SHIFT_Y = 0.3    # of the eye opening

#: Jaw drop at jawOpen = 1 and other magnitudes, as fractions of face height (H) or mouth width (W).
JAW_DROP_H = 0.22          # a wide-open mouth: lips ~0.2 face heights apart
JAW_CORNER_TAPER = 0.6
#: eyeWide lifts the upper lid by this share of the local eye opening at full strength.
EYE_WIDE_LIFT = 0.3
BLINK_LOWER_RISE = 0.1      # of the eye opening: where the closed lids meet (near the lower lid)
BLINK_REACH_UP = 0.8        # eye openings of skin above the lid that stretch over the eye
BLINK_REACH_DOWN = 0.6
BLINK_LOWER_MARGIN = 0.45   # of the local opening: face meshes tend to put the lower lid a little high
BLINK_LASH_SKIP = 0.35      # of the local opening: the upper lash line above the lid, left out of the closed lid
EYE_CORNER_FADE = 0.25      # eye widths beyond the corners over which lid motion fades out

#: A portrait's own parted lips shut this share of the way by the upper lip coming down, the rest by the jaw rising.
REST_UPPER_SHARE = 0.35
#: Inner lips parted by more than this (face heights, centre gap) count as open: the face mesh reads shut lips at
#: about 0.0005 (the dataset's clips' 2nd percentile, median per corpus 0.0004-0.0013).
PARTED_LIPS_H = 0.008
#: Shut lips are left this far apart (face heights), so the upper and lower inner-lip points never coincide.
SHUT_GAP_H = 0.001
#: Extra points on each inner lip contour that a shutting warp passes through (`rest_closure`).
SEAM_POINTS = 24

#: Rigid head motion (roll) pivots about the neck: this many face heights below the chin.
NECK_PIVOT_BELOW_CHIN = 0.35


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """0 below edge0, 1 above edge1, a smooth cubic in between (edges may be reversed)."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@dataclass
class FaceFrame:
    """Face-aligned coordinates: u along the eye line (towards image right), v down the face."""

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    height: float       # forehead top to chin
    mouth_width: float

    @classmethod
    def from_landmarks(cls, lm: np.ndarray) -> "FaceFrame":
        right_eye = lm[list(fr.RIGHT_EYE), :2].mean(0)
        left_eye = lm[list(fr.LEFT_EYE), :2].mean(0)
        u = (left_eye - right_eye) / np.linalg.norm(left_eye - right_eye)
        v = np.array([-u[1], u[0]])
        return cls(origin=(left_eye + right_eye) / 2, u=u, v=v,
                   height=float(np.linalg.norm(lm[fr.FOREHEAD_TOP, :2] - lm[fr.CHIN, :2])),
                   mouth_width=float(np.linalg.norm(lm[fr.MOUTH_LEFT, :2] - lm[fr.MOUTH_RIGHT, :2])))

    def local(self, xy: np.ndarray) -> np.ndarray:
        d = xy - self.origin
        return np.stack([d @ self.u, d @ self.v], axis=-1)

    def from_local(self, uv: np.ndarray) -> np.ndarray:
        """Image positions of face coordinates (`local`'s inverse)."""
        return self.origin + self.to_image(uv)

    def to_image(self, duv: np.ndarray) -> np.ndarray:
        """A displacement in (u, v) as an image-space displacement."""
        return duv[..., :1] * self.u + duv[..., 1:2] * self.v


class Eye:
    """One eye's lid curves in face coordinates, for lid and gaze channels."""

    def __init__(self, uv: np.ndarray, upper: tuple[int, ...], lower: tuple[int, ...]) -> None:
        up, lo = uv[list(upper)], uv[list(lower)]
        self.upper_u, self.upper_v = up[np.argsort(up[:, 0])].T
        self.lower_u, self.lower_v = lo[np.argsort(lo[:, 0])].T
        self.u0, self.u1 = float(min(up[:, 0].min(), lo[:, 0].min())), float(max(up[:, 0].max(), lo[:, 0].max()))
        self.width = self.u1 - self.u0
        mid = (self.u0 + self.u1) / 2
        self.opening = float(max(self.lower_at(mid) - self.upper_at(mid), 1e-3))

    def along(self, u: np.ndarray) -> np.ndarray:
        """1 between the eye corners, fading to 0 a quarter eye width beyond them."""
        return 1 - smoothstep(0, EYE_CORNER_FADE * self.width, np.maximum(self.u0 - u, u - self.u1))

    def upper_at(self, u: np.ndarray) -> np.ndarray:
        return np.interp(u, self.upper_u, self.upper_v)

    def lower_at(self, u: np.ndarray) -> np.ndarray:
        return np.interp(u, self.lower_u, self.lower_v)

    def lid_motion(self, uv: np.ndarray, upper_travel: float, lower_travel: float,
                   reach_up: float, reach_down: float) -> np.ndarray:
        """v-displacements of all points for lids moving by a share of the local opening.

        Positive travel moves a lid down. Points between the lids follow
        linearly (the eyeball collapses under a closing lid); skin above and
        below follows with a falloff over `reach_*` eye openings.
        """
        u, v = uv[:, 0], uv[:, 1]
        top, bottom = self.upper_at(u), self.lower_at(u)
        gap = np.maximum(bottom - top, 0.0)
        d_top, d_bottom = upper_travel * gap, lower_travel * gap
        t = np.clip((v - top) / np.maximum(gap, 1e-3), 0.0, 1.0)
        dv = (1 - t) * d_top + t * d_bottom
        dv = np.where(v < top, d_top * (1 - smoothstep(0, reach_up * self.opening, top - v)), dv)
        dv = np.where(v > bottom, d_bottom * (1 - smoothstep(0, reach_down * self.opening, v - bottom)), dv)
        return dv * self.along(u)

    def blink_shift(self, uv: np.ndarray) -> np.ndarray:
        """Backward v-shift of a full blink at face coordinates uv (..., 2).

        Per column the skin above the lid, [top - reach, top], is stretched
        down over [top - reach, closed] and the lower lid's skin slightly up
        over [closed, bottom + reach] (a little below the lid is hidden too, as the
        mesh's lower lid tends to sit high), so the eye opening vanishes entirely
        (no iris left at blink = 1) and each column stays monotone, which keeps
        partial blinks (blends with the identity) free of folds.
        """
        u, v = uv[..., 0], uv[..., 1]
        top, bottom = self.upper_at(u), self.lower_at(u)
        gap = np.maximum(bottom - top, 0.0)
        closed = bottom - BLINK_LOWER_RISE * gap
        reach_up, reach_down = BLINK_REACH_UP * self.opening, BLINK_REACH_DOWN * self.opening
        start = top - reach_up
        lid = top - BLINK_LASH_SKIP * gap
        above = start + (v - start) * (lid - start) / np.maximum(closed - start, 1e-3)
        hidden = bottom + BLINK_LOWER_MARGIN * gap
        below = hidden + (v - closed) * (bottom + reach_down - hidden) / np.maximum(bottom + reach_down - closed, 1e-3)
        source = np.where((v >= start) & (v < closed), above,
                          np.where((v >= closed) & (v <= bottom + reach_down), below, v))
        return (source - v) * self.along(u)


@dataclass
class _MouthGeometry:
    """Per landmark: (a, b) about the inner-lip centre; how much it belongs to the lower jaw (0..1), to the lips
    (1 near them, 0 beyond 1.6 mouth radii), how far the jaw's turn reaches it, the lens the lips open as, and its
    depth in front of the ear line (mesh z units)."""

    a: np.ndarray
    b: np.ndarray
    lower: np.ndarray
    lips: np.ndarray
    reach: np.ndarray
    lens: np.ndarray
    before_ears: np.ndarray


def _mouth_geometry(lm: np.ndarray, uv: np.ndarray, W: float) -> _MouthGeometry:
    # Mouth: coordinates about the inner-lip centre; which points belong to the lower jaw.
    centre = (uv[fr.UPPER_LIP_CENTER] + uv[fr.LOWER_LIP_CENTER]) / 2
    a, b = uv[:, 0] - centre[0], uv[:, 1] - centre[1]
    inner = np.concatenate([uv[list(fr.UPPER_LIP_INNER)], uv[list(fr.LOWER_LIP_INNER)]])
    order = np.argsort(inner[:, 0])
    line_u, line_v = inner[order, 0], inner[order, 1]
    mouth_line = np.interp(uv[:, 0], line_u, line_v)
    lower = np.clip(0.5 + (uv[:, 1] - mouth_line) / (0.08 * W), 0.0, 1.0)
    lower[list(fr.UPPER_LIP_INNER) + list(fr.UPPER_LIP_OUTER)] = 0.0
    lower[list(fr.LOWER_LIP_INNER) + list(fr.LOWER_LIP_OUTER)] = 1.0
    lower[[78, 308, fr.MOUTH_LEFT, fr.MOUTH_RIGHT]] = 0.5
    rho = np.hypot(a / (0.62 * W), b / (0.42 * W))
    lips = 1 - smoothstep(1.0, 1.6, rho)
    # Jaw: rotation about the hinge near the ears; nearer points (chin, lower lip) drop the most.
    z = lm[:, 2]
    hinge_z = (z[234] + z[454]) / 2
    reach = np.clip((hinge_z - z) / max(hinge_z - z[fr.CHIN], 1e-3), 0.0, 1.0)
    # The lips open as a lens, not a box: near the corners the lower lip drops less than the chin.
    lens = 1 - JAW_CORNER_TAPER * lips * np.clip(np.abs(a) / (0.5 * W), 0.0, 1.0) ** 2
    return _MouthGeometry(a, b, lower, lips, reach, lens, hinge_z - z)


def rest_closure(lm: np.ndarray, frame: FaceFrame, shut_gap: float,
                 seam_points: int = SEAM_POINTS) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """A portrait's own inner-lip gap at the centre (pixels), the forward (u, v) displacement of every landmark
    that shuts it to `shut_gap` pixels, and `seam_points` more points on each inner lip contour (u, v) with theirs.
    The jaw rises (as jawOpen lowers it) and the upper lip comes down a share (REST_UPPER_SHARE); the inner lips
    meet along the line between their two contours, so a wide-open mouth closes on a natural seam rather than on
    the upper lip's arch. The extra points lie pairwise at the same u on both lips, so a warp through them shuts
    the lips along one seam instead of zigzagging between the mesh's eleven points a lip."""
    uv = frame.local(lm[:, :2])
    mouth = _mouth_geometry(lm, uv, frame.mouth_width)
    upper, lower = list(fr.UPPER_LIP_INNER), list(fr.LOWER_LIP_INNER)
    gap = float(uv[fr.LOWER_LIP_CENTER, 1] - uv[fr.UPPER_LIP_CENTER, 1])
    shut = max(gap - shut_gap, 0.0)
    rise = mouth.lower * mouth.reach * mouth.lens / max(mouth.reach[fr.LOWER_LIP_CENTER], 1e-3)
    drop = (1 - mouth.lower) * mouth.lips * mouth.lens
    dv = shut * (REST_UPPER_SHARE * drop - (1 - REST_UPPER_SHARE) * rise)
    # the inner contours meet exactly: each point moves (only towards the other lip) to the seam at its u
    top, bottom = uv[upper], uv[lower]
    top_sorted, bottom_sorted = top[np.argsort(top[:, 0])].T, bottom[np.argsort(bottom[:, 0])].T

    def moves(top_v: np.ndarray, bottom_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seam = top_v + REST_UPPER_SHARE * (bottom_v - top_v)
        return np.maximum(seam - shut_gap / 2 - top_v, 0.0), np.minimum(seam + shut_gap / 2 - bottom_v, 0.0)

    dv[upper] = moves(top[:, 1], np.interp(top[:, 0], *bottom_sorted))[0]
    dv[lower] = moves(np.interp(bottom[:, 0], *top_sorted), bottom[:, 1])[1]
    u = np.linspace(top_sorted[0, 0], top_sorted[0, -1], seam_points + 2)[1:-1]
    top_v, bottom_v = np.interp(u, *top_sorted), np.interp(u, *bottom_sorted)
    down, up = moves(top_v, bottom_v)
    extra = np.concatenate([np.stack([u, top_v], 1), np.stack([u, bottom_v], 1)])
    extra_dv = np.concatenate([down, up])
    return (gap, np.stack([np.zeros_like(dv), dv], 1), extra,
            np.stack([np.zeros_like(extra_dv), extra_dv], 1))


@dataclass
class ShutMouth:
    """What shuts a face's parted lips, in image pixels (`shut_mouth`)."""

    landmarks: np.ndarray     # (N, 2) every landmark's displacement
    seam: np.ndarray          # (2 * SEAM_POINTS, 2) more points on the inner lip contours ...
    seam_moves: np.ndarray    # ... and theirs
    parted: float             # how far the lips were parted (face heights)

    def applied(self, lm: np.ndarray) -> np.ndarray:
        """The face's landmarks (N, 2 or 3) with its lips shut, in their own dtype."""
        moved = np.array(lm, dtype=np.float64)
        moved[:, :2] += self.landmarks
        return moved.astype(np.asarray(lm).dtype)


def shut_mouth(lm: np.ndarray) -> ShutMouth | None:
    """How to shut a face's parted lips (`rest_closure`), or None when they are shut. Motion's mouth channels open
    from shut lips, so a face caught mid-word is shut first: the renderer's portrait, extraction's reference."""
    lm = np.asarray(lm, dtype=np.float64)
    frame = FaceFrame.from_landmarks(lm)
    gap, shut, seam, seam_moves = rest_closure(lm, frame, SHUT_GAP_H * frame.height)
    if gap <= PARTED_LIPS_H * frame.height:
        return None
    return ShutMouth(frame.to_image(shut), frame.from_local(seam), frame.to_image(seam_moves), gap / frame.height)


def landmark_displacements(lm: np.ndarray, frame: FaceFrame) -> dict[str, np.ndarray]:
    """Forward (u, v) displacement of every landmark for each landmark channel at strength 1."""
    uv = frame.local(lm[:, :2])
    n = len(lm)
    H, W = frame.height, frame.mouth_width
    out: dict[str, np.ndarray] = {}

    def put(name: str, du: np.ndarray | float, dv: np.ndarray | float) -> None:
        out[name] = np.stack([np.broadcast_to(du, (n,)), np.broadcast_to(dv, (n,))], 1).astype(np.float64)

    mouth = _mouth_geometry(lm, uv, W)
    a, b, lower, lips, reach, lens = mouth.a, mouth.b, mouth.lower, mouth.lips, mouth.reach, mouth.lens
    jaw_drop = JAW_DROP_H * H * lower * reach * lens
    put("jawOpen", 0.0, jaw_drop)
    # ARKit's mouthClose closes the lips over an open jaw: at mouthClose = jawOpen the lips meet again.
    put("mouthClose", 0.0, -jaw_drop * lips)
    put("mouthFunnel", -0.16 * a * lips, (2 * lower - 1) * 0.05 * W * lips)
    put("mouthPucker", -0.26 * a * lips, 0.0)
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        corner = uv[fr.MOUTH_LEFT if sign > 0 else fr.MOUTH_RIGHT]
        near = np.exp(-((uv - corner) ** 2).sum(1) / (2 * (0.27 * W) ** 2))
        this_side = smoothstep(-0.2 * W, 0.2 * W, sign * a)
        put(f"mouthSmile{side}", sign * 0.10 * W * near, -0.11 * W * near)
        put(f"mouthStretch{side}", sign * 0.10 * W * near, 0.03 * W * near)
        put(f"mouthLowerDown{side}", 0.0, 0.07 * W * lower * lips * this_side)
        put(f"mouthUpperUp{side}", 0.0, -0.07 * W * (1 - lower) * lips * this_side)
        put(f"mouthPress{side}", 0.0, -0.25 * b * lips * this_side)
        jaw_side = lm[[58, 132] if sign < 0 else [288, 361], :2].mean(0)
        cheek = 0.5 * corner + 0.5 * frame.local(jaw_side)
        puff = np.exp(-((uv - cheek) ** 2).sum(1) / (2 * (0.35 * W) ** 2))
        out.setdefault("cheekPuff", np.zeros((n, 2)))
        out["cheekPuff"][:, 0] += sign * 0.07 * W * puff

    # Eyes and brows.
    eyes = {"Left": Eye(uv, fr.LEFT_EYE_UPPER, fr.LEFT_EYE_LOWER),
            "Right": Eye(uv, fr.RIGHT_EYE_UPPER, fr.RIGHT_EYE_LOWER)}
    brows = {"Left": uv[list(fr.LEFT_EYEBROW)], "Right": uv[list(fr.RIGHT_EYEBROW)]}
    inner_up = np.zeros(n)
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        eye = eyes[side]
        put(f"eyeWide{side}", 0.0, eye.lid_motion(uv, -EYE_WIDE_LIFT, 0.0, 1.0, 0.5))
        put(f"eyeSquint{side}", 0.0, eye.lid_motion(uv, 0.1, -0.25, 0.6, 1.5))
        brow = brows[side]
        dist = np.sqrt(((uv[:, None, :] - brow[None]) ** 2).sum(2)).min(1)
        # Only skin above the upper lid follows the brow.
        above_lid = smoothstep(0.0, 2.0 * eye.opening, eye.upper_at(uv[:, 0]) - uv[:, 1])
        near = np.exp(-dist ** 2 / (2 * (0.07 * H) ** 2)) * above_lid * smoothstep(-0.02 * H, 0.02 * H, sign * uv[:, 0])
        span = sign * brow[:, 0]
        along = np.clip((sign * uv[:, 0] - span.min()) / (span.max() - span.min()), 0.0, 1.0)
        inner_up += near * (1 - along) ** 1.5
        put(f"browOuterUp{side}", 0.0, -0.06 * H * near * along)
        put(f"browDown{side}", -sign * 0.015 * H * near * (1 - along), 0.025 * H * near)
    put("browInnerUp", 0.0, -0.07 * H * inner_up)

    # Head turn parallax: nearer points (smaller z) move more; the ear line is the axis.
    depth = mouth.before_ears * PARALLAX_DEPTH_GAIN
    axis = (uv[234] + uv[454]) / 2
    for sign, suffix in ((1.0, "+"), (-1.0, "-")):
        angle = math.radians(sign * PARALLAX_REF_DEG)
        put(f"yaw{suffix}", depth * math.sin(angle) + (uv[:, 0] - axis[0]) * (math.cos(angle) - 1), 0.0)
        put(f"pitch{suffix}", 0.0, -depth * math.sin(angle) + (uv[:, 1] - axis[1]) * (math.cos(angle) - 1))
    return out
