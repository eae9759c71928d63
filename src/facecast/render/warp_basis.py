"""Per-portrait warp bases: what every motion channel does to the face, precomputed once.

Each expression channel is defined as a sparse, anatomically motivated forward
displacement of the face-mesh landmarks (jawOpen rotates the lower lip and
chin about the jaw hinge, a smile pulls the corners up and out, head yaw and
pitch move near points more than far ones, ...). From it we precompute a dense
*backward* field on a coarse grid: the landmark displacements are interpolated
piecewise-linearly over a Delaunay triangulation of the *displaced* points
(plus still anchors around the head and on the image border), then lightly
smoothed. Blinks and gaze get analytic fields per eye instead (a closed eye
must hide the whole eye, an iris must stay inside it). Because each field is
exact at full strength and blends monotonically with the identity, a frame is
just a weighted sum of a few small fields (`WarpBasis.fields`), cheap enough
for hundreds of frames per second on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

from facecast import face_regions as fr

#: The coarse flow grid is at most this many cells wide (512 px -> 2 px per cell).
GRID_CELLS_MAX = 256
#: Iris edge points are excluded from the warp mesh: they lie under the lids.
IRIS_EDGES = frozenset(fr.LEFT_IRIS[1:] + fr.RIGHT_IRIS[1:])
#: Still anchors: the face oval scaled by this about its centre, plus the image border.
ANCHOR_RING_SCALE = 1.7
BORDER_ANCHORS_PER_SIDE = 8

#: Head turn the parallax channels are built for; other angles scale linearly.
PARALLAX_REF_DEG = 20.0
#: Share of mediapipe's landmark depth used for parallax. At 0.6 the face mesh measured only 0.45-0.7 of the
#: yaw asked for on rendered frames; at 1.0, 0.7-1.0 (mona_lisa and two LivePortrait photos, +-15 deg yaw,
#: +-10 deg pitch, no folds). Larger turns than ~20 deg would need occlusion, which a 2-D warp cannot show.
PARALLAX_DEPTH_GAIN = 1.0
#: Gaze angle (degrees) for the iris shifts below; gaze scales linearly.
GAZE_REF_DEG = 30.0
GAZE_SHIFT_X = 0.2    # of the eye width
GAZE_SHIFT_Y = 0.3    # of the eye opening
GAZE_RAMP_X = 0.3     # iris shift fades to zero over this share of the eye width at the corners
GAZE_RAMP_Y = 0.5     # ... and over this share of the opening at the lids
#: Lash-line search above the mesh's upper lid (share of the opening), probes, and how much darker it must be.
LASH_SEARCH = 0.6
LASH_PROBES = 16
LASH_CONTRAST = 0.8

#: Jaw drop at jawOpen = 1 and other magnitudes, as fractions of face height (H) or mouth width (W).
JAW_DROP_H = 0.22          # a wide-open mouth: lips ~0.2 face heights apart
JAW_CORNER_TAPER = 0.6
BLINK_LOWER_RISE = 0.25     # of the eye opening: where the closed lids meet
BLINK_REACH_UP = 1.5        # eye openings of skin above the lid that stretch over the eye
BLINK_REACH_DOWN = 0.6
BLINK_LOWER_MARGIN = 0.45   # of the local opening: face meshes tend to put the lower lid a little high
EYE_CORNER_FADE = 0.25      # eye widths beyond the corners over which lid motion fades out

#: Head mask extent (see `_head_mask`): half-widths of the face, face heights up and down, falloff ratio.
HEAD_MASK_WIDTH = 1.45
HEAD_MASK_UP = 1.0
HEAD_MASK_DOWN = 0.62
HEAD_MASK_FALLOFF = 1.5
HEAD_MASK_EDGE_FADE = 0.08  # of the frame size
HEAD_MASK_BOXINESS = 3.0    # superellipse exponent of the upper half (2 = ellipse)

#: Smoothing of each field (grid cells) per channel family.
SIGMA_FINE = 0.8
SIGMA_MOUTH = 1.2
SIGMA_HEAD = 2.5

EXPRESSION_CHANNELS: tuple[str, ...] = (
    "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker",
    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "mouthPressLeft", "mouthPressRight", "browInnerUp", "browDownLeft", "browDownRight",
    "browOuterUpLeft", "browOuterUpRight", "eyeWideLeft", "eyeWideRight",
    "eyeSquintLeft", "eyeSquintRight", "cheekPuff",
)
HEAD_CHANNELS = ("yaw+", "yaw-", "pitch+", "pitch-")
#: Channels defined by landmark displacements (the renderer also moves landmarks with them).
LANDMARK_CHANNELS = EXPRESSION_CHANNELS + HEAD_CHANNELS


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

    def to_image(self, duv: np.ndarray) -> np.ndarray:
        """A displacement in (u, v) as an image-space displacement."""
        return duv[..., :1] * self.u + duv[..., 1:2] * self.v


@dataclass
class Field:
    """A backward-displacement field on a rectangle of the grid (rows y0.., columns x0..)."""

    y0: int
    x0: int
    data: np.ndarray    # (h, w, 2) float32, source minus output position in pixels


class Grid:
    """The coarse grid the flow is computed on; cell centres line up with cv2.resize.

    Each cell is a whole number of pixels (`scale`), so any box of cells maps
    to a box of pixels; the grid may overhang the frame by less than a cell.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.scale = -(-size // GRID_CELLS_MAX)
        self.cells = -(-size // self.scale)
        self.extent = self.cells * self.scale
        axis = (np.arange(self.cells, dtype=np.float32) + 0.5) * self.scale - 0.5
        self.x, self.y = np.meshgrid(axis, axis)

    def to_cells(self, pixels: np.ndarray) -> np.ndarray:
        return (pixels + 0.5) / self.scale - 0.5

    def cell_range(self, lo: float, hi: float, margin: int) -> tuple[int, int]:
        a = int(math.floor(self.to_cells(np.float32(lo)))) - margin
        b = int(math.ceil(self.to_cells(np.float32(hi)))) + margin + 1
        return max(a, 0), min(b, self.cells)


def _anchors(lm: np.ndarray, size: int) -> np.ndarray:
    oval = lm[list(fr.FACE_OVAL), :2]
    centre = oval.mean(0)
    ring = centre + (oval - centre) * ANCHOR_RING_SCALE
    edge = np.linspace(-1.0, size, BORDER_ANCHORS_PER_SIDE + 1)
    lo, hi = np.full_like(edge, -1.0), np.full_like(edge, float(size))
    border = np.concatenate([np.stack([edge, lo], 1), np.stack([edge, hi], 1),
                             np.stack([lo, edge], 1), np.stack([hi, edge], 1)])
    return np.concatenate([ring, border]).astype(np.float64)


def backward_field(points: np.ndarray, disp: np.ndarray, grid: Grid, sigma: float) -> Field | None:
    """Dense backward field of a forward landmark displacement (None when nothing moves).

    Interpolating -disp over a triangulation of the *displaced* points makes
    the field exact at the landmarks' new positions, whatever the size of the
    motion (a closing lid, a dropping jaw), with no fixed-point inversion.
    """
    moving = np.abs(disp).max(1) > 1e-4
    if not moving.any():
        return None
    target = points + disp
    tri = Delaunay(target)
    touched = target[np.unique(tri.simplices[moving[tri.simplices].any(1)])]
    margin = int(math.ceil(3 * sigma)) + 1
    gy0, gy1 = grid.cell_range(touched[:, 1].min(), touched[:, 1].max(), margin)
    gx0, gx1 = grid.cell_range(touched[:, 0].min(), touched[:, 0].max(), margin)
    xy = np.stack([grid.x[gy0:gy1, gx0:gx1].ravel(), grid.y[gy0:gy1, gx0:gx1].ravel()], 1).astype(np.float64)
    simplex = tri.find_simplex(xy)
    inside = simplex >= 0
    affine = tri.transform[simplex[inside]]
    bary = np.einsum("nij,nj->ni", affine[:, :2], xy[inside] - affine[:, 2])
    bary = np.concatenate([bary, 1.0 - bary.sum(1, keepdims=True)], 1)
    values = np.zeros((len(xy), 2))
    values[inside] = np.einsum("ni,nij->nj", bary, -disp[tri.simplices[simplex[inside]]])
    data = values.reshape(gy1 - gy0, gx1 - gx0, 2).astype(np.float32)
    if sigma > 0:
        data = cv2.GaussianBlur(data, (0, 0), sigma)
    return Field(gy0, gx0, data)


class _Eye:
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
        above = start + (v - start) * reach_up / np.maximum(closed - start, 1e-3)
        hidden = bottom + BLINK_LOWER_MARGIN * gap
        below = hidden + (v - closed) * (bottom + reach_down - hidden) / np.maximum(bottom + reach_down - closed, 1e-3)
        source = np.where((v >= start) & (v < closed), above,
                          np.where((v >= closed) & (v <= bottom + reach_down), below, v))
        return (source - v) * self.along(u)


def _landmark_displacements(lm: np.ndarray, frame: FaceFrame) -> dict[str, np.ndarray]:
    """Forward (u, v) displacement of every landmark for each landmark channel at strength 1."""
    uv = frame.local(lm[:, :2])
    n = len(lm)
    H, W = frame.height, frame.mouth_width
    out: dict[str, np.ndarray] = {}

    def put(name: str, du: np.ndarray | float, dv: np.ndarray | float) -> None:
        out[name] = np.stack([np.broadcast_to(du, (n,)), np.broadcast_to(dv, (n,))], 1).astype(np.float64)

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
    eyes = {"Left": _Eye(uv, fr.LEFT_EYE_UPPER, fr.LEFT_EYE_LOWER),
            "Right": _Eye(uv, fr.RIGHT_EYE_UPPER, fr.RIGHT_EYE_LOWER)}
    brows = {"Left": uv[list(fr.LEFT_EYEBROW)], "Right": uv[list(fr.RIGHT_EYEBROW)]}
    inner_up = np.zeros(n)
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        eye = eyes[side]
        put(f"eyeWide{side}", 0.0, eye.lid_motion(uv, -0.3, 0.0, 1.0, 0.5))
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
    depth = (hinge_z - z) * PARALLAX_DEPTH_GAIN
    axis = (uv[234] + uv[454]) / 2
    for sign, suffix in ((1.0, "+"), (-1.0, "-")):
        angle = math.radians(sign * PARALLAX_REF_DEG)
        put(f"yaw{suffix}", depth * math.sin(angle) + (uv[:, 0] - axis[0]) * (math.cos(angle) - 1), 0.0)
        put(f"pitch{suffix}", 0.0, -depth * math.sin(angle) + (uv[:, 1] - axis[1]) * (math.cos(angle) - 1))
    return out


def _soft_polygon(polygon: np.ndarray, grid: Grid) -> np.ndarray:
    """Anti-aliased coverage (0..1) of a pixel-space polygon on the grid."""
    supersample = 4
    canvas = np.zeros((grid.cells * supersample, grid.cells * supersample), np.uint8)
    pts = (grid.to_cells(polygon) + 0.5) * supersample - 0.5
    cv2.fillPoly(canvas, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    small = cv2.resize(canvas, (grid.cells, grid.cells), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.0


def _lash_lines(image: np.ndarray, lm: np.ndarray, frame: FaceFrame) -> np.ndarray:
    """Landmarks with each upper lid raised onto the darkest line just above it, where there is one.

    Face meshes fit a human eye; on drawn or stylised faces (big cartoon eyes)
    and often on made-up eyes the real lash line sits above the mesh's lid. A
    closed eye must cover the whole eye, so the lid is taken from the picture
    where a clearly darker line lies just above the mesh's lid. (The same
    search below the lower lid found eye-bag shadows more often than lids.)
    """
    grey = cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    grey = cv2.GaussianBlur(grey, (0, 0), max(image.shape[0] / 512, 0.5))
    uv = frame.local(lm[:, :2])
    out = lm[:, :2].copy()
    steps = np.linspace(0.0, -LASH_SEARCH, LASH_PROBES)
    for upper, lower in ((fr.LEFT_EYE_UPPER, fr.LEFT_EYE_LOWER), (fr.RIGHT_EYE_UPPER, fr.RIGHT_EYE_LOWER)):
        eye = _Eye(uv, upper, lower)
        inner = list(upper[1:-1])  # the corners stay
        gaps = np.maximum(eye.lower_at(uv[inner, 0]) - uv[inner, 1], 0.0)
        probes = lm[inner, None, :2] + (steps[None, :, None] * gaps[:, None, None]) * frame.v
        luma = cv2.remap(grey, probes[..., 0].astype(np.float32), probes[..., 1].astype(np.float32), cv2.INTER_LINEAR)
        darkest = luma.argmin(1)
        found = luma[np.arange(len(inner)), darkest] < LASH_CONTRAST * luma[:, 0]
        raise_by = np.where(found, steps[darkest] * gaps, 0.0)
        # One smooth lid, not a zigzag: a running median over neighbouring points.
        padded = np.pad(raise_by, 1, mode="edge")
        raise_by = np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), 0)
        out[inner] += raise_by[:, None] * frame.v
    return np.concatenate([out, lm[:, 2:]], 1)


def _eye_fields(lm: np.ndarray, frame: FaceFrame, grid: Grid) -> dict[str, Field]:
    """Blinks, and iris shifts inside each eye opening (zero at the lids and corners: the iris never leaves it)."""
    uv = frame.local(lm[:, :2])
    out = {}
    for side, contour, upper, lower in (("Left", fr.LEFT_EYE, fr.LEFT_EYE_UPPER, fr.LEFT_EYE_LOWER),
                                        ("Right", fr.RIGHT_EYE, fr.RIGHT_EYE_UPPER, fr.RIGHT_EYE_LOWER)):
        eye = _Eye(uv, upper, lower)
        polygon = lm[list(contour), :2]
        gy0, gy1 = grid.cell_range(polygon[:, 1].min(), polygon[:, 1].max(), 2)
        gx0, gx1 = grid.cell_range(polygon[:, 0].min(), polygon[:, 0].max(), 2)
        inside = _soft_polygon(polygon, grid)[gy0:gy1, gx0:gx1]
        cell_uv = frame.local(np.stack([grid.x[gy0:gy1, gx0:gx1], grid.y[gy0:gy1, gx0:gx1]], -1))
        from_corner = np.minimum(cell_uv[..., 0] - eye.u0, eye.u1 - cell_uv[..., 0])
        across = np.clip(from_corner / (GAZE_RAMP_X * eye.width), 0.0, 1.0) * inside
        depth = cv2.distanceTransform((inside > 0.5).astype(np.uint8), cv2.DIST_L2, 3) * grid.scale
        updown = np.clip(depth / (GAZE_RAMP_Y * eye.opening), 0.0, 1.0) * inside
        # Backward fields for looking towards image right (+u) and up (-v).
        shift_x = GAZE_SHIFT_X * eye.width
        shift_y = GAZE_SHIFT_Y * eye.opening
        out[f"gazeX{side}"] = Field(gy0, gx0, (-shift_x * across[..., None] * frame.u).astype(np.float32))
        out[f"gazeY{side}"] = Field(gy0, gx0, (shift_y * updown[..., None] * frame.v).astype(np.float32))
        # Blink box: from the stretched skin above the eye to the lower lid's skin, plus the corner falloff.
        reach = (EYE_CORNER_FADE + 0.05) * eye.width
        corners = frame.origin + np.array([[eye.u0 - reach], [eye.u1 + reach]]) * frame.u
        extent = np.concatenate([corners + (eye.upper_v.min() - BLINK_REACH_UP * eye.opening) * frame.v,
                                 corners + (eye.lower_v.max() + BLINK_REACH_DOWN * eye.opening) * frame.v])
        by0, by1 = grid.cell_range(extent[:, 1].min(), extent[:, 1].max(), 3)
        bx0, bx1 = grid.cell_range(extent[:, 0].min(), extent[:, 0].max(), 3)
        box_uv = frame.local(np.stack([grid.x[by0:by1, bx0:bx1], grid.y[by0:by1, bx0:bx1]], -1))
        shift = cv2.GaussianBlur(eye.blink_shift(box_uv).astype(np.float32), (0, 0), SIGMA_FINE)
        out[f"blink{side}"] = Field(by0, bx0, (shift[..., None] * frame.v).astype(np.float32))
    return out


def _head_mask(lm: np.ndarray, frame: FaceFrame, grid: Grid) -> np.ndarray:
    """Soft (0..1) mask of the head, hair included, in portrait coordinates: what rigid head motion moves.

    Above the face centre it is a boxy superellipse reaching well above the
    forehead, so tall hair and hats turn as one piece instead of bending in
    the falloff; below it is an ellipse that fades out down the neck, so the
    shoulders stay.
    """
    oval = frame.local(lm[list(fr.FACE_OVAL), :2])
    centre = oval.mean(0)
    half_width = (oval[:, 0].max() - oval[:, 0].min()) / 2
    cells = frame.local(np.stack([grid.x, grid.y], -1)) - centre
    across = np.abs(cells[..., 0]) / (HEAD_MASK_WIDTH * half_width)
    up = np.maximum(-cells[..., 1], 0.0) / (HEAD_MASK_UP * frame.height)
    down = np.maximum(cells[..., 1], 0.0) / (HEAD_MASK_DOWN * frame.height)
    boxy = (across ** HEAD_MASK_BOXINESS + up ** HEAD_MASK_BOXINESS) ** (1 / HEAD_MASK_BOXINESS)
    rho = np.where(cells[..., 1] < 0, boxy, np.hypot(across, down))
    # Fade out at the frame edges: what lies beyond them is unknown, so a head touching the edge
    # stretches there instead of revealing a seam.
    edge = np.minimum(np.minimum(grid.x, grid.size - 1 - grid.x), np.minimum(grid.y, grid.size - 1 - grid.y))
    inside = smoothstep(0.0, HEAD_MASK_EDGE_FADE * grid.size, edge)
    return ((1 - smoothstep(1.0, HEAD_MASK_FALLOFF, rho)) * inside).astype(np.float32)


class WarpBasis:
    """Everything precomputed for one portrait: fields, landmark displacements, head geometry."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray) -> None:
        lm = np.asarray(landmarks, dtype=np.float64)
        size = image.shape[0]
        self.grid = Grid(size)
        self.frame = FaceFrame.from_landmarks(lm)
        self.landmarks = lm[:, :2]
        duv = _landmark_displacements(lm, self.frame)
        #: forward landmark displacement in image pixels per landmark channel, (K, 478, 2)
        self.displacements = np.stack([self.frame.to_image(duv[name]) for name in LANDMARK_CHANNELS]).astype(np.float32)
        keep = np.array([i for i in range(len(lm)) if i not in IRIS_EDGES])
        anchors = _anchors(lm, size)
        points = np.concatenate([self.landmarks[keep], anchors])
        still = np.zeros((len(anchors), 2))
        self.fields: dict[str, Field] = {}
        for name, disp in zip(LANDMARK_CHANNELS, self.displacements):
            fine = name.startswith(("eye", "brow"))
            sigma = SIGMA_HEAD if name in HEAD_CHANNELS else SIGMA_FINE if fine else SIGMA_MOUTH
            field = backward_field(points, np.concatenate([disp[keep], still]), self.grid, sigma)
            if field is not None:
                self.fields[name] = field
        self.fields.update(_eye_fields(_lash_lines(image, lm, self.frame), self.frame, self.grid))
        self.head_mask = _head_mask(lm, self.frame, self.grid)
        self.channel_index = {name: k for k, name in enumerate(LANDMARK_CHANNELS)}
        oval = self.landmarks[list(fr.FACE_OVAL)]
        self.face_centre = oval.mean(0)
        self.neck_pivot = self.landmarks[fr.CHIN] + 0.35 * self.frame.height * self.frame.v
