"""A portrait caught mid-word, shut once before it is animated.

Motion opens the mouth from shut lips (a jawOpen of 0 is a closed mouth), so a
picture whose lips are parted would otherwise never close: in pauses, at a "b",
or when the voice stops. Its lips are shut here, once per portrait, with the
displacement `face_model.shut_mouth` gives (the jaw rises, the upper lip comes
down a little, the inner lips meet on a seam between their two contours); every
channel of the warp basis then acts on the shut face.
"""

from __future__ import annotations

import cv2
import numpy as np

from facecast.face_model import shut_mouth
from facecast.render.warp_basis import Grid, backward_field, warp_points

#: Smoothing (pixels) of the field that shuts the lips: with the seam's paired points (`face_model.rest_closure`)
#: 1 px leaves one clean seam; 2 px left a sliver of the picture's teeth in it, 0.5 px ragged corners.
SMOOTHING_PX = 1.0


def shut_lips(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The portrait with its own parted lips shut, its landmarks moved with them, and how far they were parted
    (face heights); a portrait with shut lips comes back as it is, with 0."""
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
    return shut_image, shut.applied(landmarks), shut.parted
