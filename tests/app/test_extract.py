"""`facecast extract`: the face's motion with the visemes and voice level of the video's audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facecast.app.extract import extract_with_voice
from facecast.motion import VISEMES


def test_audio_track_gives_visemes_and_voice(shared_data: Path) -> None:
    result = extract_with_voice(shared_data / "talking" / "grid_s4" / "bbaf2a.mp4")
    assert result.visemes.shape == (75, len(VISEMES)) and np.allclose(result.visemes.sum(1), 1.0, atol=1e-4)
    assert result.voice[:10].max() < 0.2 and result.voice.max() > 0.5   # silence first, then speech
