"""Framing from the picture itself (`--framing`): crops inside the picture, the face's share of the frame,
no rotation, the whole-picture paste-back seam, invented pixels only for a cut-off face, and the warnings
for pictures that need care. Real pictures and the real detector and renderer throughout."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from facecast import face_regions as fr
from facecast.errors import InputError
from facecast.face.portrait import AUTO_FACE_MAX, AUTO_FACE_MIN, FRAMINGS, _warn_about, analyze_portrait, head_boxes
from facecast.media import load_image
from facecast.motion import Blink, HeadPose, MotionFrame
from facecast.render.renderer import Renderer

PORTRAITS = Path(__file__).resolve().parents[3] / "shared" / "data" / "portraits"
SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "mona_lisa.jpg"   # 720x1280 (portrait format)
SIZE = 256

needs_portraits = pytest.mark.skipif(not PORTRAITS.is_dir(), reason=f"shared portraits not found at {PORTRAITS}")


def face_share(rig) -> float:
    """Forehead-to-chin length (in the picture plane) over the output height."""
    return float(np.linalg.norm(rig.landmarks[fr.FOREHEAD_TOP, :2] - rig.landmarks[fr.CHIN, :2])) / rig.size


def picture_corners(rig) -> np.ndarray:
    """Where the output square's outer corners lie in the source picture (pixel-edge coordinates)."""
    inverse = np.linalg.inv(rig.transform)
    corners = np.array([[-0.5, -0.5], [rig.size - 0.5, rig.size - 0.5]])
    return corners @ inverse[:2, :2].T + inverse[:2, 2] + 0.5


def assert_inside_unrotated(rig) -> None:
    assert rig.transform[0, 1] == 0 and rig.transform[1, 0] == 0, "no rotation"
    assert rig.transform[0, 0] == pytest.approx(rig.transform[1, 1]), "no stretching"
    width, height = rig.picture_size
    (x0, y0), (x1, y1) = picture_corners(rig)
    assert x0 >= -1e-6 and y0 >= -1e-6 and x1 <= width + 1e-6 and y1 <= height + 1e-6, "the crop leaves the picture"


@pytest.fixture(scope="module")
def mona() -> np.ndarray:
    return load_image(SAMPLE)


@pytest.fixture(scope="module")
def small_face(mona: np.ndarray) -> np.ndarray:
    """The painting shrunk onto a wide plain backdrop of its mean colour: a small face in a large picture."""
    canvas = np.empty((900, 1200, 3), np.uint8)
    canvas[:] = mona.reshape(-1, 3).mean(0).astype(np.uint8)
    canvas[300:740, 500:748] = cv2.resize(mona, (248, 440), interpolation=cv2.INTER_AREA)
    return canvas


def test_framings_are_the_cli_choices() -> None:
    from facecast.app.options import FRAMING_CHOICES

    assert FRAMINGS == FRAMING_CHOICES


def test_auto_keeps_the_picture_as_given(mona: np.ndarray) -> None:
    """The Mona Lisa's face fills about a third of the picture's width: auto is the largest square the
    picture holds around her head, unrotated, with nothing invented."""
    rig = analyze_portrait(mona, size=SIZE)
    assert rig.framing == "auto" and rig.image.shape == (SIZE, SIZE, 3)
    assert_inside_unrotated(rig)
    (x0, _), (x1, _) = picture_corners(rig)
    assert x1 - x0 == pytest.approx(mona.shape[1]), "the square spans the picture's width"
    assert AUTO_FACE_MIN <= face_share(rig) <= AUTO_FACE_MAX
    head, _ = head_boxes(rig.landmarks)
    assert head[1] >= 0, "the whole head (hair included) is in the frame"


