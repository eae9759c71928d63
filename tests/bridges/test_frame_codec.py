"""The overlay's binary frames and the MJPEG parts, encoded and decoded without a server."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_ws_server import DISC_RGB, disc_avatar

from facecast.bridges import frame_codec
from facecast.bridges.frame_codec import (
    FRAME_HEADER,
    FRAME_MAGIC,
    FRAME_VERSION,
    decode_frame,
    encode_frame,
    encode_jpeg,
)


def test_frame_codec_round_trip_keeps_alpha_and_header() -> None:
    image = disc_avatar(96)
    data = encode_frame(image, index=2**32 + 7, t=1.25, capture_time=123.5)
    assert data[:3] == FRAME_MAGIC and data[3] == FRAME_VERSION and data[FRAME_HEADER.size:][:4] == b"RIFF"
    header, decoded = decode_frame(data)
    assert (header.index, header.t, header.capture_time) == (7, 1.25, 123.5)
    np.testing.assert_array_equal(decoded[..., 3], image[..., 3])  # a hard edge keeps its alpha exactly
    soft = image.copy()
    soft[..., 3] = np.linspace(0, 255, 96).astype(np.uint8)[None, :]   # every opacity, as a cut-out's soft edge
    # WEBP_ALPHA_QUALITY quantises alpha levels (a quicker encoding) by at most one level in 255
    assert np.abs(decode_frame(encode_frame(soft, 0, 0.0))[1][..., 3].astype(int) - soft[..., 3]).max() <= 1
    assert np.abs(decoded[48, 48, :3].astype(int) - DISC_RGB).max() <= 4
    assert decode_frame(encode_frame(image[..., :3], 0, 0.0))[0].capture_time is None
    for bad in (b"XYZ" + data[3:], data[:3] + bytes([9]) + data[4:], data[:FRAME_HEADER.size]):
        with pytest.raises(ValueError):
            decode_frame(bad)
    with pytest.raises(ValueError, match="RGBA uint8"):
        encode_frame(image.astype(np.float32), 0, 0.0)


def test_opaque_frames_are_jpeg_and_decode_opaque() -> None:
    """An opaque frame (RGB, or RGBA without a transparent pixel) goes as a JPEG, about five times quicker to
    encode than WebP; decoded it is the picture, fully opaque."""
    image = disc_avatar(96)
    image[..., 3] = 255
    for opaque in (image, np.ascontiguousarray(image[..., :3])):
        data = encode_frame(opaque, index=3, t=0.5)
        assert data[FRAME_HEADER.size:][:2] == b"\xff\xd8"
        header, decoded = decode_frame(data)
        assert header.index == 3 and decoded.shape == (96, 96, 4) and (decoded[..., 3] == 255).all()
        assert np.abs(decoded[..., :3].astype(int) - image[..., :3]).mean() < 3


def test_jpeg_composites_alpha_over_background() -> None:
    image = disc_avatar(64)
    image[:16, :16] = (255, 255, 255, 128)  # half-transparent white
    rgb = cv2.imdecode(np.frombuffer(encode_jpeg(image, (0, 0, 255)), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    for (y, x), expected in (((32, 32), DISC_RGB), ((60, 60), (0, 0, 255)), ((8, 8), (128, 128, 255))):
        assert np.abs(rgb[y, x].astype(int) - expected).max() <= 8, (y, x, rgb[y, x])


def test_the_format_tables_name_the_version_the_code_writes() -> None:
    """A client written from the docstring's table or overlay.js's header must expect the version sent (both
    said 1 while the code wrote and read 2)."""
    overlay = (Path(frame_codec.__file__).parent / "overlay" / "overlay.js").read_text()
    assert re.search(r"format version, ``(\d+)``", frame_codec.__doc__).group(1) == str(FRAME_VERSION)
    assert re.search(r"format version \((\d+)\)", overlay).group(1) == str(FRAME_VERSION)
    assert re.search(r"Binary frame format, version (\d+)", overlay).group(1) == str(FRAME_VERSION)
    assert f"const VERSION = {FRAME_VERSION};" in overlay
