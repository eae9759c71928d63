"""Per-portrait warp bases: what every motion channel does to the face, precomputed once.

The face model (`facecast.face_model`) defines each landmark channel as a forward
displacement of the face-mesh landmarks. From it we precompute a dense
*backward* field on a coarse grid: the landmark displacements are interpolated
piecewise-linearly over a Delaunay triangulation of the *displaced* points
(plus still anchors around the head and on the image border), then lightly
smoothed. Blinks and gaze get analytic fields per eye instead (a closed eye
must hide the whole eye, an iris must stay inside it). Because each field is
exact at full strength and blends monotonically with the identity, a frame is
just a weighted sum of a few small fields (`sum_fields`), cheap enough
for hundreds of frames per second on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from scipy.spatial import Delaunay

from facecast import face_regions as fr
from facecast.face_model import (
    BLINK_REACH_DOWN,
    BLINK_REACH_UP,
    EYE_CORNER_FADE,
    GAZE_SHIFT_X,
    GAZE_SHIFT_Y,
    HEAD_CHANNELS,
    LANDMARK_CHANNELS,
    NECK_PIVOT_BELOW_CHIN,
    Eye,
    FaceFrame,
    landmark_displacements,
    smoothstep,
)

#: The coarse flow grid is at most this many cells wide (512 px -> 2 px per cell).
GRID_CELLS_MAX = 256
#: Iris edge points are excluded from the warp mesh: they lie under the lids.
IRIS_EDGES = frozenset(fr.LEFT_IRIS[1:] + fr.RIGHT_IRIS[1:])
#: Still anchors: the face oval scaled by this about its centre, plus the image border.
ANCHOR_RING_SCALE = 1.7
BORDER_ANCHORS_PER_SIDE = 8

GAZE_RAMP_X = 0.3     # iris shift fades to zero over this share of the eye width at the corners
GAZE_RAMP_Y = 0.5     # ... and over this share of the opening at the lids
#: Lash-line search above the mesh's upper lid (share of the opening), probes, and how much darker it must be.
LASH_SEARCH = 0.6
LASH_PROBES = 16
LASH_CONTRAST = 0.8

#: Head mask extent (see `_head_mask`): half-widths of the face, face heights up and down, falloff ratio.
HEAD_MASK_WIDTH = 1.45
HEAD_MASK_UP = 1.0
HEAD_MASK_DOWN = 0.62
HEAD_MASK_FALLOFF = 1.5
HEAD_MASK_EDGE_FADE = 0.08  # of the frame size
HEAD_MASK_BOXINESS = 3.0    # superellipse exponent of the upper half (2 = ellipse)

#: Over this many pixels (of a 512² frame, scaled with the frame) next to the frame's edges, motion that would
#: bring in what lies beyond an edge is eased to nothing at it (`edge_easing`): nothing is sampled from beyond
#: the picture's crop.
EDGE_EASING_PX = 8.0

#: Smoothing of each field (grid cells) per channel family.
SIGMA_FINE = 0.8
SIGMA_MOUTH = 1.2
SIGMA_HEAD = 2.5


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

    def __init__(self, size: int, cells_max: int = GRID_CELLS_MAX) -> None:
        self.size = size
        self.scale = -(-size // cells_max)
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


def warp_points(lm: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The points a warp is triangulated over (the landmarks but the iris edges, then the still anchors), which
    landmarks they are, and the anchors' (zero) displacement."""
    keep = np.array([i for i in range(len(lm)) if i not in IRIS_EDGES])
    anchors = _anchors(lm, size)
    return np.concatenate([lm[keep, :2], anchors]), keep, np.zeros((len(anchors), 2))


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
        eye = Eye(uv, upper, lower)
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


#: Per side: the eye contour and its upper and lower lids.
EYE_CONTOURS = (("Left", fr.LEFT_EYE, fr.LEFT_EYE_UPPER, fr.LEFT_EYE_LOWER),
                ("Right", fr.RIGHT_EYE, fr.RIGHT_EYE_UPPER, fr.RIGHT_EYE_LOWER))


def _eye_fields(lm: np.ndarray, frame: FaceFrame, grid: Grid) -> tuple[dict[str, Field], dict[str, Eye]]:
    """Blinks, and iris shifts inside each eye opening (zero at the lids and corners: the iris never leaves it);
    and the eyes (lid curves) the blinks close."""
    uv = frame.local(lm[:, :2])
    out, eyes = {}, {}
    for side, contour, upper, lower in EYE_CONTOURS:
        eye = eyes[side] = Eye(uv, upper, lower)
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
    return out, eyes


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


