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

import numpy as np

from facecast.app.audio_input import FileSource, MicrophoneSource
from facecast.app.camera_input import CameraInput
from facecast.app.hybrid import Hybrid
from facecast.app.pacing import FramePacer, FrameQueue
from facecast.app.portrait_swap import PortraitSwapper, Reply
from facecast.bridges.output import Output
from facecast.controls import Controls
from facecast.motion import MotionFrame

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
#: Seconds between the periodic health log lines.
STATUS_LOG_INTERVAL_S = 5.0
#: `status` reports the frame rate, latency and longest gap over this many recent seconds (and the whole run).
STATUS_WINDOW_S = 5.0


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
    #: (hand-off time, mic-to-frame latency in ms or None for a repeated frame) of the last `STATUS_WINDOW_S`.
    recent: deque = field(default_factory=deque)

    def add_latency(self, latency_ms: float) -> None:
        self.latencies_ms.append(latency_ms)
        self.latency_histogram[min(max(int(latency_ms), 0), LATENCY_HISTOGRAM_MS - 1)] += 1

    def add_handoff(self, now: float, latency_ms: float | None) -> None:
        self.recent.append((now, latency_ms))
        while self.recent and now - self.recent[0][0] > STATUS_WINDOW_S:
            self.recent.popleft()

    def window(self, now: float, seconds: float = STATUS_WINDOW_S) -> dict[str, Any]:
        """Frame rate, slowest whole second, longest gap and latency percentiles over the last `seconds`
        before `now` (a stalled loop shows as a falling rate, not as the whole run's average)."""
        recent = list(self.recent)  # one C-level copy: the frame loop appends meanwhile
        times = [t for t, _ in recent if now - t <= seconds]
        latencies = [ms for t, ms in recent if now - t <= seconds and ms is not None]
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
        }

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
        self._load_renderer = load_renderer
        self._render = render if any(o.needs_image for o in outputs) else None
        self._clock = clock
        self._sleep = sleep
        self._queue: FrameQueue[MotionFrame] = FrameQueue()
        self._stop = threading.Event()
        self._audio_done = threading.Event()
        self.stats = LiveStats()
        self.camera = camera
        self.hybrid = None if camera is None else Hybrid(camera.latest, drive, lambda: camera.face.calibrations,
                                                         clock=clock)
        self.camera_stats = LiveStats()  # camera-to-frame latency (its latency figures only)
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
            self.stats.elapsed = self._clock() - self.stats.started
            self.stats.cpu_seconds = time.process_time() - cpu_start
        return self.stats

    def _motion_loop(self) -> None:
        try:
            while not self._stop.is_set():
                block = self.source.read(timeout=0.1)
                if block is not None:
                    samples = np.zeros_like(block.samples) if self.controls.muted else block.samples
                    for frame in self.generator.push(samples, capture_time=block.capture_time):
                        self._queue.put(round(frame.t * self.fps), frame)
                if self.once and self.source.finished:
                    for frame in self.generator.finish():
                        self._queue.put(round(frame.t * self.fps), frame)
                    break
        except Exception as exc:  # keep the clock (and idle frames) going; report it
            self.motion_error = f"{type(exc).__name__}: {exc}"
            log.error("motion generation stopped: %s", self.motion_error)
        finally:
            self._audio_done.set()

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
            # With a camera the face moves between voice frames: every tick is a new picture.
            if (fresh or combined is not generated) and self._render is not None:
                image = self._render(frame)
            last_frame = generated
            for output in self.outputs:
                output.send(frame, image if output.output.needs_image else None)
            now = self._clock()
            self._account(frame, fresh, now, previous_handoff)
            if self.hybrid is not None and self.hybrid.capture_time is not None:
                self.camera_stats.add_latency((now - self.hybrid.capture_time) * 1000.0)
            if self.once and self.camera is not None and self.camera.finished and not self.source_is_file:
                break
            previous_handoff = now
            if now >= next_log:
                log.info("status %s", self.status_line())
                next_log = now + STATUS_LOG_INTERVAL_S
            if self.once and self._audio_done.is_set() and not self._queue.pending():
                break
            if max_seconds is not None and now - self.stats.started >= max_seconds:
                break
        self.stats.skipped = pacer.skipped

    def _account(self, frame: MotionFrame, fresh: bool, now: float, previous: float | None) -> None:
        stats = self.stats
        stats.frames += 1
        stats.repeated = self._queue.repeated
        stats.dropped = self._queue.dropped
        if previous is not None:
            stats.max_gap_ms = max(stats.max_gap_ms, (now - previous) * 1000.0)
        latency = None
        if fresh and frame.capture_time is not None:
            latency = (now - frame.capture_time) * 1000.0
            stats.add_latency(latency)
        stats.add_handoff(now, latency)

    def on_control(self, command: dict[str, Any], reply: Reply | None = None) -> dict[str, Any] | None:
        """A validated control message (emotion, mouth, gaze, distance, mute, portrait, stop); ValueError refuses it.

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
        log.info("control %s applied", command["type"])
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
            "window_s": recent["seconds"],
            "run": {"seconds": round(running, 1), "fps": round(stats.frames / running, 2),
                    "latency_ms": {"p50": _round(stats.percentile(50, window=False)),
                                   "p95": _round(stats.percentile(95, window=False))},
                    "max_gap_ms": round(stats.max_gap_ms, 1)},
            "frames": stats.frames,
            "repeated": stats.repeated,
            "inputs": self._inputs(),
            "outputs": {o.output.name: o.report() for o in self.outputs},
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
        return (f"fps={status['fps']} p50_ms={status['latency_ms']['p50']} p95_ms={status['latency_ms']['p95']} "
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
