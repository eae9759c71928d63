"""The motion contract: round trip, validation, ARKit derivation."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facecast.errors import InputError
from facecast.motion import ARKIT_BLENDSHAPES, VISEMES, MotionFrame, MotionHeader, read_motion, write_motion


def _frame(t: float) -> MotionFrame:
    frame = MotionFrame(t=t)
    frame.head.yaw, frame.head.pitch, frame.head.distance = 4.5, -2.0, 1.05
    frame.gaze.yaw = -12.0
    frame.blink.left, frame.blink.right = 0.9, 0.8
    frame.expressions = {"jawOpen": 0.6, "mouthFunnel": 0.2}
    frame.visemes = {name: 0.0 for name in VISEMES} | {"A": 0.7, "O": 0.3}
    frame.voice = 0.5
    return frame


def test_round_trip_preserves_every_field(tmp_path):
    frames = [_frame(i / 25) for i in range(5)]
    path = tmp_path / "m.jsonl"
    assert write_motion(path, MotionHeader(fps=25, generator="rule", seed=3), frames) == 5
    header, loaded = read_motion(path)
    loaded = list(loaded)
    assert (header.fps, header.generator, header.seed) == (25, "rule", 3)
    assert [f.to_dict() for f in loaded] == [f.to_dict() for f in frames]


def test_missing_parts_default_to_neutral():
    frame = MotionFrame.from_dict({"t": 1.0, "expressions": {"jawOpen": 2.0}})
    assert frame.head.distance == 1.0 and frame.blink.left == 0.0
    assert frame.expression("jawOpen") == 1.0  # clamped into [0, 1]
    assert frame.visemes["sil"] == 1.0


@pytest.mark.parametrize("bad, message", [
    ({"head": {"yaw": 1}}, "time"),
    ({"t": 0, "expressions": {"jawOpened": 1}}, "unknown expression"),
    ({"t": 0, "expressions": {"eyeBlinkLeft": 1}}, "blink"),
    ({"t": 0, "head": {"yaw": "left"}}, "finite number"),
    ({"t": 0, "head": {"tilt": 1}}, "unknown head field"),
    ({"t": 0, "visemes": {"Q": 1}}, "unknown viseme"),
])
def test_invalid_frames_are_rejected_with_a_reason(bad, message):
    with pytest.raises(InputError, match=message):
        MotionFrame.from_dict(bad)


def test_bad_files_name_file_and_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"format": "facecast.motion", "version": 1, "fps": 25}) + "\n{\"t\": 0}\nnot json\n")
    _, frames = read_motion(path)
    with pytest.raises(InputError, match=r"m.jsonl:3: not valid JSON"):
        list(frames)
    path.write_text(json.dumps({"format": "facecast.motion", "version": 99, "fps": 25}) + "\n")
    with pytest.raises(InputError, match="version 99"):
        read_motion(path)
    path.write_text("hello\n")
    with pytest.raises(InputError, match="not a facecast motion file"):
        read_motion(path)


def test_arkit_view_has_all_52_names_and_derives_eyes():
    arkit = _frame(0).arkit()
    assert set(arkit) == set(ARKIT_BLENDSHAPES) and len(arkit) == 52
    assert arkit["eyeBlinkLeft"] == 0.9 and arkit["jawOpen"] == 0.6
    # gaze towards image left (yaw < 0): the subject's left eye turns in, the right eye out
    assert arkit["eyeLookInLeft"] == pytest.approx(0.4) and arkit["eyeLookOutRight"] == pytest.approx(0.4)
    assert arkit["eyeLookOutLeft"] == 0.0


# --------------------------------------------------------------------------- fuzzing the JSON Lines reader

_scalars = (st.none() | st.booleans() | st.integers(min_value=-(10 ** 400), max_value=10 ** 400)
            | st.floats() | st.text(max_size=20))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
_parts = st.sampled_from(["t", "head", "gaze", "blink", "expressions", "visemes", "voice", "capture_time",
                          "yaw", "jawOpen", "A", "left"])


def _frame_line(draw_frame: dict, changes: dict) -> str:
    frame = {**draw_frame, **changes}
    return json.dumps(frame, allow_nan=True)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=st.sampled_from(['{"format": "facecast.motion", "version": 1, "fps": 25}',
                               '{"format": "facecast.motion", "version": 1, "fps": 1e999}',
                               '{"format": "facecast.motion", "version": [1], "fps": 25}', "", "[" * 5000]),
       lines=st.lists(st.one_of(
           st.builds(_frame_line, st.just(_frame(0.04).to_dict()), st.dictionaries(_parts, _values, max_size=3)),
           _values.map(lambda v: json.dumps(v, allow_nan=True)),
           st.text(max_size=60),
           st.sampled_from(["[" * 20_000, '{"t": ' + "9" * 5000 + "}", '{"t": NaN}', '{"t": 1e999}',
                            '{"t": 0, "voice": "loud"}', '{"t": 0, "capture_time": [1]}', "\udcff"])), max_size=6),
       raw_tail=st.binary(max_size=20))
def test_fuzz_motion_reader(header: str, lines: list[str], raw_tail: bytes) -> None:
    """read_motion either yields finite frames or raises one InputError line naming the file; nothing else
    (MOTION_READER_EXAMPLES in tests/bridges/test_ws_fuzz.py counts these examples)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.jsonl"
        path.write_bytes("\n".join([header, *lines]).encode("utf-8", "surrogateescape") + b"\n" + raw_tail)
        try:
            _, frames = read_motion(path)
            for frame in frames:
                values = [frame.t, frame.voice, *vars(frame.head).values(), *vars(frame.gaze).values(),
                          *frame.expressions.values(), *frame.visemes.values()]
                assert all(math.isfinite(v) for v in values)
        except InputError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
