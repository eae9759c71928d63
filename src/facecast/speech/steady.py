"""A steady head: a causal low-pass on the head pose of every generator's motion stream.

Why: rendered heads shook about twice as much as real people's (quality
benchmark, jitter 0.52 vs 0.26 degrees): the learned model samples a little
frame-to-frame noise into its head channels, and retraining it changes how
much. Filtering the stream that leaves `make_generator` steadies any model,
offline and live alike, while the slow motion that makes a head lively (nods,
turns, drift) passes.

The filter is two cascaded one-pole low-passes (critically damped, no
overshoot) with time constant `HEAD_SMOOTHING_S` on yaw, pitch, roll, x, y and
distance. It is causal, so frames leave as soon as the generator makes them
(no added frame latency, lips untouched); the head alone lags: by `latency_s`
for slow motion (65 ms at 25 fps, 70 ms at 30 fps), less for quick moves. Real
heads do not follow speech to the frame, so a head 65 ms behind the voice
reads as natural, while lips 65 ms late would not.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Iterable, Iterator

import numpy as np

from facecast.motion import HeadPose, MotionFrame

#: Time constant (s) of each of the two one-poles. Chosen on the quality benchmark's held-out clips
#: (benchmarks/README.md, "A steady head"): it brings the learned model's head jitter to real people's
#: while its head speed stays within a quarter of theirs.
HEAD_SMOOTHING_S = 0.05
_AXES = ("yaw", "pitch", "roll", "x", "y", "distance")


class HeadSmoother:
    """Frame by frame: the head pose through the low-pass; everything else of the frame unchanged."""

    def __init__(self, fps: float, time_constant_s: float = HEAD_SMOOTHING_S) -> None:
        self.coef = 1.0 - math.exp(-1.0 / (fps * time_constant_s)) if time_constant_s > 0 else 1.0
        #: the head's delay for slow motion (the filter's group delay at 0 Hz: (1 - c) / c frames per pole), seconds
        self.latency_s = 2.0 * (1.0 - self.coef) / self.coef / fps
        self._first: np.ndarray | None = None
        self._second: np.ndarray | None = None

    def __call__(self, frame: MotionFrame) -> MotionFrame:
        pose = np.array([getattr(frame.head, axis) for axis in _AXES])
        if self._first is None or self._second is None:
            self._first, self._second = pose.copy(), pose.copy()   # start at rest where the motion starts
        else:
            self._first += self.coef * (pose - self._first)
            self._second += self.coef * (self._first - self._second)
        return replace(frame, head=HeadPose(*map(float, self._second)))


def steady_frames(frames: Iterable[MotionFrame], fps: float,
                  time_constant_s: float = HEAD_SMOOTHING_S) -> Iterator[MotionFrame]:
    """A finite or endless stream of frames with a steady head, lazily."""
    smoother = HeadSmoother(fps, time_constant_s)
    for frame in frames:
        yield smoother(frame)


class SteadyHead:
    """A generator (a `generator.MotionGenerator`; not imported here, it imports this) whose frames leave
    through a `HeadSmoother`."""

    def __init__(self, generator: Any, time_constant_s: float = HEAD_SMOOTHING_S) -> None:
        self.generator = generator
        self.SAMPLE_RATE, self.fps = generator.SAMPLE_RATE, generator.fps
        self._smoother = HeadSmoother(generator.fps, time_constant_s)
        #: how far the head lags slow motion (frames themselves are not delayed)
        self.head_latency_s = self._smoother.latency_s

    @property
    def lookahead_s(self) -> float:
        return self.generator.lookahead_s

    @property
    def processing_s(self) -> float:
        return self.generator.processing_s

    @property
    def burst_s(self) -> float:
        """Seconds of frames the generator may release at once (`learned_stream`'s sync latency)."""
        return getattr(self.generator, "burst_s", 0.0)

    @property
    def pose_wait_s(self) -> float:
        """How long after its audio a frame between two generated poses can be made (0 when none is)."""
        return getattr(self.generator, "pose_wait_s", 0.0)

    def lighten(self, light: bool) -> None:
        """Passed on to a generator that can spend less CPU (the live daemon's last quality level)."""
        lighten = getattr(self.generator, "lighten", None)
        if lighten is not None:
            lighten(light)

    def push(self, samples: np.ndarray, capture_time: float | None = None) -> list[MotionFrame]:
        return [self._smoother(frame) for frame in self.generator.push(samples, capture_time)]

    def finish(self) -> Iterable[MotionFrame]:
        """The rest, as the wrapped generator gives it: a list, or lazily (the offline learned model)."""
        frames = self.generator.finish()
        if isinstance(frames, list):
            return [self._smoother(frame) for frame in frames]
        return (self._smoother(frame) for frame in frames)
