"""Controls layered on generated motion: each moves the motion the expected way."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_one_line_error, run_facecast
from facecast.controls import (
    CONTROL_SCHEMA,
    EMOTION_PRESETS,
    ControlError,
    Controls,
    check_control,
    controls_from,
    parse_emotion,
    parse_gaze,
)
from facecast.errors import InputError
from facecast.motion import HeadPose, MotionFrame


def _frame() -> MotionFrame:
    frame = MotionFrame(t=1.0, expressions={"jawOpen": 0.4, "mouthSmileLeft": 0.1})
    frame.gaze.yaw = 3.0
    frame.head.distance = 1.02
    return frame


def test_neutral_controls_leave_motion_untouched():
    frame = _frame()
    assert Controls().apply(frame) is frame


@pytest.mark.parametrize("emotion, raised", [
    ("happy", "mouthSmileLeft"), ("sad", "browInnerUp"), ("angry", "browDownLeft"),
    ("surprised", "eyeWideLeft"), ("fear", "mouthStretchLeft"), ("disgusted", "noseSneerLeft"),
])
def test_each_emotion_raises_its_expressions_scaled_by_intensity(emotion, raised):
    full = Controls(emotion=emotion).apply(_frame()).expression(raised)
    half = Controls(emotion=emotion, intensity=0.5).apply(_frame()).expression(raised)
    base = _frame().expression(raised)
    assert full > half > base
    assert full <= 1.0


def test_offsets_gaze_and_distance():
    controls = Controls(offset={"jawOpen": -1.0, "cheekPuff": 0.3}, gaze_yaw=-20.0, gaze_pitch=5.0, distance=1.5)
    out = controls.apply(_frame())
    assert out.expression("jawOpen") == 0.0 and out.expression("cheekPuff") == pytest.approx(0.3)
    assert out.gaze.yaw == pytest.approx(-17.0) and out.gaze.pitch == pytest.approx(5.0)
    assert out.head.distance == pytest.approx(1.53)
    assert _frame().expression("jawOpen") == 0.4  # the input frame is not modified


def test_mouth_intensity_scales_the_speaking_mouth_not_the_emotion():
    frame = MotionFrame(t=0.0, expressions={"jawOpen": 0.4, "mouthFunnel": 0.2, "mouthSmileLeft": 0.1},
                        visemes={"sil": 0.4, "A": 0.5, "I": 0.1, "U": 0.0, "E": 0.0, "O": 0.0}, voice=0.6)
    lively = Controls(mouth=2.0).apply(frame)
    assert lively.expression("jawOpen") == pytest.approx(0.8) and lively.expression("mouthFunnel") == pytest.approx(0.4)
    assert lively.expression("mouthSmileLeft") == pytest.approx(0.1)        # expression, not speech: left alone
    assert lively.visemes["sil"] == pytest.approx(0.0) and lively.visemes["A"] == pytest.approx(5 / 6)
    assert lively.voice == pytest.approx(1.0)                                 # clamped
    calm = Controls(mouth=0.5).apply(frame)
    assert calm.expression("jawOpen") == pytest.approx(0.2) and calm.visemes["sil"] == pytest.approx(0.7)
    assert sum(calm.visemes.values()) == pytest.approx(1.0) and calm.voice == pytest.approx(0.3)
    still = Controls(mouth=0.0, emotion="surprised").apply(frame)
    assert still.expression("jawOpen") == pytest.approx(0.12)                # only the emotion's own jaw
    assert still.visemes["sil"] == 1.0 and still.voice == 0.0
    assert frame.expression("jawOpen") == 0.4                                 # the input frame is not modified


def test_update_from_control_messages():
    controls = Controls()
    controls.update({"type": "emotion", "preset": "sad", "intensity": 0.3})
    controls.update({"type": "gaze", "yaw": 10, "pitch": -4})
    controls.update({"type": "distance", "value": 0.8})
    controls.update({"type": "mute", "muted": True})
    controls.update({"type": "mouth", "intensity": 1.5})
    controls.update({"type": "head", "intensity": 0.4})
    assert (controls.emotion, controls.intensity, controls.gaze_yaw, controls.distance, controls.muted) == \
        ("sad", 0.3, 10.0, 0.8, True)
    assert (controls.mouth, controls.head) == (1.5, 0.4)
    with pytest.raises(ValueError):
        controls.update({"type": "portrait", "path": "x.png"})


def test_head_intensity_scales_the_head_about_the_picture_pose_not_the_face():
    frame = MotionFrame(t=0.0, expressions={"jawOpen": 0.4}, voice=0.6)
    frame.head = HeadPose(yaw=6.0, pitch=-4.0, roll=2.0, x=0.02, y=-0.01, distance=1.1)
    frame.gaze.yaw, frame.blink.left = 5.0, 0.7
    calm = Controls(head=0.5).apply(frame)
    assert calm.head == HeadPose(yaw=3.0, pitch=-2.0, roll=1.0, x=0.01, y=-0.005, distance=pytest.approx(1.05))
    assert calm.expression("jawOpen") == 0.4 and calm.gaze.yaw == 5.0 and calm.blink.left == 0.7 and calm.voice == 0.6
    assert Controls(head=0.0).apply(frame).head == HeadPose()                  # held as pictured
    lively = Controls(head=2.0, distance=1.5).apply(frame)
    assert lively.head.yaw == 12.0 and lively.head.distance == pytest.approx(1.2 * 1.5)   # the user's distance on top
    assert frame.head.yaw == 6.0                                              # the input frame is not modified


def test_parse_emotion():
    assert parse_emotion("happy") == ("happy", 1.0)
    assert parse_emotion("angry:0.25") == ("angry", 0.25)
    assert set(EMOTION_PRESETS) >= {"neutral", "happy", "sad", "angry", "surprised"}
    for bad in ("joyful", "happy:2", "happy:lots"):
        with pytest.raises(ValueError):
            parse_emotion(bad)


def test_command_line_controls_parse_or_fail_in_one_line():
    controls = controls_from("sad:0.4", "10,-5", 1.5, 0.25, 0.5)
    assert (controls.emotion, controls.intensity, controls.mouth, controls.head) == ("sad", 0.4, 0.25, 0.5)
    assert (controls.gaze_yaw, controls.gaze_pitch, controls.distance) == (10.0, -5.0, 1.5)
    assert controls_from() == Controls()
    assert parse_gaze(" -20 , 7.5 ") == (-20.0, 7.5)
    for bad, message in ((dict(emotion="furious"), "unknown emotion"), (dict(emotion="happy:2"), "0-1"),
                         (dict(gaze="10"), "YAW,PITCH"), (dict(gaze="a,b"), "YAW,PITCH"),
                         (dict(gaze="60,0"), "45"), (dict(gaze="nan,0"), "45"),
                         (dict(distance=0.2), "0.5-2"), (dict(distance=float("inf")), "0.5-2"),
                         (dict(mouth_intensity=2.5), "mouth intensity must be 0-2"),
                         (dict(mouth_intensity=float("nan")), "mouth intensity must be 0-2"),
                         (dict(head_intensity=-1), "head intensity must be 0-2")):
        with pytest.raises(InputError, match=message):
            controls_from(**bad)


# ---- measured on rendered output: each control moves the face the expected way

def _measure(portrait, controls: Controls, generator: str = "rule", seconds: float = 1.6) -> dict[str, float]:
    """A generator's motion for speech-like bursts, controls applied as render/live do, rendered, face-meshed."""
    from facecast import face_regions as fr
    from facecast.evaluation.motion_quality import GENERATORS
    from facecast.face.extraction import track_frames
    from facecast.face.measure import eye_openness, face_height

    t = np.arange(int(seconds * 16000)) / 16000
    speech = 0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 2.0 * t) > 0)
    fps = 25.0
    motion = [controls.apply(f) for f in GENERATORS[generator](speech, fps, int(seconds * fps))]
    landmarks, found = track_frames(_RENDERER[portrait].render(f)[:, :, :3] for f in motion)
    assert found.all()
    rows = []
    for p in landmarks:
        height = face_height(p)
        eye_centre = (p[fr.LEFT_EYE_OUTER, 0] + p[fr.LEFT_EYE_INNER, 0]) / 2
        eye_width = abs(p[fr.LEFT_EYE_OUTER, 0] - p[fr.LEFT_EYE_INNER, 0])
        lip_mid_y = (p[fr.UPPER_LIP_CENTER, 1] + p[fr.LOWER_LIP_CENTER, 1]) / 2
        corners_y = (p[fr.MOUTH_LEFT, 1] + p[fr.MOUTH_RIGHT, 1]) / 2
        brow_y = np.mean([p[i, 1] for i in fr.LEFT_EYEBROW + fr.RIGHT_EYEBROW])
        eyes_y = np.mean([p[i, 1] for i in fr.LEFT_EYE + fr.RIGHT_EYE])
        rows.append({
            "face_height": height,
            "iris_x": (p[fr.LEFT_IRIS[0], 0] - eye_centre) / eye_width,
            "iris_y": (p[fr.LEFT_IRIS[0], 1] - (p[fr.LEFT_EYE_TOP, 1] + p[fr.LEFT_EYE_BOTTOM, 1]) / 2) / eye_width,
            "corner_lift": (lip_mid_y - corners_y) / height,      # > 0: corners above the lip centre (smile)
            "mouth_width": abs(p[fr.MOUTH_LEFT, 0] - p[fr.MOUTH_RIGHT, 0]) / height,
            "brow_height": (eyes_y - brow_y) / height,
            "eye_open": (eye_openness(p, "left") + eye_openness(p, "right")) / 2,
        })
    return {key: float(np.median([r[key] for r in rows])) for key in rows[0]}


