"""Virtual webcam: the 16:9 compositor for real, the transport against a fake pyvirtualcam.Camera.

A v4l2loopback device needs a kernel module no container has, so only the
no-backend error is checked against the real pyvirtualcam.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import pyvirtualcam
from PIL import Image

from facecast.bridges import vcam
from facecast.bridges.vcam import VcamCompositor, VirtualCamera, VirtualCameraError, list_vcam_backends
from facecast.errors import InputError

GREEN = (0, 177, 64)
RED, BLUE = (255, 0, 0), (0, 0, 255)


def avatar(size: int = 512, alpha: bool = True) -> np.ndarray:
    """A grey square with a red marker on its left edge and a blue one on its right."""
    image = np.full((size, size, 4 if alpha else 3), 128, np.uint8)
    if alpha:
        image[..., 3] = 255
    image[:, : size // 8, :3] = RED
    image[:, -size // 8:, :3] = BLUE
    return image


def test_avatar_is_centred_scaled_to_the_height_and_unmirrored() -> None:
    frame = VcamCompositor().compose(avatar())
    assert frame.shape == (720, 1280, 3) and frame.dtype == np.uint8
    # the 512 square becomes 720x720 at x 280..1000
    assert (frame[:, :280] == GREEN).all() and (frame[:, 1000:] == GREEN).all()
    assert (frame[:, 300:360] == RED).all()  # the avatar's left stays on the canvas's left
    assert (frame[:, 920:980] == BLUE).all()
    assert (frame[:, 500:780] == 128).all()


def test_alpha_is_composited_over_the_colour() -> None:
    image = avatar()
    image[..., 3] = 0
    image[:, 256:, 3] = 128  # right half half-transparent
    frame = VcamCompositor(background=(10, 20, 30)).compose(image)
    assert (frame[:, 300:620] == (10, 20, 30)).all()  # transparent: the background shows
    half = frame[10:700, 700:900].astype(int)
    expected = np.round(np.array([128, 128, 128]) * 128 / 255 + np.array([10, 20, 30]) * 127 / 255)
    assert np.abs(half - expected).max() <= 1


def test_alpha_is_composited_over_an_image_background(tmp_path: Path) -> None:
    left_right = np.zeros((90, 160, 3), np.uint8)
    left_right[:, :80] = (200, 0, 0)
    left_right[:, 80:] = (0, 0, 200)
    Image.fromarray(left_right).save(tmp_path / "bg.png")
    image = avatar()
    image[..., 3] = 0
    image[200:312, 200:312, 3] = 255
    frame = VcamCompositor(background=tmp_path / "bg.png").compose(image)
    assert frame.shape == (720, 1280, 3)
    # the background shows through the transparent avatar (rows above the patch) and around it
    assert (frame[:270, :600] == (200, 0, 0)).all() and (frame[:270, 680:] == (0, 0, 200)).all()
    assert (frame[290:430, 570:710] == 128).all()  # the opaque patch, centred


def test_rgb_input_and_other_sizes_and_cover() -> None:
    frame = VcamCompositor(640, 480).compose(avatar(256, alpha=False))
    assert frame.shape == (480, 640, 3)
    assert (frame[:, :80] == GREEN).all() and (frame[:, 100:120] == RED).all() and (frame[:, 560:] == GREEN).all()
    covered = VcamCompositor(fit="cover").compose(avatar())  # 1280x1280, cropped to its middle rows
    assert not (covered == GREEN).all(axis=2).any()
    assert (covered[:, :150] == RED).all() and (covered[:, -150:] == BLUE).all()


def test_bad_input_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="background"):
        VcamCompositor(background=tmp_path / "missing.png")
    with pytest.raises(InputError, match="0-255"):
        VcamCompositor(background=(0, 300, 0))
    with pytest.raises(InputError, match="fit"):
        VcamCompositor(fit="stretch")
    with pytest.raises(ValueError):
        VcamCompositor().compose(np.zeros((512, 512), np.uint8))


def test_compositor_is_fast() -> None:
    compositor = VcamCompositor()
    image = np.random.default_rng(0).integers(0, 256, (512, 512, 4), dtype=np.uint8)
    compositor.compose(image)
    times = []
    for _ in range(50):
        start = time.perf_counter()
        compositor.compose(image)
        times.append(time.perf_counter() - start)
    best_ms, median_ms = 1000 * min(times), 1000 * float(np.median(times))
    print(f"compose 512x512 RGBA -> 1280x720: {best_ms:.2f} ms best, {median_ms:.2f} ms median")
    # target 3 ms (median ~1.5 ms on an idle 2-core machine); the best run ignores other processes' load
    assert best_ms < 3.0


# --- transport ----------------------------------------------------------------------------------

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
    compositor = VcamCompositor()
    with VirtualCamera(1280, 720, fps=30) as camera:
        for _ in range(3):
            camera.send(compositor.compose(avatar()))
        assert camera.frames_sent == 3 and camera.device == "/dev/video9"
    fake = fake_camera.instances[0]
    assert (fake.width, fake.height, fake.fps) == (1280, 720, 30)
    assert fake.fmt == pyvirtualcam.PixelFormat.RGB
    assert all(f.shape == (720, 1280, 3) and f.dtype == np.uint8 for f in fake.frames)
    assert (fake.frames[0][:, 300:360] == RED).all()
    assert fake.closed and not fake.slept  # the daemon's clock paces frames, never the camera


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
