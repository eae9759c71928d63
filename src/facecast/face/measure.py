"""Measure faces in frames with mediapipe's face mesh (`face.tracker`): the instrument tests and benchmarks share.

Rendered output is checked the way a person would judge it: find the face in
every frame and measure how open the mouth and eyes are and where the head
and irises point. Ratios are normalised by face size so they compare across
resolutions and portraits.
"""

from __future__ import annotations

import numpy as np

from facecast import face_regions as fr


class FaceMeasurer:
    """Face-mesh landmarks for a stream of frames (video mode: tracks between frames)."""

    def __init__(self, static_images: bool = False) -> None:
        # lazy: the tracker loads mediapipe, slow to import; the ratio helpers below need only numpy
        from facecast.face.tracker import FaceLandmarker

        self._mesh = FaceLandmarker(video=not static_images, max_faces=1)

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        """(478, 3) landmarks in pixels (z scaled like x), or None when no face is found."""
        faces = self._mesh.faces(rgb)
        return faces[0].astype(np.float32) if faces else None

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "FaceMeasurer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def face_height(points: np.ndarray) -> float:
    """Forehead-top to chin distance: the scale every ratio below is divided by."""
    return float(np.linalg.norm(points[fr.FOREHEAD_TOP, :2] - points[fr.CHIN, :2]))


def mouth_opening(points: np.ndarray) -> float:
    """Inner-lip gap at the centre, as a fraction of face height (0 = closed)."""
    gap = np.linalg.norm(points[fr.UPPER_LIP_CENTER, :2] - points[fr.LOWER_LIP_CENTER, :2])
    return float(gap / face_height(points))


def _eye_points(side: str) -> tuple[int, int, int, int]:
    """(top, bottom, outer, inner) lid and corner landmarks of the subject's 'left' or 'right' eye."""
    return ((fr.LEFT_EYE_TOP, fr.LEFT_EYE_BOTTOM, fr.LEFT_EYE_OUTER, fr.LEFT_EYE_INNER) if side == "left"
            else (fr.RIGHT_EYE_TOP, fr.RIGHT_EYE_BOTTOM, fr.RIGHT_EYE_OUTER, fr.RIGHT_EYE_INNER))


def eye_openness(points: np.ndarray, side: str) -> float:
    """Eyelid gap over eye width for the subject's 'left' or 'right' eye (~0.3 open, <0.1 closed)."""
    top, bottom, outer, inner = _eye_points(side)
    gap = np.linalg.norm(points[top, :2] - points[bottom, :2])
    width = np.linalg.norm(points[outer, :2] - points[inner, :2])
    return float(gap / width)


def eye_openness_across(points: np.ndarray, side: str) -> float:
    """`eye_openness` counting only the gap across the eye (perpendicular to the line between its corners).

    The mesh's top and bottom lid points are not above one another: on a shut eye they still lie a few
    hundredths to a tenth of an eye width apart along the lash line, which `eye_openness` reads as gap."""
    top, bottom, outer, inner = _eye_points(side)
    axis = points[inner, :2] - points[outer, :2]
    gap = points[top, :2] - points[bottom, :2]
    return float(abs(axis[0] * gap[1] - axis[1] * gap[0]) / float(axis @ axis))


def head_yaw_proxy(points: np.ndarray) -> float:
    """Nose-tip offset from the midpoint of the face's sides, over face width (> 0: turned to image right)."""
    left, right = points[454, :2], points[234, :2]  # face-oval extremes at cheek level
    mid = (left + right) / 2
    return float((points[fr.NOSE_TIP, 0] - mid[0]) / np.linalg.norm(left - right))
