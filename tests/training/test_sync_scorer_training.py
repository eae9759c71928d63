"""Training the lip-sync scorer: it runs and writes weights the scorer loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import HELD_OUT_CLIPS
from facecast.dataset.cache import load_clip
from facecast.evaluation.sync_scorer import SyncScorer, build_model
from facecast.training.sync_scorer import train


@pytest.fixture(scope="module")
def held_out(held_out_dataset: tuple[Path, Path]) -> list[dict[str, np.ndarray]]:
    return [load_clip(rel, held_out_dataset[1]) for rel in HELD_OUT_CLIPS]


def test_training_runs_and_writes_loadable_weights(held_out: list[dict[str, np.ndarray]], tmp_path: Path) -> None:
    out = tmp_path / "scorer.pt"
    result = train(minutes=0.1, batch=32, clips=held_out, out=out, log_every=10**9)
    assert result["steps"] > 5 and np.isfinite(result["loss"])
    trained = SyncScorer(out)
    fresh = build_model()
    assert any(not np.allclose(a.detach().numpy(), b.detach().numpy())
               for a, b in zip(trained.model.parameters(), fresh.parameters()))
    assert np.isfinite(trained.score_clip(held_out[0]).confidence)
