"""The avatar as a webcam for Discord/Zoom/Meet/OBS, sent through pyvirtualcam.

Calls want frames that never stop (a stall shows as a frozen or black
picture). `VirtualCamera` is the `Output`: each rendered avatar frame goes
through `facecast.bridges.vcam_compositor.VcamCompositor` onto the 16:9 canvas
and to the OS's virtual camera at once, without ever pacing or sleeping,
because the daemon's own frame clock sets the rate.
"""

from __future__ import annotations

import os
import platform
import threading
from pathlib import Path
from typing import Any

import numpy as np

from facecast.bridges.vcam_compositor import CHROMA_GREEN, DEFAULT_HEIGHT, DEFAULT_WIDTH, VcamCompositor
from facecast.errors import FacecastError
from facecast.motion import MotionFrame

DEFAULT_FPS = 30.0

#: Where Linux lists video devices; v4l2loopback's have no parent bus, so they live under /sys/devices/virtual.
SYSFS_VIDEO = Path("/sys/class/video4linux")
VIRTUAL_DEVICE_MARKER = "/devices/virtual/"

SETUP_HINTS = {
    "Linux": ("on Linux load v4l2loopback: `sudo modprobe v4l2loopback devices=1 exclusive_caps=1 "
              "card_label=facecast` (package v4l2loopback-dkms) and add yourself to group `video` "
              "(`sudo usermod -aG video $USER`, then log in again)"),
    "Windows": "on Windows install OBS Studio (its Virtual Camera) or Unity Capture",
    "Darwin": "on macOS install OBS Studio 30+ and click Start Virtual Camera once to install its camera extension",
}


class VirtualCameraError(FacecastError):
    """No virtual camera can be opened; the message says how to set one up on this OS."""


class NoVirtualCameraError(VirtualCameraError):
    """The settings are fine but this OS has no virtual camera device now (v4l2loopback not loaded, OBS's not
    installed): one may appear while facecast runs (`WaitingVirtualCamera`)."""


def setup_hint(system: str | None = None) -> str:
    """How to get a virtual camera on `system` (platform.system() names; default: this machine)."""
    system = system or platform.system()
    return SETUP_HINTS.get(system, "virtual cameras need Linux (v4l2loopback), Windows or macOS (OBS)")


class VirtualCamera:
    """The virtual webcam output: composes each rendered frame and sends it to pyvirtualcam's camera now.

    `send` never waits for a frame slot: the daemon paces frames itself. The
    background (an RGB colour or an image file) is checked before the camera
    opens, so a bad one fails without touching the device.
    """

    name = "virtual_camera"
    needs_image = True

    def __init__(self, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT, fps: float = DEFAULT_FPS,
                 backend: str | None = None, device: str | None = None,
                 background: tuple[int, int, int] | str | Path = CHROMA_GREEN) -> None:
        self._compositor = VcamCompositor(width, height, background)
        pyvirtualcam = _pyvirtualcam()
        if backend is not None and backend not in pyvirtualcam.camera.BACKENDS:
            known = ", ".join(pyvirtualcam.camera.BACKENDS) or "none"
            raise VirtualCameraError(f"unknown virtual camera backend {backend!r} (this OS has: {known})")
        try:
            self._camera = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                               backend=backend, device=device)
        except Exception as exc:  # pyvirtualcam raises RuntimeError listing each backend's failure
            reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise NoVirtualCameraError(f"no virtual camera available ({reason}); {setup_hint()}") from None
        self.width, self.height, self.fps = width, height, fps

    @property
    def device(self) -> str:
        """What apps list the camera as (e.g. /dev/video10, "OBS Virtual Camera")."""
        return self._camera.device

    @property
    def backend(self) -> str:
        return self._camera.backend

    @property
    def frames_sent(self) -> int:
        return self._camera.frames_sent

    def send(self, frame: MotionFrame, image: np.ndarray | None) -> None:
        """Put the avatar `image` (RGB or RGBA uint8) on the canvas and send it now; no image, nothing sent."""
        if image is not None:
            self._camera.send(self._compositor.compose(image))

    def close(self) -> None:
        self._camera.close()

    def __enter__(self) -> "VirtualCamera":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pyvirtualcam() -> Any:
    try:  # here, not at the top: its native backend may fail to load, which must be a one-line error
        import pyvirtualcam
    except ImportError as exc:  # its native backend failed to load
        raise VirtualCameraError(f"pyvirtualcam cannot load ({exc}); {setup_hint()}") from None
    return pyvirtualcam


