"""A full blink, measured as a viewer's face mesh reads it, on a photo, a painting and a 3D cartoon."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from facecast import face_regions as fr
from facecast.face.measure import FaceMeasurer, eye_openness, eye_openness_across
from facecast.face.portrait import analyze_portrait
from facecast.media import load_image
from facecast.motion import Blink, HeadPose, MotionFrame
from facecast.render.closed_lids import FADE_START, LASH_CONTRAST, LUMA, ClosedLids, _ShutEye
from facecast.render.renderer import Renderer
from facecast.render.warp_basis import WarpBasis

PORTRAITS = ("liveportrait_s1.jpg", "liveportrait_s9.jpg", "liveportrait_s7.jpg")   # photo, painting, 3D cartoon


@functools.cache
def _shut_over_open(path: Path, yaw: float = 0.0, roll: float = 0.0, distance: float = 1.0,
                    read: Callable[[np.ndarray, str], float] = eye_openness, size: int = 512) -> float:
    """Both eyes' face-mesh openness (`read`) at blink = 1 over the open eyes' (static mode), mean of the two."""
    head = HeadPose(yaw=yaw, roll=roll, distance=distance)
    renderer = Renderer(analyze_portrait(load_image(path), size=size), device="cpu")
    with FaceMeasurer(static_images=True) as measure:
        opened = measure.landmarks(np.ascontiguousarray(renderer.render(MotionFrame(t=0.0, head=head))[..., :3]))
        shut_frame = renderer.render(MotionFrame(t=0.0, head=head, blink=Blink(1.0, 1.0)))
        shut = measure.landmarks(np.ascontiguousarray(shut_frame[..., :3]))
    assert opened is not None and shut is not None
    return float(np.mean([read(shut, side) / read(opened, side) for side in ("left", "right")]))


@pytest.mark.parametrize("name", PORTRAITS)
def test_a_full_blink_reads_closed(shared_data: Path, name: str) -> None:
    """With the warp alone the face mesh read a shut rendered eye at 0.45-0.52 of open on these three;
    with the painted lid (`closed_lids`) 0.11-0.35 (benchmarks/README.md, "A steady head")."""
    assert _shut_over_open(shared_data / "portraits" / name) < 0.4


@pytest.mark.parametrize("name, most", [(PORTRAITS[0], 0.16), (PORTRAITS[1], 0.25), (PORTRAITS[2], 0.1)])
def test_across_the_eye_a_full_blink_is_shut(shared_data: Path, name: str, most: float) -> None:
    """Read across the eye only (the mesh's top and bottom lid points lie apart along a shut eye's lash line), the
    painted lid reads 0.13 / 0.22 / 0.05 of open on the photo, the painting and the cartoon (real shut eyes: median
    0.09); the warp alone 0.40-0.48."""
    assert _shut_over_open(shared_data / "portraits" / name, read=eye_openness_across) <= most


def test_a_small_output_blinks_as_shut_as_a_large_one(shared_data: Path) -> None:
    """The lid's pixel lengths scale with the output: at 256² with 512²'s pixel lash line the painting's shut eye
    read 0.47 of open across (0.22 at 512²), scaled 0.27."""
    assert _shut_over_open(shared_data / "portraits" / PORTRAITS[1], read=eye_openness_across, size=256) <= 0.32


def test_the_painted_lid_follows_a_moving_head(shared_data: Path) -> None:
    """Rolled, turned and nearer, the shut eye still reads closed: the lid moves with the eye corners."""
    assert _shut_over_open(shared_data / "portraits" / PORTRAITS[0], yaw=8.0, roll=10.0, distance=0.9) < 0.42


def test_partial_blinks_are_the_warp_alone(shared_data: Path) -> None:
    """A half-closed lid is only the warp (the painted lid fades in over the last part of the blink), and a
    shut one paints one lid per eye, over the eye."""
    rig = analyze_portrait(load_image(shared_data / "portraits" / PORTRAITS[0]), size=512)
    lids = ClosedLids(rig.image, WarpBasis(rig.image, rig.landmarks))
    points = rig.landmarks[:, :2]
    assert lids.patches(points, {"Left": FADE_START, "Right": 0.5}) == []
    shut = lids.patches(points, {"Left": 1.0, "Right": 1.0})
    assert len(shut) == 2
    for patch, eye in zip(shut, (fr.LEFT_EYE, fr.RIGHT_EYE)):
        centre = points[list(eye)].mean(0)
        h, w = patch.alpha.shape
        assert patch.x0 < centre[0] < patch.x0 + w and patch.y0 < centre[1] < patch.y0 + h
        assert patch.alpha.max() > 0.99


def test_the_lash_line_is_dark_against_the_lid(shared_data: Path) -> None:
    """The Mona Lisa's darkest lash pixels are at 0.6-0.7 of her lid's luma, real shut eyes' lash lines at 0.26-0.47
    of their lids' (median 0.42): the painted line is darkened to LASH_CONTRAST of the lid (blending with the lid
    around the line's core leaves it a little lighter)."""
    rig = analyze_portrait(load_image(shared_data / "portraits" / "liveportrait_s9.jpg"), size=512)
    basis = WarpBasis(rig.image, rig.landmarks)
    lids = ClosedLids(rig.image, basis)
    for side, eye in lids._eyes.items():
        lid = eye.colour @ LUMA
        skin = float(np.median(lid[eye.alpha > 0.5]))
        own = _ShutEye._lash_colour(rig.image[..., :3], basis.eyes[side], basis.frame, skin=np.inf) @ LUMA
        assert own > 0.5 * skin
        assert lid[eye.alpha > 0.5].min() < (LASH_CONTRAST + 0.1) * skin


_NOT_YET = pytest.mark.xfail(strict=True, reason="issue 18's target, not met on these: the face mesh reads their shut "
                                                 "rendered eyes at 0.29 (photo) and 0.35 (Mona Lisa) of open (across "
                                                 "the eye only: 0.13 / 0.22); real fully shut eyes read 0.18 median, "
                                                 "0.30 at the 90th percentile (233 dips across the eye: 0.09 / 0.26)")


@pytest.mark.parametrize("name", [pytest.param(PORTRAITS[0], marks=_NOT_YET),
                                  pytest.param(PORTRAITS[1], marks=_NOT_YET), PORTRAITS[2]])
def test_a_full_blink_closes_to_a_fifth_of_open(shared_data: Path, name: str) -> None:
    assert _shut_over_open(shared_data / "portraits" / name) <= 0.2
