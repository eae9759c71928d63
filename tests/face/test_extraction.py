"""Motion extraction from real video: pose geometry, real GRID clips, the re-render roundtrip, CLI errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecast import face_regions as fr
from facecast.app.cli import main
from facecast.errors import InputError
from facecast.face.extraction import (
    GAZE_LIMIT_DEG,
    ExpressionFitter,
    ReferenceFace,
    angles_rotation,
    extract,
    extract_from_landmarks,
    fill_lost,
    fit_rigid,
    iter_video_frames,
    load_template,
    plausible_gaze,
    rotation_angles,
    track_landmarks,
)
from facecast.media import Mp4Writer
from facecast.motion import EXPRESSION_CHANNELS, VISEMES, read_motion


def _grid(shared_data: Path, speaker: str, name: str) -> Path:
    return shared_data / "talking" / speaker / f"{name}.mp4"


@pytest.mark.parametrize("angles", [(12.0, 0.0, 0.0), (0.0, -8.0, 0.0), (0.0, 0.0, 15.0), (20.0, 10.0, -5.0)])
def test_rigid_fit_recovers_rotations_with_motion_signs(angles: tuple[float, float, float]) -> None:
    template = load_template()
    rotation = angles_rotation(np.array(angles))
    points = 40.0 * template @ rotation.T + np.array([180.0, 140.0, 0.0])
    fit = fit_rigid(points[None], template)
    assert np.allclose(rotation_angles(fit.rotation)[0], angles, atol=1e-6)
    assert fit.scale[0] == pytest.approx(40.0)
    # The signs of motion.py: yaw > 0 moves the nose to image right, pitch > 0 up, roll > 0 counter-clockwise.
    eyes = (points[fr.LEFT_EYE_OUTER] + points[fr.RIGHT_EYE_OUTER]) / 2
    nose = points[fr.NOSE_TIP] - eyes
    front = 40.0 * (template[fr.NOSE_TIP] - (template[fr.LEFT_EYE_OUTER] + template[fr.RIGHT_EYE_OUTER]) / 2)
    if angles == (12.0, 0.0, 0.0):
        assert nose[0] > front[0] + 5
    if angles == (0.0, -8.0, 0.0):
        assert nose[1] > front[1] + 2          # chin down: the nose drops in the image
    if angles == (0.0, 0.0, 15.0):
        eye_line = points[fr.LEFT_EYE_OUTER] - points[fr.RIGHT_EYE_OUTER]
        assert eye_line[1] < 0                 # the subject's left eye (image right) rises


def test_fill_lost_interpolates_and_holds_ends() -> None:
    values = np.array([[np.nan], [1.0], [np.nan], [np.nan], [4.0], [np.nan]])
    found = ~np.isnan(values[:, 0])
    assert fill_lost(values, found)[:, 0].tolist() == [1.0, 1.0, 2.0, 3.0, 4.0, 4.0]


def test_implausible_gaze_readings_count_as_lost() -> None:
    gaze = np.array([[2.0, -1.0], [4.0, 900.0], [6.0, 3.0], [-60.0, 0.0], [8.0, 5.0]])
    assert plausible_gaze(gaze).tolist() == [[2.0, -1.0], [4.0, 1.0], [6.0, 3.0], [7.0, 4.0], [8.0, 5.0]]
    assert plausible_gaze(np.full((3, 2), 1e4)).tolist() == [[0.0, 0.0]] * 3
    clean = np.array([[GAZE_LIMIT_DEG, -GAZE_LIMIT_DEG], [0.0, 10.0]])
    assert plausible_gaze(clean).tolist() == clean.tolist()                # at the limit is still plausible


@pytest.fixture(scope="module")
def grid_track(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    return track_landmarks(_grid(shared_data, "grid_s1", "bbaf2n"))


def test_extraction_of_a_real_grid_clip(grid_track: tuple[np.ndarray, np.ndarray]) -> None:
    landmarks, found = grid_track
    assert found.all() and len(found) == 75
    result = extract_from_landmarks(landmarks, found, 25.0)
    # A studio speaker facing the camera: small head motion, eyes mostly open.
    assert np.abs(result.head[:, :3]).max() < 8.0
    assert np.abs(result.head[:, 3:5]).max() < 0.05 and np.abs(result.head[:, 5] - 1).max() < 0.05
    assert 0.0 <= result.blink.min() and result.blink.max() <= 1.0 and np.median(result.blink) < 0.2
    assert 0.0 <= result.expressions.min() and result.expressions.max() <= 1.0
    jaw, close = EXPRESSION_CHANNELS.index("jawOpen"), EXPRESSION_CHANNELS.index("mouthClose")
    assert (result.expressions[:, close] <= result.expressions[:, jaw] + 1e-9).all()
    # The reference is neutral: the most closed mouth among open-eyed frames.
    assert result.mouth_opening[result.reference] <= np.percentile(result.mouth_opening, 10)
    # The fitted coefficients put the lips where the face mesh saw them: the renderer's landmark
    # motion for the coefficients opens the mouth as the video does.
    fitter = ExpressionFitter(landmarks[result.reference])
    fitted = np.stack([result.expressions[:, EXPRESSION_CHANNELS.index(n)] for n in fitter.names], 1)
    moved = fitter.landmarks(fitted)
    gap = np.linalg.norm(moved[:, fr.UPPER_LIP_CENTER] - moved[:, fr.LOWER_LIP_CENTER], axis=1)
    assert np.corrcoef(gap, result.mouth_opening)[0, 1] > 0.95


def test_lost_frames_are_filled_and_counted(grid_track: tuple[np.ndarray, np.ndarray]) -> None:
    landmarks, found = grid_track
    landmarks, found = landmarks.copy(), found.copy()
    landmarks[30:35], found[30:35] = np.nan, False
    result = extract_from_landmarks(landmarks, found, 25.0)
    assert result.lost == 5 and np.isfinite(result.head).all() and np.isfinite(result.expressions).all()
    lo, hi = np.minimum(result.head[29], result.head[35]), np.maximum(result.head[29], result.head[35])
    assert ((result.head[30:35] >= lo - 1e-6) & (result.head[30:35] <= hi + 1e-6)).all()


def test_the_face_alone_has_no_visemes_or_voice(shared_data: Path) -> None:
    """Visemes and voice are the audio's (`facecast extract` adds them: tests/app/test_extract.py)."""
    result = extract(_grid(shared_data, "grid_s4", "bbaf2a"))
    assert result.visemes.shape == (0, len(VISEMES)) and result.voice.shape == (0,)


