"""A log line per kind of event at most every few seconds, the ones held back counted into the next.

Why: the live daemon logs each fault once so a streamer can see it, but a client can send thousands of control
messages a second (an OBS slider dragged, a misbehaving plugin, many connections): one line each would bury
everything else in the log and the OBS panel's log file.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

#: Seconds between two lines of the same kind.
INTERVAL_S = 5.0


class LogThrottle:
    """`log(level, key, message, *args)`: the first line of a kind at once, then at most one every `interval_s`
    naming how many like it were held back. Thread-safe (the ws server's loop and the daemon both log)."""

    def __init__(self, logger: logging.Logger, interval_s: float = INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[str, tuple[float, int]] = {}   # key -> (when its last line was logged, held back since)

    def log(self, level: int, key: str, message: str, *args: Any) -> None:
        now = self._clock()
        with self._lock:
            last = self._kinds.get(key)
            if last is not None and now - last[0] < self.interval_s:
                self._kinds[key] = (last[0], last[1] + 1)
                return
            held = 0 if last is None else last[1]
            self._kinds[key] = (now, 0)
        text = message % args if args else message
        if held:
            text += f" (and {held} more like it in the {now - last[0]:.0f} s before)"  # type: ignore[index]
        self.logger.log(level, "%s", text)
