"""The learned motion model at inference: sampling is window by window, output is valid motion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import HELD_OUT_CLIPS
from facecast.dataset.cache import clip_audio, load_clip
from facecast.errors import FacecastError
from facecast.media import decode_mono
from facecast.motion import EXPRESSION_CHANNELS
from facecast.speech.learned import (
    CONTEXT,
    FPS,
    MOTION_DIMS,
    WINDOW,
    LearnedMotion,
    Sampling,
    frame_audio,
    learned_motion,
    motion_frames,
    offline_states,
)


def test_generation_is_window_by_window_for_any_length(tiny_model: Path, held_out_dataset: tuple[Path, Path]) -> None:
    model = LearnedMotion(tiny_model)
    data, cache = held_out_dataset
    audio = clip_audio(load_clip(HELD_OUT_CLIPS[3], cache), model.features, data, cache)
    assert model.features == "logmel" and audio.shape[1] == 40
    states = offline_states(model, decode_mono(data / HELD_OUT_CLIPS[3]))   # what the offline mouth nets hear too
    with pytest.raises(FacecastError, match="Whisper"):
        model.generate(audio, WINDOW)
    for frames in (1, WINDOW, WINDOW + CONTEXT + 3, 3 * WINDOW + 7):       # past the recording: silent states
        out = model.generate(audio, frames, states=states)
        assert out.shape == (frames, MOTION_DIMS) and np.isfinite(out).all()
    again = model.generate(audio, 2 * WINDOW, states=states)
    assert np.allclose(again, model.generate(audio, 2 * WINDOW, states=states))   # deterministic per seed
    other = model.generate(audio, 2 * WINDOW, Sampling(seed=1), states)
    assert not np.allclose(again, other)
    unguided = model.generate(audio, 2 * WINDOW, Sampling(guidance=1.0), states)
    assert not np.allclose(again, unguided)                                 # guidance changes the result


def test_generated_rows_become_valid_motion_frames() -> None:
    rows = np.zeros((3, MOTION_DIMS), np.float32)
    rows[0, 0] = 1.7                                 # jawOpen beyond 1
    rows[1, len(EXPRESSION_CHANNELS) + 5] = 0.1      # distance far too close
    rows[2, len(EXPRESSION_CHANNELS) + 6] = -0.4     # negative blink
    frames = list(motion_frames(rows, 25.0))
    assert frames[0].expression("jawOpen") == 1.0 and frames[1].head.distance == 0.5
    assert frames[2].blink.left == 0.0 and [f.t for f in frames] == [0.0, 0.04, 0.08]
    assert set(frames[2].expressions) == set(EXPRESSION_CHANNELS)     # zeros included: a stable set of names


def test_shipped_model_keeps_the_gaze_sane(sample_speech: Path) -> None:
    """Trained on gaze with lost irises filled (a few readings of hundreds of degrees had made its pitch swing
    by +-100 degrees), the model moves the eyes both ways, within what eyes do."""
    from facecast.media import decode_mono

    frames = learned_motion(decode_mono(sample_speech)[: 16000 * 3], FPS, 75)
    yaw, pitch = np.array([(f.gaze.yaw, f.gaze.pitch) for f in frames]).T
    assert np.abs(yaw).max() < 30 and np.abs(pitch).max() < 30
    assert yaw.std() > 0.1 and pitch.std() > 0.1


def test_shipped_model_head_moves_without_shaking(sample_speech: Path) -> None:
    """Offline, the sampled head is smoothed (OFFLINE_HEAD_SMOOTHING_S): on the bundled sample its jitter was
    0.71 deg unsmoothed and 0.32 smoothed (real in-the-wild speakers: ~0.5 with tracking noise)."""
    from facecast.evaluation.motion_quality import head_motion, jitter
    from facecast.media import decode_mono

    frames = learned_motion(decode_mono(sample_speech), FPS, 300)
    head = np.array([[f.head.yaw, f.head.pitch, f.head.roll, f.head.x, f.head.y, f.head.distance] for f in frames])
    speed, _ = head_motion(head, FPS)
    assert jitter(head, FPS) < 0.5 and speed > 3.0


def test_benchmark_generator_matches_the_video_frame_rate(tiny_model: Path, sample_speech: Path) -> None:
    from facecast.media import decode_mono

    samples = decode_mono(sample_speech)[: 16000 * 2]
    assert len(learned_motion(samples, 30.0, 61, path=tiny_model)) == 61
    assert len(learned_motion(samples, FPS, 50, path=tiny_model)) == 50


def test_missing_weights_name_the_training_command(tmp_path: Path) -> None:
    with pytest.raises(FacecastError, match="python -m facecast.training motion-diffusion train"):
        LearnedMotion(tmp_path / "none.pt")


def test_render_with_the_learned_generator(sample_portrait: Path, sample_speech: Path, tmp_path: Path) -> None:
    """`facecast render --generator learned`: audio analysed first, then frames window by window, audio muxed."""
    import av

    from conftest import run_facecast

    out = tmp_path / "learned.mp4"
    result = run_facecast("render", "-p", sample_portrait, "-a", sample_speech, "-o", out, "--size", "256",
                          "--generator", "learned", "-q")
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        frames = sum(1 for _ in container.decode(video=0))
        duration = float(audio.duration * audio.time_base)
    assert abs(frames - duration * 25) <= 2 and frames > 25


def test_log_mel_features_are_block_size_invariant_and_put_a_tone_in_its_band() -> None:
    from facecast.speech.audio_features import _FREQS, _MEL_BANK, MEL_BANDS, AudioFeatureStream

    t = np.arange(16000) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 1000 * t)
    whole = AudioFeatureStream("logmel")
    whole.push(tone)
    pieces = AudioFeatureStream("logmel")
    for start in range(0, len(tone), 777):
        pieces.push(tone[start:start + 777])
    assert whole.matrix().shape == (100, MEL_BANDS)
    assert np.allclose(whole.matrix(), pieces.matrix(), atol=1e-3)
    band = int(np.argmax(whole.matrix()[50]))
    assert _MEL_BANK[band, np.argmin(np.abs(_FREQS - 1000))] > 0.5      # the band whose filter covers 1 kHz
    framed = frame_audio(whole.matrix(), 25, "logmel")
    assert framed.shape == (25, 4 * MEL_BANDS) and framed.max() <= 1.0


def test_allphone_features_are_one_phone_per_hop(sample_speech: Path) -> None:
    """pocketsphinx's allphone segmentation as features: one-hot rows; frames past the audio are silence."""
    from facecast.media import decode_mono
    from facecast.speech.phones import PHONES, SILENCE, phone_track

    speech = decode_mono(sample_speech)[: 16000 * 3]
    track = phone_track(speech)
    assert track.shape == (300, len(PHONES)) and np.all(track.sum(1) == 1)
    spoken = set(np.flatnonzero(track.sum(0)))
    assert len(spoken - {SILENCE}) >= 8                                  # three seconds of speech: many phones
    framed = frame_audio(track, 80, "allphone")
    assert framed.shape == (80, 4 * len(PHONES))
    assert np.all(framed[75:].reshape(-1, 4, len(PHONES)).argmax(2) == SILENCE)


