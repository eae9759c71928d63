"""Media files in and out: pictures (Pillow); audio and video through FFmpeg (PyAV): streaming decode,
resampling, H.264/AAC encode.

Everything here streams in blocks so an hours-long input runs in constant
memory. Decoding any container/codec FFmpeg knows (WAV, FLAC, MP3, Ogg, the
audio track of a video, ...) at any sample rate or channel count is resampled
to what each consumer needs: 16 kHz mono float for motion generation, and the
MP4's AAC format for muxing the original sound back in.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facecast.errors import InputError, OutputError, check_regular_file

#: Motion generators consume mono float32 audio at this rate.
MOTION_SAMPLE_RATE = 16000
#: The MP4's audio track: AAC at this rate, mono or stereo like the input.
MUX_SAMPLE_RATE = 48000
MUX_AUDIO_BITRATE = 128_000
#: A regular MP4: exact edit lists (AAC priming and end padding trimmed), index at the front.
REGULAR_MP4 = "+faststart"
#: A fragmented MP4 (plays in browsers, VLC, mpv, QuickTime and OBS like a regular one) keeps an
#: index per fragment instead of one for the whole file; delay_moov lets the muxer still write the
#: edit list that aligns AAC priming and B-frame delay. Only the last AAC frame's padding (< 22 ms)
#: stays untrimmed.
FRAGMENTED_MP4 = "+frag_keyframe+empty_moov+delay_moov+default_base_moof"

#: Largest picture facecast opens (`render`, `analyze`, `live --portrait` and live swaps alike): its size
#: is read from the file's header before anything is decoded.
MAX_PICTURE_PIXELS = 100_000_000
#: Pictures are reduced to at most this many pixels on their longer side: JPEGs while decoding (at 1/2,
#: 1/4 or 1/8 scale), other formats right after. The aligned portrait is at most 1024 px and face detection
#: works at 2048, so this keeps detail while a 100-megapixel photo costs ~50 MB instead of ~400.
MAX_PICTURE_SIDE = 4096
# Pillow's own "decompression bomb" warning (above ~89 megapixels) would print a multi-line warning for
# pictures facecast accepts: the limit above is checked first instead. Its error (above ~179) still applies.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

#: What av raises for unreadable or corrupt media: subclasses of av.FFmpegError (older releases: av.AVError).
#: Replacing an output that another program holds open fails on Windows (PermissionError): tried this often,
#: this far apart (an antivirus scan lets go within a second), then a one-line error.
REPLACE_ATTEMPTS = 10
REPLACE_RETRY_S = 0.1
FFMPEG_ERRORS = tuple(e for e in (getattr(av, "FFmpegError", None), getattr(av, "AVError", None)) if e) or (Exception,)


def load_image(path: str | Path, max_side: int | None = MAX_PICTURE_SIDE) -> np.ndarray:
    """Read a picture as RGB (H,W,3) or, when the file has alpha, RGBA (H,W,4) uint8, EXIF-upright.

    The size is checked from the header first (`MAX_PICTURE_PIXELS`); pictures
    whose longer side exceeds `max_side` are reduced to it, JPEGs while they are
    decoded. Every problem is an InputError of one line: not found, not a
    file, not a picture, too large, corrupt.
    """
    path = Path(path)
    check_regular_file(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
            if width * height > MAX_PICTURE_PIXELS:
                raise InputError(_too_large(path, f"{width}x{height} = {_megapixels(width * height)} megapixels"))
            if max_side is not None and max(width, height) > max_side:
                im = _reduced(im, max_side)
            ImageOps.exif_transpose(im, in_place=True)
            return _to_uint8_rgb(im)
    except Image.DecompressionBombError as exc:
        # Pillow refuses before it gives the size; its message holds the pixel count
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(found.group(1)) if found else 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise InputError(_too_large(path, f"{'' if found else 'over '}{_megapixels(pixels)} megapixels")) from None
    except UnidentifiedImageError:
        raise InputError(f"{path} is not a picture facecast can read (use a JPEG, PNG or WebP picture)") from None
    except MemoryError:
        raise InputError(_too_large(path, "not enough memory to decode it")) from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise InputError(f"cannot read image {path}: the file looks corrupt ({reason})") from None


def _too_large(path: Path, detail: str) -> str:
    return f"picture {path} is too large: {detail} (at most {_megapixels(MAX_PICTURE_PIXELS)} megapixels)"


def _megapixels(pixels: int) -> str:
    """108, 100.01: just over the limit must not read as the limit itself."""
    return f"{pixels / 1e6:.2f}".rstrip("0").rstrip(".")


def _reduced(im: Image.Image, max_side: int) -> Image.Image:
    """`im` (opened, not yet decoded) with its longer side at most `max_side`: JPEG decodes at a reduced
    scale directly (`Image.draft`), other formats decode whole and are reduced at once."""
    width, height = im.size
    factor = max_side / max(width, height)
    target = (max(1, round(width * factor)), max(1, round(height * factor)))
    if im.format == "JPEG":
        im.draft(None, target)  # the largest 1/2, 1/4 or 1/8 scale still at least `target`
    try:
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=None)
    except ValueError:  # a pixel format Pillow cannot resample (e.g. some 16-bit ones): convert first
        converted = Image.fromarray(_to_uint8_rgb(im))
        converted.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=None)
        return converted
    return im


def _to_uint8_rgb(im: Image.Image) -> np.ndarray:
    """Convert any PIL mode (grey, palette, 16-bit, float, CMYK, with or without alpha) to RGB/RGBA uint8."""
    if im.mode.startswith("I") or im.mode == "F":              # 16/32-bit integer or float greyscale
        values = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16") or values.max() > 255:
            peak = 65535.0
        else:
            peak = 1.0 if im.mode == "F" and values.max() <= 1.0 else 255.0
        grey = np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    mode = "RGBA" if has_alpha else "RGB"
    return np.ascontiguousarray(np.asarray(im if im.mode == mode else im.convert(mode)))  # no copy when it fits


@dataclass(frozen=True)
class AudioInfo:
    """What an audio input holds, read from its container before decoding."""

    path: Path
    codec: str
    sample_rate: int
    channels: int
    duration: float | None  # seconds; None when the container does not say


class AudioReader:
    """Decodes the first audio stream of a file block by block.

    Opening validates the file (exists, is media, has an audio stream) so bad
    input fails before any work starts; decoding errors half-way through a
    corrupt file surface as `InputError` too.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"audio file not found: {self.path}")
        if self.path.is_dir():
            raise InputError(f"audio input {self.path} is a folder, not a file")
        check_regular_file(self.path, "sound")   # a pipe or device would block or never end
        try:
            self._container = av.open(str(self.path), "r")
        except FFMPEG_ERRORS as exc:
            raise InputError(f"cannot read audio from {self.path}: not a supported audio or video file "
                             f"({error_reason(exc)})") from None
        if not self._container.streams.audio:
            self._container.close()
            raise InputError(f"{self.path} has no audio track")
        stream = self._container.streams.audio[0]
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:
            duration = self._container.duration / av.time_base
        self.info = AudioInfo(
            path=self.path,
            codec=stream.codec_context.name,
            sample_rate=int(stream.codec_context.sample_rate or 0),
            channels=int(stream.codec_context.channels or 0),
            duration=duration,
        )
        self._stream = stream

    def frames(self) -> Iterator[av.AudioFrame]:
        """Decoded audio frames in the file's own format."""
        try:
            for packet in self._container.demux(self._stream):
                for frame in packet.decode():
                    frame.pts = None  # resamplers need no timestamps; odd ones upset them
                    yield frame
        except FFMPEG_ERRORS as exc:
            raise InputError(f"cannot decode audio in {self.path}: the file is corrupt or truncated "
                             f"({error_reason(exc)})") from None

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def error_reason(exc: Exception) -> str:
    """A short reason for an FFmpeg error, for one-line messages."""
    return getattr(exc, "strerror", None) or str(exc).split(":")[-1].strip() or type(exc).__name__


