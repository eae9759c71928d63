"""Pure image encoders for facecast's network outputs: the overlay's binary frames and the MJPEG stream.

No sockets, no threads, no clock: `facecast.bridges.ws_server` calls these once
per frame and shares the bytes between all clients; third-party clients can use
`decode_frame` as the reference decoder.

Binary frame format (one WebSocket binary message on ``/frames``), version 2,
all numbers big-endian:

====== ======= =====================================================================
offset size    field
====== ======= =====================================================================
0      3       magic ``b"FCF"``
3      1       format version, ``2``
4      4       uint32 frame index (counts submitted frames, wraps at 2**32)
8      8       float64 ``t``: the frame's presentation time in seconds (`MotionFrame.t`)
16     8       float64 capture time: `MotionFrame.capture_time`, seconds on the daemon's
               monotonic clock (matches ``/motion``), NaN when the frame has none
24     ...     the image: a WebP file (``RIFF``), lossy colour with near-lossless alpha, when
               the frame has transparent pixels; a JPEG (``FF D8``) when it is opaque
====== ======= =====================================================================

Why WebP: with alpha, Pillow encodes it faster than PNG and about a tenth the
size (README: Performance), and browsers decode it natively
(``createImageBitmap``). Why JPEG for opaque frames (version 2; version 1 was
always WebP): a 512² frame encodes in about 1 ms instead of 6-8, and the
overlay's encoding was the largest single cost of a live frame. The server
encodes on its own thread, once per frame for all clients, so the frame loop
never pays for it.

MJPEG parts (``GET /video.mjpeg``): ``multipart/x-mixed-replace`` with boundary
`MJPEG_BOUNDARY`; each part carries ``Content-Type: image/jpeg`` and
``Content-Length``, the avatar composited over a solid background colour
(JPEG has no alpha).
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = [
    "FRAME_HEADER", "FRAME_MAGIC", "FRAME_VERSION", "JPEG_QUALITY", "MJPEG_BOUNDARY", "WEBP_ALPHA_QUALITY",
    "WEBP_METHOD", "WEBP_QUALITY",
    "FrameHeader", "as_rgb_background", "check_image", "decode_frame", "encode_frame", "encode_jpeg", "mjpeg_part",
]

FRAME_MAGIC = b"FCF"
FRAME_VERSION = 2
#: magic, version, frame index, t, capture time (see the module docstring).
FRAME_HEADER = struct.Struct(">3sBIdd")
_INDEX_MODULUS = 2**32

#: Lossy colour quality.
WEBP_QUALITY = 80
#: Alpha quality: below 100 libwebp quantises the alpha levels before compressing them losslessly. At 90 no
#: pixel's opacity moves by more than 1 level in 255 (0.3 levels on average at a cut-out's soft edge) and a
#: 512² RGBA frame encodes in 8.4 instead of 10.6 ms (2 cores, busy): the largest cost of a live frame with alpha.
WEBP_ALPHA_QUALITY = 90
#: libwebp's fastest method: about 4x faster than the default method 4 for about 30 % more bytes.
WEBP_METHOD = 0
JPEG_QUALITY = 85
MJPEG_BOUNDARY = "facecastframe"


@dataclass(frozen=True)
class FrameHeader:
    """The fixed part of one binary frame."""

    index: int
    t: float
    capture_time: float | None


def check_image(image: np.ndarray) -> None:
    """Raise ValueError unless `image` is an (H, W, 3) RGB or (H, W, 4) RGBA uint8 array."""
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] in (3, 4) and image.shape[0] > 0 and image.shape[1] > 0):
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected an (H, W, 3) RGB or (H, W, 4) RGBA uint8 image, got {got}")


def as_rgb_background(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Validate an RGB background colour (three integers 0-255)."""
    values = tuple(colour)
    if len(values) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in values):
        raise ValueError(f"background must be three integers 0-255 (R, G, B), got {colour!r}")
    return (int(values[0]), int(values[1]), int(values[2]))


def encode_frame(image: np.ndarray, index: int, t: float, capture_time: float | None = None,
                 quality: int = WEBP_QUALITY) -> bytes:
    """One binary ``/frames`` message: header + the image, WebP if any pixel is transparent, JPEG if opaque."""
    check_image(image)
    buffer = io.BytesIO()
    buffer.write(FRAME_HEADER.pack(FRAME_MAGIC, FRAME_VERSION, index % _INDEX_MODULUS, t,
                                   math.nan if capture_time is None else capture_time))
    if image.shape[2] == 4 and int(image[..., 3].min()) < 255:
        Image.fromarray(np.ascontiguousarray(image)).save(buffer, "WEBP", quality=quality, method=WEBP_METHOD,
                                                          alpha_quality=WEBP_ALPHA_QUALITY)
    else:
        Image.fromarray(np.ascontiguousarray(image[..., :3])).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def decode_frame(data: bytes) -> tuple[FrameHeader, np.ndarray]:
    """Parse one binary frame into its header and an RGBA uint8 image; ValueError if it is not one."""
    if len(data) <= FRAME_HEADER.size:
        raise ValueError(f"a frame needs more than {FRAME_HEADER.size} bytes, got {len(data)}")
    magic, version, index, t, capture = FRAME_HEADER.unpack_from(data)
    if magic != FRAME_MAGIC:
        raise ValueError(f"not a facecast frame (magic {magic!r})")
    if version != FRAME_VERSION:
        raise ValueError(f"frame format version {version}; this decoder reads version {FRAME_VERSION}")
    try:
        with Image.open(io.BytesIO(data[FRAME_HEADER.size:]), formats=["WEBP", "JPEG"]) as picture:
            rgba = np.asarray(picture.convert("RGBA"))
    except OSError as exc:
        raise ValueError(f"frame {index}: bad WebP/JPEG image ({exc})") from None
    return FrameHeader(index, t, None if math.isnan(capture) else capture), rgba


def encode_jpeg(image: np.ndarray, background: tuple[int, int, int], quality: int = JPEG_QUALITY,
                size: tuple[int, int] | None = None) -> bytes:
    """A JPEG of `image` (RGB or RGBA) with any alpha composited over `background` (by Pillow, in C: faster
    than the same blend in NumPy), scaled to `size` (width, height) when given: a video stream keeps one size
    while the live daemon sends smaller pictures under load."""
    check_image(image)
    picture = Image.fromarray(np.ascontiguousarray(image))
    if size is not None and picture.size != size:
        picture = picture.resize(size, Image.Resampling.BILINEAR)
    if image.shape[2] == 4:
        picture = Image.alpha_composite(Image.new("RGBA", picture.size, (*background, 255)), picture)
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def mjpeg_part(jpeg: bytes) -> bytes:
    """One part of the ``multipart/x-mixed-replace`` stream, boundary line included."""
    head = f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    return head.encode("ascii") + jpeg + b"\r\n"
