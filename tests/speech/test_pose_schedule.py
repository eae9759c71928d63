"""Every live output frame its own pose: the learned stream's frames, scheduled as the daemon schedules them."""

from __future__ import annotations

import numpy as np
import pytest

from facecast.media import decode_mono
from facecast.speech.audio_features import SAMPLE_RATE
from facecast.speech.learned_stream import LearnedMotionGenerator, pose_wait

BLOCK = SAMPLE_RATE // 100   # the live daemon's 10 ms audio blocks


def test_pose_wait_is_the_interpolation_lag():
    assert pose_wait(25.0) == pytest.approx(0.0, abs=1e-9)
    assert pose_wait(30.0) == pytest.approx(5 / 6 * 0.04)
    assert pose_wait(60.0) == pytest.approx(11 / 12 * 0.04)


@pytest.mark.parametrize("fps", [30.0, 60.0])
def test_every_tick_has_its_own_ready_pose(sample_speech, fps):
    """Frames become final when the audio block that completes their later 25 fps neighbour arrives. On the
    daemon's even grid (the first frame's capture time + one block + `pose_wait_s`; the generator's compute is
    left out here) no tick comes before its own frame, so none shows its predecessor's pose again, and every
    frame's pose differs from the one before while speech moves the face."""
    speech = decode_mono(sample_speech)[: SAMPLE_RATE * 4]
    generator = LearnedMotionGenerator(fps=fps, seed=0)
    ready, frames = [], []
    for start in range(0, len(speech), BLOCK):
        arrived = (start + BLOCK) / SAMPLE_RATE       # the block's capture time: when its last sample was heard
        for frame in generator.push(speech[start:start + BLOCK], capture_time=arrived):
            ready.append(arrived)
            frames.append(frame)
    assert [round(f.t * fps) for f in frames] == list(range(len(frames)))
    even = frames[0].capture_time + BLOCK / SAMPLE_RATE + np.arange(len(frames)) / fps
    assert np.all(even + generator.pose_wait_s + 1e-9 >= np.asarray(ready))
    assert (even + 1e-9 < np.asarray(ready)).mean() > 0.2    # without the wait: a repeat on these ticks
    coefficients = np.array([[f.expression(n) for n in sorted(frames[0].expressions)] for f in frames])
    turns = np.array([[f.head.yaw, f.head.pitch, f.head.roll] for f in frames])
    still = (np.abs(np.diff(coefficients, axis=0)).max(1) < 0.001) & (np.abs(np.diff(turns, axis=0)).max(1) < 0.01)
    assert not still[int(fps):].any()     # after the first second of speech, never the same pose twice