class MonoResampler:
    """Turns decoded frames of any rate/layout into mono float32 numpy blocks at one rate."""

    def __init__(self, rate: int = MOTION_SAMPLE_RATE) -> None:
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)

    def __call__(self, frame: av.AudioFrame | None) -> np.ndarray:
        """Resample one frame (None flushes the tail); may return an empty block."""
        parts = [out.to_ndarray().reshape(-1) for out in self._resampler.resample(frame)]
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)


def decode_with_mono(reader: AudioReader,
                     rate: int = MOTION_SAMPLE_RATE) -> Iterator[tuple[av.AudioFrame | None, np.ndarray]]:
    """Each decoded frame paired with the same audio as mono float32 at `rate`.

    The resampler's tail comes last, paired with None. Callers that also need
    the original frames (to mux them) and callers that need only the mono audio
    share this one loop and its zero-length check (InputError).
    """
    resample = MonoResampler(rate)
    total = 0
    for frame in reader.frames():
        block = resample(frame)
        total += block.size
        yield frame, block
    tail = resample(None)
    if total + tail.size == 0:
        raise InputError(f"{reader.path} contains no audio samples (zero-length audio)")
    yield None, tail


def iter_mono_blocks(path: str | Path, rate: int = MOTION_SAMPLE_RATE) -> Iterator[np.ndarray]:
    """Mono float32 blocks of a whole file at `rate`; raises InputError if it holds no samples."""
    with AudioReader(path) as reader:
        for _, block in decode_with_mono(reader, rate):
            if block.size:
                yield block


