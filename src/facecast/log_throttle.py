"""A log line per kind of event at most every few seconds, the ones held back counted in a line of their own.

Why: the live daemon logs each fault once so a streamer can see it, but a client can send thousands of control
messages a second (an OBS slider dragged, a misbehaving plugin, many connections): one line each would bury
everything else in the log and the OBS panel's log file. Yet what was held back must still be told: a flood
whose count never reaches the log looks like one stray message.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

#: Seconds between two lines of the same kind.
INTERVAL_S = 5.0


@dataclass
class _Kind:
    logged: float                            # when its last line was logged
    held: int = 0                            # lines held back since
    level: int = logging.INFO                # ... and the latest of them
    text: str = ""
    timer: threading.Timer | None = None     # logs the held-back count once the interval is over


class LogThrottle:
    """`log(level, key, message, *args)`: the first line of a kind at once; the same kind within `interval_s`
    is held back, and once the interval is over one line (the latest held back) says how many times it came
    (or the next line of the kind says how many more there were). `close()`
    logs what is still held back (at stop). Thread-safe (the ws server's loop and the daemon both log)."""

    def __init__(self, logger: logging.Logger, interval_s: float = INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic, timers: bool = True) -> None:
        """`timers=False`: held-back lines are told only by the next line of their kind or `flush` (tests)."""
        self.logger = logger
        self.interval_s = interval_s
        self._clock = clock
        self._timers = timers
        self._lock = threading.Lock()
        self._kinds: dict[str, _Kind] = {}
        self._closed = False

    def log(self, level: int, key: str, message: str, *args: Any) -> None:
        text = message % args if args else message
        now = self._clock()
        with self._lock:
            kind = self._kinds.get(key)
            if kind is not None and now - kind.logged < self.interval_s:
                kind.held, kind.level, kind.text = kind.held + 1, level, text
                if self._timers and kind.timer is None and not self._closed:
                    kind.timer = threading.Timer(kind.logged + self.interval_s - now, self._due, (key,))
                    kind.timer.daemon = True
                    kind.timer.start()
                return
            if kind is not None and kind.held:      # its timer has not run yet: this line tells the count
                text += f" (and {kind.held} more like it in the {_seconds(now - kind.logged)} s before)"
                self._cancel(kind)
            self._kinds[key] = _Kind(logged=now)
        self.logger.log(level, "%s", text)

    def flush(self, due_only: bool = False) -> None:
        """Log each kind's held-back count now (`due_only`: only the kinds whose interval is over)."""
        now = self._clock()
        lines = []
        with self._lock:
            for kind in self._kinds.values():
                if kind.held and (not due_only or now - kind.logged >= self.interval_s):
                    lines.append((kind.level, kind.text + self._held_note(kind, now)))
                    self._cancel(kind)
                    kind.logged, kind.held = now, 0
        for level, line in lines:
            self.logger.log(level, "%s", line)

    def close(self) -> None:
        """Log what is still held back and stop the timers (the daemon is stopping)."""
        with self._lock:
            self._closed = True
        self.flush()

    def _due(self, key: str) -> None:
        with self._lock:
            kind = self._kinds.get(key)
            if kind is not None:
                kind.timer = None
        self.flush(due_only=True)

    @staticmethod
    def _held_note(kind: _Kind, now: float) -> str:
        return f" ({kind.held} time{'s' if kind.held != 1 else ''} in the last {_seconds(now - kind.logged)} s)"

    @staticmethod
    def _cancel(kind: _Kind) -> None:
        if kind.timer is not None:
            kind.timer.cancel()
            kind.timer = None


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f}" if seconds < 10 else f"{seconds:.0f}"
