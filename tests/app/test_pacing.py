"""Frame pacing with an injected clock: steady ticks whatever the producer does."""

from __future__ import annotations

import math

import pytest

from conftest import FakeClock
from facecast.app.pacing import FramePacer, FrameQueue


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


def test_each_tick_shows_its_own_frame_even_when_frames_arrive_unevenly():
    queue: FrameQueue[str] = FrameQueue()
    assert queue.take(0) is None
    # frames arrive on the audio-block rhythm: two between ticks 0 and 1, none between 1 and 2
    queue.put(0, "f0")
    assert queue.take(0) == "f0"
    queue.put(1, "f1")
    queue.put(2, "f2")
    assert queue.take(1) == "f1"   # not the newer f2: it belongs to the next tick
    assert queue.take(2) == "f2"
    assert (queue.repeated, queue.dropped) == (0, 0)


def test_late_frames_repeat_and_passed_over_frames_are_dropped():
    queue: FrameQueue[str] = FrameQueue(capacity=4)
    queue.put(0, "f0")
    assert queue.take(0) == "f0"
    assert queue.take(1) == "f0" and queue.repeated == 1  # the generator is late: repeat, counted
    queue.put(1, "f1")
    queue.put(2, "f2")
    assert queue.take(2) == "f2" and queue.dropped == 1   # f1 came too late to be seen
    for i in range(3, 10):
        queue.put(i, f"f{i}")
    assert queue.pending() == 4 and queue.dropped == 4    # bounded: the oldest go first


def test_steady_grid_with_block_quantised_arrivals_never_repeats():
    """60 fps frames ready on a 10 ms audio-block grid, ticks on a 16.7 ms grid one block later."""
    queue: FrameQueue[int] = FrameQueue()
    fps, block = 60, 0.010
    arrivals = sorted((math.ceil((i / fps) / block) * block, i) for i in range(600))
    pending = iter(arrivals)
    upcoming = next(pending)
    for k in range(590):
        tick_time = k / fps + block + 0.4 / fps
        while upcoming is not None and upcoming[0] <= tick_time:
            queue.put(upcoming[1], upcoming[1])
            upcoming = next(pending, None)
        assert queue.take(k) == k
    assert (queue.repeated, queue.dropped) == (0, 0)
