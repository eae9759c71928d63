"""Where facecast's own messages go, and why no native library can silence them.

mediapipe's C++ core (absl, TFLite) writes INFO/WARNING lines straight to file
descriptor 2. Its own settings (``GLOG_minloglevel``, ``TF_CPP_MIN_LOG_LEVEL``)
quiet it only when they are in the environment before the process starts:
measured with mediapipe 0.10.21, setting them from Python, even before
importing mediapipe, changes nothing. facecast used to point descriptor 2 at
/dev/null around every analysis and back; with two portrait swaps at once the
second saved /dev/null as "the real stderr" and restored it, and every later
warning, error and the stop summary was lost.

So the redirection happens once, here, at start-up in the main thread, before
any other thread runs, and is never undone: `keep_native_logs_off_stderr`
duplicates the real stderr, points ``sys.stderr`` (and with it facecast's log
handler, tracebacks and Python warnings) at the duplicate, and only then points
descriptor 2 at /dev/null. Nothing touches a file descriptor after that, so no
worker can take facecast's logging down.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TextIO

__all__ = ["NATIVE_LOG_ENV", "configure_logging", "keep_native_logs_off_stderr", "real_stderr"]

#: The native libraries' own log settings: effective for child processes and libraries that read them late.
NATIVE_LOG_ENV = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_lock = threading.Lock()
_real_stderr: TextIO | None = None


def keep_native_logs_off_stderr() -> TextIO | None:
    """Once per process, from the main thread before other threads start: native writes to fd 2 go to
    /dev/null, Python's ``sys.stderr`` keeps the real stderr (a saved duplicate). Returns that stream
    (None when the process has no stderr). Safe to call again: later calls change nothing."""
    global _real_stderr
    for name, value in NATIVE_LOG_ENV.items():
        os.environ.setdefault(name, value)
    with _lock:
        if _real_stderr is not None:
            return _real_stderr
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("redirect stderr at start-up, from the main thread")
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, AttributeError, ValueError):  # no stderr at all: nothing to keep
            return None
        # the same encoding and error handling as the stream it replaces (`cli.configure_console` set them)
        encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
        errors = getattr(sys.stderr, "errors", None) or "backslashreplace"
        stream = os.fdopen(saved, "w", buffering=1, encoding=encoding, errors=errors)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        sys.stderr = stream
        _real_stderr = stream
        return stream


def real_stderr() -> TextIO:
    """The stream facecast's messages go to: the saved real stderr once redirected, else ``sys.stderr``."""
    return _real_stderr if _real_stderr is not None else sys.stderr


def configure_logging(level: str) -> logging.Handler:
    """Send facecast's log records to the real stderr (replacing a handler an earlier call installed), at
    `level`; websockets' per-connection lines only at debug level."""
    handler = logging.StreamHandler(real_stderr())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_facecast", False):
            root.removeHandler(old)
    handler._facecast = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # websockets logs every connection's opening and closing at INFO: a reconnecting client would fill the
    # log (and the OBS script's log file) with two lines a second. Its warnings and errors still show.
    logging.getLogger("websockets").setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)
    # torch logs its compile caches' statistics at INFO as the process exits (after a Ctrl-C while it loads)
    logging.getLogger("torch").setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)
    return handler
