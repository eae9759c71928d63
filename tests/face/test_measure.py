"""The face mesh's eye readings: the straight lid gap and the gap across the eye."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facecast import face_regions as fr
from facecast.face.measure import eye_openness, eye_openness_across


def _eye(along: float, across: float, angle_deg: float) -> np.ndarray:
    """Landmarks of a left eye 10 px wide whose top lid point lies `along` / `across` px from the bottom one
    (along the line between the corners / perpendicular to it), the whole eye turned by `angle_deg`."""
    points = np.zeros((478, 2))
    local = {fr.LEFT_EYE_OUTER: (0.0, 0.0), fr.LEFT_EYE_INNER: (10.0, 0.0),
             fr.LEFT_EYE_BOTTOM: (4.0, 1.0), fr.LEFT_EYE_TOP: (4.0 + along, 1.0 - across)}
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    for index, (x, y) in local.items():
        points[index] = (50 + c * x - s * y, 80 + s * x + c * y)
    return points


@pytest.mark.parametrize("angle", [0.0, 17.0, -30.0])
def test_the_gap_across_the_eye_leaves_out_the_lid_points_offset_along_it(angle: float) -> None:
    """A shut eye whose top and bottom lid points the mesh put 1 px apart along the lash line: the straight
    reading counts that px as gap, the reading across the eye does not; an open eye reads its opening both ways."""
    shut = _eye(along=1.0, across=0.0, angle_deg=angle)
    assert eye_openness(shut, "left") == pytest.approx(0.1)
    assert eye_openness_across(shut, "left") == pytest.approx(0.0, abs=1e-9)
    opened = _eye(along=1.0, across=3.0, angle_deg=angle)
    assert eye_openness_across(opened, "left") == pytest.approx(0.3)
    assert eye_openness(opened, "left") == pytest.approx(math.hypot(1.0, 3.0) / 10)
