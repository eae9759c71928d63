"""Controls layered on generated motion: each moves the motion the expected way."""

from __future__ import annotations

import pytest

from facecast.models.controls import EMOTION_PRESETS, Controls, parse_emotion
from facecast.models.motion import MotionFrame


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


def test_update_from_control_messages():
    controls = Controls()
    controls.update({"type": "emotion", "preset": "sad", "intensity": 0.3})
    controls.update({"type": "gaze", "yaw": 10, "pitch": -4})
    controls.update({"type": "distance", "value": 0.8})
    controls.update({"type": "mute", "muted": True})
    assert (controls.emotion, controls.intensity, controls.gaze_yaw, controls.distance, controls.muted) == \
        ("sad", 0.3, 10.0, 0.8, True)
    with pytest.raises(ValueError):
        controls.update({"type": "portrait", "path": "x.png"})


def test_parse_emotion():
    assert parse_emotion("happy") == ("happy", 1.0)
    assert parse_emotion("angry:0.25") == ("angry", 0.25)
    assert set(EMOTION_PRESETS) >= {"neutral", "happy", "sad", "angry", "surprised"}
    for bad in ("joyful", "happy:2", "happy:lots"):
        with pytest.raises(ValueError):
            parse_emotion(bad)
