"""A steady output frame clock for the live daemon, independent of audio block jitter.

Audio arrives in blocks of whatever size the device likes; motion frames are
generated when enough audio is in. Outputs (webcam, OSC, WebSocket) need a
frame every 1/fps seconds no matter what. `FramePacer` ticks on a fixed
schedule and `LatestFrame` hands each tick the newest motion frame, repeating
the last one (and counting it) when the generator is late, so output never
stalls. The clock and sleep are injected so pacing is tested without wall time.
"""

from __future__ import annotations

import threading
import time
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
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.period = 1.0 / fps
        self._clock = clock
        self._sleep = sleep
        self._start = clock()
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


class LatestFrame(Generic[T]):
    """A one-slot mailbox between the generator thread and the output clock.

    The producer `put`s frames as they are made; each tick `take`s the newest.
    When nothing new arrived since the last tick the previous frame is
    returned again and counted as repeated; frames overwritten before any tick
    saw them are counted as dropped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: T | None = None
        self._fresh = False
        self.repeated = 0
        self.dropped = 0

    def put(self, frame: T) -> None:
        with self._lock:
            if self._fresh:
                self.dropped += 1
            self._latest = frame
            self._fresh = True

    @property
    def has_fresh(self) -> bool:
        """Whether a frame arrived that no `take` has seen yet."""
        with self._lock:
            return self._fresh

    def take(self) -> T | None:
        """The newest frame (None before the first); repeats are counted."""
        with self._lock:
            if self._latest is not None and not self._fresh:
                self.repeated += 1
            self._fresh = False
            return self._latest
