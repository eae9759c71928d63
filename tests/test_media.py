"""Audio decoding through the real FFmpeg decoders (PyAV), and atomic outputs."""

from __future__ import annotations

import os
import wave

import av
import numpy as np
import pytest

from conftest import tone_speech, write_audio
from facecast.errors import InputError, OutputError
from facecast.media import (
    AlphaVideoWriter,
    AtomicOutput,
    AudioReader,
    Mp4Writer,
    decode_mono,
    iter_mono_blocks,
    read_video_rgba,
)


@pytest.mark.parametrize("name, rate, channels", [
    ("speech.wav", 44100, 2), ("speech.mp3", 48000, 2), ("speech.ogg", 48000, 1),
    ("speech.wav", 8000, 1), ("speech.flac", 96000, 6), ("speech.wav", 11025, 1),
])
def test_any_rate_and_channel_count_is_resampled_to_16k_mono(tmp_path, name, rate, channels):
    path = write_audio(tmp_path / name, tone_speech(2.0, rate, channels), rate)
    info = AudioReader(path).info
    assert (info.sample_rate, info.channels) == (rate, channels)
    mono = decode_mono(path)
    assert mono.dtype == np.float32 and mono.ndim == 1
    assert abs(mono.size - 32000) <= 16000 * 0.03  # codec padding only
    # the 4 Hz syllable rhythm survives resampling and downmixing
    envelope = np.abs(mono[: 32000 // 160 * 160]).reshape(-1, 160).mean(axis=1)
    spectrum = np.abs(np.fft.rfft(envelope - envelope.mean()))
    assert np.argmax(spectrum) * 100 / envelope.size == pytest.approx(4.0, abs=0.5)


def test_the_audio_track_of_a_video_is_read(shared_data):
    clip = next((shared_data / "talking" / "grid_s1").glob("*.mp4"))
    mono = decode_mono(clip)
    assert 2.8 * 16000 < mono.size < 3.2 * 16000 and np.abs(mono).max() > 0.05


def test_blocks_stream_instead_of_loading_everything(tmp_path):
    path = write_audio(tmp_path / "long.flac", tone_speech(30.0, 16000), 16000)
    sizes = [block.size for block in iter_mono_blocks(path)]
    assert len(sizes) > 50 and max(sizes) < 16000


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    (b"", "not a supported audio or video file"),
    (b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 3, "not a supported audio or video file"),
    (b"just some text, not sound\n" * 20, "not a supported audio or video file"),
])
def test_missing_or_corrupt_audio_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "speech.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message) as caught:
        AudioReader(path)
    assert "\n" not in str(caught.value)


def write_empty_wav(path):
    with wave.open(str(path), "wb") as out:  # a valid WAV header announcing zero samples
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
    return path


def test_zero_length_audio_is_rejected(tmp_path):
    path = write_empty_wav(tmp_path / "empty.wav")
    with pytest.raises(InputError, match="zero-length"):
        decode_mono(path)


def test_video_without_audio_track_is_rejected(tmp_path):
    path = tmp_path / "silent.mp4"
    writer = Mp4Writer(path, 256, 25)
    writer.write_frame(np.zeros((256, 256, 3), np.uint8))
    writer.close()
    with pytest.raises(InputError, match="no audio track"):
        AudioReader(path)