def decode_mono(path: str | Path, rate: int = MOTION_SAMPLE_RATE) -> np.ndarray:
    """A whole file as one mono float32 array (for short clips: tests, analysis)."""
    return np.concatenate(list(iter_mono_blocks(path, rate)))


def mux_layout(channels: int) -> str:
    """The MP4 keeps mono as mono and downmixes anything wider to stereo."""
    return "mono" if channels <= 1 else "stereo"


class AtomicOutput:
    """A file or folder that appears at its final path only when complete.

    Work goes to a hidden temporary sibling; `commit()` renames it into place,
    anything else (an error, Ctrl-C) removes it, so a failed run never leaves a
    partial output behind.
    """

    def __init__(self, final: str | Path, overwrite: bool, is_dir: bool = False,
                 inputs: Sequence[str | Path | None] = ()) -> None:
        """`inputs`: the files the command reads; the output may not be one of them (--overwrite would destroy
        it before it is read)."""
        self.final = Path(final)
        self.is_dir = is_dir
        if not str(final).strip():
            raise OutputError("the output path is empty")
        if self.final.exists():
            if self.final.is_dir() != is_dir:
                kind = "a folder" if self.final.is_dir() else "a file"
                raise OutputError(f"{self.final} is {kind}; choose another output path")
            if not is_dir and not self.final.is_file():
                raise OutputError(f"{self.final} is not a regular file (a device or pipe); choose another output "
                                  "path")
            if any(source is not None and Path(source).exists() and os.path.samefile(self.final, source)
                   for source in inputs):
                raise OutputError(f"{self.final} is also the input: write the output to another path")
            if not overwrite:
                raise OutputError(f"{self.final} already exists (use --overwrite to replace it)")
            if is_dir:
                _check_replaceable(self.final)
        parent = self.final.parent if str(self.final.parent) else Path(".")
        if not parent.is_dir():
            raise OutputError(f"cannot write {self.final}: folder {parent} does not exist")
        prefix = f".{self.final.name}.partial-"
        try:
            if is_dir:
                self.temp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
            else:
                fd, name = tempfile.mkstemp(prefix=prefix, suffix=self.final.suffix, dir=parent)
                os.close(fd)
                self.temp = Path(name)
        except OSError as exc:
            raise OutputError(f"cannot write {self.final}: {exc.strerror or exc}") from None
        self._done = False

    def commit(self) -> Path:
        # mkstemp/mkdtemp create private (0600/0700) entries; give the output the user's usual mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.temp, (0o777 if self.is_dir else 0o666) & ~umask)
        for attempt in range(REPLACE_ATTEMPTS):
            try:
                if self.is_dir and self.final.exists():
                    _remove(self.final)
                os.replace(self.temp, self.final)
                break
            except PermissionError as exc:
                # Windows locks a file another program has open (a player, OBS's Media Source) or is scanning
                # (antivirus, for a moment after a write); Linux and macOS replace open files freely.
                if attempt == REPLACE_ATTEMPTS - 1:
                    self.discard()
                    raise OutputError(f"cannot replace {self.final}: {exc.strerror or exc} (is it open in another "
                                      f"program? close it, or write to another name)") from None
                time.sleep(REPLACE_RETRY_S)
        self._done = True
        return self.final

    def discard(self) -> None:
        if not self._done:
            _remove(self.temp)
            self._done = True

    def __enter__(self) -> "AtomicOutput":
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.discard()