def test_the_model_applies_its_expression_gain(tiny_model: Path, tmp_path: Path) -> None:
    import torch

    from facecast.speech.learned import FEATURE_DIMS

    state = torch.load(tiny_model, weights_only=True)
    state["expression_gain"] = torch.full((len(EXPRESSION_CHANNELS),), 2.0)
    torch.save(state, tmp_path / "wide.pt")
    plain, wide = LearnedMotion(tiny_model), LearnedMotion(tmp_path / "wide.pt")
    plain.mouth = wide.mouth = {}                  # (the mouth-gap nets reset the jaw and lip parting after the gain)
    audio = np.random.default_rng(1).normal(-30, 10, (160, FEATURE_DIMS[plain.features])).astype(np.float32)
    a, b = plain.generate(audio, 40), wide.generate(audio, 40)
    n = len(EXPRESSION_CHANNELS)
    assert np.allclose(b[:, :n] - plain.mean[:n], 2 * (a[:, :n] - plain.mean[:n]), atol=1e-5)
    assert np.allclose(b[:, n:], a[:, n:])                              # head, blinks and gaze untouched


def test_blink_shaper_turns_flutter_into_clean_blinks() -> None:
    from facecast.speech.learned import BLINKS, MOTION_DIMS, BlinkShaper

    closure = np.zeros(100)
    closure[10:30] = [1, .4, .9, .35, 1, 1, .8, .9, 1, 1, .9, 1, .2, 0, .8, .9, 0, 0, .6, 0]   # flutter, 0.8 s
    closure[60:63] = [BlinkShaper.START, .9, .1]              # a later blink (closing past START from frame 61)
    rows = np.zeros((100, MOTION_DIMS))
    rows[:, BLINKS] = closure[:, None]
    shaped = BlinkShaper(fps=25.0).shape(rows.copy())[:, BLINKS].mean(1)
    starts = np.flatnonzero((shaped > 0) & (np.concatenate([[0.0], shaped[:-1]]) == 0))
    assert list(starts) == [10, 61]                       # one blink for the flutter; the next one after 1.5 s
    assert (shaped[10:30] == 1.0).sum() <= 0.25 * 25 + 1  # shut at most ~0.25 s
    # the lids shut at once (a frame), stay shut for at least 60 ms and open over 160 ms, as real lids do (they
    # snapped open as they shut: a one-frame blink was a flicker); the short blink at 61 takes 0.24 s in all
    assert list(np.round(shaped[60:68], 2)) == [0.0, 1.0, 1.0, 0.85, 0.5, 0.15, 0.0, 0.0]
    last_shut = 10 + np.flatnonzero(shaped[10:40] == 1.0)[-1]
    assert shaped[10] == 1.0 and 0 < shaped[last_shut + 1] < 1 and shaped[last_shut + 4] == 0.0
    # frame by frame (live) equals all at once (offline)
    shaper = BlinkShaper(fps=25.0)
    live = np.concatenate([shaper.shape(rows[i:i + 1].copy()) for i in range(100)])[:, BLINKS].mean(1)
    assert np.array_equal(live, shaped)
    # a half-closed flicker is no blink
    shallow = np.zeros((20, MOTION_DIMS))
    shallow[5:8, BLINKS] = BlinkShaper.START - 0.05
    assert BlinkShaper(fps=25.0).shape(shallow.copy())[:, BLINKS].max() == 0.0

def test_a_model_file_without_the_lip_geometry_is_a_clear_error(tmp_path: Path, sample_speech: Path) -> None:
    """Mouth-gap nets without the lip geometry they set the jaw by (model files made before it was stored beside
    them): one line naming the command that adds it; a model without nets needs none."""
    import torch

    from conftest import assert_one_line_error, run_facecast
    from facecast.speech.learned import WEIGHTS_PATH
    from facecast.speech.mouth_gap import GAP_GEOMETRY_KEY

    state = torch.load(WEIGHTS_PATH, weights_only=True)
    del state[GAP_GEOMETRY_KEY]
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(FacecastError, match="mouth-gap store-geometry --model"):
        LearnedMotion(tmp_path / "old.pt")
    assert_one_line_error(run_facecast("motion", "--audio", sample_speech, "-o", tmp_path / "m.jsonl",
                                       "--motion-model", tmp_path / "old.pt"), "store-geometry")
    assert not (tmp_path / "m.jsonl").exists()
    del state["mouth"]
    torch.save(state, tmp_path / "no_nets.pt")
    assert LearnedMotion(tmp_path / "no_nets.pt").mouth == {}