def head_mask_image(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The head mask (`_head_mask`) at full resolution, (size, size) float32 0..1: the cut-out's fallback
    where segmentation sees no person (it is exactly what rigid head motion moves)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    grid = Grid(size)
    coarse = _head_mask(lm, FaceFrame.from_landmarks(lm), grid)
    # cell centres line up with cv2.resize's, so the upsampled mask sits where the renderer's does
    return cv2.resize(coarse, (grid.extent, grid.extent), interpolation=cv2.INTER_LINEAR)[:size, :size]


class WarpBasis:
    """Everything precomputed for one portrait: fields, landmark displacements, head geometry."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray) -> None:
        lm = np.asarray(landmarks, dtype=np.float64)
        size = image.shape[0]
        self.grid = Grid(size)
        self.frame = FaceFrame.from_landmarks(lm)
        self.landmarks = lm[:, :2]
        duv = landmark_displacements(lm, self.frame)
        #: forward landmark displacement in image pixels per landmark channel, (K, 478, 2)
        self.displacements = np.stack([self.frame.to_image(duv[name]) for name in LANDMARK_CHANNELS]).astype(np.float32)
        points, keep, still = warp_points(lm, size)
        self.fields: dict[str, Field] = {}
        for name, disp in zip(LANDMARK_CHANNELS, self.displacements):
            fine = name.startswith(("eye", "brow"))
            sigma = SIGMA_HEAD if name in HEAD_CHANNELS else SIGMA_FINE if fine else SIGMA_MOUTH
            field = backward_field(points, np.concatenate([disp[keep], still]), self.grid, sigma)
            if field is not None:
                self.fields[name] = field
        eye_fields, eyes = _eye_fields(_lash_lines(image, lm, self.frame), self.frame, self.grid)
        self.fields.update(eye_fields)
        #: each side's lid curves (lash lines found in the picture), as the blink fields close them
        self.eyes: dict[str, Eye] = eyes
        self.head_mask = _head_mask(lm, self.frame, self.grid)
        self.channel_index = {name: k for k, name in enumerate(LANDMARK_CHANNELS)}
        oval = self.landmarks[list(fr.FACE_OVAL)]
        self.face_centre = oval.mean(0)
        self.neck_pivot = self.landmarks[fr.CHIN] + NECK_PIVOT_BELOW_CHIN * self.frame.height * self.frame.v


def edge_easing(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel row (or column) of a `size` frame, the share of a backward displacement towards the lower
    (first array) and the higher (second) edge that the warp keeps.

    The fields are zero at the border anchors but smoothed after, and the head's motion composes them, so a
    head filling its crop would otherwise sample a pixel or two beyond the frame's edge (a sliver repeated
    from the edge row). Eased linearly to nothing at the edge pixel, a displacement smaller than the easing's
    reach can no longer leave the frame; content moving out of the frame is untouched."""
    reach = max(EDGE_EASING_PX * size / 512, 1.0)
    axis = np.arange(size, dtype=np.float32)
    return np.minimum(axis / reach, 1.0), np.minimum((size - 1 - axis) / reach, 1.0)


def split_turn(coeffs: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """(face channels, head-turn channels). The warp composes them: a pixel of the output first follows the
    head's turn back to where it was on the still face, and the face's own fields (lids, lips, gaze) act
    there. Summed instead, a blink with the head turned 14 degrees closed the lids beside the eye it was
    meant for: the face mesh read the far eye as open."""
    face = {n: c for n, c in coeffs.items() if n not in HEAD_CHANNELS}
    return face, {n: c for n, c in coeffs.items() if n in HEAD_CHANNELS}


def sum_fields(flow: Any, fields: dict[str, Any], basis: WarpBasis, coeffs: dict[str, float]) -> None:
    """flow += sum of c * field over the active channels (each field covers only its box).

    `flow` and `fields` are numpy arrays (CPU path) or torch tensors (CUDA path) laid out like `basis.fields`."""
    for name, c in coeffs.items():
        if name not in basis.fields:
            continue
        box = basis.fields[name]
        data = fields[name]
        h, w = data.shape[:2]
        flow[box.y0:box.y0 + h, box.x0:box.x0 + w] += c * data
