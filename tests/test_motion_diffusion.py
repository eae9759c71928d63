"""The learned motion model: training runs, sampling is window by window, output is valid motion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.models.dataset import load_clip, resample_frames
from facecast.models.errors import FacecastError
from facecast.models.motion_diffusion import (
    CONTEXT, FPS, MOTION_DIMS, WINDOW, LearnedMotion, Sampling, clip_audio, frame_audio, learned_motion, motion_frames,
    motion_matrix, train,
)
from facecast.models.warp_basis import EXPRESSION_CHANNELS
from conftest import HELD_OUT_CLIPS


@pytest.fixture(scope="module")
def tiny_model(held_out_dataset: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    data, cache = held_out_dataset
    clips = [load_clip(rel, cache) for rel in HELD_OUT_CLIPS]
    out = tmp_path_factory.mktemp("learned") / "motion.pt"
    result = train(clips=clips, minutes=0.1, batch=16, out=out, log_every=10**9, features="logmel",
                   data_dir=data, cache=cache)
    assert result["steps"] >= 3 and np.isfinite(result["loss"])
    assert len(list((cache / "logmel").glob("*.npy"))) == len(HELD_OUT_CLIPS)   # log-mel cached beside the dataset
    return out


def test_features_line_up_with_25_fps_frames(held_out_dataset: tuple[Path, Path]) -> None:
    clip = load_clip(HELD_OUT_CLIPS[3], held_out_dataset[1])
    motion = resample_frames(motion_matrix(clip), float(clip["fps"]), FPS)
    assert motion.shape == (len(clip["found"]), MOTION_DIMS)   # this clip is 25 fps already
    audio = frame_audio(clip["audio"], len(motion))
    assert audio.shape == (len(motion), 32) and np.isfinite(audio).all()
    thirty = resample_frames(np.arange(90, dtype=np.float32)[:, None], 30.0, FPS)
    assert len(thirty) == 75 and thirty[25, 0] == pytest.approx(30.0)   # 1 s in = frame 30 at 30 fps


def test_generation_is_window_by_window_for_any_length(tiny_model: Path, held_out_dataset: tuple[Path, Path]) -> None:
    model = LearnedMotion(tiny_model)
    data, cache = held_out_dataset
    audio = clip_audio(load_clip(HELD_OUT_CLIPS[3], cache), model.features, data, cache)
    assert model.features == "logmel" and audio.shape[1] == 40
    for frames in (1, WINDOW, WINDOW + CONTEXT + 3, 3 * WINDOW + 7):
        out = model.generate(audio, frames)
        assert out.shape == (frames, MOTION_DIMS) and np.isfinite(out).all()
    again = model.generate(audio, 2 * WINDOW)
    assert np.allclose(again, model.generate(audio, 2 * WINDOW))           # deterministic per seed
    other = model.generate(audio, 2 * WINDOW, Sampling(seed=1))
    assert not np.allclose(again, other)
    unguided = model.generate(audio, 2 * WINDOW, Sampling(guidance=1.0))
    assert not np.allclose(again, unguided)                                 # guidance changes the result


def test_generated_rows_become_valid_motion_frames() -> None:
    rows = np.zeros((3, MOTION_DIMS), np.float32)
    rows[0, 0] = 1.7                                 # jawOpen beyond 1
    rows[1, len(EXPRESSION_CHANNELS) + 5] = 0.1      # distance far too close
    rows[2, len(EXPRESSION_CHANNELS) + 6] = -0.4     # negative blink
    frames = list(motion_frames(rows, 25.0))
    assert frames[0].expression("jawOpen") == 1.0 and frames[1].head.distance == 0.5
    assert frames[2].blink.left == 0.0 and [f.t for f in frames] == [0.0, 0.04, 0.08]


def test_benchmark_generator_matches_the_video_frame_rate(tiny_model: Path, sample_speech: Path) -> None:
    from facecast.plugin.media import decode_mono

    samples = decode_mono(sample_speech)[: 16000 * 2]
    assert len(learned_motion(samples, 30.0, 61, path=tiny_model)) == 61
    assert len(learned_motion(samples, FPS, 50, path=tiny_model)) == 50


def test_missing_weights_name_the_training_command(tmp_path: Path) -> None:
    with pytest.raises(FacecastError, match="motion_diffusion train"):
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
    from facecast.models.audio_features import _MEL_BANK, _FREQS, MEL_BANDS
    from facecast.models.dataset import AudioFeatureStream

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
