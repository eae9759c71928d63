"""The live daemon: microphone (or a file played in real time) -> motion -> every enabled output.

Two threads:

* the *motion* thread reads audio blocks, pushes them through the same
  streaming generator as `facecast render` and posts each finished motion
  frame to an ordered frame queue;
* the *output* thread ticks a fixed frame clock (`FramePacer`), takes the
  tick's own motion frame (repeating the last one when the generator is late),
  renders it once if an output needs pictures, and hands it to every output.

Each output is wrapped so that a failure (a receiver gone, a camera unplugged)
is logged once per outage and never stops the others. Every tick measures
mic-to-frame latency: from the capture time of the newest audio sample that
influenced the frame to the moment it is handed to the outputs. `status`
reports frame rate and latency over the last `STATUS_WINDOW_S` seconds and over
the whole run. Portrait swaps run in one worker (`facecast.app.portrait_swap`).

With a camera (`facecast.app.camera_input`), a third and fourth thread capture
and track the face; the output thread lays the newest tracked face over each
voice frame (`facecast.app.hybrid`) and measures camera-to-frame latency the
same way, from the camera frame's capture time to the hand-off.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from facecast.app.audio_input import FileSource, MicrophoneSource
from facecast.app.camera_input import CameraInput
from facecast.app.hybrid import Hybrid
from facecast.app.pacing import FramePacer, FrameQueue, QualityGovernor
from facecast.app.portrait_swap import PortraitSwapper, Reply
from facecast.bridges.output import Output
from facecast.controls import Controls
from facecast.log_throttle import LogThrottle
from facecast.motion import MotionFrame
from facecast.speech.audio_features import SAMPLE_RATE, CaptureClock

log = logging.getLogger("facecast.live")

#: How many recent latency samples the p50/p95 figures cover (10 s at 60 fps).
LATENCY_WINDOW = 600
#: Whole-run latencies are counted in 1 ms bins (constant memory however long the daemon runs);
#: anything slower lands in the last bin.
LATENCY_HISTOGRAM_MS = 2000
#: Frames become ready only when the audio block holding their newest sample arrives, so up to one
#: block after that sample's capture time. The frame clock ticks one block plus this share of a frame
#: period after each frame's capture time, so a tick never races the frame it should show
#: (measured: 1/3 of frames repeated at 30 fps when the grid ignored this).
PHASE_MARGIN_PERIODS = 0.4
#: Audio reaching the motion thread later than this after its capture is skipped (`LiveDaemon._behind`): the target
#: is every frame within 150 ms of its sound, and frames take ~0.1 s after their audio is in.
MAX_AUDIO_BACKLOG_S = 0.15
#: The log says that audio is being skipped at most once in this many seconds (`/status` counts every skip).
SKIP_TELL_S = 60.0
#: Seconds between the periodic health log lines.
STATUS_LOG_INTERVAL_S = 5.0
#: Frames the queue between the generator and the frame clock holds beyond a generator's burst (`FrameQueue`).
QUEUE_FRAMES = 16
#: `status` reports the frame rate, latency and longest gap over this many recent seconds (and the whole run).
STATUS_WINDOW_S = 5.0
#: The pictures' linear size at each quality level (`QualityGovernor`): when the daemon falls behind, frames go to
#: the outputs smaller (512 -> 384 -> 256 px) and receivers scale them back up. Encoding the overlay's frames
#: (WebP with alpha 8-11 ms at 512², JPEG about 1 ms; rendering 2 ms) shrinks with the area.
QUALITY_SCALES = (1.0, 0.75, 0.5, 0.5)
#: From this level on the generator also spends less (`lighten`: the learned model's denoising steps 2 -> 1), for
#: when motion itself comes late (repeated frames).
LIGHT_GENERATOR_LEVEL = 3


class GuardedOutput:
    """Runs one output's sends, turning its failures into one log line per outage plus counters."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.sent = 0
        self.errors = 0
        self.last_error: str | None = None
        self._failing = False

    def send(self, frame: MotionFrame, image: np.ndarray | None) -> None:
        try:
            self.output.send(frame, image)
        except Exception as exc:  # an output must never take the daemon down
            self.errors += 1
            self.last_error = " ".join(f"{type(exc).__name__}: {exc}".split())
            if not self._failing:
                log.warning("output %s failing: %s (other outputs keep running)", self.output.name, self.last_error)
                self._failing = True
            return
        self.sent += 1
        if self._failing:
            log.info("output %s recovered", self.output.name)
            self._failing = False

    def report(self) -> dict[str, Any]:
        """This output's ``/status`` entry: its own counters (an optional ``counters`` dict, e.g. a UDP
        sender's packets and current ``error``) merged with the daemon's: frames handed over (``sent``),
        frames that failed (``errors``: the daemon's and the output's own), the current ``error`` (None
        while it works) and the ``last_error`` ever seen."""
        try:
            own = dict(getattr(self.output, "counters", None) or {})
        except Exception as exc:  # a report must not fail the status
            own = {"error": f"counters unavailable: {type(exc).__name__}: {exc}"}
        current = self.last_error if self._failing else None
        return {**own, "sent": self.sent, "errors": self.errors + int(own.get("errors") or 0),
                "error": current or own.get("error"), "last_error": self.last_error or own.get("last_error")}

    @property
    def wants_image(self) -> bool:
        """Whether this output would read a picture now (`Output.wants_image`, where it has one)."""
        return self.output.needs_image and bool(getattr(self.output, "wants_image", True))

    @property
    def current_error(self) -> str | None:
        error = self.report()["error"]
        return None if error is None else f"{self.output.name}: {error}"

    def close(self) -> None:
        try:
            self.output.close()
        except Exception as exc:
            log.warning("output %s did not close cleanly: %s", self.output.name, exc)