@pytest.mark.parametrize("fragmented", [False, True])
def test_mp4_writer_muxes_audio_in_sync(tmp_path, fragmented):
    source = write_audio(tmp_path / "in.wav", tone_speech(2.0, 44100, 2), 44100)
    path = tmp_path / "out.mp4"
    writer = Mp4Writer(path, 256, 25, audio_channels=2, fragmented=fragmented)
    with AudioReader(source) as reader:
        for frame in reader.frames():
            writer.write_audio(frame)
    for i in range(50):
        writer.write_frame(np.full((256, 256, 3), i * 4, np.uint8))
    writer.close()
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        assert audio.codec_context.channels == 2
        video_seconds = float(video.duration * video.time_base)
        audio_seconds = float(audio.duration * audio.time_base)
        frames = sum(1 for _ in container.decode(video=0))
    with av.open(str(path)) as container:
        first_video = next(container.demux(video=0)).pts
    assert frames == 50 and first_video == 0
    assert video_seconds == pytest.approx(2.0)
    assert abs(audio_seconds - 2.0) < 1 / 25


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".mov"])
def test_a_sound_of_a_few_samples_still_gets_its_audio_track(tmp_path, suffix):
    """Five samples are shorter than the resampler's filter and came out as no audio at all (a file without its
    audio track); the track is then silence as long as the video."""
    source = write_audio(tmp_path / "in.wav", np.full(5, 0.1, np.float32), 16000)
    path = tmp_path / f"out{suffix}"
    writer = Mp4Writer(path, 64, 25, audio_channels=1) if suffix == ".mp4" else AlphaVideoWriter(path, 64, 25, 1)
    with AudioReader(source) as reader:
        for frame in reader.frames():
            writer.write_audio(frame)
    writer.write_frame(np.zeros((64, 64, 4 if suffix != ".mp4" else 3), np.uint8))
    writer.close()
    with av.open(str(path)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert samples >= 48000 / 25


def test_atomic_output_appears_only_on_commit(tmp_path):
    final = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with AtomicOutput(final, overwrite=False) as out:
            out.temp.write_bytes(b"half")
            raise RuntimeError("render failed")
    assert list(tmp_path.iterdir()) == []
    with AtomicOutput(final, overwrite=False) as out:
        out.temp.write_bytes(b"whole")
        out.commit()
    assert final.read_bytes() == b"whole" and len(list(tmp_path.iterdir())) == 1
    umask = os.umask(0)
    os.umask(umask)
    assert final.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    with pytest.raises(OutputError, match="already exists"):
        AtomicOutput(final, overwrite=False)
    with pytest.raises(OutputError, match="does not exist"):
        AtomicOutput(tmp_path / "missing" / "out.mp4", overwrite=False)
    # --overwrite never replaces what is not an output: the command's own input, a pipe or device, a folder
    with pytest.raises(OutputError, match="is also the input"):
        AtomicOutput(final, overwrite=True, inputs=(None, tmp_path / "." / "out.mp4"))
    os.mkfifo(tmp_path / "pipe.mp4")
    with pytest.raises(OutputError, match="not a regular file"):
        AtomicOutput(tmp_path / "pipe.mp4", overwrite=True)
    (tmp_path / "folder.mp4").mkdir()
    with pytest.raises(OutputError, match="is a folder"):   # said first, not "already exists"
        AtomicOutput(tmp_path / "folder.mp4", overwrite=False)
    with pytest.raises(OutputError, match="empty"):
        AtomicOutput("", overwrite=True)


def test_overwriting_a_frames_folder_never_deletes_other_files(tmp_path):
    """--frames DIR --overwrite replaces a folder of facecast's own frames; a folder holding anything else
    (a user's notes, a subfolder) is refused before the work, its files untouched."""
    def render_into(folder):
        with AtomicOutput(folder, overwrite=True, is_dir=True) as out:
            (out.temp / "frame_000000.png").write_bytes(b"new")
            out.commit()

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        (frames / f"frame_{i:06d}.png").write_bytes(b"old")
    render_into(frames)
    assert sorted(p.name for p in frames.iterdir()) == ["frame_000000.png"]
    assert (frames / "frame_000000.png").read_bytes() == b"new"

    mixed = tmp_path / "mixed"
    (mixed / "sub").mkdir(parents=True)
    (mixed / "notes.txt").write_text("keep me")
    (mixed / "frame_000000.png").write_bytes(b"old")
    with pytest.raises(OutputError, match=r"holds files facecast did not write \(notes.txt, sub\)"):
        render_into(mixed)
    assert (mixed / "notes.txt").read_text() == "keep me" and (mixed / "sub").is_dir()
    assert (mixed / "frame_000000.png").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "mixed"]  # no partial folder left


@pytest.mark.parametrize("suffix", [".webm", ".mov"])
def test_alpha_video_writer_round_trip(tmp_path, suffix):
    """VP9 + alpha (WebM) and ProRes 4444 (MOV) keep the alpha, soft edges included; alpha=False writes none."""
    ramp = np.tile(np.linspace(0, 255, 256).astype(np.uint8), (256, 1))
    rgba = np.dstack([np.full((256, 256), 200, np.uint8), np.full((256, 256), 60, np.uint8),
                      np.full((256, 256), 30, np.uint8), ramp])
    source = write_audio(tmp_path / "in.wav", tone_speech(0.5, 16000), 16000)
    path = tmp_path / f"out{suffix}"
    writer = AlphaVideoWriter(path, 256, 25, audio_channels=1)
    with AudioReader(source) as reader:
        for frame in reader.frames():
            writer.write_audio(frame)
    for _ in range(12):
        writer.write_frame(rgba)
    writer.close()
    frames = read_video_rgba(path)
    assert len(frames) == 12
    assert np.abs(frames[5][..., 3].astype(int) - ramp).mean() < 2
    assert np.abs(frames[5][128, 128:192, :3].astype(int) - (200, 60, 30)).max() <= 8
    with av.open(str(path)) as container:
        assert container.streams.audio[0].codec_context.name == ("opus" if suffix == ".webm" else "pcm_s16le")
    opaque = AlphaVideoWriter(tmp_path / f"rgb{suffix}", 256, 25, alpha=False)
    opaque.write_frame(rgba[..., :3])
    opaque.close()
    assert read_video_rgba(tmp_path / f"rgb{suffix}")[0][..., 3].min() == 255
    with pytest.raises(ValueError, match="no alpha video format"):
        AlphaVideoWriter(tmp_path / "x.avi", 256, 25)
