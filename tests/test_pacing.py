"""Frame pacing with an injected clock: steady ticks whatever the producer does."""

from __future__ import annotations

import pytest
from conftest import FakeClock

from facecast.plugin.pacing import FramePacer, LatestFrame




@pytest.mark.parametrize("fps", [30, 60])
def test_ticks_land_on_a_fixed_grid(fps):
    clock = FakeClock()
    pacer = FramePacer(fps, clock=clock, sleep=clock.sleep)
    ticks = [pacer.next_tick() for _ in range(2 * fps)]
    assert [t.index for t in ticks] == list(range(2 * fps))
    assert clock.now == pytest.approx(1000.0 + (2 * fps - 1) / fps)
    assert all(t.late == 0 for t in ticks)


def test_jittery_work_does_not_accumulate_drift():
    clock = FakeClock()
    pacer = FramePacer(30, clock=clock, sleep=clock.sleep)
    work = [0.001, 0.030, 0.002, 0.025, 0.0]  # some frames take almost a whole period
    for i in range(300):
        tick = pacer.next_tick()
        assert tick.due == pytest.approx(1000.0 + i / 30)
        clock.now += work[i % len(work)]
    assert pacer.skipped == 0


def test_a_long_stall_reanchors_instead_of_bursting():
    clock = FakeClock()
    pacer = FramePacer(30, clock=clock, sleep=clock.sleep)
    pacer.next_tick()
    clock.now += 1.0  # the process was paused for a second
    tick = pacer.next_tick()
    assert pacer.skipped >= 25
    assert tick.late < 1 / 30
    following = pacer.next_tick()
    assert following.index == tick.index + 1 and clock.sleeps[-1] > 0


def test_late_generator_repeats_the_last_frame_and_counts_it():
    mailbox: LatestFrame[str] = LatestFrame()
    assert mailbox.take() is None
    mailbox.put("a")
    assert mailbox.take() == "a"
    assert mailbox.take() == "a" and mailbox.repeated == 1
    mailbox.put("b")
    mailbox.put("c")  # two frames between ticks: the older is dropped, the newest wins
    assert mailbox.take() == "c" and mailbox.dropped == 1 and mailbox.repeated == 1
