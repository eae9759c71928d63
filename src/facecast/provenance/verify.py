"""`facecast verify FILE`: is this video or image facecast's output? Reads the invisible watermark.

Reading files lives here; the detector itself (`models.watermark`) only sees
frames and their times.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from facecast.errors import InputError, check_regular_file
from facecast.media import error_reason, load_image
from facecast.provenance.watermark import Detection, LockIn, detect_maps

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
#: How much of a video is read: the mark repeats, so the first seconds decide.
DEFAULT_MAX_SECONDS = 20.0
#: At most this many frames are analysed, spread evenly over what is read.
DEFAULT_MAX_FRAMES = 150
#: Frames taller than this are scaled down first (the mark is relative to the frame, so it survives).
ANALYSIS_HEIGHT = 720


@dataclass(frozen=True)
class VerifyReport:
    path: Path
    detection: Detection

    def line(self) -> str:
        d = self.detection
        if d.payload is not None:
            major, minor = d.payload.version
            return (f"{self.path}: facecast watermark detected (confidence {d.confidence:.3f}, "
                    f"strength {d.strength:.1f}, {d.frames} frame{'s' if d.frames != 1 else ''}): "
                    f"facecast {major}.{minor}, run {d.payload.run_hex}")
        return (f"{self.path}: no facecast watermark found ({d.frames} frame{'s' if d.frames != 1 else ''} analysed, "
                f"strength {d.strength:.1f})")

    def as_json(self) -> str:
        d = self.detection
        payload = None
        if d.payload is not None:
            payload = {"product": "facecast", "version": "%d.%d" % d.payload.version, "run_id": d.payload.run_hex}
        return json.dumps({"file": str(self.path), "detected": d.detected, "confidence": round(d.confidence, 4),
                           "strength": round(d.strength, 3), "frames": d.frames, "payload": payload})


def verify(path: Path, max_seconds: float = DEFAULT_MAX_SECONDS, max_frames: int = DEFAULT_MAX_FRAMES) -> VerifyReport:
    """Detect the watermark in a video or image file; InputError when it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a video or image file")
    check_regular_file(path, "media")   # a pipe or device would block or never end
    lock_in = LockIn()
    if path.suffix.lower() in IMAGE_SUFFIXES:
        frames = _image_frames(path)
    else:
        frames = _video_frames(path, max_seconds, max_frames)
    for image, t in frames:
        lock_in.add(_analysis_size(image), t)
    if lock_in.frames == 0:
        raise InputError(f"{path} has no video frames to check")
    return VerifyReport(path, detect_maps(lock_in.maps(), lock_in.frames))


def _analysis_size(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    if height <= ANALYSIS_HEIGHT:
        return image
    scale = ANALYSIS_HEIGHT / height
    return cv2.resize(image, (max(1, round(width * scale)), ANALYSIS_HEIGHT), interpolation=cv2.INTER_AREA)


def _image_frames(path: Path) -> Iterator[tuple[np.ndarray, float]]:
    yield load_image(path), 0.0


def _video_frames(path: Path, max_seconds: float, max_frames: int) -> Iterator[tuple[np.ndarray, float]]:
    """Decoded RGB frames with their presentation times, thinned to at most `max_frames` over `max_seconds`."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        reason = error_reason(exc)
        raise InputError(f"cannot read {path}: not a supported video or image file ({reason})") from None
    with container:
        if not container.streams.video:
            raise InputError(f"{path} has no video track")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        length = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        if length is None and container.duration:
            length = container.duration / av.time_base
        window = min(max_seconds, length) if length else max_seconds
        spacing = window / max_frames
        next_time, start, decoded = None, None, 0
        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else 0.0
                start = t if start is None else start
                t -= start
                if t > window:
                    break
                if next_time is not None and t < next_time:
                    continue
                next_time = t + spacing * 0.999
                decoded += 1
                yield frame.to_ndarray(format="rgb24"), t
        except (av.error.FFmpegError, ValueError) as exc:
            if decoded:
                return  # a truncated file: check what could be decoded
            reason = error_reason(exc)
            raise InputError(f"cannot decode {path}: the file is corrupt or truncated ({reason})") from None