def v4l2loopback_devices(sysfs: Path = SYSFS_VIDEO) -> list[dict[str, Any]]:
    """Linux loopback video devices: path, card label, and whether this user may write to it."""
    devices = []
    for entry in sorted(sysfs.glob("video*"), key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else -1):
        if VIRTUAL_DEVICE_MARKER not in str(entry.resolve()):
            continue
        path = Path("/dev") / entry.name
        label = (entry / "name").read_text().strip() if (entry / "name").exists() else ""
        devices.append({"device": str(path), "label": label, "writable": os.access(path, os.W_OK)})
    return devices


def list_vcam_backends() -> list[dict[str, Any]]:
    """pyvirtualcam's backends on this OS, each with whether it can be used now and why not."""
    try:
        pyvirtualcam = _pyvirtualcam()
    except VirtualCameraError as exc:
        return [{"backend": "pyvirtualcam", "usable": False, "devices": [], "detail": str(exc)}]
    backends = []
    for name in pyvirtualcam.camera.BACKENDS:
        if name == "v4l2loopback":
            devices = v4l2loopback_devices()
            usable = any(d["writable"] for d in devices)
            if usable:
                detail = ""
            elif devices:
                detail = "loopback devices exist but are not writable: join group `video` and log in again"
            else:
                detail = f"no v4l2loopback device; {setup_hint('Linux')}"
            backends.append({"backend": name, "usable": usable,
                             "devices": [f"{d['device']} ({d['label']})" for d in devices], "detail": detail})
            continue
        try:  # OBS / Unity Capture can only be found by opening them
            with VirtualCamera(backend=name) as camera:
                backends.append({"backend": name, "usable": True, "devices": [camera.device], "detail": ""})
        except VirtualCameraError as exc:
            backends.append({"backend": name, "usable": False, "devices": [], "detail": str(exc)})
    return backends


#: Seconds between two looks for a virtual camera that was missing.
DEVICE_RETRY_S = 10.0


class WaitingVirtualCamera:
    """The virtual webcam output while no virtual camera exists: the other outputs run, a background thread
    opens one every DEVICE_RETRY_S (`open_camera`, e.g. once `modprobe v4l2loopback` has run), and frames go to
    it from then on. Until then it asks for no pictures (`wants_image`) and reports the reason as its error."""

    name = "virtual_camera"
    needs_image = True

    def __init__(self, open_camera: Any, error: str, on_open: Any = None,
                 retry_s: float | None = None) -> None:
        self._open_camera, self._on_open = open_camera, on_open
        self.error: str | None = error
        self.frames_dropped = 0
        self._camera: VirtualCamera | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._retry_s = DEVICE_RETRY_S if retry_s is None else retry_s
        threading.Thread(target=self._look, name="facecast-vcam-wait", daemon=True).start()

    def _look(self) -> None:
        while not self._closed.wait(self._retry_s):
            try:
                camera = self._open_camera()
            except Exception as exc:  # still none (or a driver's odd failure): the reason stays the error
                self.error = " ".join(f"{exc}".split()) or type(exc).__name__
                continue
            with self._lock:
                if self._closed.is_set():
                    camera.close()
                    return
                self._camera, self.error = camera, None
            if self._on_open is not None:
                self._on_open(camera)
            return

    @property
    def wants_image(self) -> bool:
        return self._camera is not None

    @property
    def counters(self) -> dict[str, Any]:
        return {"frames_dropped": self.frames_dropped, "error": self.error}

    def send(self, frame: MotionFrame, image: np.ndarray | None) -> None:
        camera = self._camera
        if camera is None:
            self.frames_dropped += 1
            return
        camera.send(frame, image)

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            if self._camera is not None:
                self._camera.close()
