"""The live camera's per-frame motion (`face.live`) against offline extraction, on a real talking clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.face.extraction import ReferenceFace, extract_from_landmarks, track_landmarks
from facecast.face.live import FIT_TOLERANCE, LID_KNEE, LID_SHUT, LiveFace, decisive_lids
from facecast.motion import EXPRESSION_CHANNELS

WILD_CLIP = "talking/wild/styletalk_feifeili_clip1.mp4"
FPS = 25.0


@pytest.fixture(scope="module")
def track(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    return track_landmarks(shared_data / WILD_CLIP, max_frames=100)


def test_one_frame_at_a_time_measures_as_the_whole_clip(track: tuple[np.ndarray, np.ndarray]) -> None:
    """Cold-started, a single frame's measurement is the batch's row (the same code on one row)."""
    landmarks, found = track
    assert found.all()
    offline = extract_from_landmarks(landmarks, found, FPS, reference=0)
    face = ReferenceFace(landmarks[0])
    for i in (0, 17, 42, 99):
        one = face.measure(landmarks[i:i + 1])
        assert np.allclose(one.head[0], offline.head[i], atol=1e-9)
        assert np.allclose(one.blink[0], offline.blink[i], atol=1e-9)
        assert np.allclose(one.expressions[0], offline.expressions[i], atol=1e-9)


def test_live_face_calibrates_then_follows_the_clip(track: tuple[np.ndarray, np.ndarray]) -> None:
    landmarks, found = track
    live = LiveFace(FPS, calibration_s=1.0)
    frames = [live.update(p, i / FPS) for i, p in enumerate(landmarks)]
    # nothing while the first second is gathered, then one frame per picture
    assert all(f is None for f in frames[:24]) and all(f is not None for f in frames[25:])
    assert live.calibrations == 1 and not live.calibrating
    # the same motion as offline extraction against the reference calibration picked: head and blinks exactly,
    # the warm-started expression fit close (it stops within FIT_TOLERANCE of the unique optimum)
    offline = extract_from_landmarks(landmarks, found, FPS, reference=0)
    reference = ReferenceFace(live.reference.landmarks)
    batch = reference.measure(landmarks[25:])
    head = np.array([[f.head.yaw, f.head.pitch, f.head.roll] for f in frames[25:]])
    assert np.allclose(head, batch.head[:, :3], atol=1e-6)
    blink = np.array([[f.blink.left, f.blink.right] for f in frames[25:]])
    assert np.allclose(blink, decisive_lids(batch.blink), atol=1e-9)
    expressions = np.array([[f.expression(n) for n in EXPRESSION_CHANNELS] for f in frames[25:]])
    assert np.median(np.abs(expressions - batch.expressions)) < 0.01
    # the head moves in this clip and the live reading follows offline extraction's (relative to its own neutral)
    relative = offline.head[25:, 0] - offline.head[25:, 0].mean()
    assert np.corrcoef(head[:, 0], relative)[0, 1] > 0.99
    assert FIT_TOLERANCE < 1e-3


def test_no_face_gives_nothing_and_recalibration_picks_a_new_reference(track: tuple[np.ndarray, np.ndarray]) -> None:
    landmarks, _ = track
    live = LiveFace(FPS, calibration_s=0.4)
    assert live.update(None, 0.0) is None
    for i in range(10):
        live.update(landmarks[i], i / FPS)
    first = live.reference
    assert first is not None and live.calibrations == 1
    live.calibrate()
    assert live.calibrating
    for i in range(50, 60):  # the old reference keeps serving while the new one is gathered
        assert live.update(landmarks[i], i / FPS) is not None
    assert live.calibrations == 2 and live.reference is not first and not live.calibrating


def test_gaze_holds_its_last_reading_under_a_closed_lid(track: tuple[np.ndarray, np.ndarray]) -> None:
    landmarks, _ = track
    live = LiveFace(FPS, calibration_s=0.04)
    open_eyes = live.update(landmarks[0], 0.0)
    shut = landmarks[1].copy()
    from facecast import face_regions as fr
    for top, bottom in ((fr.LEFT_EYE_TOP, fr.LEFT_EYE_BOTTOM), (fr.RIGHT_EYE_TOP, fr.RIGHT_EYE_BOTTOM)):
        shut[top, :2] = shut[bottom, :2]           # lids together: a blink
    shut[list(fr.LEFT_IRIS + fr.RIGHT_IRIS), 0] += 30.0  # the iris landmarks wander under the lid
    blinking = live.update(shut, 0.04)
    assert min(blinking.blink.left, blinking.blink.right) > 0.9
    assert (blinking.gaze.yaw, blinking.gaze.pitch) == (open_eyes.gaze.yaw, open_eyes.gaze.pitch)


def test_decisive_lids_shut_a_blink_caught_part_way_and_leave_squints() -> None:
    """A camera's deepest blink frame often reads 0.7-0.85 closed: it must reach the renderer's painted lid (1),
    while a squint or a downward look (below the knee) stays as read, and the mapping keeps its order."""
    readings = np.linspace(0.0, 1.0, 101)
    lids = decisive_lids(readings)
    below = readings <= LID_KNEE
    assert np.array_equal(lids[below], readings[below])
    assert np.all(lids[readings >= LID_SHUT] == 1.0)
    assert np.all(np.diff(lids) >= 0) and lids.max() == 1.0
    assert decisive_lids(np.array([[0.75, 0.3]])).shape == (1, 2)