_RENDERER: dict = {}


@pytest.fixture(scope="module")
def portrait(sample_portrait):
    from facecast.face.portrait import analyze_portrait
    from facecast.render.renderer import Renderer

    _RENDERER[sample_portrait] = Renderer(analyze_portrait(sample_portrait, size=384), device="cpu")
    return sample_portrait


_NEUTRAL: dict[str, dict[str, float]] = {}


def _neutral(portrait, generator: str) -> dict[str, float]:
    if generator not in _NEUTRAL:
        _NEUTRAL[generator] = _measure(portrait, Controls(), generator)
    return _NEUTRAL[generator]


@pytest.mark.parametrize("controls, key, direction", [
    (Controls(gaze_yaw=25.0), "iris_x", +1),          # looks towards image right
    (Controls(gaze_yaw=-25.0), "iris_x", -1),
    (Controls(gaze_pitch=20.0), "iris_y", -1),        # looks up: the iris rises (image y grows downwards)
    (Controls(distance=1.5), "face_height", -1),      # farther away: smaller
    (Controls(distance=0.75), "face_height", +1),
    (Controls(emotion="happy"), "corner_lift", +1),
    (Controls(emotion="sad"), "corner_lift", -1),
    (Controls(emotion="surprised"), "brow_height", +1),
    (Controls(emotion="angry"), "brow_height", -1),
])
@pytest.mark.parametrize("generator", ["rule", "learned"])
def test_each_control_moves_the_rendered_face_the_expected_way(portrait, generator, controls, key, direction):
    neutral = _neutral(portrait, generator)
    changed = _measure(portrait, controls, generator)[key]
    spread = max(abs(neutral[key]) * 0.02, 1e-4)
    assert (changed - neutral[key]) * direction > spread, (key, neutral[key], changed)


