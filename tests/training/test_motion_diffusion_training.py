"""Training the learned motion model: features line up, training resumes, fine-tuning and calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import HELD_OUT_CLIPS
from facecast.dataset.cache import load_clip
from facecast.errors import FacecastError
from facecast.motion import EXPRESSION_CHANNELS, resample_frames
from facecast.speech.learned import FPS, MOTION_DIMS, LearnedMotion, frame_audio
from facecast.training.motion_diffusion import checkpoint_path, motion_matrix, train


def test_features_line_up_with_25_fps_frames(held_out_dataset: tuple[Path, Path]) -> None:
    clip = load_clip(HELD_OUT_CLIPS[3], held_out_dataset[1])
    motion = resample_frames(motion_matrix(clip), float(clip["fps"]), FPS)
    assert motion.shape == (len(clip["found"]), MOTION_DIMS)   # this clip is 25 fps already
    audio = frame_audio(clip["audio"], len(motion))
    assert audio.shape == (len(motion), 32) and np.isfinite(audio).all()
    thirty = resample_frames(np.arange(90, dtype=np.float32)[:, None], 30.0, FPS)
    assert len(thirty) == 75 and thirty[25, 0] == pytest.approx(30.0)   # 1 s in = frame 30 at 30 fps


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
        "from facecast.training.motion_diffusion import train\n"
        f"clips = [load_clip(r, Path({str(cache)!r})) for r in {HELD_OUT_CLIPS!r}]\n"
        "train(clips=clips, steps=40, minutes=30, batch=8, out=Path(sys.argv[1]), cache=Path(%r), data_dir=Path(%r),\n"
        "      save_every_s=0.0, resume=sys.argv[2] == 'resume', log_every=10**9)\n" % (str(cache), str(data)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    interrupted = tmp_path / "interrupted.pt"
    process = subprocess.Popen([sys.executable, "-c", script, str(interrupted), "new"], env=env)
    checkpoint = checkpoint_path(interrupted)
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
    assert result.stdout.count("broken.mp4: skipped: cannot read video") == 1   # said once
    assert "fine-tuning on 2 videos" in result.stdout
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


def test_a_kept_checkpoint_holds_the_training_time_once(held_out_dataset: tuple[Path, Path], tmp_path: Path) -> None:
    """`keep_checkpoint` (fine-tuning keeps it until its mouth nets are done): its time spent is the run's, not
    twice it (saved after the run's time was already counted, a resume would have reported double)."""
    import torch

    data, cache = held_out_dataset
    out = tmp_path / "kept.pt"
    result = train(clips=[load_clip(HELD_OUT_CLIPS[0], cache)], steps=3, batch=4, out=out, cache=cache,
                   data_dir=data, log_every=10**9, keep_checkpoint=True)
    state = torch.load(checkpoint_path(out), weights_only=False)
    assert state["step"] == result["steps"] == 3
    assert state["spent"] == pytest.approx(result["minutes"] * 60, rel=0.25)


def _video_only(source: Path, target: Path) -> None:
    """A copy of `source` with its picture and no sound (a screen recording without a microphone)."""
    import av

    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)


def test_facecast_train_keeps_what_the_user_owns(held_out_dataset: tuple[Path, Path], tmp_path: Path) -> None:
    """`train -o` never replaces a file without --overwrite, never deletes a file beside it (`NAME.ckpt` was its
    checkpoint's name, removed at the end), leaves the file that was there when stopped (it wrote the half-trained
    model over it), saves the state it stopped at for --resume, and says a video without sound is skipped."""
    import hashlib
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from conftest import assert_one_line_error, run_facecast

    data, _ = held_out_dataset
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy2(data / HELD_OUT_CLIPS[0], videos / "one.mp4")
    _video_only(data / HELD_OUT_CLIPS[3], videos / "silent.mp4")
    cache = tmp_path / "cache"
    out = tmp_path / "mine.pt"
    out.write_bytes(b"a model trained last week")
    (tmp_path / "mine.ckpt").write_bytes(b"another tool's checkpoint")
    assert_one_line_error(run_facecast("train", "--data", videos, "--steps", "2", "-o", out, "--cache", cache),
                          f"{out} already exists (use --overwrite to replace it)")
    assert out.read_bytes() == b"a model trained last week"

    # stopped while training: the old file stays, the state is saved, --resume finishes from it
    process = subprocess.Popen([sys.executable, "-m", "facecast.app.cli", "train", "--data", str(videos), "-o",
                                str(out), "--cache", str(cache), "--overwrite", "--minutes", "10"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if "fine-tuning on" in line or not line:
            break
    time.sleep(8)                                          # some steps
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    stdout = "".join(lines) + stdout
    assert process.returncode == 130, stderr
    assert "skipped silent.mp4: no audio track" in stdout and "fine-tuning on 1 videos" in stdout
    assert "saved the training state at step" in stdout
    checkpoint = checkpoint_path(out)
    assert stderr.strip().splitlines()[-1] == f"facecast: stopped (resume with --resume: {checkpoint})"
    assert out.read_bytes() == b"a model trained last week" and checkpoint.exists()
    resumed = run_facecast("train", "--data", videos, "-o", out, "--cache", cache, "--resume", "--steps", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at step" in resumed.stdout and f"wrote {out} after" in resumed.stdout
    assert LearnedMotion(out).features == "logmel" and not checkpoint.exists()
    assert (tmp_path / "mine.ckpt").read_bytes() == b"another tool's checkpoint"
    assert hashlib.sha1(out.read_bytes()).hexdigest() != hashlib.sha1(b"a model trained last week").hexdigest()


def test_calibration_stores_the_chosen_guidance_in_the_model_file(tiny_model: Path, held_out_dataset: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    import shutil

    from facecast.training.motion_diffusion import CALIBRATION_GRID, calibrate

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
    from facecast.training.motion_diffusion import expression_gain

    rng = np.random.default_rng(0)
    real = [rng.normal(0.3, 0.2, (50, MOTION_DIMS)) for _ in range(3)]
    narrow = [0.3 + 0.5 * (r - 0.3) for r in real]
    assert np.allclose(expression_gain(real, narrow), 2.0, atol=1e-4)
    assert np.allclose(expression_gain(narrow, real), 1.0)              # never narrowed
    wild = [0.3 + 10 * (r - 0.3) for r in real]
    assert np.allclose(expression_gain(wild, real), 3.0)                # bounded
    assert expression_gain(real, narrow).shape == (len(EXPRESSION_CHANNELS),)
