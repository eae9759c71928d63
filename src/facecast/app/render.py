"""Offline rendering: portrait + speech (or a motion file) -> MP4 or PNG frames.

One streaming loop: decoded audio blocks feed the motion generator, every
motion frame it finalises is rendered and handed straight to the encoder, and
the same decoded audio is muxed into the MP4. Nothing is held for the whole
clip, so memory stays flat whatever the audio length.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from facecast.app.options import validate_framing
from facecast.controls import Controls
from facecast.errors import InputError
from facecast.media import AtomicOutput, AudioReader, Mp4Writer, decode_with_mono, iter_mono_blocks
from facecast.motion import MotionFrame, MotionHeader, read_motion, write_motion
from facecast.speech.generator import DEFAULT_GENERATOR, MotionGenerator, generate_offline, make_generator

SUPPORTED_FPS = (25.0, 30.0, 60.0)
#: Renders longer than this (or of unknown length) write a fragmented MP4 so memory stays flat.
FRAGMENTED_AFTER_S = 600.0
MIN_SIZE, MAX_SIZE = 256, 1024


@dataclass
class RenderRequest:
    """What `facecast render` was asked to do (paths already resolved by the CLI)."""

    portrait: Path
    output: Path | None = None          # an .mp4 file
    frames_dir: Path | None = None      # or a folder of PNG frames
    audio: Path | None = None
    motion: Path | None = None
    size: int = 512
    fps: float | None = None            # None: 25, or the motion file's rate
    seed: int = 0
    face_index: int | None = None
    landmarks: Path | None = None
    framing: str = "auto"               # one of options.FRAMING_CHOICES
    overwrite: bool = False
    device: str = "auto"
    background: tuple[int, int, int] = (255, 255, 255)  # behind transparent portraits in MP4
    progress: bool = True
    badge: str | None = None            # visible disclosure text; the invisible watermark is always on
    controls: Controls = field(default_factory=Controls)  # emotion, main gaze, head distance on every frame
    generator: str = DEFAULT_GENERATOR  # speech -> motion: one of GENERATOR_CHOICES
    motion_model: Path | None = None    # the learned generator's weights (default: the shipped model)


@dataclass
class RenderReport:
    """What a render produced and how long each stage took."""

    output: Path
    frames: int
    duration: float
    seconds: float
    run_id: str = ""                     # the watermark's per-run id, for `facecast verify`
    stage_seconds: dict[str, float] = field(default_factory=dict)


def validate_size(size: int) -> None:
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise InputError(f"--size must be between {MIN_SIZE} and {MAX_SIZE} pixels (got {size})")


def validate_fps(fps: float) -> None:
    if fps not in SUPPORTED_FPS:
        raise InputError(f"--fps must be one of {', '.join(f'{f:g}' for f in SUPPORTED_FPS)} (got {fps:g})")


def render(request: RenderRequest) -> RenderReport:
    """Run the whole offline pipeline; raises FacecastError subclasses for bad input/output."""
    # Imported here so `facecast --help` and the motion command stay fast.
    from facecast.face.portrait import analyze_portrait
    from facecast.provenance.stamp import Provenance
    from facecast.render.renderer import Renderer

    started = time.perf_counter()
    if (request.output is None) == (request.frames_dir is None):
        raise InputError("give exactly one output: -o OUT.mp4 or --frames DIR")
    if request.audio is None and request.motion is None:
        raise InputError("give --audio FILE (speech to lip-sync) or --motion FILE (a motion .jsonl)")
    if request.output is not None and request.output.suffix.lower() != ".mp4":
        raise InputError(f"unsupported output format '{request.output.suffix or request.output.name}': "
                         "write an .mp4, or PNG frames with --frames DIR")

    motion_header, motion_frames = (None, None)
    if request.motion is not None:
        motion_header, motion_frames = read_motion(request.motion)
        if request.fps is not None and request.fps != motion_header.fps:
            raise InputError(f"{request.motion} is at {motion_header.fps:g} fps; "
                             f"leave out --fps or regenerate the motion at {request.fps:g} fps")
    fps = request.fps or (motion_header.fps if motion_header else 25.0)
    validate_size(request.size)
    validate_fps(fps)
    validate_framing(request.framing)
    provenance = Provenance(request.badge)

    reader = AudioReader(request.audio) if request.audio is not None else None
    try:
        sink = AtomicOutput(request.output or request.frames_dir, request.overwrite,
                            is_dir=request.frames_dir is not None)
        with sink:
            t0 = time.perf_counter()
            rig = analyze_portrait(request.portrait, size=request.size, face_index=request.face_index,
                                   landmarks_json=request.landmarks, framing=request.framing)
            renderer = Renderer(rig, device=request.device)
            stages = {"analysis": time.perf_counter() - t0}
            expected = _expected_frames(reader, motion_frames is not None, fps)
            if request.frames_dir is not None:
                writer: _FrameSink = PngFrameWriter(sink.temp)
            else:
                length = reader.info.duration if reader is not None else None
                long_render = length is None or length > FRAGMENTED_AFTER_S
                height, width = renderer.frame_shape
                writer = _Mp4Sink(Mp4Writer(sink.temp, (width, height), fps,
                                            audio_channels=reader.info.channels if reader else None,
                                            fragmented=long_render),
                                  request.background)
            with _progress(expected, request.progress) as bar:
                def emit(frame: MotionFrame) -> None:
                    frame = request.controls.apply(frame)
                    writer.write(provenance.apply(writer.prepare(renderer.render(frame)), frame.t))
                    bar.update(1)

                if motion_frames is not None:
                    for frame in motion_frames:
                        emit(frame)
                    if reader is not None:
                        for audio_frame in reader.frames():
                            writer.write_audio(audio_frame)
                else:
                    # offline the learned model hears whole windows: its frames all come at the end
                    generator = make_generator(request.generator, fps=fps, seed=request.seed,
                                               model_path=request.motion_model, streaming=False)
                    _render_from_audio(reader, generator, emit, writer)
            writer.close()
            if writer.frames == 0:
                raise InputError(f"{request.motion} holds no motion frames")
            sink.commit()
    finally:
        if reader is not None:
            reader.close()
    elapsed = time.perf_counter() - started
    return RenderReport(output=sink.final, frames=writer.frames, duration=writer.frames / fps,
                        seconds=elapsed, run_id=provenance.run_id, stage_seconds=stages)


def _render_from_audio(reader: AudioReader, generator: MotionGenerator, emit: Callable[[MotionFrame], None],
                       writer: "_FrameSink") -> None:
    """Decoded audio blocks feed the generator, each frame it finalises is emitted, the audio muxed as it goes."""
    for audio_frame, block in decode_with_mono(reader, generator.SAMPLE_RATE):
        for frame in generator.push(block):
            emit(frame)
        if audio_frame is not None:
            writer.write_audio(audio_frame)
    for frame in generator.finish():
        emit(frame)


def generate_motion_file(audio: Path, output: Path, fps: float = 25.0, seed: int = 0, overwrite: bool = False,
                         generator: str = DEFAULT_GENERATOR, motion_model: Path | None = None) -> tuple[Path, int]:
    """`facecast motion`: speech -> a JSONL motion file users can inspect and edit."""
    validate_fps(fps)
    AudioReader(audio).close()  # fail on bad audio before creating anything
    with AtomicOutput(output, overwrite) as sink:
        made = make_generator(generator, fps=fps, seed=seed, model_path=motion_model, streaming=False)
        header = MotionHeader(fps=fps, generator=generator, seed=seed, source=audio.name)
        count = write_motion(sink.temp, header, generate_offline(made, iter_mono_blocks(audio)))
        sink.commit()
    return sink.final, count


class _FrameSink:
    frames: int

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The frame as this sink stores it (before provenance is stamped on it)."""
        return image

    def write(self, image: np.ndarray) -> None: ...
    def write_audio(self, frame: object) -> None: ...
    def close(self) -> None: ...


