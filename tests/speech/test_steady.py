"""The steady head: the low-pass every generator's head leaves through removes shake, keeps motion, lags little."""

from __future__ import annotations

import numpy as np

from facecast.evaluation.motion_quality import head_motion, jitter
from facecast.motion import HeadPose, MotionFrame
from facecast.speech.rule import RuleMotionGenerator
from facecast.speech.steady import HeadSmoother, SteadyHead, steady_frames

FPS = 25.0


def _path(seconds: float = 20.0, noise_deg: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A head turning and nodding slowly (0.3-0.7 Hz, a few degrees), and the same with frame-to-frame shake."""
    t = np.arange(int(seconds * FPS)) / FPS
    clean = np.stack([4 * np.sin(2 * np.pi * 0.3 * t), 2 * np.sin(2 * np.pi * 0.7 * t + 1), np.sin(2 * np.pi * 0.5 * t),
                      0.01 * np.sin(2 * np.pi * 0.2 * t), np.zeros_like(t), 1 + 0.01 * np.sin(2 * np.pi * 0.1 * t)], 1)
    noisy = clean.copy()
    noisy[:, :3] += np.random.default_rng(seed).normal(0.0, noise_deg, (len(t), 3))
    return clean, noisy


def _frames(head: np.ndarray) -> list[MotionFrame]:
    return [MotionFrame(t=i / FPS, head=HeadPose(*map(float, row)), expressions={"jawOpen": 0.3})
            for i, row in enumerate(head)]


def _heads(frames: list[MotionFrame]) -> np.ndarray:
    return np.array([[f.head.yaw, f.head.pitch, f.head.roll, f.head.x, f.head.y, f.head.distance] for f in frames])


def test_the_smoother_removes_shake_and_keeps_the_motion() -> None:
    clean, noisy = _path()
    steadied = _heads(list(steady_frames(_frames(noisy), FPS)))
    assert jitter(steadied, FPS) < 0.5 * jitter(noisy, FPS)
    # The slow motion stays: speed and spread within a tenth of the clean path's.
    speed, spread = head_motion(steadied, FPS)
    clean_speed, clean_spread = head_motion(clean, FPS)
    assert abs(speed / clean_speed - 1) < 0.1 and abs(spread / clean_spread - 1) < 0.1


def test_the_head_lags_no_more_than_the_stated_latency() -> None:
    clean, _ = _path()
    smoother = HeadSmoother(FPS)
    assert 0.0 < smoother.latency_s <= 0.1
    steadied = _heads([smoother(f) for f in _frames(clean)])
    skip = int(2 * FPS)   # past the start
    delays = np.arange(0.0, 0.3, 0.002)
    t = np.arange(len(clean)) / FPS
    errors = [np.abs(steadied[skip:, 0] - np.interp(t[skip:] - d, t, clean[:, 0])).mean() for d in delays]
    lag = delays[int(np.argmin(errors))]
    assert lag <= smoother.latency_s + 0.005
    assert lag >= 0.5 * smoother.latency_s      # it does smooth (a filter that does nothing would not lag)


def test_frames_leave_at_once_with_everything_but_the_head_unchanged() -> None:
    samples = np.random.default_rng(1).normal(0.0, 0.05, 16000 * 2)
    raw, steady = RuleMotionGenerator(fps=FPS, seed=4), SteadyHead(RuleMotionGenerator(fps=FPS, seed=4))
    assert steady.lookahead_s == raw.lookahead_s and steady.head_latency_s > 0
    made, out = [], []
    for start in range(0, len(samples), 1600):
        made += raw.push(samples[start:start + 1600])
        out += steady.push(samples[start:start + 1600])
        assert len(out) == len(made)      # no frame waits for the filter
    made += raw.finish()
    out += steady.finish()
    assert len(out) == len(made) and out[0].head == made[0].head   # starts where the motion starts
    assert all(a.expressions == b.expressions and a.blink == b.blink and a.t == b.t for a, b in zip(out, made))
    assert _heads(out)[:, 0].std() < _heads(made)[:, 0].std() + 1e-9
