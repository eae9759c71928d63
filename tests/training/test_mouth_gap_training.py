"""Training the mouth-gap nets: they follow the clips' mouths; the model file gets their lip geometry."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from conftest import HELD_OUT_CLIPS
from facecast.dataset.cache import clip_audio, load_clip
from facecast.evaluation.motion_quality import pearson
from facecast.motion import EXPRESSION_CHANNELS, resample_frames
from facecast.speech.learned import FPS, WEIGHTS_PATH, LearnedMotion, frame_audio
from facecast.speech.mouth_gap import GAP_GEOMETRY_KEY, LIVE_LOOKAHEAD, MouthGap
from facecast.training import mouth_gap
from facecast.training.mouth_gap import gap_per_coefficient, store_geometry, train_nets


def _frame_audio(rel: str, dataset: tuple[Path, Path]) -> tuple[np.ndarray, dict]:
    data, cache = dataset
    clip = load_clip(rel, cache)
    frames = len(resample_frames(np.asarray(clip["head"], np.float32), float(clip["fps"]), FPS))
    return frame_audio(clip_audio(clip, "logmel", data, cache), frames, "logmel"), clip


def test_training_follows_the_mouth_of_the_clips_it_learns(held_out_dataset: tuple[Path, Path]) -> None:
    """A few hundred steps on three GRID clips: the predicted gap follows their real mouths, and the in-speech
    closure output rises where their lips shut between open frames (the b, p, m of "bin", "place")."""
    data, cache = held_out_dataset
    clips = [load_clip(rel, cache) for rel in HELD_OUT_CLIPS[:3]]
    state = train_nets(clips, LIVE_LOOKAHEAD, steps=150, seeds=(0,), batch=16, data_dir=data, cache=cache,
                       progress=lambda line: None)
    net = MouthGap(state, gap_per_coefficient())
    r, inside, labelled = [], [], []
    for rel, clip in zip(HELD_OUT_CLIPS[:3], clips):
        audio, _ = _frame_audio(rel, held_out_dataset)
        real = resample_frames(clip["mouth_opening"][:, None].astype(np.float32), float(clip["fps"]), FPS,
                               count=len(audio))[:, 0]
        gap, _, closure = net.predict(audio)
        r.append(pearson(gap, real))
        inside.append(closure)
        labelled.append(mouth_gap._clip_targets(clip, data, cache)[3] > 0)
    assert np.mean(r) > 0.5, r
    closure, labels = np.concatenate(inside), np.concatenate(labelled)
    assert 0 < labels.mean() < 0.3
    assert closure[labels].mean() > closure[~labels].mean() + 0.1, (closure[labels].mean(), closure[~labels].mean())


def test_the_train_command_refuses_a_missing_model_at_once(tmp_path: Path) -> None:
    """One line and exit 1 before any training (it once trained for 14 minutes, then failed to save)."""
    result = subprocess.run([sys.executable, "-m", "facecast.training", "mouth-gap", "train", "--model",
                             str(tmp_path / "none.pt")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "step" not in result.stdout          # nothing trained
    assert result.stderr.strip().count("\n") == 0 and "not found" in result.stderr


def test_model_files_keep_the_lip_geometry_training_measures(tiny_model: Path, tmp_path: Path) -> None:
    """The lip geometry `MouthGap.apply` sets the jaw by is measured on the face model at training time and stored
    beside the nets: the shipped file's is exactly what training measures now (so its motion is unchanged);
    `store-geometry` adds it to a model file made before, changing nothing else."""
    geometry = gap_per_coefficient()
    assert geometry[EXPRESSION_CHANNELS.index("jawOpen")] > 0.2 and geometry.dtype == np.float64
    shipped = torch.load(WEIGHTS_PATH, weights_only=True)
    # equal to float64 rounding: numpy/OpenCV builds differ in the last bits of the near-zero entries (~1e-23)
    np.testing.assert_allclose(shipped[GAP_GEOMETRY_KEY].numpy(), geometry, rtol=1e-12, atol=1e-15)
    assert np.array_equal(torch.load(tiny_model, weights_only=True)[GAP_GEOMETRY_KEY].numpy(), geometry)
    old = {key: value for key, value in shipped.items() if key != GAP_GEOMETRY_KEY}
    torch.save(old, tmp_path / "old.pt")
    result = subprocess.run([sys.executable, "-m", "facecast.training", "mouth-gap", "store-geometry", "--model",
                             str(tmp_path / "old.pt")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    restored = torch.load(tmp_path / "old.pt", weights_only=True)
    assert set(restored) == set(shipped) and np.array_equal(restored[GAP_GEOMETRY_KEY].numpy(), geometry)
    assert all(torch.equal(restored["model"][k], v) for k, v in shipped["model"].items())
    shutil.copy2(tmp_path / "old.pt", tmp_path / "again.pt")
    assert np.array_equal(store_geometry(tmp_path / "again.pt"), geometry)
    assert set(LearnedMotion(tmp_path / "again.pt").mouth) == {2, 14}
