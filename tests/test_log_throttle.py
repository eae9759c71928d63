"""One log line per kind of event every few seconds; what was held back is counted in a line of its own."""

from __future__ import annotations

import logging
import time

import pytest

from facecast.log_throttle import LogThrottle

LOGGER = "facecast.test"


def test_a_burst_is_one_line_and_the_next_counts_what_was_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    throttle = LogThrottle(logging.getLogger(LOGGER), interval_s=5.0, clock=lambda: now[0], timers=False)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(40):                      # a slider dragged for 2 s
            throttle.log(logging.INFO, "emotion", "control %s applied", "emotion")
            throttle.log(logging.INFO, "mouth", "control mouth applied")   # another kind has its own lines
            now[0] += 0.05
        now[0] = 106.0
        throttle.log(logging.INFO, "emotion", "control %s applied", "emotion")
    assert [r.getMessage() for r in caplog.records] == [
        "control emotion applied", "control mouth applied",
        "control emotion applied (and 39 more like it in the 6.0 s before)"]


def test_what_is_still_held_back_is_counted_at_close(caplog: pytest.LogCaptureFixture) -> None:
    """A flood with no line after it was one line in the log and its count was never told."""
    now = [0.0]
    throttle = LogThrottle(logging.getLogger(LOGGER), interval_s=5.0, clock=lambda: now[0], timers=False)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        throttle.log(logging.WARNING, "rate", "refused: too many")
        for _ in range(2302):
            throttle.log(logging.WARNING, "rate", "refused: too many")
        throttle.log(logging.WARNING, "invalid", "refused: %s", "bad JSON")
        throttle.log(logging.WARNING, "invalid", "refused: %s", "unknown type")
        now[0] = 2.0
        throttle.close()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "refused: too many"), (logging.WARNING, "refused: bad JSON"),
        (logging.WARNING, "refused: too many (2302 times in the last 2.0 s)"),
        (logging.WARNING, "refused: unknown type (1 time in the last 2.0 s)")]


def test_held_back_lines_are_told_once_the_interval_is_over(caplog: pytest.LogCaptureFixture) -> None:
    """With no later line of the kind, its timer tells the count after the interval (real time)."""
    throttle = LogThrottle(logging.getLogger(LOGGER), interval_s=0.2)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for i in range(6):
            throttle.log(logging.INFO, "mouth", "control mouth applied %d", i)
        deadline = time.monotonic() + 5
        while len(caplog.records) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        throttle.close()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and messages[0] == "control mouth applied 0", messages
    assert messages[1].startswith("control mouth applied 5 (5 times in the last 0.2 s"), messages