def test_extract_render_measure_roundtrip(shared_data: Path) -> None:
    """Re-render the extracted motion on the reference frame: the mouth opens and closes with the video."""
    from facecast.face.measure import FaceMeasurer, mouth_opening
    from facecast.face.portrait import analyze_portrait
    from facecast.render.renderer import Renderer

    path = _grid(shared_data, "grid_s4", "lgar9n")
    result = extract(path)
    originals = list(iter_video_frames(path))
    renderer = Renderer(analyze_portrait(originals[result.reference], size=256), device="cpu")
    rendered = []
    with FaceMeasurer() as measurer:
        for frame in result.frames():
            points = measurer.landmarks(renderer.render(frame)[:, :, :3])
            assert points is not None
            rendered.append(mouth_opening(points))
    assert np.corrcoef(rendered, result.mouth_opening)[0, 1] > 0.9


def _write_video(path: Path, frames: list[np.ndarray]) -> Path:
    writer = Mp4Writer(path, frames[0].shape[0], 25.0)
    for frame in frames:
        writer.write_frame(frame)
    writer.close()
    return path


def test_cli_extract_writes_motion(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "motion.jsonl"
    assert main(["extract", str(_grid(shared_data, "grid_s1", "bbaf2n")), "-o", str(output), "--reference", "0"]) == 0
    assert "75 frames at 25 fps, relative to frame 0; face lost in 0 frame(s)" in capsys.readouterr().out
    header, frames = read_motion(output)
    frames = list(frames)
    assert header.generator == "extract" and header.fps == 25.0 and len(frames) == 75
    assert frames[0].head.yaw == 0.0 and frames[0].head.distance == 1.0
    assert main(["extract", str(_grid(shared_data, "grid_s1", "bbaf2n")), "-o", str(output)]) == 1
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "corrupt", "audio_only", "no_face", "bad_reference"])
def test_cli_extract_errors_are_one_line(case: str, tmp_path: Path, sample_speech: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    video = {"missing": tmp_path / "nothing.mp4", "audio_only": sample_speech}.get(case, tmp_path / "clip.mp4")
    if case == "corrupt":
        video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    if case in ("no_face", "bad_reference"):
        ramp = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
        _write_video(video, [np.roll(ramp, i, axis=1) for i in range(10)])
    extra = ["--reference", "first"] if case == "bad_reference" else []
    output = tmp_path / "out.jsonl"
    assert main(["extract", str(video), "-o", str(output), *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("facecast: error: ")
    expected = {"missing": "not found", "corrupt": "cannot read video", "audio_only": "no video stream",
                "no_face": "no face found in any of the 10 frames", "bad_reference": "--reference must be"}[case]
    assert expected in err[0]
    assert not output.exists()


def test_reference_index_is_validated(grid_track: tuple[np.ndarray, np.ndarray]) -> None:
    landmarks, found = grid_track
    with pytest.raises(InputError, match="frame index 0..74"):
        extract_from_landmarks(landmarks, found, 25.0, reference=200)


def test_a_reference_caught_mid_word_measures_from_shut_lips(shared_data: Path, sample_portrait: Path) -> None:
    """The renderer shuts a portrait's parted lips (`render.shut_lips`), so extraction measures against the same
    shut face: the parted reference itself reads as an open jaw, a shut one as none."""
    from facecast.face.measure import FaceMeasurer

    with FaceMeasurer(static_images=True) as measurer:
        parted = measurer.landmarks(next(iter(iter_video_frames(
            shared_data / "talking/wild/pcavs_Pose_Source_741400163.mp4"))))
        shut = measurer.landmarks(np.asarray(Image.open(sample_portrait).convert("RGB")))
    jaw = EXPRESSION_CHANNELS.index("jawOpen")
    assert ReferenceFace(parted).measure(parted[None]).expressions[0, jaw] > 0.1
    assert ReferenceFace(shut).measure(shut[None]).expressions[0, jaw] < 0.01

