"""A full blink, measured as a viewer's face mesh reads it, on a photo, a painting and a 3D cartoon."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from facecast.face.measure import FaceMeasurer, eye_openness
from facecast.face.portrait import analyze_portrait
from facecast.media import load_image
from facecast.motion import Blink, MotionFrame
from facecast.render.renderer import Renderer

PORTRAITS = ("liveportrait_s1.jpg", "liveportrait_s9.jpg", "liveportrait_s7.jpg")   # photo, painting, 3D cartoon


@functools.cache
def _shut_over_open(path: Path) -> float:
    """Both eyes' face-mesh openness at blink = 1 over the open eyes' (static mode), mean of the two."""
    renderer = Renderer(analyze_portrait(load_image(path), size=512), device="cpu")
    with FaceMeasurer(static_images=True) as measure:
        opened = measure.landmarks(np.ascontiguousarray(renderer.render(MotionFrame(t=0.0))[..., :3]))
        shut_frame = renderer.render(MotionFrame(t=0.0, blink=Blink(1.0, 1.0)))
        shut = measure.landmarks(np.ascontiguousarray(shut_frame[..., :3]))
    assert opened is not None and shut is not None
    return float(np.mean([eye_openness(shut, side) / eye_openness(opened, side) for side in ("left", "right")]))


@pytest.mark.parametrize("name", PORTRAITS)
def test_a_full_blink_reads_closed(shared_data: Path, name: str) -> None:
    """Today the face mesh reads a shut rendered eye at 0.3-0.7 of open (benchmarks/README.md, "A steady head")."""
    assert _shut_over_open(shared_data / "portraits" / name) < 0.75


@pytest.mark.xfail(strict=True, reason="issue 18's target, not met yet: the face mesh reads shut rendered eyes "
                                       "at 0.3-0.7 of open")
@pytest.mark.parametrize("name", PORTRAITS)
def test_a_full_blink_closes_to_a_fifth_of_open(shared_data: Path, name: str) -> None:
    assert _shut_over_open(shared_data / "portraits" / name) <= 0.2
