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


class QualityGovernor:
    """Decides when the live daemon gives up picture quality to keep its frame rate, and when it takes it back.

    Why: beside a game the daemon gets less CPU than it needs; late frames then reach viewers late or not at
    all. Every tick reports whether its frame was *late*: handed over more than `late_share` of a period after
    its slot (in effect in the next one), or a repeat because the generator was behind. Half a period was
    ordinary wake-up jitter on a busy machine (57-64 % of ticks at load 7 on 2 cores, p95 still 116 ms).
    When at least `degrade_share` of the ticks in the last `window_s` were late, the level goes up by one
    (less quality). It comes back down one level after `recover_s` without a late tick at all; if the load is
    still there and the level has to go up again within `recover_s` of that, the wait before the next try
    doubles (up to `max_recover_s`), so a steady load does not make the quality flap. Pure: the daemon passes
    the clock's time in.
    """

    def __init__(self, levels: int, fps: float, late_share: float = 1.0, window_s: float = 1.0,
                 degrade_share: float = 0.2, recover_s: float = 5.0, max_recover_s: float = 60.0) -> None:
        if levels < 1:
            raise ValueError("need at least one level")
        self.levels = levels
        self.level = 0
        self.changes = 0
        self._late_after = late_share / fps
        self._window_s = window_s
        self._degrade_share = degrade_share
        self._base_recover_s = self._recover_s = recover_s
        self._max_recover_s = max_recover_s
        self._ticks: deque[tuple[float, bool]] = deque()
        self._first: float | None = None          # the first tick's time
        self._last_change: float | None = None
        self._last_late: float | None = None
        self._raised_back: float | None = None   # when the level last came down (a try at more quality)

    @property
    def recover_s(self) -> float:
        """How long the load must stay away before the next level down."""
        return self._recover_s

    def late_share(self) -> float:
        """Share of late ticks in the current window."""
        return sum(late for _, late in self._ticks) / len(self._ticks) if self._ticks else 0.0

    def observe(self, now: float, behind_s: float, repeated: bool = False) -> int | None:
        """One tick: its hand-off came `behind_s` after its slot; `repeated`: it showed an old frame. Returns the
        new level when it changed, else None."""
        late = repeated or behind_s > self._late_after
        self._ticks.append((now, late))
        while now - self._ticks[0][0] > self._window_s:
            self._ticks.popleft()
        if late:
            self._last_late = now
        if self._first is None:
            self._first = now
        # a whole window seen since the start or the last change (ticks may be sparse when they run late)
        since_change = now - (self._last_change if self._last_change is not None else self._first)
        if (self.level < self.levels - 1 and since_change >= self._window_s
                and self.late_share() >= self._degrade_share):
            if self._raised_back is not None and now - self._raised_back < self._recover_s:
                self._recover_s = min(self._max_recover_s, 2 * self._recover_s)   # the try came too early
            self._raised_back = None
            return self._change(now, self.level + 1)
        quiet_since = max(t for t in (self._last_late, self._last_change) if t is not None) \
            if self._last_late is not None or self._last_change is not None else None
        if self.level > 0 and quiet_since is not None and now - quiet_since >= self._recover_s:
            self._raised_back = now
            return self._change(now, self.level - 1)
        if self._raised_back is not None and now - self._raised_back >= self._recover_s:
            self._raised_back = None                   # the last try held: later tries wait the base time
            self._recover_s = self._base_recover_s
        return None

    def _change(self, now: float, level: int) -> int:
        self.level = level
        self.changes += 1
        self._last_change = now
        self._ticks.clear()
        return level