def test_auto_tightens_a_small_face_to_the_lower_bound(small_face: np.ndarray) -> None:
    rig = analyze_portrait(small_face, size=SIZE)
    assert_inside_unrotated(rig)
    assert face_share(rig) == pytest.approx(AUTO_FACE_MIN, abs=0.01)
    picture = analyze_portrait(small_face, size=SIZE, framing="picture")
    assert_inside_unrotated(picture)
    (x0, y0), (x1, y1) = picture_corners(picture)
    assert x1 - x0 == pytest.approx(900) and y1 - y0 == pytest.approx(900), "picture: the largest square"
    assert face_share(picture) < 0.1


def test_face_framing_is_the_tightest_square_holding_the_head(small_face: np.ndarray) -> None:
    rig = analyze_portrait(small_face, size=SIZE, framing="face")
    assert_inside_unrotated(rig)
    head, _ = head_boxes(rig.landmarks)
    assert head[0] >= -1 and head[1] >= -1 and head[2] <= SIZE + 1 and head[3] <= SIZE + 1, "the whole head"
    assert max(head[2] - head[0], head[3] - head[1]) == pytest.approx(SIZE, abs=1), "and no more"
    assert face_share(rig) > face_share(analyze_portrait(small_face, size=SIZE)), "tighter than auto"


def test_a_tilted_head_stays_tilted(mona: np.ndarray) -> None:
    """No canvas rotation: the eye line keeps the picture's own slope."""
    tilted = cv2.warpAffine(mona, cv2.getRotationMatrix2D((360, 400), 12, 1.0), (720, 1280),
                            borderMode=cv2.BORDER_REFLECT)
    rig = analyze_portrait(tilted, size=SIZE)
    assert_inside_unrotated(rig)
    right = rig.landmarks[[fr.RIGHT_EYE_OUTER, fr.RIGHT_EYE_INNER], :2].mean(0)
    left = rig.landmarks[[fr.LEFT_EYE_OUTER, fr.LEFT_EYE_INNER], :2].mean(0)
    slope = np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0]))
    assert slope == pytest.approx(-12, abs=3)


def test_unknown_framing_is_a_one_line_error(mona: np.ndarray) -> None:
    with pytest.raises(InputError, match="unknown framing 'zoom': use auto, face, picture, full"):
        analyze_portrait(mona, size=SIZE, framing="zoom")


# ----------------------------------------------------------------------------- full: paste-back

@pytest.fixture(scope="module")
def full_rig(mona: np.ndarray):
    return analyze_portrait(mona, size=SIZE, framing="full")


def test_full_keeps_the_whole_picture(full_rig, mona: np.ndarray) -> None:
    height, width = full_rig.frame_shape
    assert height == SIZE and width == 2 * round(SIZE * mona.shape[1] / mona.shape[0] / 2), \
        "longer side = size, the other even, the picture's aspect ratio"
    assert full_rig.backdrop.shape == (height, width, 3)
    x, y = full_rig.placement
    square = full_rig.size
    assert 0 <= x and x + square <= width and 0 <= y and y + square <= height
    assert np.array_equal(full_rig.image, full_rig.backdrop[y:y + square, x:x + square]), \
        "the animated square is cut from the backdrop at whole pixels"


