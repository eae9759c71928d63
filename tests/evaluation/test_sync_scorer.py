"""The lip-sync scorer: features and the SyncNet protocol on held-out speakers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import HELD_OUT_CLIPS
from facecast.dataset.cache import load_clip
from facecast.errors import FacecastError
from facecast.evaluation.sync_scorer import (
    FPS,
    HOPS_PER_FRAME,
    MAX_OFFSET,
    SyncScorer,
    delay_audio,
    lip_track,
    validate,
)


@pytest.fixture(scope="module")
def held_out(held_out_dataset: tuple[Path, Path]) -> list[dict[str, np.ndarray]]:
    return [load_clip(rel, held_out_dataset[1]) for rel in HELD_OUT_CLIPS]


@pytest.fixture(scope="module")
def scorer() -> SyncScorer:
    return SyncScorer()


def test_mouth_tracks_are_resampled_to_25_fps_keeping_time() -> None:
    t30 = np.arange(90) / 30.0
    lips = np.zeros((90, 40, 2), np.float32)
    lips[:, 5, 1] = np.sin(2 * np.pi * t30)  # one point moving at 1 Hz
    track, ok = lip_track(lips, np.ones(90, bool), 30.0)
    assert len(track) == 75 and ok.all()
    t25 = np.arange(75) / FPS
    moved = track[:, 5 * 2 + 1]
    assert np.corrcoef(moved, np.sin(2 * np.pi * t25))[0, 1] > 0.999


def test_delaying_audio_moves_its_features_later_by_whole_frames() -> None:
    audio = np.zeros((200, 8), np.float32)
    audio[:, 0] = -60.0
    audio[100, 0] = -10.0
    assert np.argmax(delay_audio(audio, 10)[:, 0]) == 100 + 10 * HOPS_PER_FRAME
    assert np.argmax(delay_audio(audio, -10)[:, 0]) == 100 - 10 * HOPS_PER_FRAME
    assert len(delay_audio(audio, 10)) == len(audio)


def test_the_shipped_scorer_finds_sync_and_shifts_on_unseen_speakers(scorer: SyncScorer,
                                                                      held_out: list[dict[str, np.ndarray]]) -> None:
    report = validate(scorer, held_out)
    assert report.clips == len(HELD_OUT_CLIPS)
    assert report.real_confidence > report.mismatched_confidence
    assert report.real_beats_mismatched >= 0.75
    assert report.offset_zero >= 0.75
    assert report.shift_found >= 0.75


def test_score_reports_every_offset_and_the_minimum(scorer: SyncScorer, held_out: list[dict[str, np.ndarray]]) -> None:
    score = scorer.score_clip(held_out[0])
    assert score.distances.shape == (2 * MAX_OFFSET + 1,)
    assert score.min_distance == pytest.approx(score.distances.min())
    assert score.offsets[np.argmin(score.distances)] == score.offset
    assert score.confidence == pytest.approx(np.median(score.distances) - score.distances.min())


def test_a_clip_without_a_face_cannot_be_scored(scorer: SyncScorer, held_out: list[dict[str, np.ndarray]]) -> None:
    clip = held_out[0]
    with pytest.raises(FacecastError, match="no frame with the face"):
        scorer.score(clip["lips"], np.zeros(len(clip["found"]), bool), float(clip["fps"]), clip["audio"])


def test_missing_weights_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FacecastError, match="weights not found"):
        SyncScorer(tmp_path / "nothing.pt")
