"""The avatar on a webcam-shaped canvas: each square frame centred on a fixed 16:9 RGB background (pure).

Video-call apps want 1280x720, unmirrored, on a solid background (they drop
alpha). `VcamCompositor` makes such a frame from each avatar frame; no device
here: `facecast.bridges.vcam.VirtualCamera` sends them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from facecast.errors import InputError

__all__ = ["CHROMA_GREEN", "DEFAULT_HEIGHT", "DEFAULT_WIDTH", "FITS", "VcamCompositor"]

DEFAULT_WIDTH, DEFAULT_HEIGHT = 1280, 720
#: Chroma-key green: a solid colour OBS users can key out, and that calls show as a plain backdrop.
CHROMA_GREEN = (0, 177, 64)
FITS = ("contain", "cover")  # avatar fully visible / canvas fully covered (the avatar cropped)


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
