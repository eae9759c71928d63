"""The avatar as a webcam: a 16:9 frame for Discord/Zoom/Meet/OBS, sent through pyvirtualcam.

Video-call apps want 1280x720 at a steady rate, unmirrored, on a solid
background (they drop alpha), and frames that never stop (a stall shows as a
frozen or black picture). `VcamCompositor` turns each square avatar frame into
such a frame; `VirtualCamera` hands it to the OS's virtual camera without ever
pacing or sleeping, because the daemon's own frame clock sets the rate.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from facecast.errors import FacecastError, InputError

DEFAULT_WIDTH, DEFAULT_HEIGHT = 1280, 720
DEFAULT_FPS = 30.0
#: Chroma-key green: a solid colour OBS users can key out, and that calls show as a plain backdrop.
CHROMA_GREEN = (0, 177, 64)
FITS = ("contain", "cover")  # avatar fully visible / canvas fully covered (the avatar cropped)

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


def setup_hint(system: str | None = None) -> str:
    """How to get a virtual camera on `system` (platform.system() names; default: this machine)."""
    system = system or platform.system()
    return SETUP_HINTS.get(system, "virtual cameras need Linux (v4l2loopback), Windows or macOS (OBS)")


class _Placement:
    """Where an avatar of one size goes, with reusable buffers for blending it.

    Fresh multi-megabyte arrays each frame cost page faults that outweigh the
    blending itself, so every intermediate lives here; the background under the
    avatar is kept contiguous because it never changes.
    """

    def __init__(self, size: tuple[int, int], src: tuple[slice, slice], dst: tuple[slice, slice],
                 background: np.ndarray, channels: int) -> None:
        self.size = size  # (width, height) after scaling
        self.src = src  # rows, columns of the scaled avatar that are visible
        self.dst = dst  # rows, columns of the canvas they cover
        self.scaled = np.empty((size[1], size[0], channels), np.uint8)
        self.under = np.ascontiguousarray(background[dst])
        shape = self.under.shape
        self.alpha = np.empty(shape[:2], np.uint8)
        self.alpha3 = np.empty(shape, np.uint8)
        self.colour = np.empty(shape, np.uint8)
        self.shaded = np.empty(shape, np.uint8)


class VcamCompositor:
    """Centres a square avatar frame on a fixed-size RGB canvas over a colour or image background.

    The background is prepared once; per frame only the avatar's rectangle is
    scaled and blended, with OpenCV uint8 kernels into reused buffers (so one
    `compose` at a time per compositor). The image is never mirrored: apps
    mirror the local preview themselves, and viewers must see text and
    asymmetry the right way round.
    """

    def __init__(self, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT,
                 background: tuple[int, int, int] | str | Path = CHROMA_GREEN, fit: str = "contain") -> None:
        if width <= 0 or height <= 0:
            raise InputError(f"virtual camera size must be positive, got {width}x{height}")
        if fit not in FITS:
            raise InputError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
        self.width, self.height, self.fit = width, height, fit
        self._background = _background_canvas(background, width, height)
        self._placements: dict[tuple[int, ...], _Placement] = {}

    def compose(self, image: np.ndarray) -> np.ndarray:
        """A new (height, width, 3) uint8 RGB frame with `image` (RGB or RGBA uint8) centred on the background."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"expected an (H, W, 3|4) uint8 image, got {image.shape} {image.dtype}")
        place = self._placement(image.shape)
        upscale = place.size[0] > image.shape[1]
        cv2.resize(image, place.size, dst=place.scaled,
                   interpolation=cv2.INTER_LINEAR if upscale else cv2.INTER_AREA)
        visible = place.scaled[place.src]
        frame = self._background.copy()
        if image.shape[2] == 3:
            frame[place.dst] = visible
            return frame
        # out = colour * a + background * (1 - a), each term rounded to uint8 (error <= 1 level)
        cv2.extractChannel(visible, 3, dst=place.alpha)
        cv2.cvtColor(place.alpha, cv2.COLOR_GRAY2RGB, dst=place.alpha3)
        cv2.cvtColor(visible, cv2.COLOR_RGBA2RGB, dst=place.colour)
        cv2.multiply(place.colour, place.alpha3, dst=place.colour, scale=1 / 255)
        cv2.bitwise_not(place.alpha3, dst=place.alpha3)
        cv2.multiply(place.under, place.alpha3, dst=place.shaded, scale=1 / 255)
        cv2.add(place.colour, place.shaded, dst=frame[place.dst])
        return frame

    def _placement(self, shape: tuple[int, ...]) -> _Placement:
        if shape not in self._placements:
            height, width, channels = shape
            pick = min if self.fit == "contain" else max
            scale = pick(self.width / width, self.height / height)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            rows_src, rows_dst = _centred(size[1], self.height)
            cols_src, cols_dst = _centred(size[0], self.width)
            self._placements[shape] = _Placement(size, (rows_src, cols_src), (rows_dst, cols_dst),
                                                 self._background, channels)
        return self._placements[shape]


def _centred(length: int, canvas: int) -> tuple[slice, slice]:
    """Centres `length` pixels on `canvas` pixels: (visible part of it, canvas part it covers)."""
    offset = (canvas - length) // 2
    start, stop = max(0, offset), min(canvas, offset + length)
    return slice(start - offset, stop - offset), slice(start, stop)


def _background_canvas(background: tuple[int, int, int] | str | Path, width: int, height: int) -> np.ndarray:
    """The background at canvas size: a solid colour, or an image scaled to cover it and centre-cropped."""
    if isinstance(background, (str, Path)):
        try:
            with Image.open(background) as picture:
                rgb = np.asarray(picture.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise InputError(f"cannot use {background} as the webcam background: {exc}") from None
        scale = max(width / rgb.shape[1], height / rgb.shape[0])
        size = (max(width, round(rgb.shape[1] * scale)), max(height, round(rgb.shape[0] * scale)))
        upscale = scale > 1
        scaled = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR if upscale else cv2.INTER_AREA)
        rows, _ = _centred(height, size[1])
        cols, _ = _centred(width, size[0])
        return np.ascontiguousarray(scaled[rows, cols])
    colour = tuple(background)
    if len(colour) != 3 or not all(isinstance(c, (int, np.integer)) and 0 <= c <= 255 for c in colour):
        raise InputError(f"background colour must be three integers 0-255 (R, G, B), got {background!r}")
    return np.full((height, width, 3), colour, dtype=np.uint8)


class VirtualCamera:
    """pyvirtualcam's camera taking RGB frames; `send` only sends (the daemon paces frames itself)."""

    def __init__(self, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT, fps: float = DEFAULT_FPS,
                 backend: str | None = None, device: str | None = None) -> None:
        pyvirtualcam = _pyvirtualcam()
        if backend is not None and backend not in pyvirtualcam.camera.BACKENDS:
            known = ", ".join(pyvirtualcam.camera.BACKENDS) or "none"
            raise VirtualCameraError(f"unknown virtual camera backend {backend!r} (this OS has: {known})")
        try:
            self._camera = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                               backend=backend, device=device)
        except Exception as exc:  # pyvirtualcam raises RuntimeError listing each backend's failure
            reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise VirtualCameraError(f"no virtual camera available ({reason}); {setup_hint()}") from None
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

    def send(self, rgb: np.ndarray) -> None:
        """Send one (height, width, 3) uint8 RGB frame now; never waits for a frame slot."""
        self._camera.send(rgb)

    def close(self) -> None:
        self._camera.close()

    def __enter__(self) -> "VirtualCamera":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pyvirtualcam() -> Any:
    try:
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
