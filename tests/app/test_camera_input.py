"""Camera input (`app.camera_input`): a real video file played as a camera through OpenCV and tracked with the real
face mesh; the device path with a stand-in only for the webcam this machine does not have."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from facecast.app import camera_input
from facecast.app.camera_input import (
    CameraInput,
    CameraSource,
    VideoFileCamera,
    list_cameras,
    probe_modes,
    resolve_camera,
)
from facecast.errors import InputError

WILD_CLIP = "talking/wild/styletalk_feifeili_clip1.mp4"


def test_a_video_file_plays_at_its_own_frame_rate(shared_data: Path) -> None:
    clip = shared_data / WILD_CLIP
    source = VideoFileCamera(clip, mirror=True)
    first = source.newest(-1, timeout=0.0)
    assert first is None  # nothing before start
    started = time.monotonic()
    source.start()
    seen = []
    try:
        after = -1
        while time.monotonic() - started < 1.0:
            frame = source.newest(after, timeout=0.2)
            if frame is not None:
                seen.append(frame)
                after = frame.index
        released = source.status["frames"]
    finally:
        source.stop()
    assert 0.8 * source.fps <= released <= 1.1 * source.fps + 1  # real time, not as fast as it decodes
    assert len(seen) + source.status["dropped_frames"] >= released - 1  # each one seen, or dropped as stale
    # each frame is stamped with its own slot on the file's clock: whole periods apart
    periods = np.diff([f.capture_time for f in seen]) * source.fps
    assert np.allclose(periods, np.round(periods), atol=1e-6) and periods.min() >= 1 - 1e-6
    # mirrored: the picture is the file's first frame flipped left to right, in RGB
    capture = cv2.VideoCapture(str(clip))
    ok, bgr = capture.read()
    capture.release()
    assert ok and np.array_equal(seen[0].rgb, cv2.cvtColor(cv2.flip(bgr, 1), cv2.COLOR_BGR2RGB))


def test_a_file_ends_like_an_audio_file_does(shared_data: Path, tmp_path: Path) -> None:
    """Played to its end, the source is finished and sends nothing more (the avatar idles); looped, it goes on."""
    clip = tmp_path / "short.mp4"
    capture = cv2.VideoCapture(str(shared_data / WILD_CLIP))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (128, 128))
    for _ in range(5):
        ok, bgr = capture.read()
        writer.write(cv2.resize(bgr, (128, 128)))
    writer.release()
    capture.release()
    for loop, expected in ((False, 5), (True, 10)):
        source = VideoFileCamera(clip, loop=loop)
        source.start()
        indices = []
        end = time.monotonic() + (0.6 if loop else 0.5)
        while time.monotonic() < end and len(indices) < expected:
            frame = source.newest(indices[-1] if indices else -1, timeout=0.1)
            if frame is not None:
                indices.append(frame.index)
        time.sleep(0.1)
        assert source.finished is not loop
        source.stop()
        assert len(indices) == expected, (loop, indices)


@pytest.mark.parametrize("content, reason, suffix", [
    (b"not a video at all", "not a supported video file", ".mp4"),
    (None, "video not found", ".mp4"),
    (b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 10, "no picture could be decoded", ".jpg"),  # opens, no frame
])
def test_a_file_that_is_not_a_video_is_one_line(tmp_path: Path, content: bytes | None, reason: str,
                                                suffix: str) -> None:
    path = tmp_path / f"clip{suffix}"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=reason) as error:
        VideoFileCamera(path)
    assert "\n" not in str(error.value)


def test_cameras_are_listed_from_video4linux(tmp_path: Path) -> None:
    """Linux's own list (real sysfs-shaped files): each webcam once, metadata nodes left out, names kept."""
    for node, name, index in (("video0", "Integrated Camera: Integrated C", 0), ("video1", "Integrated Camera", 1),
                              ("video2", "Logitech BRIO", 0)):
        (tmp_path / node).mkdir()
        (tmp_path / node / "name").write_text(name + "\n")
        (tmp_path / node / "index").write_text(f"{index}\n")
    cameras = list_cameras("linux", tmp_path)
    assert [(c["index"], c["name"], c["path"]) for c in cameras] == [
        (0, "Integrated Camera: Integrated C", "/dev/video0"), (2, "Logitech BRIO", "/dev/video2")]
    assert all(c["mode"] is None and c["modes"] == [] for c in cameras)  # no such devices here: they do not open
    assert list_cameras("linux", tmp_path / "missing") == []
    assert resolve_camera("brio", cameras) == 2 and resolve_camera("", cameras) == 0
    assert resolve_camera("2", cameras) == 2