def test_paste_back_seam_is_invisible(full_rig) -> None:
    """A strong head move: the frame equals the picture outside the square, and the difference across the
    square's edge is no larger than between neighbouring pixels inside the picture."""
    renderer = Renderer(full_rig, device="cpu")
    moved = MotionFrame(t=0.0, head=HeadPose(roll=8.0, yaw=15.0, pitch=-8.0, x=0.06, y=0.04, distance=0.9),
                        blink=Blink(1.0, 1.0), expressions={"jawOpen": 0.7})
    frame = renderer.render(moved)
    backdrop = full_rig.backdrop.astype(np.int16)
    out = frame.astype(np.int16)
    assert frame.shape == backdrop.shape
    x, y = full_rig.placement
    square = full_rig.size
    outside = np.ones(frame.shape[:2], bool)
    outside[y:y + square, x:x + square] = False
    assert np.array_equal(out[outside], backdrop[outside])
    assert np.abs(out[y:y + square, x:x + square] - backdrop[y:y + square, x:x + square]).max() > 40, \
        "the head moved"
    # the step across each side of the square that meets the picture vs the steps between neighbouring rows
    # (columns) of the picture just beside it
    lines = []
    if y + square < frame.shape[0]:
        lines.append((out[:, x:x + square], y + square))
    if y > 0:
        lines.append((out[:, x:x + square], y))
    if x > 0:
        lines.append((out[y:y + square].transpose(1, 0, 2), x))
    if x + square < frame.shape[1]:
        lines.append((out[y:y + square].transpose(1, 0, 2), x + square))
    assert lines, "the square meets the picture somewhere"
    for rows, seam in lines:
        steps = np.abs(np.diff(rows, axis=0)).mean(axis=(1, 2))      # steps[i]: between rows i and i + 1
        nearby = np.r_[steps[max(seam - 9, 0):seam - 1], steps[seam:seam + 8]]
        assert steps[seam - 1] <= nearby.max()


