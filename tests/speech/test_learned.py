"""The learned motion model: training runs, sampling is window by window, output is valid motion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.dataset.cache import load_clip, resample_frames
from facecast.errors import FacecastError
from facecast.speech.learned import (
    CONTEXT, FPS, MOTION_DIMS, WINDOW, LearnedMotion, Sampling, clip_audio, frame_audio, learned_motion, motion_frames,
    motion_matrix, train,
)
from facecast.render.warp_basis import EXPRESSION_CHANNELS
from conftest import HELD_OUT_CLIPS


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
    from facecast.speech.audio_features import _MEL_BANK, _FREQS, MEL_BANDS
    from facecast.dataset.cache import AudioFeatureStream

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


def test_an_interrupted_training_resumes_to_the_same_weights(held_out_dataset: tuple[Path, Path],
                                                             tmp_path: Path) -> None:
    """Kill a training run after its first checkpoint, resume it: the weights equal an uninterrupted run's."""
    import os
    import subprocess
    import sys
    import time

    import torch

    data, cache = held_out_dataset
    script = (
        "import sys; from pathlib import Path\n"
        "from facecast.dataset.cache import load_clip\n"
        "from facecast.speech.learned import train\n"
        f"clips = [load_clip(r, Path({str(cache)!r})) for r in {HELD_OUT_CLIPS!r}]\n"
        "train(clips=clips, steps=40, minutes=30, batch=8, out=Path(sys.argv[1]), cache=Path(%r), data_dir=Path(%r),\n"
        "      save_every_s=0.0, resume=sys.argv[2] == 'resume', log_every=10**9)\n" % (str(cache), str(data)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    interrupted = tmp_path / "interrupted.pt"
    process = subprocess.Popen([sys.executable, "-c", script, str(interrupted), "new"], env=env)
    checkpoint = interrupted.with_suffix(".ckpt")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.exists() and torch.load(checkpoint, weights_only=False)["step"] >= 5:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert not interrupted.exists(), "the run finished before it could be interrupted"
    stopped_at = torch.load(checkpoint, weights_only=False)["step"]
    assert 5 <= stopped_at < 40
    resumed = subprocess.run([sys.executable, "-c", script, str(interrupted), "resume"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed at step {stopped_at}" in resumed.stdout
    whole = tmp_path / "whole.pt"
    subprocess.run([sys.executable, "-c", script, str(whole), "new"], env=env, check=True, capture_output=True,
                   timeout=300)
    a, b = torch.load(interrupted, weights_only=True), torch.load(whole, weights_only=True)
    assert a["steps"] == b["steps"] == 40
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    with pytest.raises(FacecastError, match="nothing to resume"):
        train(clips=[load_clip(HELD_OUT_CLIPS[0], cache)], steps=1, out=tmp_path / "never.pt", resume=True,
              cache=cache, data_dir=data)


def test_facecast_train_fine_tunes_on_a_folder_of_videos(held_out_dataset: tuple[Path, Path], tiny_model: Path,
                                                          sample_portrait: Path, sample_speech: Path,
                                                          tmp_path: Path) -> None:
    """`facecast train --data DIR`: every video in the folder (bad ones skipped with a line), the result
    renders with `--motion-model`."""
    import shutil

    from conftest import assert_one_line_error, run_facecast

    data, _ = held_out_dataset
    videos = tmp_path / "my videos"
    (videos / "sub").mkdir(parents=True)
    shutil.copy2(data / HELD_OUT_CLIPS[0], videos / "one.mp4")
    shutil.copy2(data / HELD_OUT_CLIPS[3], videos / "sub" / "two.MOV")
    (videos / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "mine.pt"
    result = run_facecast("train", "--data", videos, "--steps", "3", "-o", out, "--cache", tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "skipped broken.mp4" in result.stdout and "fine-tuning on 2 videos" in result.stdout
    assert f"wrote {out} after 3 steps" in result.stdout
    model = LearnedMotion(out)
    assert model.features == "logmel"
    shipped = LearnedMotion()
    assert set(model.mouth) == set(shipped.mouth) == {2, 14}
    for look, gap in model.mouth.items():                   # the mouth-gap nets are fine-tuned too
        assert not np.allclose(gap._inp[0], shipped.mouth[look]._inp[0])
    rendered = tmp_path / "mine.mp4"
    result = run_facecast("render", "-p", sample_portrait, "-a", sample_speech, "-o", rendered, "--size", "256",
                          "--generator", "learned", "--motion-model", out, "-q")
    assert result.returncode == 0 and rendered.stat().st_size > 10_000, result.stderr
    assert_one_line_error(run_facecast("train", "--data", tmp_path / "nowhere"), "video folder not found")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_facecast("train", "--data", tmp_path / "empty"), "no videos")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert_one_line_error(run_facecast("render", "-p", sample_portrait, "-a", sample_speech, "-o", tmp_path / "j.mp4",
                                       "--generator", "learned", "--motion-model", tmp_path / "junk.pt"),
                          "is not a facecast motion model")
    assert not (tmp_path / "j.mp4").exists()


def test_allphone_features_are_one_phone_per_hop(sample_speech: Path) -> None:
    """pocketsphinx's allphone segmentation as features: one-hot rows; frames past the audio are silence."""
    from facecast.speech.phones import PHONES, SILENCE, phone_track
    from facecast.media import decode_mono

    speech = decode_mono(sample_speech)[: 16000 * 3]
    track = phone_track(speech)
    assert track.shape == (300, len(PHONES)) and np.all(track.sum(1) == 1)
    spoken = set(np.flatnonzero(track.sum(0)))
    assert len(spoken - {SILENCE}) >= 8                                  # three seconds of speech: many phones
    framed = frame_audio(track, 80, "allphone")
    assert framed.shape == (80, 4 * len(PHONES)) and np.all(framed[75:].reshape(-1, 4, len(PHONES)).argmax(2) == SILENCE)


def test_calibration_stores_the_chosen_guidance_in_the_model_file(tiny_model: Path, held_out_dataset: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    import shutil

    from facecast.speech.learned import CALIBRATION_GRID, calibrate

    data, cache = held_out_dataset
    path = tmp_path / "calibrated.pt"
    shutil.copy2(tiny_model, path)
    lines: list[str] = []
    chosen = calibrate(path, cache, progress=lines.append, clips=[load_clip(r, cache) for r in HELD_OUT_CLIPS],
                       data_dir=data)
    assert len(lines) == len(CALIBRATION_GRID[0]) * len(CALIBRATION_GRID[1]) + 1
    assert chosen["guidance"] in CALIBRATION_GRID[0] and chosen["head_guidance"] in CALIBRATION_GRID[1]
    model = LearnedMotion(path)
    assert (model.sampling.guidance, model.sampling.head_guidance) == (chosen["guidance"], chosen["head_guidance"])
    assert model.sampling_for(3).seed == 3 and model.sampling_for(3).guidance == chosen["guidance"]
    assert np.allclose(model.expression_gain, chosen["expression_gain"])
    assert ((model.expression_gain >= 1) & (model.expression_gain <= 3)).all()
    with pytest.raises(FacecastError, match="in-the-wild"):
        calibrate(path, cache, progress=lines.append, clips=[load_clip(HELD_OUT_CLIPS[0], cache)], data_dir=data)


def test_expression_gain_widens_what_sampling_narrowed() -> None:
    from facecast.speech.learned import MOTION_DIMS, expression_gain

    rng = np.random.default_rng(0)
    real = [rng.normal(0.3, 0.2, (50, MOTION_DIMS)) for _ in range(3)]
    narrow = [0.3 + 0.5 * (r - 0.3) for r in real]
    assert np.allclose(expression_gain(real, narrow), 2.0, atol=1e-4)
    assert np.allclose(expression_gain(narrow, real), 1.0)              # never narrowed
    wild = [0.3 + 10 * (r - 0.3) for r in real]
    assert np.allclose(expression_gain(wild, real), 3.0)                # bounded
    assert expression_gain(real, narrow).shape == (len(EXPRESSION_CHANNELS),)


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
    closure[60:63] = [.5, .9, .1]                                                           # a later blink
    rows = np.zeros((100, MOTION_DIMS))
    rows[:, BLINKS] = closure[:, None]
    shaped = BlinkShaper(fps=25.0).shape(rows.copy())[:, BLINKS].mean(1)
    assert set(np.unique(shaped)) <= {0.0, 1.0}
    starts = np.flatnonzero(np.diff(shaped, prepend=0) > 0)
    assert list(starts) == [10, 61]                       # one blink for the flutter; the next one after 1.5 s
    assert shaped[10:30].sum() <= 0.25 * 25 + 1          # closed at most ~0.25 s
    # frame by frame (live) equals all at once (offline)
    shaper = BlinkShaper(fps=25.0)
    live = np.concatenate([shaper.shape(rows[i:i + 1].copy()) for i in range(100)])[:, BLINKS].mean(1)
    assert np.array_equal(live, shaped)
    # a half-closed flicker is no blink
    shallow = np.zeros((20, MOTION_DIMS))
    shallow[5:8, BLINKS] = 0.45
    assert BlinkShaper(fps=25.0).shape(shallow.copy())[:, BLINKS].max() == 0.0
