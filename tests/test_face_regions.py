"""face_regions index sets agree with mediapipe's own face-mesh connection sets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from mediapipe.tasks.python.vision import FaceLandmarksConnections

from facecast import face_regions as fr

# The face-mesh connection sets (the same as the legacy solutions' FACEMESH_* sets), as index pairs.
conn = SimpleNamespace(**{
    f"FACEMESH_{name}": frozenset((c.start, c.end) for c in getattr(FaceLandmarksConnections, f"FACE_LANDMARKS_{name}"))
    for name in ("FACE_OVAL", "LEFT_EYE", "RIGHT_EYE", "LIPS", "LEFT_EYEBROW", "RIGHT_EYEBROW", "LEFT_IRIS",
                 "RIGHT_IRIS")})


def indices(connections) -> set[int]:
    return {i for edge in connections for i in edge}


def undirected(connections) -> set[frozenset[int]]:
    return {frozenset(edge) for edge in connections}


def path_edges(path: tuple[int, ...], closed: bool) -> set[frozenset[int]]:
    pairs = zip(path, path[1:] + path[:1] if closed else path[1:])
    return {frozenset(pair) for pair in pairs}


@pytest.mark.parametrize("contour, connections", [
    (fr.FACE_OVAL, conn.FACEMESH_FACE_OVAL),
    (fr.LEFT_EYE, conn.FACEMESH_LEFT_EYE),
    (fr.RIGHT_EYE, conn.FACEMESH_RIGHT_EYE),
])
def test_closed_contours_follow_connections(contour, connections):
    assert len(set(contour)) == len(contour)
    assert set(contour) == indices(connections)
    assert path_edges(contour, closed=True) == undirected(connections)


def test_lips():
    lips = undirected(conn.FACEMESH_LIPS)
    assert set(fr.LIPS_OUTER) | set(fr.LIPS_INNER) == indices(conn.FACEMESH_LIPS)
    assert path_edges(fr.LIPS_OUTER, closed=True) | path_edges(fr.LIPS_INNER, closed=True) == lips
    assert path_edges(fr.UPPER_LIP_OUTER, False) | path_edges(fr.LOWER_LIP_OUTER, False) \
        == path_edges(fr.LIPS_OUTER, True)
    assert path_edges(fr.UPPER_LIP_INNER, False) | path_edges(fr.LOWER_LIP_INNER, False) \
        == path_edges(fr.LIPS_INNER, True)


@pytest.mark.parametrize("upper, lower, eye", [
    (fr.LEFT_EYE_UPPER, fr.LEFT_EYE_LOWER, fr.LEFT_EYE),
    (fr.RIGHT_EYE_UPPER, fr.RIGHT_EYE_LOWER, fr.RIGHT_EYE),
])
def test_eyelids_split_the_eye_contour(upper, lower, eye):
    assert upper[0] == lower[0] == eye[0]                       # outer corner
    assert upper[-1] == lower[-1]                               # inner corner
    assert path_edges(upper, False) | path_edges(lower, False) == path_edges(eye, True)


@pytest.mark.parametrize("brow, connections", [
    (fr.LEFT_EYEBROW, conn.FACEMESH_LEFT_EYEBROW),
    (fr.RIGHT_EYEBROW, conn.FACEMESH_RIGHT_EYEBROW),
])
def test_eyebrows(brow, connections):
    assert set(brow) == indices(connections)


@pytest.mark.parametrize("iris, connections", [
    (fr.LEFT_IRIS, conn.FACEMESH_LEFT_IRIS),
    (fr.RIGHT_IRIS, conn.FACEMESH_RIGHT_IRIS),
])
def test_irises(iris, connections):
    centre, *edge = iris
    assert set(edge) == indices(connections)
    assert centre not in indices(connections) and centre in (468, 473)
    assert path_edges(tuple(edge), closed=True) == undirected(connections)


def test_single_points_sit_on_their_contours():
    assert {fr.LEFT_EYE_OUTER, fr.LEFT_EYE_INNER, fr.LEFT_EYE_TOP, fr.LEFT_EYE_BOTTOM} <= set(fr.LEFT_EYE)
    assert {fr.RIGHT_EYE_OUTER, fr.RIGHT_EYE_INNER, fr.RIGHT_EYE_TOP, fr.RIGHT_EYE_BOTTOM} <= set(fr.RIGHT_EYE)
    assert {fr.MOUTH_LEFT, fr.MOUTH_RIGHT} <= set(fr.LIPS_OUTER)
    assert {fr.UPPER_LIP_CENTER, fr.LOWER_LIP_CENTER} <= set(fr.LIPS_INNER)
    assert {fr.CHIN, fr.FOREHEAD_TOP} <= set(fr.FACE_OVAL)
    assert max(max(fr.LEFT_IRIS), max(fr.RIGHT_IRIS)) == fr.NUM_LANDMARKS - 1
