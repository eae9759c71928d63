"""Virtual webcam output: the transport against a fake pyvirtualcam.Camera (the compositor: test_vcam_compositor).

A v4l2loopback device needs a kernel module no container has, so only the
no-backend error is checked against the real pyvirtualcam.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pyvirtualcam
from test_vcam_compositor import RED, avatar

from facecast.bridges import vcam
from facecast.bridges.vcam import VirtualCamera, VirtualCameraError, list_vcam_backends
from facecast.errors import InputError
from facecast.motion import MotionFrame


class FakeCamera:
    """Stands in for pyvirtualcam.Camera: records how it was opened and what it was sent."""

    instances: list["FakeCamera"] = []

    def __init__(self, width: int, height: int, fps: float, *, fmt, device=None, backend=None) -> None:
        self.width, self.height, self.fps, self.fmt = width, height, fps, fmt
        self.backend, self.device = backend or "fake", device or "/dev/video9"
        self.frames: list[np.ndarray] = []
        self.closed = False
        self.slept = False
        FakeCamera.instances.append(self)

    @property
    def frames_sent(self) -> int:
        return len(self.frames)

    def send(self, frame: np.ndarray) -> None:
        self.frames.append(frame.copy())

    def sleep_until_next_frame(self) -> None:
        self.slept = True

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_camera(monkeypatch: pytest.MonkeyPatch) -> type[FakeCamera]:
    FakeCamera.instances = []
    monkeypatch.setattr(pyvirtualcam, "Camera", FakeCamera)
    return FakeCamera


def test_frames_reach_the_camera_as_rgb_1280x720(fake_camera: type[FakeCamera]) -> None:
    with VirtualCamera(1280, 720, fps=30) as camera:
        for i in range(3):
            camera.send(MotionFrame(t=i / 30), avatar())
        camera.send(MotionFrame(t=0.1), None)  # no picture this tick: nothing is sent
        assert camera.frames_sent == 3 and camera.device == "/dev/video9"
    fake = fake_camera.instances[0]
    assert (fake.width, fake.height, fake.fps) == (1280, 720, 30)
    assert fake.fmt == pyvirtualcam.PixelFormat.RGB
    assert all(f.shape == (720, 1280, 3) and f.dtype == np.uint8 for f in fake.frames)
    assert (fake.frames[0][:, 300:360] == RED).all()
    assert fake.closed and not fake.slept  # the daemon's clock paces frames, never the camera


def test_background_is_composited_and_a_bad_one_fails_before_the_camera_opens(
        fake_camera: type[FakeCamera], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="webcam background"):
        VirtualCamera(background=tmp_path / "missing.png")
    assert fake_camera.instances == []
    with VirtualCamera(640, 360, background=(0, 0, 255)) as camera:
        camera.send(MotionFrame(t=0.0), avatar(180))
    [frame] = fake_camera.instances[0].frames
    assert (frame[:, :130] == (0, 0, 255)).all() and (frame[:, 150:180] == RED).all()


def test_fps_backend_and_device_pass_through(fake_camera: type[FakeCamera]) -> None:
    backend = next(iter(pyvirtualcam.camera.BACKENDS))
    camera = VirtualCamera(640, 360, fps=60, backend=backend, device="/dev/video7")
    fake = fake_camera.instances[0]
    assert (fake.width, fake.height, fake.fps, fake.backend, fake.device) == (640, 360, 60, backend, "/dev/video7")
    assert camera.backend == backend
    with pytest.raises(VirtualCameraError, match="unknown virtual camera backend"):
        VirtualCamera(backend="no-such-backend")


def test_no_backend_is_one_line_with_the_setup_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(*args, **kwargs):
        raise RuntimeError("'v4l2loopback' backend: No v4l2 loopback device found at /dev/video[0-99].")

    monkeypatch.setattr(pyvirtualcam, "Camera", unavailable)
    monkeypatch.setattr(vcam.platform, "system", lambda: "Linux")
    with pytest.raises(VirtualCameraError) as error:
        VirtualCamera()
    message = str(error.value)
    assert "\n" not in message
    assert "modprobe v4l2loopback" in message and "exclusive_caps=1" in message and "video" in message
    assert "OBS" in vcam.setup_hint("Windows") and "Unity Capture" in vcam.setup_hint("Windows")
    assert "OBS" in vcam.setup_hint("Darwin") and "30" in vcam.setup_hint("Darwin")


def test_a_virtual_camera_that_appears_later_gets_the_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """No virtual camera at start (v4l2loopback not loaded yet): the output waits, asks for no pictures and
    reports why; once the device exists (here: the third look) frames reach it. The real pyvirtualcam finds no
    device on this machine; the fake stands in for the one that appears."""
    import time

    looks = []

    def camera_after_two_looks(*args, **kwargs):
        looks.append(1)
        if len(looks) < 3:
            raise RuntimeError("'v4l2loopback' backend: No v4l2 loopback device found at /dev/video[0-99].")
        return FakeCamera(*args, **kwargs)

    monkeypatch.setattr(pyvirtualcam, "Camera", camera_after_two_looks)
    FakeCamera.instances = []
    opened = []
    with pytest.raises(vcam.NoVirtualCameraError) as missing:
        VirtualCamera(640, 360)
    waiting = vcam.WaitingVirtualCamera(lambda: VirtualCamera(640, 360), str(missing.value), on_open=opened.append,
                                        retry_s=0.02)
    assert not waiting.wants_image and "modprobe v4l2loopback" in waiting.counters["error"]
    waiting.send(MotionFrame(t=0.0), None)
    deadline = time.monotonic() + 5
    while not waiting.wants_image and time.monotonic() < deadline:
        time.sleep(0.01)
    assert waiting.wants_image and waiting.counters == {"frames_dropped": 1, "error": None} and len(opened) == 1
    waiting.send(MotionFrame(t=0.1), avatar())
    waiting.close()
    assert len(FakeCamera.instances) == 1 and len(FakeCamera.instances[0].frames) == 1
    assert FakeCamera.instances[0].closed


def test_no_backend_with_the_real_pyvirtualcam() -> None:
    if vcam.platform.system() != "Linux" or vcam.v4l2loopback_devices():
        pytest.skip("only meaningful on a Linux machine without v4l2loopback")
    with pytest.raises(VirtualCameraError, match=r"modprobe v4l2loopback devices=1 exclusive_caps=1"):
        VirtualCamera()
    [linux] = list_vcam_backends()
    assert linux["backend"] == "v4l2loopback" and not linux["usable"] and "modprobe" in linux["detail"]


def test_v4l2loopback_devices_are_found_in_sysfs(tmp_path: Path) -> None:
    sysfs = tmp_path / "class"
    sysfs.mkdir()
    for index, parent, label in ((0, "pci0000:00/usb1", "Integrated Camera"), (10, "virtual", "facecast")):
        device = tmp_path / "devices" / parent / "video4linux" / f"video{index}"
        device.mkdir(parents=True)
        (device / "name").write_text(label + "\n")
        (sysfs / f"video{index}").symlink_to(device)
    [loopback] = vcam.v4l2loopback_devices(sysfs)
    assert loopback["device"] == "/dev/video10" and loopback["label"] == "facecast"
