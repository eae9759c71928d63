"""The voice analysis: the visemes and voice level every generator and the dataset share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.media import decode_mono
from facecast.motion import VISEMES, MotionFrame, scale_mouth
from facecast.speech.learned_stream import LearnedMotionGenerator
from facecast.speech.rule import RuleMotionGenerator
from facecast.speech.voice import VoiceAnalyser, VoiceFrame, voice_frames, voice_track


def _gated(voice: VoiceFrame) -> MotionFrame:
    """The visemes and voice level a generator sends for this analysed frame: shut by its voice gate."""
    return scale_mouth(MotionFrame(t=0.0, visemes=voice.visemes, voice=voice.voice), voice.speech)


def test_the_rule_generator_and_the_analyser_agree_frame_by_frame(sample_speech: Path) -> None:
    speech = decode_mono(sample_speech)[: 16000 * 3]
    for fps, block in ((25.0, 160), (30.0, 777), (60.0, 16000 * 3)):
        rule, voice = RuleMotionGenerator(fps=fps, seed=4), VoiceAnalyser(fps=fps)
        frames, voiced = [], []
        for start in range(0, len(speech), block):
            frames += rule.push(speech[start:start + block], capture_time=start / 16000)
            voiced += voice.push(speech[start:start + block], capture_time=start / 16000)
        frames += rule.finish()
        voiced += voice.finish()
        assert [v.index for v in voiced] == list(range(len(frames)))
        assert [f.visemes for f in frames] == [_gated(v).visemes for v in voiced]
        assert [f.voice for f in frames] == [_gated(v).voice for v in voiced]
        assert [f.capture_time for f in frames] == [v.capture_time for v in voiced]
    with pytest.raises(RuntimeError, match="after finish"):
        voice.push(speech[:160])


def test_voice_track_is_the_frames_and_silence_past_the_end(sample_speech: Path) -> None:
    speech = decode_mono(sample_speech)[: 16000 * 2]
    frames = list(voice_frames([speech], 25.0))
    visemes, voice = voice_track([speech[:12345], speech[12345:]], 25.0, len(frames) + 5)
    assert np.array_equal(visemes[: len(frames)], [[f.visemes[n] for n in VISEMES] for f in frames])
    assert np.array_equal(voice[: len(frames)], [f.voice for f in frames])
    assert (visemes[len(frames):, VISEMES.index("sil")] == 1).all() and (voice[len(frames):] == 0).all()
    assert voice.max() > 0.5


def test_the_streamed_learned_model_takes_its_visemes_from_the_analyser(sample_speech: Path) -> None:
    speech = decode_mono(sample_speech)[: 16000 * 2]
    generator = LearnedMotionGenerator(fps=30.0)
    frames = []
    for start in range(0, len(speech), 320):
        frames += generator.push(speech[start:start + 320])
    frames += generator.finish()
    voiced = list(voice_frames([speech], 30.0))
    assert len(frames) == len(voiced) == 60
    assert [f.visemes for f in frames] == [_gated(v).visemes for v in voiced]
    assert [f.voice for f in frames] == [_gated(v).voice for v in voiced]