#: What a frames folder facecast wrote holds (`app.render.PngFrameWriter`): only such a folder is replaced.
FRAME_FILE = re.compile(r"frame_\d+\.png")


def _check_replaceable(folder: Path) -> None:
    """A folder output is replaced only if it holds nothing but frames facecast wrote: --overwrite must never
    delete a user's other files (checked before the work, so a refusal loses nothing)."""
    others = sorted(child.name for child in folder.iterdir()
                    if not (FRAME_FILE.fullmatch(child.name) and child.is_file() and not child.is_symlink()))
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise OutputError(f"{folder} holds files facecast did not write ({shown}); --overwrite replaces only a "
                          f"folder of its own frames: choose a new or empty folder")


def _remove(path: Path) -> None:
    if path.is_dir():
        _check_replaceable(path)
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
    elif path.exists():
        path.unlink()


#: H.264 quality (x264's constant rate factor: lower is better and larger; 18-23 is visually transparent to good).
DEFAULT_CRF = 20
CRF_RANGE = (0, 51)
#: x264 presets, fastest first. The default is the fastest whose quality at CRF 20 matches `veryfast`'s
#: (benchmarks/render.py --presets: PSNR/SSIM against a lossless encode of the same frames).
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
DEFAULT_PRESET = "veryfast"
#: x264's threads for renders: one. `facecast render` encodes in a thread of its own beside the generating and
#: rendering threads, so more x264 threads only compete for the same two cores (benchmarks/render.py --presets:
#: veryfast costs 2.3-2.4 ms of CPU per 512² frame with 1, 2 or x264's default 3 threads; 0 would be that default).
X264_THREADS = 1


def validate_encoding(crf: int, preset: str) -> None:
    """InputError (one line) for a CRF or preset x264 does not take."""
    if not CRF_RANGE[0] <= crf <= CRF_RANGE[1]:
        raise InputError(f"--crf must be between {CRF_RANGE[0]} and {CRF_RANGE[1]} (got {crf}); "
                         f"lower is better quality, {DEFAULT_CRF} is the default")
    if preset not in X264_PRESETS:
        raise InputError(f"unknown --preset {preset!r}: choose one of {', '.join(X264_PRESETS)}")


