"""Live video for the daemon: a webcam, or a video file played as one, tracked into motion in its own thread.

Why three threads' worth of care: a camera delivers frames at its own pace and
buffers a few when nobody reads them, the face mesh takes 10-30 ms a frame, and
the daemon's frame clock must never wait for either. So

* a *capture* thread reads the camera (or releases the file's frames on their
  real-time schedule, as `audio_input.FileSource` does for sound) and keeps only
  the newest frame (older ones are dropped and counted: a late face is worse
  than a skipped one);
* a *tracking* thread takes the newest frame, finds the face mesh and turns it
  into motion (`face.live.LiveFace`: `facecast extract`'s measurements, live);
* the daemon's output thread reads the newest tracked result whenever it ticks
  (`CameraInput.latest`), without ever blocking.

A camera that disappears mid-stream is reported once and reopened every
`REOPEN_INTERVAL_S`, like the microphone; meanwhile there is no face and the
avatar idles on the voice (`app.hybrid`). A camera that cannot be found at
start, or a file that is not a video, is a one-line `InputError`.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from facecast.app.audio_input import REOPEN_INTERVAL_S, STALL_S
from facecast.errors import InputError
from facecast.face.extraction import open_video
from facecast.motion import MotionFrame

log = logging.getLogger("facecast.app.camera_input")

#: Camera indices probed where the OS gives no list of video devices (Windows, macOS).
PROBE_INDICES = 5
#: The frame rate assumed for a camera that does not report one.
DEFAULT_CAMERA_FPS = 30.0
#: Linux: where video4linux lists capture devices, with their names.
V4L_SYSFS = Path("/sys/class/video4linux")


@dataclass(frozen=True)
class CameraFrame:
    """One picture: RGB (H, W, 3) uint8, mirrored if asked; capture_time is time.monotonic() when it was taken."""

    rgb: np.ndarray
    capture_time: float
    index: int


@dataclass(frozen=True)
class Tracked:
    """The tracking thread's newest result: the face's motion (None: no face, or still calibrating)."""

    motion: MotionFrame | None
    capture_time: float
    tracked_at: float
    index: int


class FrameSource(Protocol):
    """What the tracking thread reads pictures from (`CameraSource`, `VideoFileCamera`)."""

    fps: float
    finished: bool

    @property
    def status(self) -> dict[str, Any]: ...

    def start(self) -> None: ...

    def newest(self, after: int, timeout: float) -> CameraFrame | None: ...

    def stop(self) -> None: ...


def _cv2() -> Any:
    import cv2  # heavy: only when a camera is used

    return cv2


# --- listing ------------------------------------------------------------------------------------------

def list_cameras(platform: str = sys.platform, sysfs: Path = V4L_SYSFS) -> list[dict[str, Any]]:
    """Cameras as `facecast devices` shows them: index, name, the mode the camera opens in and the modes it takes.

    Linux names its video devices in sysfs (a UVC webcam has two nodes, the second for metadata: only a
    device's first node, ``index`` 0, is a camera); elsewhere the first `PROBE_INDICES` indices are tried.
    """
    if platform.startswith("linux"):
        found = []
        for node in sorted(sysfs.glob("video*"), key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 0):
            if not node.name[5:].isdigit() or _read(node / "index") not in ("", "0"):
                continue
            found.append({"index": int(node.name[5:]), "name": _read(node / "name") or node.name,
                          "path": f"/dev/{node.name}"})
    else:
        found = [{"index": i, "name": f"camera {i}"} for i in range(PROBE_INDICES)]
    listed = []
    for camera in found:
        modes = probe_modes(camera["index"])
        if not modes and not platform.startswith("linux"):
            continue  # a probed index that does not open is no camera
        listed.append({**camera, "mode": modes[0] if modes else None, "modes": modes})
    return listed


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


#: Frame sizes `facecast devices` asks a camera for, beside the one it opens in: the usual webcam modes.
PROBED_SIZES = ((640, 480), (1280, 720), (1920, 1080))


def probe_modes(device: int | str) -> list[str]:
    """'WIDTHxHEIGHT@FPS' modes a camera (an index or a device path) accepts, the one it opens in first; [] when it
    does not open (busy, gone). OpenCV has no mode list, so each of PROBED_SIZES is asked for and what the camera
    settled on is read back (a camera answers an unsupported size with its nearest)."""
    cv2 = _cv2()
    capture = cv2.VideoCapture(device)
    try:
        if not capture.isOpened():
            return []

        def current() -> str:
            width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            return f"{width}x{height}@{capture.get(cv2.CAP_PROP_FPS) or DEFAULT_CAMERA_FPS:g}"

        modes = [current()]
        for width, height in PROBED_SIZES:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if (mode := current()) not in modes:
                modes.append(mode)
        return modes
    finally:
        capture.release()


def resolve_camera(wanted: str, cameras: list[dict[str, Any]] | None = None) -> int:
    """`--camera` (an index, a name or part of one; "" = the first camera) -> a camera index; InputError naming
    what exists when nothing matches."""
    cameras = list_cameras() if cameras is None else cameras
    known = ", ".join(f"[{c['index']}] {c['name']}" for c in cameras) or "none found"
    text = wanted.strip()
    if text == "":
        if not cameras:
            raise InputError("no camera found (`facecast devices` lists cameras); use --camera-file VIDEO to "
                             "drive the avatar from a recording")
        return int(cameras[0]["index"])
    if text.isdigit():
        index = int(text)
        if not any(c["index"] == index for c in cameras):
            raise InputError(f"camera {index} not found (cameras: {known})")
        return index
    matches = [c for c in cameras if text.lower() in str(c["name"]).lower()]
    if len(matches) != 1:
        reason = "not found" if not matches else "matches several cameras"
        raise InputError(f"camera {text!r} {reason} (cameras: {known})")
    return int(matches[0]["index"])


# --- sources ------------------------------------------------------------------------------------------

class _Newest:
    """A one-frame mailbox: the capture side overwrites (counting the frames nobody took), readers wait."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: CameraFrame | None = None
        self.dropped = 0
        self.taken = -1

    def put(self, frame: CameraFrame) -> None:
        with self._cond:
            if self._frame is not None and self._frame.index > self.taken:
                self.dropped += 1
            self._frame = frame
            self._cond.notify_all()

    def newest(self, after: int, timeout: float) -> CameraFrame | None:
        """The newest frame with an index above `after`, waiting at most `timeout` seconds for one."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None and self._frame.index > after, timeout)
            frame = self._frame
            if frame is None or frame.index <= after:
                return None
            self.taken = frame.index
            return frame


class _Worker:
    """One background thread running `_run` until `stop()` (which sets `_stopping` and joins it)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def _run(self) -> None:  # pragma: no cover - every worker has its own
        raise NotImplementedError


class _CaptureThread(_Worker):
    """The capture side shared by the camera and the file: mirroring and the newest-frame mailbox."""

    def __init__(self, name: str, device: str, mirror: bool, clock: Callable[[], float]) -> None:
        super().__init__(name)
        self.device = device   # what `status` names: the camera's name or the file's path
        self.mirror = mirror
        self._clock = clock
        self._box = _Newest()
        self._count = 0
        self.fps = DEFAULT_CAMERA_FPS   # the camera's reported rate, or the file's
        self._state = "stopped"
        self._errors = 0
        self.finished = False

    @property
    def status(self) -> dict[str, Any]:
        return {"device": self.device, "state": self._state, "fps": self.fps, "errors": self._errors,
                "frames": self._count, "dropped_frames": self._box.dropped}

    def newest(self, after: int, timeout: float) -> CameraFrame | None:
        return self._box.newest(after, timeout)

    def _publish(self, bgr: np.ndarray, capture_time: float) -> None:
        cv2 = _cv2()
        code = cv2.COLOR_GRAY2RGB if bgr.ndim == 2 else cv2.COLOR_BGRA2RGB if bgr.shape[2] == 4 else cv2.COLOR_BGR2RGB
        rgb = cv2.cvtColor(cv2.flip(bgr, 1) if self.mirror else bgr, code)
        self._box.put(CameraFrame(rgb, capture_time, self._count))
        self._count += 1


class CameraSource(_CaptureThread):
    """A webcam through OpenCV. Opened in `start()` (InputError if it cannot be opened at all); lost mid-stream,
    it is reopened every REOPEN_INTERVAL_S while the avatar idles."""

    def __init__(self, index: int, name: str | None = None, mirror: bool = True,
                 clock: Callable[[], float] = time.monotonic, opener: Callable[[int], Any] | None = None) -> None:
        self.index = index
        self.name = name or f"camera {index}"
        super().__init__("facecast-camera", self.name, mirror, clock)
        self._opener = opener or (lambda i: _cv2().VideoCapture(i))
        self._capture: Any = None

    def start(self) -> None:
        if not self._open():
            raise InputError(f"cannot open {self.name} (index {self.index}): it is missing or another program "
                             "uses it")
        super().start()

    def stop(self) -> None:
        super().stop()
        self._release()
        self._state = "stopped"

    def _open(self) -> bool:
        capture = self._opener(self.index)
        if capture is None or not capture.isOpened():
            if capture is not None:
                capture.release()
            return False
        cv2 = _cv2()
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # where the backend allows it: no queue of stale frames
        self.fps = float(capture.get(cv2.CAP_PROP_FPS) or DEFAULT_CAMERA_FPS)
        self._capture = capture
        self._state = "running"
        return True

    def _release(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()

    def _run(self) -> None:
        last_frame = self._clock()
        lost_since = 0.0
        while not self._stopping.is_set():
            if self._capture is None:
                if self._stopping.wait(REOPEN_INTERVAL_S):
                    return
                if self._open():
                    log.warning("%s is back after %.1f s", self.name, self._clock() - lost_since)
                    last_frame = self._clock()
                continue
            try:
                ok, bgr = self._capture.read()
                now = self._clock()
                if ok and bgr is not None:
                    self._publish(bgr, now)
                    last_frame = now
                    continue
            except Exception as exc:  # a driver error or a picture OpenCV cannot convert: as a failed read
                log.debug("%s: bad read: %s", self.name, exc)
                now = self._clock()
            if now - last_frame < STALL_S:  # one failed read is not a lost camera
                self._stopping.wait(0.01)
                continue
            self._errors += 1
            self._release()
            self._state = "lost"
            lost_since = now
            log.warning("%s lost: no picture for %.0f s; the avatar idles and facecast retries every %.1f s",
                        self.name, STALL_S, REOPEN_INTERVAL_S)


class VideoFileCamera(_CaptureThread):
    """A video file played as a camera: each frame released when real time reaches it, at the file's frame rate.

    Like `audio_input.FileSource`: at the end `finished` turns True and no more pictures come (no face: the
    avatar idles), unless `loop` starts it again. A corrupt file half-way ends it the same way, logged once.
    """

    def __init__(self, path: str | Path, mirror: bool = True, loop: bool = False,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.path = Path(path)
        super().__init__("facecast-camera-file", str(self.path), mirror, clock)
        info = open_video(self.path)  # InputError now, in one line, for a missing file or one that is not a video
        capture = _cv2().VideoCapture(str(self.path))
        try:
            decodes = capture.read()[0]
        finally:
            capture.release()
        if not decodes:   # a container that opens but holds no decodable picture (a corrupt JPEG, say)
            raise InputError(f"{self.path}: no picture could be decoded (a corrupt or unsupported video)")
        self.fps = info.fps
        self.loop = loop
        self._sleep = sleep

    def _run(self) -> None:
        cv2 = _cv2()
        start = self._clock()
        released = 0
        self._state = "running"
        while not self._stopping.is_set():
            capture = cv2.VideoCapture(str(self.path))
            played = 0
            while not self._stopping.is_set():
                ok, bgr = capture.read()
                if not ok or bgr is None:
                    break
                due = start + (released + 1) / self.fps  # the frame is "captured" at the end of its period
                wait = due - self._clock()
                if wait > 0:
                    self._stopping.wait(wait)
                self._publish(bgr, due)
                released += 1
                played += 1
            capture.release()
            if played == 0:
                self._errors += 1
                log.warning("%s: no picture could be decoded", self.path)
            if not self.loop or played == 0:
                break
        self.finished = True
        self._state = "finished"


# --- tracking -----------------------------------------------------------------------------------------

class CameraInput(_Worker):
    """A frame source plus the tracking thread: `latest()` is the newest face motion, never waited for.

    `tracker` turns an RGB frame into (478, 3) landmarks or None (`face.measure.FaceMeasurer`; injectable so
    tests can count calls); the motion comes from `face.live.LiveFace`.
    """

    def __init__(self, source: FrameSource, clock: Callable[[], float] = time.monotonic,
                 tracker: Callable[[np.ndarray], np.ndarray | None] | None = None) -> None:
        from facecast.face.live import LiveFace

        super().__init__("facecast-tracking")
        self.source = source
        self.face = LiveFace(source.fps)
        self._clock = clock
        self._tracker = tracker
        self._latest: Tracked | None = None
        self.tracked = 0
        self.found = 0
        self.error: str | None = None
        self.track_ms = 0.0  # the last frame's tracking time

    @property
    def finished(self) -> bool:
        """True once a file source has played to its end (a camera never finishes)."""
        return self.source.finished

    @property
    def status(self) -> dict[str, Any]:
        return {**self.source.status, "tracked": self.tracked, "face_found": self.found,
                "calibrating": self.face.calibrating, "track_ms": round(self.track_ms, 1), "error": self.error}

    def start(self) -> None:
        self.source.start()
        super().start()

    def stop(self) -> None:
        super().stop()
        self.source.stop()

    def calibrate(self) -> None:
        """Take the neutral pose and eye openness again from the next seconds (the `calibrate` control)."""
        self.face.calibrate()

    def latest(self) -> Tracked | None:
        return self._latest

    def _run(self) -> None:
        measurer = None
        try:
            if self._tracker is None:
                from facecast.face.measure import FaceMeasurer

                measurer = FaceMeasurer()
                self._tracker = measurer.landmarks
            after = -1
            while not self._stopping.is_set():
                frame = self.source.newest(after, timeout=0.1)
                if frame is None:
                    continue
                after = frame.index
                started = self._clock()
                landmarks = self._tracker(frame.rgb)
                motion = self.face.update(landmarks, frame.capture_time)
                now = self._clock()
                self.track_ms = (now - started) * 1000.0
                self.tracked += 1
                self.found += landmarks is not None
                self._latest = Tracked(motion, frame.capture_time, now, frame.index)
        except Exception as exc:  # the avatar goes on idling on the voice; the status says why
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("camera tracking stopped: %s", self.error)
        finally:
            if measurer is not None:
                measurer.close()
