"""Both generators blink as people do while talking (10-25 a minute), through the factory render and live use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.evaluation.motion_quality import blinks_per_minute, motion_head_and_blink
from facecast.media import decode_mono
from facecast.speech.generator import make_generator

FPS = 25.0


@pytest.mark.parametrize("name", ["rule", "learned"])
def test_generated_speech_blinks_at_a_plausible_rate(sample_speech: Path, name: str) -> None:
    speech = np.tile(decode_mono(sample_speech), 2)   # 24 s of talking
    generator = make_generator(name, fps=FPS, seed=0, streaming=False, frames=int(len(speech) / 16000 * FPS))
    frames = generator.push(speech) + list(generator.finish())
    _, blink = motion_head_and_blink(frames)
    assert 8.0 <= blinks_per_minute(blink, FPS) <= 30.0
    assert blink.max() > 0.95   # and they shut the eyes