class _Mp4Sink(_FrameSink):
    """Flattens RGBA over the background colour (MP4 has no alpha, and the mark must be on what is seen) and encodes."""

    def __init__(self, writer: Mp4Writer, background: tuple[int, int, int]) -> None:
        self._writer = writer
        self._background = np.asarray(background, dtype=np.float32)
        self.frames = 0

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return flatten_alpha(image, self._background)

    def write(self, image: np.ndarray) -> None:
        self._writer.write_frame(image)
        self.frames += 1

    def write_audio(self, frame: object) -> None:
        self._writer.write_audio(frame)

    def close(self) -> None:
        self._writer.close()


class PngFrameWriter(_FrameSink):
    """`--frames DIR`: numbered PNGs (RGBA kept), no audio."""

    def __init__(self, folder: Path) -> None:
        import cv2

        self._cv2 = cv2
        self._folder = folder
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        code = self._cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else self._cv2.COLOR_RGB2BGR
        path = self._folder / f"frame_{self.frames:06d}.png"
        if not self._cv2.imwrite(str(path), self._cv2.cvtColor(image, code)):
            raise OSError(f"cannot write {path}")
        self.frames += 1


def flatten_alpha(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    """RGB from RGB(A): composite over a solid background colour where transparent."""
    if image.shape[2] == 3:
        return image
    alpha = image[:, :, 3:4].astype(np.float32) * (1.0 / 255.0)
    rgb = image[:, :, :3].astype(np.float32) * alpha + background * (1.0 - alpha)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def _expected_frames(reader: AudioReader | None, from_motion: bool, fps: float) -> int | None:
    if from_motion or reader is None or reader.info.duration is None:
        return None
    return max(1, round(reader.info.duration * fps))


class _progress:
    """A tqdm bar on stderr when asked for (a no-op object otherwise)."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="frame", desc="render", leave=False, dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def __enter__(self) -> "_progress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