def test_head_intensity_steadies_or_livens_the_rendered_head(portrait):
    """The learned generator's head, rendered and read back by the face mesh, turns half as far at head intensity
    0.5 and hardly at all at 0 (what is left there is the mesh's own noise and the jaw it reads as a nod)."""
    from facecast.evaluation.motion_quality import GENERATORS, head_motion, measure_frames

    seconds, fps = 4.0, 25.0
    t = np.arange(int(seconds * 16000)) / 16000
    speech = 0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 2.0 * t) > 0)
    motion = GENERATORS["learned"](speech, fps, int(seconds * fps))
    spread = {}
    for head in (0.0, 0.5, 1.0):
        frames = (_RENDERER[portrait].render(Controls(head=head).apply(f))[:, :, :3] for f in motion)
        spread[head] = head_motion(measure_frames(frames, fps).head, fps)[1]
    assert spread[1.0] > 0.5 and spread[0.0] < 0.4 * spread[1.0], spread
    # the spread the head's turns add to what the mesh reads of a still head: half of it at half the intensity
    turning = {head: np.sqrt(max(0.0, value ** 2 - spread[0.0] ** 2)) for head, value in spread.items()}
    assert 0.35 < turning[0.5] / turning[1.0] < 0.65, spread


def test_render_applies_the_command_line_controls(sample_portrait, sample_speech, tmp_path):
    """--distance and --emotion reach the rendered frames through `facecast render`."""
    import cv2

    from facecast.face.extraction import track_frames
    from facecast.face.measure import face_height

    sizes = {}
    for name, extra in (("plain", ()), ("far", ("--distance", "1.6", "--emotion", "happy:0.8", "--gaze", "15,0"))):
        frames = tmp_path / name
        result = run_facecast("render", "-p", sample_portrait, "-a", sample_speech, "--frames", frames,
                              "--size", "256", "-q", *extra)
        assert result.returncode == 0, result.stderr
        pngs = sorted(frames.glob("*.png"))[::10]
        landmarks, found = track_frames(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in pngs)
        assert found.all()
        sizes[name] = np.median([face_height(p) for p in landmarks])
    assert sizes["far"] < 0.8 * sizes["plain"]
    bad = run_facecast("render", "-p", sample_portrait, "-a", sample_speech, "-o", tmp_path / "x.mp4", "--gaze", "99,0")
    assert_one_line_error(bad, "gaze angles must be within")
    bad = run_facecast("render", "-p", sample_portrait, "-a", sample_speech, "-o", tmp_path / "x.mp4",
                       "--mouth-intensity", "3")
    assert_one_line_error(bad, "mouth intensity must be 0-2")
    bad = run_facecast("render", "-p", sample_portrait, "-a", sample_speech, "-o", tmp_path / "x.mp4",
                       "--head-intensity", "-0.5")
    assert_one_line_error(bad, "head intensity must be 0-2")
    assert not (tmp_path / "x.mp4").exists()


