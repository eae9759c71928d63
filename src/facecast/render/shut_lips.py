"""A portrait caught mid-word, shut once before it is animated.

Motion opens the mouth from shut lips (a jawOpen of 0 is a closed mouth), so a
picture whose lips are parted would otherwise never close: in pauses, at a "b",
or when the voice stops. Its lips are shut here, once per portrait, with the
displacement `face_model.shut_mouth` gives (the jaw rises, the upper lip comes
down a little, the inner lips meet on a seam between their two contours); every
channel of the warp basis then acts on the shut face.

The warp moves what the face mesh calls the inner lips. Where the mesh's inner
contour lies inside the picture's real opening (a far corner in a three-quarter
view, a yawn's ragged rim), dark mouth interior is left beside the seam, folded
into a crease. Those pixels are found in the picture (dark, inside the lips,
connected to the mesh's opening), followed through the warp and painted over
from the lips around them, keeping the seam's own line.
"""

from __future__ import annotations

import cv2
import numpy as np

from facecast import face_regions as fr
from facecast.face_model import shut_mouth
from facecast.render.warp_basis import Grid, backward_field, warp_points

#: Smoothing (pixels) of the field that shuts the lips: with the seam's paired points (`face_model.rest_closure`)
#: 1 px leaves one clean seam; 2 px left a sliver of the picture's teeth in it, 0.5 px ragged corners.
SMOOTHING_PX = 1.0
#: Mouth interior: pixels darker than this share of the lips' median brightness ...
INTERIOR_DARK = 0.75
#: ... within this share of the mouth's width outside the outer lip contour (not the skin or beard beyond it).
INTERIOR_REACH = 0.06
#: Interior left by the warp is painted over (from this many pixels around it, at 512 px), with its anti-aliased
#: rim (pixels darker than the lips up to INTERIOR_EDGE_PX beyond it), except within SEAM_KEEP_PX of the seam:
#: the line where closed lips meet is dark in real mouths too.
INPAINT_RADIUS_PX = 3.0
INTERIOR_EDGE_PX = 2.0
SEAM_KEEP_PX = 1.0


def shut_lips(image: np.ndarray, landmarks: np.ndarray, *, paint_interior: bool = True
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """The portrait with its own parted lips shut, its landmarks moved with them, and how far they were parted
    (face heights); a portrait with shut lips comes back as it is, with 0. `paint_interior=False` leaves what the
    warp leaves of the mouth's interior (for comparison)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    shut = shut_mouth(lm)
    if shut is None:
        return image, landmarks, 0.0
    size = image.shape[0]
    # once per portrait, so at full resolution
    pixels = Grid(size, cells_max=size)
    points, keep, still = warp_points(lm, size)
    field = backward_field(np.concatenate([points, shut.seam]),
                           np.concatenate([shut.landmarks[keep], still, shut.seam_moves]), pixels, SMOOTHING_PX)
    if field is None:
        return image, landmarks, 0.0
    h, w = field.data.shape[:2]
    box = (slice(field.y0, field.y0 + h), slice(field.x0, field.x0 + w))
    positions = np.stack([pixels.x[box], pixels.y[box]], -1) + field.data   # only the mouth's box moves
    shut_image = image.copy()
    shut_image[box] = cv2.remap(image, positions, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    shut_landmarks = shut.applied(landmarks)
    if not paint_interior:
        return shut_image, shut_landmarks, shut.parted
    interior, lip_luma = mouth_interior(image, lm)
    left = interior.copy()
    left[box] = cv2.remap(interior, positions, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    _paint_over_interior(shut_image, left, lip_luma, np.asarray(shut_landmarks, np.float64))
    return shut_image, shut_landmarks, shut.parted


def mouth_interior(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """(H, W) float32, 1 where the picture shows the inside of its mouth: pixels darker than INTERIOR_DARK of the
    lips, near the lips, connected to the face mesh's inner-lip opening (which may miss part of the real one);
    and the lips' median brightness (0..255)."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    shape = image.shape[:2]
    luma = cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)
    outer, inner = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    cv2.fillPoly(outer, [np.round(lm[list(fr.LIPS_OUTER)]).astype(np.int32)], 1)
    cv2.fillPoly(inner, [np.round(lm[list(fr.LIPS_INNER)]).astype(np.int32)], 1)
    lips = (outer > 0) & (inner == 0)
    if not lips.any():
        return np.zeros(shape, np.float32), 0.0
    width = float(np.linalg.norm(lm[fr.MOUTH_LEFT] - lm[fr.MOUTH_RIGHT]))
    reach = 2 * max(int(round(INTERIOR_REACH * width)), 1) + 1
    near = cv2.dilate(outer, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach)))
    lip_luma = float(np.median(luma[lips]))
    dark = ((luma < INTERIOR_DARK * lip_luma) & (near > 0)).astype(np.uint8)
    _, labels = cv2.connectedComponents(dark, connectivity=8)
    opening = np.unique(labels[(inner > 0) & (dark > 0)])
    return np.isin(labels, opening[opening > 0]).astype(np.float32), lip_luma


def _paint_over_interior(image: np.ndarray, left: np.ndarray, lip_luma: float, shut_landmarks: np.ndarray) -> None:
    """Inpaint (in place, colour channels only) the interior the warp left (`left`, 0..1) and its rim, where they
    are darker than the lips, but the seam's line."""
    scale = image.shape[0] / 512
    seam = np.zeros(left.shape, np.uint8)
    thickness = max(int(round(2 * SEAM_KEEP_PX * scale)), 1)
    cv2.polylines(seam, [np.round(shut_landmarks[list(fr.UPPER_LIP_INNER), :2]).astype(np.int32)], False, 1, thickness)
    core = (left > 0.3).astype(np.uint8)
    grow = 2 * max(int(round(INTERIOR_EDGE_PX * scale)), 1) + 1
    luma = cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)
    darker = (luma < lip_luma).astype(np.uint8)
    mask = cv2.dilate(core, np.ones((grow, grow), np.uint8)) & darker & (seam == 0)
    if not mask.any():
        return
    ys, xs = np.nonzero(mask)
    pad = int(np.ceil(3 * INPAINT_RADIUS_PX * scale)) + 1
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, image.shape[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, image.shape[1])
    colour = np.ascontiguousarray(image[y0:y1, x0:x1, :3])
    image[y0:y1, x0:x1, :3] = cv2.inpaint(colour, mask[y0:y1, x0:x1], INPAINT_RADIUS_PX * scale, cv2.INPAINT_TELEA)