class Mp4Writer:
    """H.264 video (+ optional AAC audio) streamed into an MP4 as frames arrive.

    Frames are encoded as they come. A regular MP4's index grows with every
    packet (measured: ~28 MiB over 60 min of video + audio), so long renders
    use `fragmented=True`, whose memory stays flat. `audio_channels=None`
    writes a silent video. `threads`: x264's own threads (0: its default, 1.5
    per core; default `X264_THREADS`): `facecast render` renders in other threads while x264 encodes, so this
    is set deliberately (measured in benchmarks/render.py --presets and by whole renders).
    """

    def __init__(self, path: str | Path, size: int | tuple[int, int], fps: float, audio_channels: int | None = None,
                 crf: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET, fragmented: bool = False,
                 threads: int | None = None) -> None:
        """size: the side of square frames, or (width, height); H.264's 4:2:0 needs both even."""
        validate_encoding(crf, preset)
        width, height = (size, size) if isinstance(size, int) else size
        if width % 2 or height % 2:
            raise InputError(f"an MP4 (H.264) needs even frame sides, got {width}x{height}: use an even --size")
        movflags = FRAGMENTED_MP4 if fragmented else REGULAR_MP4
        self._container = av.open(str(path), "w", format="mp4", options={"movflags": movflags})
        self._video = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self._video.width = width
        self._video.height = height
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(crf), "preset": preset}
        self._video.codec_context.thread_count = X264_THREADS if threads is None else threads
        self._video.codec_context.time_base = Fraction(1, 1) / Fraction(fps).limit_denominator(1001)
        self._add_audio(audio_channels, "aac", "fltp", 1024)

    def _add_audio(self, channels: int | None, codec: str, sample_format: str, frame_size: int | None) -> None:
        """The audio track (none for `channels=None`) and the resampler that feeds it the codec's frames."""
        self._frames = 0
        self._audio = None
        self._audio_resampler = None
        self._audio_samples = 0
        self._audio_fed = False
        if channels is not None:
            layout = mux_layout(channels)
            self._audio = self._container.add_stream(codec, rate=MUX_SAMPLE_RATE)
            self._audio.layout = layout
            if codec != "pcm_s16le":  # PCM has no bit rate to choose
                self._audio.bit_rate = MUX_AUDIO_BITRATE
            self._audio_resampler = av.AudioResampler(format=sample_format, layout=layout, rate=MUX_SAMPLE_RATE,
                                                      frame_size=frame_size)

    @property
    def frames_written(self) -> int:
        return self._frames

    def write_frame(self, image: np.ndarray) -> None:
        """Encode one RGB uint8 frame (H, W, 3)."""
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self._frames
        self._frames += 1
        self._container.mux(self._video.encode(frame))

    def write_audio(self, frame: av.AudioFrame | None) -> None:
        """Resample and encode decoded input audio; None flushes the resampler's tail."""
        if self._audio is None:
            return
        self._audio_fed |= frame is not None
        for out in self._audio_resampler.resample(frame):
            out.pts = self._audio_samples
            self._audio_samples += out.samples
            self._container.mux(self._audio.encode(out))

    def _write_silence(self) -> None:
        """A silent audio track as long as the video: a sound of a few samples is shorter than the resampler's
        filter and comes out as nothing, and a file without its audio track looks broken to an editor."""
        codec = self._audio.codec_context
        frame_size = codec.frame_size or 1024
        remaining = max(1, round(self._frames * float(self._video.codec_context.time_base) * MUX_SAMPLE_RATE))
        while remaining > 0:
            samples = min(frame_size, remaining)
            frame = av.AudioFrame(format=codec.format.name, layout=codec.layout.name, samples=samples)
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.sample_rate = MUX_SAMPLE_RATE
            frame.pts = self._audio_samples
            self._audio_samples += samples
            remaining -= samples
            self._container.mux(self._audio.encode(frame))

    def close(self) -> None:
        """Flush the encoders and finish the file."""
        if self._audio is not None:
            self.write_audio(None)
            if self._audio_fed and not self._audio_samples:
                self._write_silence()
            self._container.mux(self._audio.encode(None))
        self._container.mux(self._video.encode(None))
        self._container.close()

    def abort(self) -> None:
        try:
            self._container.close()
        except FFMPEG_ERRORS:
            pass


@dataclass(frozen=True)
class AlphaFormat:
    """A container whose video keeps an alpha channel, for video editors: codec, pixel formats, audio."""

    container: str
    codec: str
    pix_fmt: str            # with alpha
    opaque_pix_fmt: str     # the same without alpha, for RGB frames
    options: tuple[tuple[str, str], ...]
    audio_codec: str
    audio_sample_format: str
    audio_frame_size: int | None