@dataclass
class LiveStats:
    """What the daemon did: frames, repeats, latency, CPU."""

    frames: int = 0
    repeated: int = 0
    dropped: int = 0
    skipped: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    latency_histogram: np.ndarray = field(default_factory=lambda: np.zeros(LATENCY_HISTOGRAM_MS, np.int64))
    max_gap_ms: float = 0.0
    started: float = 0.0
    elapsed: float = 0.0
    cpu_seconds: float = 0.0
    #: Seconds of audio skipped because the motion thread fell behind (`LiveDaemon._behind`).
    audio_skipped_s: float = 0.0
    #: (hand-off time, mic-to-frame latency in ms or None for a repeated frame, the avatar's delay behind the sound
    #: it shows in ms or None, the audio heard past that sound in ms or None) of the last `STATUS_WINDOW_S`.
    recent: deque = field(default_factory=deque)
    #: How long after its capture each recent audio block reached the daemon (ms).
    capture_ms: deque = field(default_factory=lambda: deque(maxlen=200))

    def add_latency(self, latency_ms: float) -> None:
        self.latencies_ms.append(latency_ms)
        self.latency_histogram[min(max(int(latency_ms), 0), LATENCY_HISTOGRAM_MS - 1)] += 1

    def add_handoff(self, now: float, latency_ms: float | None, behind_ms: float | None = None,
                    ahead_ms: float | None = None) -> None:
        self.recent.append((now, latency_ms, behind_ms, ahead_ms))
        while self.recent and now - self.recent[0][0] > STATUS_WINDOW_S:
            self.recent.popleft()

    def window(self, now: float, seconds: float = STATUS_WINDOW_S) -> dict[str, Any]:
        """Frame rate, slowest whole second, longest gap and latency percentiles over the last `seconds`
        before `now` (a stalled loop shows as a falling rate, not as the whole run's average)."""
        recent = [entry for entry in list(self.recent) if now - entry[0] <= seconds]  # list(): one C-level copy
        times = [entry[0] for entry in recent]
        latencies = [entry[1] for entry in recent if entry[1] is not None]
        span = min(seconds, max(1e-9, now - self.started))
        whole = int(min(seconds, now - self.started))  # whole seconds the window covers
        per_second = [sum(1 for t in times if now - k - 1 < t <= now - k) for k in range(whole)]
        gaps = [b - a for a, b in zip(times, times[1:])]
        gaps.append(now - times[-1] if times else span)  # the time since the newest frame counts as a gap
        return {
            "seconds": round(span, 2), "fps": round(len(times) / span, 2),
            "slowest_second_frames": min(per_second) if per_second else None,
            "max_gap_ms": round(1000.0 * max(gaps), 1),
            "latency_ms": {"p50": _round(_quantile(latencies, 50)), "p95": _round(_quantile(latencies, 95))},
            "av_delay_ms": self._av_delay(recent),
        }

    def _av_delay(self, recent: list[tuple]) -> dict[str, float] | None:
        """How far the avatar trails the microphone (medians over `recent`; None before a timed frame): ``total``,
        from the capture of the sound a frame shows to the frame's hand-off, made of ``capture`` (the sound
        reaching the daemon), ``lookahead`` (the audio the generator heard past that sound before the frame was
        final) and ``processing`` (the rest: compute, waiting for the frame clock, rendering, sending)."""
        behind = [entry[2] for entry in recent if entry[2] is not None]
        ahead = [entry[3] for entry in recent if entry[3] is not None]
        if not behind:
            return None
        total, lookahead = statistics.median(behind), statistics.median(ahead)
        capture = statistics.median(self.capture_ms) if self.capture_ms else 0.0
        return {"total": round(total), "capture": round(capture), "lookahead": round(lookahead),
                "processing": round(total - capture - lookahead)}

    def percentile(self, q: float, window: bool = True) -> float | None:
        """Latency percentile of the recent window (exact) or of the whole run (to 1 ms, rounded up)."""
        if not window:
            total = int(self.latency_histogram.sum())
            if total == 0:
                return None
            rank = max(1, math.ceil(q / 100.0 * total))
            return float(np.searchsorted(np.cumsum(self.latency_histogram), rank) + 1)
        values = list(self.latencies_ms)
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


