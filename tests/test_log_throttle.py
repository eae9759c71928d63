"""One log line per kind of event every few seconds, the rest counted into the next."""

from __future__ import annotations

import logging

import pytest

from facecast.log_throttle import LogThrottle


def test_a_burst_is_one_line_and_the_next_counts_what_was_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    throttle = LogThrottle(logging.getLogger("facecast.test"), interval_s=5.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="facecast.test"):
        for _ in range(40):                      # a slider dragged for 2 s
            throttle.log(logging.INFO, "emotion", "control %s applied", "emotion")
            throttle.log(logging.INFO, "mouth", "control mouth applied")   # another kind has its own lines
            now[0] += 0.05
        now[0] = 106.0
        throttle.log(logging.INFO, "emotion", "control %s applied", "emotion")
    assert [r.getMessage() for r in caplog.records] == [
        "control emotion applied", "control mouth applied",
        "control emotion applied (and 39 more like it in the 6 s before)"]
