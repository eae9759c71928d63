"""Live portrait swaps: one at a time, latest wins, every request answered.

A swap analyses a picture (decode, face mesh, alignment), which takes seconds
and, for a large picture, memory. The daemon used to start one thread per
request: six swaps of a 9000x9000 picture at once took it to 8.2 GiB and
starved the frame loop. `PortraitSwapper` runs them in one worker thread, at a
lower scheduling priority than the frame loop where the system allows it:

* a request arriving while another waits replaces it (the replaced one is
  answered "superseded"); the one being analysed finishes first;
* each request is answered twice through its ``reply``: ``accepted`` at once
  (by the caller), then ``swapped`` or one ``error`` line with the reason (not
  found, not a file, not a picture, too large, no face);
* a failure never reaches the frame loop, and its reason is `last_error` until
  a later swap succeeds;
* after each swap the C heap's free memory goes back to the system
  (`release_freed_memory`): an analysis allocates and frees a few hundred MB,
  and without this the daemon's RSS crept up by ~2.4 MiB per swap (24 swaps of
  three portraits: 236 -> 292 MiB; with it, 211 -> 217 MiB).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from facecast.errors import FacecastError
from facecast.heap import release_freed_memory

__all__ = ["SWAP_NICENESS", "PortraitSwapper", "Reply", "release_freed_memory"]

log = logging.getLogger("facecast.live")

#: How much lower than the frame loop the swap worker runs (Linux thread niceness; 0 elsewhere).
SWAP_NICENESS = 10

Reply = Callable[[dict[str, Any]], None]
Loaded = TypeVar("Loaded")


def _no_reply(message: dict[str, Any]) -> None:
    pass


class PortraitSwapper(Generic[Loaded]):
    """Runs `load(path)` for the newest request in one worker, then `apply(result, path)`.

    `load` raises an `InputError` (or any `FacecastError`) with a one-line reason
    for a picture it cannot use; anything else is reported as an internal error
    in one line (its traceback only at debug level).
    """

    def __init__(self, load: Callable[[Path], Loaded], apply: Callable[[Loaded, Path], None],
                 niceness: int = SWAP_NICENESS) -> None:
        self._load = load
        self._apply = apply
        self._niceness = niceness
        self._cond = threading.Condition()
        self._pending: tuple[Path, Reply] | None = None
        self._busy: Path | None = None
        self._closed = False
        self._worker: threading.Thread | None = None
        #: The last swap's failure (one line), None after a success.
        self.last_error: str | None = None
        self.swapped = 0
        self.failed = 0
        self.superseded = 0

    def request(self, path: str | Path, reply: Reply | None = None) -> None:
        """Queue a swap to `path`, replacing one that has not started; returns at once."""
        reply = reply or _no_reply
        with self._cond:
            if self._closed:
                raise ValueError("facecast is stopping")
            replaced, self._pending = self._pending, (Path(path), reply)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="facecast-portrait", daemon=True)
                self._worker.start()
            self._cond.notify()
        if replaced is not None:
            self.superseded += 1
            replaced[1]({"type": "error", "message": "superseded by a newer portrait swap", "path": str(replaced[0])})

    @property
    def busy(self) -> bool:
        """Whether a swap is being analysed or waiting."""
        with self._cond:
            return self._busy is not None or self._pending is not None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no swap is running or waiting (tests, shutdown); True when idle."""
        with self._cond:
            return self._cond.wait_for(lambda: self._busy is None and self._pending is None, timeout)

    def close(self) -> None:
        """Stop taking requests; a waiting one is answered, a running one finishes in the background."""
        with self._cond:
            self._closed = True
            pending, self._pending = self._pending, None
            self._cond.notify_all()
        if pending is not None:
            pending[1]({"type": "error", "message": "facecast is stopping", "path": str(pending[0])})

    def _lower_priority(self) -> None:
        if self._niceness <= 0 or not hasattr(os, "setpriority"):
            return
        try:  # Linux: per thread, and inherited by the threads the analysis starts (mediapipe's)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._niceness)
        except OSError:
            pass

    def _run(self) -> None:
        self._lower_priority()
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closed)
                if self._pending is None:
                    return
                (path, reply), self._pending = self._pending, None
                self._busy = path
            try:
                self._swap(path, reply)
                release_freed_memory()  # the analysis and the replaced portrait are gone by now
            finally:
                with self._cond:
                    self._busy = None
                    self._cond.notify_all()

    def _swap(self, path: Path, reply: Reply) -> None:
        try:
            loaded = self._load(path)
            self._apply(loaded, path)
        except FacecastError as exc:  # the picture's fault: the reason is the user's to read
            self._failed(path, reply, str(exc))
        except Exception as exc:  # a bug: one line, the traceback only when debugging
            log.debug("portrait swap to %s failed", path, exc_info=True)
            self._failed(path, reply, f"internal error: {type(exc).__name__}: {exc}")
        else:
            self.swapped += 1
            self.last_error = None
            log.info("portrait swapped to %s", path)
            reply({"type": "swapped", "path": str(path)})

    def _failed(self, path: Path, reply: Reply, reason: str) -> None:
        reason = " ".join(reason.split())
        self.failed += 1
        self.last_error = f"portrait swap: {reason}"
        log.warning("portrait swap to %s failed: %s", path, reason)
        reply({"type": "error", "message": reason, "path": str(path)})