def test_paste_back_feathers_a_square_that_differs_at_its_edge(full_rig) -> None:
    """Motion that reaches the square's edge fades in over the band: no step larger than the band's ramp."""
    from facecast.render.paste_back import PasteBack

    x, y = full_rig.placement
    square = full_rig.size
    band = 8
    paste = PasteBack(full_rig.backdrop, (x, y), square, 3, band)
    brighter = np.clip(full_rig.image.astype(np.int16) + 48, 0, 255).astype(np.uint8)
    out = paste(brighter).astype(np.int16)
    backdrop = full_rig.backdrop.astype(np.int16)
    lift = (out - backdrop).mean(axis=(1, 2))                         # per row, over the whole width
    seam = y + square                                                 # Mona's square ends above her hands
    assert seam < out.shape[0]
    assert lift[seam] == 0 and lift[seam - band // 2] < 48 and lift[seam - band - 2] > 40
    assert np.abs(np.diff(lift[seam - band - 2:seam + 2])).max() <= 48 / band + 1


def test_paste_back_keeps_an_alpha_given_to_the_square(full_rig) -> None:
    """A cut-out sets the square's alpha: the pasted frame is RGBA, the rest of the picture opaque."""
    from dataclasses import replace

    alpha = np.full(full_rig.image.shape[:2] + (1,), 200, np.uint8)
    rig = replace(full_rig, image=np.concatenate([full_rig.image, alpha], axis=2))
    frame = Renderer(rig, device="cpu").render(MotionFrame(t=0.0))
    x, y = rig.placement
    assert frame.shape[2] == 4 and frame[y + rig.size // 2, x + rig.size // 2, 3] == 200
    assert frame[..., 3].max() == 255


# ----------------------------------------------------------------------------- invented pixels

def test_invented_pixels_only_for_a_cut_off_face(mona: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:
    """A picture that cuts the face off below the mouth: the frame reaches beyond it, once logged, and the
    invented band is a soft continuation (no streaks: far less horizontal detail than the picture's edge)."""
    with caplog.at_level(logging.WARNING, logger="facecast.portrait"):
        analyze_portrait(mona, size=SIZE)
    assert not caplog.records, "a picture that holds the face invents nothing"
    cut = np.ascontiguousarray(mona[:400])
    with caplog.at_level(logging.WARNING, logger="facecast.portrait"):
        rig = analyze_portrait(cut, size=SIZE)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "cuts off the face" in messages[0] and "filled in" in messages[0]
    inverse = np.linalg.inv(rig.transform)
    rows = np.arange(SIZE) * inverse[1, 1] + inverse[1, 2]
    beyond = np.flatnonzero(rows > cut.shape[0] - 0.5)
    assert beyond.size > 10, "the frame reaches below the picture"
    image = rig.image.astype(np.float32)
    edge_detail = np.abs(np.diff(image[beyond[0] - 4:beyond[0]], axis=1)).mean()
    far = image[beyond[len(beyond) // 2]:]
    assert np.abs(np.diff(far, axis=1)).mean() < 0.5 * edge_detail, "streaks: the edge's detail is carried on"
    assert np.abs(np.diff(image[beyond[0] - 2:beyond[0] + 2], axis=0)).mean() < 12, "a step at the picture's edge"


# ----------------------------------------------------------------------------- warnings

def test_tiny_face_warns_once(mona: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:
    tiny = cv2.resize(mona, (120, 180), interpolation=cv2.INTER_AREA)
    with caplog.at_level(logging.WARNING, logger="facecast.portrait"):
        analyze_portrait(tiny, size=SIZE)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "px tall" in messages[0] and "larger picture" in messages[0]


def test_closed_eyes_warn(mona: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:
    """Open eyes say nothing; the same face with the upper lids on the lower ones (eyes shut) warns."""
    rig = analyze_portrait(mona, size=SIZE)
    with caplog.at_level(logging.WARNING, logger="facecast.portrait"):
        _warn_about(rig.landmarks, "open.png")
        assert not caplog.records
        shut = rig.landmarks.copy()
        for top, bottom in ((fr.LEFT_EYE_TOP, fr.LEFT_EYE_BOTTOM), (fr.RIGHT_EYE_TOP, fr.RIGHT_EYE_BOTTOM)):
            shut[top] = shut[bottom]
        _warn_about(shut, "shut.png")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "eyes in shut.png look closed" in messages[0] and "open eyes" in messages[0]


def test_a_wide_open_mouth_warns(mona: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:
    """Lips together say nothing; the same face with its lower lip dropped a tenth of the face's height warns."""
    rig = analyze_portrait(mona, size=SIZE)
    height = float(np.linalg.norm(rig.landmarks[fr.FOREHEAD_TOP, :2] - rig.landmarks[fr.CHIN, :2]))
    with caplog.at_level(logging.WARNING, logger="facecast.portrait"):
        _warn_about(rig.landmarks, "shut.png")
        assert not caplog.records
        wide = rig.landmarks.copy()
        wide[list(fr.LOWER_LIP_INNER[1:-1]), 1] += 0.1 * height
        _warn_about(wide, "wide.png")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "mouth in wide.png is wide open" in messages[0] and "lips together" in messages[0]


# ----------------------------------------------------------------------------- the portraits shipped for testing

@needs_portraits
@pytest.mark.parametrize("name", ["liveportrait_s1.jpg", "sadtalker_art_10.png"])
def test_real_portraits_in_every_mode(name: str) -> None:
    """A photo and an RGBA painting: every square framing stays inside the picture; RGBA keeps its alpha."""
    for framing in ("auto", "face", "picture"):
        rig = analyze_portrait(PORTRAITS / name, size=SIZE, framing=framing)
        assert_inside_unrotated(rig)
        assert rig.image.shape[:2] == (SIZE, SIZE)
        assert rig.has_alpha == name.endswith(".png")


def test_the_picture_benchmark_says_in_one_line_what_it_cannot_measure(tmp_path: Path) -> None:
    """`benchmarks/picture.py`: a --cache that is not there, or nothing left to measure (no portrait matched, the
    held-out frames' cache missing), is one error line and exit 2; a missing cache alone only skips those frames."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "picture.py"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}   # no dataset cache there

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env,
                              timeout=120)

    missing = run("--only", "none", "--held-out", "2", "--cache", str(tmp_path / "no-such"))
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1].endswith("no-such: no such folder")
    nothing = run("--only", "none", "--held-out", "2")
    assert nothing.returncode == 2 and "Traceback" not in nothing.stderr
    assert "held-out first frames skipped: no dataset cache" in nothing.stderr
    assert nothing.stderr.strip().splitlines()[-1].endswith("nothing to measure: no portrait matched and no held-out "
                                                             "first frame was found")
