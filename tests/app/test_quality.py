"""Beside a game (issue 23, part 6): the live daemon gives up picture size when its frames come late and takes it
back when the load goes, without flapping."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from conftest import FakeClock
from facecast.app.daemon import QUALITY_SCALES, LiveDaemon
from facecast.app.pacing import FramePacer, QualityGovernor
from facecast.motion import MotionFrame

FPS = 30.0


def run_ticks(governor: QualityGovernor, clock: FakeClock, seconds: float, behind_s: float) -> list[int]:
    """`seconds` of ticks whose hand-off comes `behind_s` after the slot; the levels it changed to."""
    changes = []
    for _ in range(round(seconds * FPS)):
        clock.now += 1.0 / FPS
        level = governor.observe(clock.now, behind_s)
        if level is not None:
            changes.append(level)
    return changes


def test_a_steady_load_steps_down_one_level_per_window_and_back_up_after_calm() -> None:
    clock = FakeClock()
    governor = QualityGovernor(3, FPS, window_s=1.0, recover_s=5.0)
    assert run_ticks(governor, clock, 3.0, behind_s=0.002) == []          # on time: nothing given up
    assert run_ticks(governor, clock, 2.5, behind_s=0.040) == [1, 2]      # late: one level per second, to the last
    assert run_ticks(governor, clock, 2.0, behind_s=0.040) == []          # no level beyond the last
    assert run_ticks(governor, clock, 4.9, behind_s=0.002) == []          # calm, but not for long enough yet
    assert run_ticks(governor, clock, 5.2, behind_s=0.002) == [1, 0]      # 5 s of calm per level back


def test_a_load_that_is_still_there_doubles_the_wait_before_the_next_try() -> None:
    clock = FakeClock()
    governor = QualityGovernor(2, FPS, window_s=1.0, recover_s=2.0, max_recover_s=8.0)
    assert run_ticks(governor, clock, 1.5, behind_s=0.040) == [1]
    assert run_ticks(governor, clock, 2.1, behind_s=0.002) == [0]         # tries full quality again
    assert run_ticks(governor, clock, 1.5, behind_s=0.040) == [1]         # the load was still there
    assert governor.recover_s == 4.0
    assert run_ticks(governor, clock, 3.5, behind_s=0.002) == []          # so the next try waits longer
    assert run_ticks(governor, clock, 0.6, behind_s=0.002) == [0]
    assert run_ticks(governor, clock, 1.5, behind_s=0.040) == [1]
    assert governor.recover_s == 8.0                                      # and longer, up to the cap
    assert run_ticks(governor, clock, 8.1, behind_s=0.002) == [0]
    assert run_ticks(governor, clock, 8.1, behind_s=0.002) == []          # that try held: the base wait is back
    assert governor.recover_s == 2.0


def test_repeated_frames_count_as_late_and_odd_late_ticks_do_not() -> None:
    clock = FakeClock()
    governor = QualityGovernor(3, FPS)
    for i in range(60):                                   # one late tick in ten: ordinary jitter
        clock.now += 1.0 / FPS
        assert governor.observe(clock.now, 0.040 if i % 10 == 0 else 0.001) is None
    changes = [governor.observe(clock.now + i / FPS, 0.001, repeated=True) for i in range(1, 30)]
    assert [c for c in changes if c is not None] == [1]   # the generator falling behind shows as repeats


def test_a_real_frame_loop_sheds_quality_under_load_and_recovers_when_it_goes() -> None:
    """A frame loop on the real clock whose per-frame work takes over two frame periods at full quality while the
    load lasts (its cost shrinks with the picture's area, as the overlay's encoding does) and none after. Only the
    order of events is checked: a busy machine can add late ticks of its own, never remove these."""
    governor = QualityGovernor(len(QUALITY_SCALES), FPS, window_s=0.5, recover_s=1.0)
    pacer = FramePacer(FPS)
    levels: list[tuple[str, int]] = []
    load_until = time.monotonic() + 3.0
    end = load_until + 8.0
    while time.monotonic() < end:
        tick = pacer.next_tick()
        loaded = time.monotonic() < load_until
        if loaded:
            time.sleep(2.2 / FPS * QUALITY_SCALES[governor.level] ** 2)
        level = governor.observe(time.monotonic(), time.monotonic() - tick.due)
        if level is not None:
            levels.append(("load" if loaded else "calm", level))
    assert ("load", 1) in levels, levels                     # gave up size while the load lasted
    assert levels[-1] == ("calm", 0), levels                 # and had it all back after


def test_the_daemon_sends_smaller_pictures_while_degraded_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    class Collector:
        name, needs_image = "collector", True

        def __init__(self) -> None:
            self.shapes: list[tuple[int, ...]] = []

        def send(self, frame: MotionFrame, image: np.ndarray | None) -> None:
            assert image is not None
            self.shapes.append(image.shape)

        def close(self) -> None:
            pass

    class Idle:
        status = {"state": "idle"}
        finished = False

    collector = Collector()
    daemon = LiveDaemon(Idle(), None, [collector], FPS, render=lambda frame: np.zeros((512, 512, 4), np.uint8))
    assert daemon.status()["quality"] == {"level": 0, "scale": 1.0, "reason": None, "changes": 0, "late_share": 0.0}
    frame = MotionFrame(t=0.0)
    assert daemon._picture(frame).shape == (512, 512, 4)
    with caplog.at_level(logging.INFO, logger="facecast.live"):
        daemon.quality.level = 2
        daemon._quality_changed(2, 0, 0.4)
        assert daemon._picture(frame).shape == (256, 256, 4)
        status = daemon.status()["quality"]
        assert status["level"] == 2 and status["scale"] == 0.5 and "falling behind (40% of frames late)" in \
            status["reason"]
        daemon.quality.level = 0
        daemon._quality_changed(0, 1, 0.0)
    assert daemon.status()["quality"]["reason"] is None
    messages = [record.getMessage() for record in caplog.records]
    assert sum("falling behind" in m for m in messages) == 1 and "load gone: pictures back at full size" in messages


def test_the_last_level_makes_the_learned_generator_spend_less_and_it_comes_back() -> None:
    """At LIGHT_GENERATOR_LEVEL the learned model denoises each chunk in fewer steps (the real model, as
    `facecast live` makes it), and still makes motion; a level down restores its steps."""
    from facecast.app.daemon import LIGHT_GENERATOR_LEVEL
    from facecast.speech.generator import make_generator

    generator = make_generator("learned", fps=FPS, streaming=True)
    inner = generator.generator
    daemon = LiveDaemon(None, generator, [], FPS)
    assert not inner.light
    daemon._quality_changed(LIGHT_GENERATOR_LEVEL, LIGHT_GENERATOR_LEVEL - 1, 0.5)
    assert inner.light and "fewer generator steps" in daemon._quality_reason
    t = np.arange(16000) / 16000
    frames = generator.push((0.3 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32))
    assert len(frames) >= 20                               # a second of audio still makes its frames
    daemon._quality_changed(LIGHT_GENERATOR_LEVEL - 1, LIGHT_GENERATOR_LEVEL, 0.0)
    assert not inner.light and "fewer generator steps" not in daemon._quality_reason


def test_motion_that_falls_behind_the_microphone_skips_audio_instead_of_trailing_it(sample_speech, caplog) -> None:
    """A generator slower than real time (each 10 ms block takes 20 ms, as on a machine short of CPU): the daemon
    skips the audio it cannot keep up with, says so once, and the frames stay near their sound instead of
    trailing it by the audio queue's whole second."""
    from facecast.app.audio_input import FileSource
    from facecast.app.daemon import MAX_AUDIO_BACKLOG_S
    from facecast.speech.generator import make_generator

    class Slow:
        def __init__(self) -> None:
            self.inner = make_generator("rule", fps=FPS, streaming=True)
            self.SAMPLE_RATE, self.fps = self.inner.SAMPLE_RATE, self.inner.fps
            self.lookahead_s, self.processing_s = self.inner.lookahead_s, self.inner.processing_s

        def push(self, samples: np.ndarray, capture_time: float | None = None) -> list[MotionFrame]:
            time.sleep(0.02)
            return self.inner.push(samples, capture_time)

        def finish(self) -> list[MotionFrame]:
            return self.inner.finish()

    daemon = LiveDaemon(FileSource(sample_speech), Slow(), [], FPS)
    with caplog.at_level(logging.INFO, logger="facecast.live"):
        daemon.run(max_seconds=4.0)
    summary = daemon.summary()
    assert 0.5 < summary["audio_skipped_s"] < 3.5 and daemon.status()["audio_skipped_s"] == summary["audio_skipped_s"]
    assert summary["frames"] > 60
    # about MAX_AUDIO_BACKLOG_S plus a block's work and a frame; the file's queue alone would allow 1 s
    assert summary["latency_p50_ms"] < 1000 * MAX_AUDIO_BACKLOG_S + 250, summary
    skipping = [r.getMessage() for r in caplog.records if "skipping audio to keep up" in r.getMessage()]
    assert len(skipping) == 1, skipping                  # said once, not once per block or per episode


def test_frames_after_skipped_audio_keep_their_own_slots_on_the_frame_clock() -> None:
    """The generator never hears skipped audio, so its time runs behind the frame clock by that much; each frame
    goes to the slot of the moment it shows (else frames made in bursts, as the learned model's 40 ms chunks at
    60 fps, would all count as late and ticks between them would repeat)."""
    clock = FakeClock()
    daemon = LiveDaemon(None, None, [], FPS, clock=clock, sleep=clock.sleep)
    assert daemon._slot(MotionFrame(t=1.0)) == 30
    assert daemon._behind(clock() - 0.3, 1600)                  # 100 ms of audio, 300 ms late: skipped
    assert not daemon._behind(clock() - 0.01, 160)              # fresh again
    assert daemon._slot(MotionFrame(t=1.0)) == 33 and daemon.stats.audio_skipped_s == pytest.approx(0.1)