class LiveDaemon:
    """Connects an audio source, a motion generator, an optional renderer and the outputs.

    `clock` and `sleep` drive the frame clock (injected in tests); capture
    times from the audio source must use the same clock.
    """

    def __init__(self, source: Any, generator: Any, outputs: list[Output], fps: float,
                 render: Callable[[MotionFrame], np.ndarray] | None = None, once: bool = False,
                 block_s: float = 0.01, controls: Controls | None = None,
                 load_renderer: Callable[[Path], Callable[[MotionFrame], np.ndarray]] | None = None,
                 camera: CameraInput | None = None, drive: dict[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.source = source
        self.generator = generator
        self.outputs = [GuardedOutput(o) for o in outputs]
        self.fps = fps
        self.once = once
        self._block_s = block_s  # the audio source's block length
        self.controls = controls or Controls()
        #: accepted control messages are logged, but at most one line per kind every few seconds (a dragged slider)
        self._control_log = LogThrottle(log)
        self._load_renderer = load_renderer
        self._render = render if any(o.needs_image for o in outputs) else None
        #: Gives up picture size when frames come late (nothing to give up without pictures).
        self.quality = QualityGovernor(len(QUALITY_SCALES), fps) if self._render is not None else None
        self._quality_reason: str | None = None
        self._skipping = False   # audio is being skipped because motion fell behind (`_behind`)
        self._skip_told: float | None = None   # when the log last said so
        self._skipped_samples = 0
        self._clock = clock
        self._sleep = sleep
        # Room for the frames a generator makes at once beside those waiting for their tick: a sync-latency stream
        # makes 0.8 s of frames in one go (`learned_stream.SYNC_UPDATE_FRAMES`), and at the end of the audio all
        # it has heard ahead (`lookahead_s`); the others one or two frames.
        ahead = getattr(generator, "burst_s", 0.0) + getattr(generator, "lookahead_s", 0.0)
        self._queue: FrameQueue[MotionFrame] = FrameQueue(QUEUE_FRAMES + math.ceil(ahead * fps))
        self._stop = threading.Event()
        self._audio_done = threading.Event()
        self.stats = LiveStats()
        self.camera = camera
        self.hybrid = None if camera is None else Hybrid(camera.latest, drive, lambda: camera.face.calibrations,
                                                         clock=clock)
        self.camera_stats = LiveStats()  # camera-to-frame latency (its latency figures only)
        #: When each sample of the stream was captured: what the avatar's delay behind the voice is measured from.
        self._heard = CaptureClock()
        self._heard_lock = threading.Lock()
        self.motion_error: str | None = None
        self.swapper: PortraitSwapper[Callable[[MotionFrame], np.ndarray]] = PortraitSwapper(
            self._load_portrait, self._use_portrait)

    @property
    def source_is_file(self) -> bool:
        return isinstance(self.source, FileSource)

    def stop(self) -> None:
        """Ask both threads to finish (safe from signal handlers and other threads)."""
        self._stop.set()

    def run(self, max_seconds: float | None = None) -> LiveStats:
        """Run until `stop()`, the end of a file with `once`, or `max_seconds`."""
        self.stats.started = self._clock()
        cpu_start = time.process_time()
        self.source.start()
        if self.camera is not None:
            try:
                self.camera.start()
            except BaseException:  # a camera that cannot open is the user's one-line error: leave nothing running
                self.source.stop()
                raise
        motion = threading.Thread(target=self._motion_loop, name="facecast-motion", daemon=True)
        motion.start()
        try:
            self._output_loop(max_seconds)
        finally:
            self._stop.set()
            self.swapper.close()
            motion.join(timeout=2.0)
            self.source.stop()
            if self.camera is not None:
                self.camera.stop()
            for output in self.outputs:
                output.close()
            self._control_log.close()   # the control lines still held back, counted
            self.stats.elapsed = self._clock() - self.stats.started
            self.stats.cpu_seconds = time.process_time() - cpu_start
        return self.stats

    def _motion_loop(self) -> None:
        try:
            while not self._stop.is_set():
                block = self.source.read(timeout=0.1)
                if block is not None and self._behind(block.capture_time, len(block.samples)):
                    continue
                if block is not None:
                    self._note_block(len(block.samples), block.capture_time)
                    samples = np.zeros_like(block.samples) if self.controls.muted else block.samples
                    for frame in self.generator.push(samples, capture_time=block.capture_time):
                        self._queue.put(self._slot(frame), frame)
                if self.once and self.source.finished:
                    for frame in self.generator.finish():
                        self._queue.put(self._slot(frame), frame)
                    break
        except Exception as exc:  # keep the clock (and idle frames) going; report it
            self.motion_error = f"{type(exc).__name__}: {exc}"
            log.error("motion generation stopped: %s", self.motion_error)
        finally:
            self._audio_done.set()

    def _behind(self, capture_time: float, samples: int) -> bool:
        """Whether to skip this audio block: the motion thread got it more than MAX_AUDIO_BACKLOG_S after its
        capture (a machine short of CPU). Motion made from it would reach viewers that late, so it is dropped and
        the generator goes on with fresher sound: the lips skip a little instead of trailing the voice. Once
        skipping, blocks are dropped until one comes within half that (so it does not stop at the edge)."""
        now = self._clock()
        lag = now - capture_time
        if lag <= MAX_AUDIO_BACKLOG_S / (2 if self._skipping else 1):
            self._skipping = False
            return False
        self._skipped_samples += samples
        self.stats.audio_skipped_s = self._skipped_samples / SAMPLE_RATE
        if not self._skipping and (self._skip_told is None or now - self._skip_told > SKIP_TELL_S):
            self._skip_told = now
            log.warning("motion is %.0f ms behind the microphone: skipping audio to keep up (the CPU is busy; "
                        "/status counts it under audio_skipped_s)", 1000 * lag)
        self._skipping = True
        return True

    def _slot(self, frame: MotionFrame) -> int:
        """The frame clock's slot for a generated frame: its index in the generator's stream, plus the frames of
        audio skipped before it (the generator never heard them, so its time runs behind the clock's by that)."""
        return round((frame.t + self._skipped_samples / SAMPLE_RATE) * self.fps)

    def _note_block(self, samples: int, capture_time: float) -> None:
        """Record a block's capture time (for the avatar's delay) and how late it reached the daemon."""
        with self._heard_lock:
            self._heard.add(samples, capture_time)
        self.stats.capture_ms.append(1000.0 * max(0.0, self._clock() - capture_time))

    def _sound_time(self, t: float) -> float | None:
        """Capture time of the sound at `t` seconds into the stream (None before any timed audio). Asked in
        frame order, as `CaptureClock` needs."""
        with self._heard_lock:
            return self._heard.time_of(round(t * SAMPLE_RATE))

    def _grid_start(self) -> tuple[float, int] | None:
        """Wait for the generator's first frame; the frame clock's grid starts just after frames are ready.

        Returns the grid's start time and the index of the frame its first tick shows.
        """
        while not self._stop.is_set():
            head = self._queue.peek()
            if head is not None:
                first_index, first = head
                ready = first.capture_time if first.capture_time is not None else self._clock()
                processing = getattr(self.generator, "processing_s", 0.0)   # a frame's compute after its audio
                # interpolated frames wait for the next generated pose: without this, ticks repeat poses
                waiting = getattr(self.generator, "pose_wait_s", 0.0)
                delay = self._block_s + processing + waiting + PHASE_MARGIN_PERIODS / self.fps
                log.info("frames scheduled %.0f ms after their audio (generator compute %.0f ms, next pose %.0f ms)",
                         1000 * delay, 1000 * processing, 1000 * waiting)
                return ready + delay, first_index
            if self._audio_done.is_set():
                return None
            self._sleep(0.002)
        return None

    def _output_loop(self, max_seconds: float | None) -> None:
        grid = self._grid_start()
        if grid is None:
            return
        start, first_index = grid
        pacer = FramePacer(self.fps, clock=self._clock, sleep=self._sleep, start=start)
        last_frame: MotionFrame | None = None
        image: np.ndarray | None = None
        previous_handoff: float | None = None
        told_delay = False
        next_log = self._clock() + STATUS_LOG_INTERVAL_S
        while not self._stop.is_set():
            tick = pacer.next_tick()
            generated = self._queue.take(first_index + tick.index)
            if generated is None:
                if self._audio_done.is_set() and self.once:
                    break
                continue
            fresh = generated is not last_frame
            combined = generated if self.hybrid is None else self.hybrid.combine(generated)
            frame = self.controls.apply(combined)
            # no picture while no output would read one (an overlay server nobody watches); with a camera the
            # face moves between voice frames, so every tick is a new picture
            wanted = self._render is not None and any(output.wants_image for output in self.outputs)
            if not wanted:
                image = None
            elif fresh or combined is not generated or image is None:
                image = self._picture(frame)
            last_frame = generated
            for output in self.outputs:
                output.send(frame, image if output.wants_image else None)
            now = self._clock()
            self._account(frame, fresh, now, previous_handoff)
            if self.hybrid is not None and self.hybrid.capture_time is not None:
                self.camera_stats.add_latency((now - self.hybrid.capture_time) * 1000.0)
            if self.once and self.camera is not None and self.camera.finished and not self.source_is_file:
                break
            previous_handoff = now
            if self.quality is not None:
                previous, share = self.quality.level, self.quality.late_share()
                level = self.quality.observe(now, now - tick.due, repeated=not fresh)
                if level is not None:
                    self._quality_changed(level, previous, max(share, self.quality.late_share()))
            if now >= next_log:
                log.info("status %s", self.status_line())
                if not told_delay and (delay := self.stats.window(now)["av_delay_ms"]) is not None:
                    told_delay = True   # once: it is fixed by the schedule set at start
                    log.info("the avatar trails the microphone by %d ms (capture %d, lookahead %d, processing %d): "
                             "delay the voice by that much where it is mixed (OBS: the microphone's Sync Offset)",
                             delay["total"], delay["capture"], delay["lookahead"], delay["processing"])
                next_log = now + STATUS_LOG_INTERVAL_S
            if self.once and self._audio_done.is_set() and not self._queue.pending():
                break
            if max_seconds is not None and now - self.stats.started >= max_seconds:
                break
        self.stats.skipped = pacer.skipped

    def _picture(self, frame: MotionFrame) -> np.ndarray:
        """The frame's picture at the current quality level's size."""
        assert self._render is not None
        image = self._render(frame)
        scale = QUALITY_SCALES[self.quality.level] if self.quality is not None else 1.0
        if scale < 1.0:
            height, width = image.shape[:2]
            image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        return image

    def _quality_changed(self, level: int, previous: int, late_share: float) -> None:
        """Apply a new quality level to the generator; say once per change what was given up and why (the log and
        `/status`)."""
        scale = QUALITY_SCALES[level]
        lighten = getattr(self.generator, "lighten", None)
        if lighten is not None and (level >= LIGHT_GENERATOR_LEVEL) != (previous >= LIGHT_GENERATOR_LEVEL):
            lighten(level >= LIGHT_GENERATOR_LEVEL)
        given_up = f"pictures at {scale:.0%} of their size" + (
            ", fewer generator steps" if level >= LIGHT_GENERATOR_LEVEL and lighten is not None else "")
        if level == 0:
            self._quality_reason = None
            log.info("load gone: pictures back at full size")
        elif level > previous:
            self._quality_reason = f"falling behind ({late_share:.0%} of frames late): {given_up} until the load goes"
            log.warning("%s", self._quality_reason)
        else:
            self._quality_reason = f"load easing: {given_up}"
            log.info("%s", self._quality_reason)

    def _account(self, frame: MotionFrame, fresh: bool, now: float, previous: float | None) -> None:
        stats = self.stats
        stats.frames += 1
        stats.repeated = self._queue.repeated
        stats.dropped = self._queue.dropped
        if previous is not None:
            stats.max_gap_ms = max(stats.max_gap_ms, (now - previous) * 1000.0)
        latency = behind = ahead = None
        if fresh and frame.capture_time is not None:
            latency = (now - frame.capture_time) * 1000.0
            stats.add_latency(latency)
            sound = self._sound_time(frame.t)
            if sound is not None:
                behind, ahead = (now - sound) * 1000.0, (frame.capture_time - sound) * 1000.0
        stats.add_handoff(now, latency, behind, ahead)

    def on_control(self, command: dict[str, Any], reply: Reply | None = None) -> dict[str, Any] | None:
        """A validated control message (emotion, mouth, head, gaze, distance, mute, portrait, calibrate, stop);
        ValueError refuses it.

        Returns the first answer (None: a plain ``ack``). A portrait swap is
        ``accepted`` at once; `reply` later gets ``swapped`` or an ``error``.
        """
        if command["type"] == "stop":  # the portable clean stop (Windows has no SIGTERM to send)
            log.info("stopping: asked on the control connection")
            self.stop()
            return None
        if command["type"] == "calibrate":
            if self.camera is None:
                raise ValueError("no camera is on, so there is nothing to calibrate")
            self.camera.calibrate()
            log.info("calibrating the camera: look straight at it with your eyes open")
            return None
        if command["type"] == "portrait":
            if self._load_renderer is None or self._render is None:
                raise ValueError("no output shows the portrait, so it cannot be swapped")
            path = str(command["path"])
            self.swapper.request(path, reply)
            log.info("portrait swap to %s accepted", path)
            return {"type": "accepted", "path": path}
        self.controls.update(command)
        self._control_log.log(logging.INFO, command["type"], "control %s applied", command["type"])
        return None

    def _load_portrait(self, path: Path) -> Callable[[MotionFrame], np.ndarray]:
        """Analyse a new portrait (in the swap worker); the old one keeps showing until it is ready."""
        assert self._load_renderer is not None
        return self._load_renderer(path)

    def _use_portrait(self, render: Callable[[MotionFrame], np.ndarray], path: Path) -> None:
        self._render = render

    def _current_error(self) -> str | None:
        """What is wrong now (None when everything works): a failed swap until one succeeds, the motion
        generator, or an output that is failing at the moment."""
        if self.swapper.last_error is not None:
            return self.swapper.last_error
        if self.motion_error is not None:
            return self.motion_error
        return next((error for o in self.outputs if (error := o.current_error) is not None), None)

    def status(self) -> dict[str, Any]:
        """The health report for `/status` and the logs: the last `STATUS_WINDOW_S` seconds at the top
        level (``fps``, ``latency_ms``, ``max_gap_ms``, ``slowest_second_frames``), the whole run under ``run``."""
        stats = self.stats
        now = self._clock()
        running = max(1e-9, now - stats.started)
        recent = stats.window(now)
        return {
            "fps": recent["fps"],
            "latency_ms": recent["latency_ms"],
            "max_gap_ms": recent["max_gap_ms"],
            "slowest_second_frames": recent["slowest_second_frames"],
            "av_delay_ms": recent["av_delay_ms"],
            "window_s": recent["seconds"],
            "run": {"seconds": round(running, 1), "fps": round(stats.frames / running, 2),
                    "latency_ms": {"p50": _round(stats.percentile(50, window=False)),
                                   "p95": _round(stats.percentile(95, window=False))},
                    "max_gap_ms": round(stats.max_gap_ms, 1)},
            "frames": stats.frames,
            "repeated": stats.repeated,
            "inputs": self._inputs(),
            "outputs": {o.output.name: o.report() for o in self.outputs},
            "quality": self._quality_status(),
            "audio_skipped_s": round(stats.audio_skipped_s, 2),
            "portrait": {"swapping": self.swapper.busy, "swapped": self.swapper.swapped,
                         "failed": self.swapper.failed, "superseded": self.swapper.superseded},
            "last_error": self._current_error(),
        }

    def _inputs(self) -> dict[str, Any]:
        inputs: dict[str, Any] = {"audio": self.source.status}
        if self.camera is not None and self.hybrid is not None:
            inputs["camera"] = {**self.camera.status, "share": round(self.hybrid.share, 3),
                                "losses": self.hybrid.losses, "recoveries": self.hybrid.recoveries,
                                "drive": self.hybrid.drive,
                                "latency_ms": {"p50": _round(self.camera_stats.percentile(50)),
                                               "p95": _round(self.camera_stats.percentile(95))}}
        return inputs

    def _quality_status(self) -> dict[str, Any]:
        """What the daemon gave up to keep up: level 0 is full quality; ``scale`` of the pictures' size."""
        if self.quality is None:
            return {"level": 0, "scale": 1.0, "reason": None, "changes": 0}
        return {"level": self.quality.level, "scale": QUALITY_SCALES[self.quality.level],
                "reason": self._quality_reason, "changes": self.quality.changes,
                "late_share": round(self.quality.late_share(), 3)}

    def summary(self) -> dict[str, Any]:
        """Whole-run figures (the benchmark's table reads these)."""
        stats = self.stats
        return {
            "frames": stats.frames, "elapsed_s": round(stats.elapsed, 3),
            "fps": round(stats.frames / stats.elapsed, 2) if stats.elapsed else None,
            "latency_p50_ms": _round(stats.percentile(50, window=False)),
            "latency_p95_ms": _round(stats.percentile(95, window=False)),
            "max_gap_ms": round(stats.max_gap_ms, 1), "repeated": stats.repeated, "dropped": stats.dropped,
            "skipped": stats.skipped, "cpu_s": round(stats.cpu_seconds, 2),
            **self._camera_summary(),
            "av_delay_ms": stats.window(stats.started + stats.elapsed)["av_delay_ms"],   # over the last seconds
            "quality_changes": self.quality.changes if self.quality is not None else 0,
            "audio_skipped_s": round(stats.audio_skipped_s, 2),
        }

    def _camera_summary(self) -> dict[str, Any]:
        if self.camera is None or self.hybrid is None:
            return {}
        status = self.camera.status
        return {"camera_latency_p50_ms": _round(self.camera_stats.percentile(50, window=False)),
                "camera_latency_p95_ms": _round(self.camera_stats.percentile(95, window=False)),
                "camera_frames": status.get("frames"), "camera_tracked": status.get("tracked"),
                "camera_face_found": status.get("face_found"), "camera_dropped": status.get("dropped_frames"),
                "camera_losses": self.hybrid.losses}

    def status_line(self) -> str:
        status = self.status()
        delay = status["av_delay_ms"]
        return (f"fps={status['fps']} p50_ms={status['latency_ms']['p50']} p95_ms={status['latency_ms']['p95']} "
                f"av_delay_ms={delay['total'] if delay else None} quality={status['quality']['level']} "
                f"frames={status['frames']} repeated={status['repeated']} "
                f"audio={status['inputs']['audio'].get('state')}")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def load_source(audio: Path | None, device: str | None, block_ms: float = 10.0) -> Any:
    """A file played in real time (`--audio`) or the microphone."""
    if audio is not None:
        return FileSource(audio, block_ms=block_ms)
    chosen: int | str | None = int(device) if device is not None and device.isdigit() else device
    return MicrophoneSource(chosen, block_ms=block_ms)
