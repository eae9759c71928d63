"""The summed resident memory of a process and all its descendants, sampled from /proc (Linux).

Why: `render` and `live` analyse the portrait in a short-lived child process
(`facecast.app.portrait_job`), so the peak RSS the kernel reports for one
process (`ru_maxrss`, the largest single process) is not what the machine had
to hold; the sum over the process tree, sampled while it runs, is.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # the task or the process ended meanwhile
            pass
    return found


def tree_rss_bytes(pid: int) -> int:
    """Resident bytes of `pid` and every process below it, now (0 once it has ended)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
        pending += _children(current)
    return total


class TreeMemory:
    """Samples `tree_rss_bytes(pid)` every `interval` seconds from creation until `stop()`, which returns the peak
    in MiB."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self._pid, self._interval = pid, interval
        self._peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            self._peak = max(self._peak, tree_rss_bytes(self._pid))
            self._done.wait(self._interval)

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self._peak / 2**20
