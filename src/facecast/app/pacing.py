"""A steady output frame clock for the live daemon, independent of audio block jitter.

Audio arrives in blocks of whatever size the device likes; motion frames are
generated when enough audio is in. Outputs (webcam, OSC, WebSocket) need a
frame every 1/fps seconds no matter what. `FramePacer` ticks on a fixed
schedule and `FrameQueue` hands each tick its own motion frame, repeating
the last one (and counting it) when the generator is late, so output never
stalls. The clock and sleep are injected so pacing is tested without wall time.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

T = TypeVar("T")

#: A tick later than this many frame periods re-anchors the schedule instead of
#: bursting frames to catch up (after a suspend, a debugger pause, ...).
MAX_CATCH_UP_PERIODS = 3


@dataclass(frozen=True)
class Tick:
    """One output frame slot: its index, when it was due, and how late it fired."""

    index: int
    due: float
    late: float


class FramePacer:
    """Yields ticks at `fps` on a fixed grid; skips slots rather than bursting when far behind."""

    def __init__(self, fps: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, start: float | None = None) -> None:
        """`start` places the grid (default: now), e.g. just after frames are expected to be ready."""
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.period = 1.0 / fps
        self._clock = clock
        self._sleep = sleep
        self._start = clock() if start is None else start
        self._index = 0
        self.skipped = 0

    def next_tick(self) -> Tick:
        """Sleep until the next frame slot is due and return it."""
        due = self._start + self._index * self.period
        now = self._clock()
        if now < due:
            self._sleep(due - now)
            now = self._clock()
        elif now - due > MAX_CATCH_UP_PERIODS * self.period:
            missed = int((now - due) / self.period)
            self.skipped += missed
            self._index += missed
            due = self._start + self._index * self.period
        tick = Tick(index=self._index, due=due, late=max(0.0, now - due))
        self._index += 1
        return tick


class FrameQueue(Generic[T]):
    """Motion frames in order, handed to the frame clock by index so each tick shows its own frame.

    Frames become ready on the audio block rhythm (e.g. 10/20/20 ms apart),
    not on the output's even grid, so "latest frame wins" would show some
    frames twice and skip others. Instead tick k takes frame k, or the newest
    frame before it when frame k is late (a repeat, counted); frames passed
    over unseen are counted as dropped. Thread-safe: one producer, one consumer.
    """

    def __init__(self, capacity: int = 16) -> None:
        self._lock = threading.Lock()
        self._frames: deque[tuple[int, T]] = deque()
        self._capacity = capacity
        self._shown: tuple[int, T] | None = None
        self.repeated = 0
        self.dropped = 0

    def put(self, index: int, frame: T) -> None:
        with self._lock:
            self._frames.append((index, frame))
            while len(self._frames) > self._capacity:
                self._frames.popleft()
                self.dropped += 1

    def peek(self) -> tuple[int, T] | None:
        """The oldest waiting (index, frame) without taking it."""
        with self._lock:
            return self._frames[0] if self._frames else None

    def pending(self) -> int:
        with self._lock:
            return len(self._frames)

    def take(self, index: int) -> T | None:
        """The newest frame with an index <= `index` (repeating the last shown one if none is new)."""
        with self._lock:
            chosen = None
            while self._frames and self._frames[0][0] <= index:
                if chosen is not None:
                    self.dropped += 1
                chosen = self._frames.popleft()
            if chosen is None:
                if self._shown is not None:
                    self.repeated += 1
                    return self._shown[1]
                return None
            self._shown = chosen
            return chosen[1]