#: Output suffixes that keep the avatar's alpha: VP9 with alpha in WebM (browsers, OBS, Premiere, DaVinci
#: Resolve, After Effects via plug-ins) and ProRes 4444 in QuickTime (Final Cut, Premiere, Resolve). libvpx's
#: `good` deadline at cpu-used 5 encoded a 512 px frame (colour + alpha) in ~25 ms on a loaded 2-core machine
#: (`realtime` at cpu-used 8: ~9 ms, visibly softer); ProRes is near-lossless and large (2.5 MB/s at 256 px,
#: 25 fps). Audio: Opus in WebM, 16-bit PCM in QuickTime (what editors import without transcoding).
ALPHA_FORMATS = {
    ".webm": AlphaFormat("webm", "libvpx-vp9", "yuva420p", "yuv420p",
                         (("crf", "30"), ("b", "0"), ("deadline", "good"), ("cpu-used", "5"), ("row-mt", "1")),
                         "libopus", "flt", 960),
    ".mov": AlphaFormat("mov", "prores_ks", "yuva444p10le", "yuv444p10le",
                        (("profile", "4444"), ("vendor", "apl0")), "pcm_s16le", "s16", None),
}


class AlphaVideoWriter(Mp4Writer):
    """RGBA frames into a WebM (VP9 + alpha, Opus) or QuickTime (ProRes 4444 + alpha, PCM) file, by its suffix.

    `alpha=False` writes the same codec without an alpha plane (RGB frames). It shares `Mp4Writer`'s audio
    muxing, flushing and closing; only the container, the codecs and the frames' format differ. Decoding
    VP9's alpha needs the libvpx decoder (FFmpeg's own VP9 decoder ignores the alpha plane):
    `read_video_rgba` picks it."""

    def __init__(self, path: str | Path, size: int | tuple[int, int], fps: float, audio_channels: int | None = None,
                 alpha: bool = True) -> None:  # no super().__init__: that one sets up H.264 in MP4
        """size: the side of square frames, or (width, height) (framing "full")."""
        suffix = Path(path).suffix.lower()
        if suffix not in ALPHA_FORMATS:
            raise ValueError(f"no alpha video format for {suffix!r}: use {', '.join(ALPHA_FORMATS)}")
        spec, self.alpha = ALPHA_FORMATS[suffix], alpha
        rate = Fraction(fps).limit_denominator(1001)
        self._container = av.open(str(path), "w", format=spec.container)
        self._video = self._container.add_stream(spec.codec, rate=rate)
        self._video.width, self._video.height = (size, size) if isinstance(size, int) else size
        self._video.pix_fmt = spec.pix_fmt if alpha else spec.opaque_pix_fmt
        self._video.options = dict(spec.options)
        self._video.codec_context.time_base = Fraction(1, 1) / rate
        self._add_audio(audio_channels, spec.audio_codec, spec.audio_sample_format, spec.audio_frame_size)

    def write_frame(self, image: np.ndarray) -> None:
        """Encode one RGBA (or, with alpha=False, RGB) uint8 frame."""
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgba" if self.alpha else "rgb24")
        frame.pts = self._frames
        self._frames += 1
        self._container.mux(self._video.encode(frame))


def read_video_rgba(path: str | Path, max_frames: int | None = None) -> list[np.ndarray]:
    """The frames of a video as (H, W, 4) uint8 RGBA, with the alpha it holds (VP9 alpha through libvpx)."""
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        vp9 = stream.codec_context.name == "vp9"
        decoder = av.CodecContext.create("libvpx-vp9", "r") if vp9 else stream.codec_context
        for packet in container.demux(stream):  # the last, empty packet flushes the decoder
            frames.extend(frame.to_ndarray(format="rgba") for frame in decoder.decode(packet))
            if max_frames is not None and len(frames) >= max_frames:
                break
    return frames[:max_frames]