@pytest.mark.parametrize("wanted, reason", [("", "no camera found"), ("3", "camera 3 not found"),
                                            ("brio", "'brio' not found")])
def test_a_camera_that_does_not_exist_is_one_line(wanted: str, reason: str) -> None:
    with pytest.raises(InputError, match=reason) as error:
        resolve_camera(wanted, [])
    assert "\n" not in str(error.value)


class Webcam:
    """Stands in for the webcam this machine lacks (the one fake): serves a real picture until `unplug()`,
    then fails every read; reopening fails while unplugged."""

    plugged = True

    def __init__(self, picture: np.ndarray) -> None:
        self.picture = picture
        self.open = self.plugged

    def isOpened(self) -> bool:
        return self.open

    def set(self, *_: object) -> bool:
        return True

    def get(self, prop: int) -> float:
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self) -> tuple[bool, np.ndarray | None]:
        time.sleep(1 / 30)
        if not Webcam.plugged:
            return False, None
        return True, self.picture

    def release(self) -> None:
        self.open = False


def test_a_camera_that_disappears_is_retried_and_comes_back(shared_data: Path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(camera_input, "STALL_S", 0.2)
    monkeypatch.setattr(camera_input, "REOPEN_INTERVAL_S", 0.2)
    capture = cv2.VideoCapture(str(shared_data / WILD_CLIP))
    picture = capture.read()[1]
    capture.release()
    Webcam.plugged = False
    with pytest.raises(InputError, match="cannot open camera 0 .*missing or another program uses it"):
        CameraSource(0, opener=lambda index: Webcam(picture)).start()
    Webcam.plugged = True
    source = CameraSource(0, "USB webcam", opener=lambda index: Webcam(picture))
    source.start()
    try:
        assert source.newest(-1, timeout=1.0) is not None and source.status["state"] == "running"
        Webcam.plugged = False
        deadline = time.monotonic() + 2.0
        while source.status["state"] != "lost" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert source.status["state"] == "lost"
        time.sleep(0.5)                       # still gone: retries fail quietly
        count = source.status["frames"]
        Webcam.plugged = True
        deadline = time.monotonic() + 2.0
        while source.status["frames"] <= count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert source.status["state"] == "running" and source.status["frames"] > count
    finally:
        source.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("USB webcam lost" in m for m in messages) == 1 and any("USB webcam is back" in m for m in messages)


def test_tracking_keeps_the_newest_frame_when_it_falls_behind(shared_data: Path) -> None:
    """A tracker slower than the camera skips stale frames instead of falling further and further behind."""
    calls = []

    def slow_tracker(rgb: np.ndarray) -> None:
        calls.append(time.monotonic())
        time.sleep(0.1)                      # 10 fps of tracking against a 25 fps clip
        return None

    camera = CameraInput(VideoFileCamera(shared_data / WILD_CLIP), tracker=slow_tracker)
    camera.start()
    try:
        time.sleep(1.2)
        latest = camera.latest()
    finally:
        camera.stop()
    assert 5 <= len(calls) <= 13
    assert camera.status["dropped_frames"] >= 10
    assert latest is not None and latest.motion is None          # no face from this tracker
    assert latest.tracked_at - latest.capture_time < 0.35   # the newest frame (stale ones would lag by ~1 s)


def test_the_real_face_mesh_turns_camera_frames_into_motion(shared_data: Path) -> None:
    camera = CameraInput(VideoFileCamera(shared_data / WILD_CLIP, mirror=False))
    camera.start()
    try:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and (camera.latest() is None or camera.latest().motion is None):
            time.sleep(0.05)
        latest = camera.latest()
        camera.calibrate()
        assert camera.face.calibrating
    finally:
        camera.stop()
    assert latest is not None and latest.motion is not None, camera.status
    assert camera.status["face_found"] >= 20 and camera.face.calibrations >= 1
    assert abs(latest.motion.head.yaw) < 30 and 0 <= latest.motion.blink.left <= 1
    assert threading.active_count() < 50


def test_modes_are_read_back_from_what_the_device_accepts(shared_data: Path, tmp_path: Path) -> None:
    """The mode probe on a real capture (a video file through OpenCV, as a camera would be opened): the mode it
    opens in first, each size asked for read back and listed once (a file keeps its own size: one mode), and
    nothing for a device that does not open."""
    modes = probe_modes(str(shared_data / "talking/wild/styletalk_feifeili_clip1.mp4"))
    assert len(modes) == 1 and modes[0].endswith("@30") and "x" in modes[0]
    assert probe_modes(str(tmp_path / "no-such-device")) == []
