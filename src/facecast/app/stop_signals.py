"""The signals that stop `facecast live` cleanly, from its first moment: a light module, so the command installs
them before it imports the renderer, the models and the bridges (seconds in which a stop used to kill the
process without a word)."""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable


class StopRequested(KeyboardInterrupt):
    """A stop signal arrived while `facecast live` was still starting: unwinds like Ctrl-C, said as a stop."""


#: The signals that mean "stop cleanly", where the OS has them: SIGTERM (`kill`, service managers) and SIGHUP
#: (the terminal closed) on Linux and macOS; SIGBREAK (Ctrl-Break in a console) on Windows, whose other way
#: in is the `stop` control message. SIGINT stays Python's KeyboardInterrupt (Ctrl-C), caught in `run_live`.
STOP_SIGNALS = ("SIGTERM", "SIGHUP", "SIGBREAK")


def install_stop_handlers(stop: Callable[[], None], signals: Any = signal) -> Callable[[], None]:
    """Call `stop` on each of `STOP_SIGNALS` this OS has; returns the function that puts the old handlers back.

    A signal someone chose to ignore (SIGHUP under `nohup`) stays ignored; outside the main thread (where
    Python cannot set handlers) nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}
    for name in STOP_SIGNALS:
        number = getattr(signals, name, None)
        if number is None or signals.getsignal(number) == signals.SIG_IGN:
            continue
        try:
            previous[number] = signals.signal(number, lambda *_: stop())
        except (OSError, ValueError):  # not settable here: the others still work
            continue

    def restore() -> None:
        for number, handler in previous.items():
            signals.signal(number, handler if handler is not None else signals.SIG_DFL)
    return restore


def _raise_stop() -> None:
    raise StopRequested


def stop_while_starting(signals: Any = signal) -> Callable[[], None]:
    """Until the daemon runs, a stop signal unwinds the start-up (`StopRequested`); returns the restore function."""
    return install_stop_handlers(_raise_stop, signals)
