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
from typing import Callable, Iterable, Iterator

import numpy as np

from facecast.controls import Controls
from facecast.errors import InputError
from facecast.motion import MotionFrame, MotionHeader, read_motion, write_motion
from facecast.media import MOTION_SAMPLE_RATE, AtomicOutput, AudioReader, Mp4Writer, decode_with_mono

SUPPORTED_FPS = (25.0, 30.0, 60.0)
#: Speech -> motion: the rule-based generator or the learned diffusion model (speech/learned.py).
GENERATOR_CHOICES = ("rule", "learned")
#: The learned model: on the quality benchmark it follows real mouths better (r 0.61 vs 0.29) and moves the
#: head about as fast as real speakers (README: Measuring motion); live uses it too (`app/live.py`).
DEFAULT_GENERATOR = "learned"
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
        raise InputError(f"unsupported output format '{request.output.suffix or request.output.name}': write an .mp4, or PNG frames with --frames DIR")

    motion_header, motion_frames = (None, None)
    if request.motion is not None:
        motion_header, motion_frames = read_motion(request.motion)
        if request.fps is not None and request.fps != motion_header.fps:
            raise InputError(f"{request.motion} is at {motion_header.fps:g} fps; leave out --fps or regenerate the motion at {request.fps:g} fps")
    fps = request.fps or (motion_header.fps if motion_header else 25.0)
    validate_size(request.size)
    validate_fps(fps)
    provenance = Provenance(request.badge)

    reader = AudioReader(request.audio) if request.audio is not None else None
    try:
        sink = AtomicOutput(request.output or request.frames_dir, request.overwrite, is_dir=request.frames_dir is not None)
        with sink:
            t0 = time.perf_counter()
            rig = analyze_portrait(request.portrait, size=request.size, face_index=request.face_index,
                                   landmarks_json=request.landmarks)
            renderer = Renderer(rig, device=request.device)
            stages = {"analysis": time.perf_counter() - t0}
            expected = _expected_frames(reader, motion_frames is not None, fps)
            if request.frames_dir is not None:
                writer: _FrameSink = PngFrameWriter(sink.temp)
            else:
                length = reader.info.duration if reader is not None else None
                long_render = length is None or length > FRAGMENTED_AFTER_S
                writer = _Mp4Sink(Mp4Writer(sink.temp, rig.size, fps,
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
                    if request.generator == "learned":
                        _render_learned(reader, fps, request.seed, emit, writer, request.motion_model)
                    else:
                        _render_from_audio(reader, fps, request.seed, emit, writer)
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


def _render_from_audio(reader: AudioReader, fps: float, seed: int,
                       emit: Callable[[MotionFrame], None], writer: "_FrameSink") -> None:
    from facecast.speech.rule import RuleMotionGenerator

    generator = RuleMotionGenerator(fps=fps, seed=seed)
    for audio_frame, block in decode_with_mono(reader, generator.SAMPLE_RATE):
        for frame in generator.push(block):
            emit(frame)
        if audio_frame is not None:
            writer.write_audio(audio_frame)
    for frame in generator.finish():
        emit(frame)


def _render_learned(reader: AudioReader, fps: float, seed: int, emit: Callable[[MotionFrame], None],
                    writer: "_FrameSink", weights: Path | None = None) -> None:
    """Decode (muxing the audio as it goes), then render the learned model's frames."""
    def muxed_blocks() -> Iterator[np.ndarray]:
        for audio_frame, block in decode_with_mono(reader, MOTION_SAMPLE_RATE):
            if audio_frame is not None:
                writer.write_audio(audio_frame)
            yield block

    for frame in learned_frames(muxed_blocks(), fps, seed, weights):
        emit(frame)


def learned_frames(blocks: Iterable[np.ndarray], fps: float, seed: int = 0,
                   weights: Path | None = None) -> Iterator[MotionFrame]:
    """Speech (16 kHz mono blocks) -> the learned model's frames. It looks ahead a whole window, so offline
    it analyses all the audio first (160 bytes per 10 ms), then generates window by window. Visemes and
    the voice level (for VRM and VTube Studio avatars) come from the rule generator's audio analysis, as
    live (`learned_stream`)."""
    from array import array
    from dataclasses import replace

    from facecast.dataset.cache import AudioFeatureStream
    from facecast.speech.learned import WEIGHTS_PATH, generate_frames, load
    from facecast.motion import VISEMES
    from facecast.speech.rule import RuleMotionGenerator

    path = weights or WEIGHTS_PATH
    stream = AudioFeatureStream(load(path).features)
    analysis = RuleMotionGenerator(fps=fps, seed=seed)
    voiced = array("f")                           # per frame: the VISEMES weights, then the voice level
    for block in blocks:
        stream.push(block)
        for f in analysis.push(block):
            voiced.extend([*(f.visemes.get(name, 0.0) for name in VISEMES), f.voice])
    for f in analysis.finish():
        voiced.extend([*(f.visemes.get(name, 0.0) for name in VISEMES), f.voice])
    per_frame = len(VISEMES) + 1
    analysed = len(voiced) // per_frame
    total = max(1, round(stream.samples / MOTION_SAMPLE_RATE * fps))
    for index, frame in enumerate(generate_frames(stream.matrix(), fps, total, seed=seed, path=path)):
        if analysed:
            start = min(index, analysed - 1) * per_frame
            row = voiced[start:start + per_frame]
            frame = replace(frame, visemes=dict(zip(VISEMES, row)), voice=row[-1])
        yield frame


def generate_motion_file(audio: Path, output: Path, fps: float = 25.0, seed: int = 0, overwrite: bool = False,
                         generator: str = DEFAULT_GENERATOR, motion_model: Path | None = None) -> tuple[Path, int]:
    """`facecast motion`: speech -> a JSONL motion file users can inspect and edit."""
    from facecast.speech.rule import generate_motion
    from facecast.media import iter_mono_blocks

    validate_fps(fps)
    AudioReader(audio).close()  # fail on bad audio before creating anything
    blocks = iter_mono_blocks(audio)
    frames = (learned_frames(blocks, fps, seed, motion_model) if generator == "learned"
              else generate_motion(blocks, fps=fps, seed=seed))
    with AtomicOutput(output, overwrite) as sink:
        header = MotionHeader(fps=fps, generator=generator, seed=seed, source=audio.name)
        count = write_motion(sink.temp, header, frames)
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