def test_every_control_command_checks_out_and_updates_the_controls():
    """The schema of live control messages (their token and JSON wrapping: bridges/test_ws_protocol)."""
    commands = [{"type": "emotion", "preset": "sad", "intensity": 1, "offset": {"jawOpen": -0.5}},
                {"type": "gaze", "yaw": 10, "pitch": -5}, {"type": "distance", "value": 2},
                {"type": "mouth", "intensity": 0}, {"type": "head", "intensity": 2}, {"type": "mute", "muted": True},
                {"type": "portrait", "path": "me.png"}, {"type": "calibrate"}, {"type": "stop"}]
    assert [c["type"] for c in commands] == list(CONTROL_SCHEMA)
    controls = Controls()
    for command in commands:
        checked = check_control(command)
        assert checked == command and all(type(checked[k]) is not int for k in checked)  # numbers become floats
        if command["type"] not in ("portrait", "calibrate", "stop"):  # the daemon swaps, calibrates and stops
            controls.update(checked)
    assert (controls.emotion, controls.offset, controls.gaze_yaw, controls.distance, controls.muted) == \
        ("sad", {"jawOpen": -0.5}, 10.0, 2.0, True)
    assert (controls.mouth, controls.head) == (0.0, 2.0)
    for bad, reason in (({"type": "emotion", "preset": "smug"}, "one of"), ({"type": "mute"}, "needs 'muted'"),
                        ({"type": "mouth", "intensity": 2.5}, "between 0 and 2"),
                        ({"type": "mouth", "intensity": "1"}, "must be a number"), ({"type": "mouth"}, "needs"),
                        ({"type": "head", "intensity": -0.1}, "between 0 and 2"),
                        ({"type": "gaze", "yaw": 0, "pitch": 0, "token": "T"}, "unknown field"),
                        ({"type": "stop", "now": True}, "unknown field")):
        with pytest.raises(ControlError, match=reason):
            check_control(bad)
    assert issubclass(ControlError, ValueError)  # the daemon's own refusals travel the same way
