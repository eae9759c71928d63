"""One generator factory: every name and mode, the offline learned path, exact lengths, unknown names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.errors import InputError
from facecast.media import decode_mono, iter_mono_blocks
from facecast.speech.generator import DEFAULT_GENERATOR, GENERATOR_CHOICES, exactly, generate_offline, make_generator
from facecast.speech.learned import (
    LearnedClipGenerator,
    generate_frames,
    learned_motion,
    load,
    offline_states,
    speech_features,
)
from facecast.speech.learned_stream import LearnedMotionGenerator
from facecast.speech.rule import RuleMotionGenerator
from facecast.speech.steady import SteadyHead, steady_frames
from facecast.speech.voice import voice_frames

SAMPLE_RATE = 16000


def _motion(frame) -> tuple:
    """A frame without its visemes and voice level (what the learned model itself makes)."""
    return frame.t, frame.head, frame.gaze, frame.blink, frame.expressions


@pytest.mark.parametrize(("name", "streaming", "kind"), [
    ("rule", True, RuleMotionGenerator), ("rule", False, RuleMotionGenerator),
    ("learned", True, LearnedMotionGenerator), ("learned", False, LearnedClipGenerator),
])
def test_every_name_and_mode_makes_its_generator(sample_speech: Path, name: str, streaming: bool, kind: type) -> None:
    speech = decode_mono(sample_speech)[: SAMPLE_RATE * 2]
    generator = make_generator(name, fps=30.0, seed=1, streaming=streaming)
    assert isinstance(generator, SteadyHead) and isinstance(generator.generator, kind)
    assert generator.fps == 30.0 and generator.SAMPLE_RATE == SAMPLE_RATE
    assert generator.lookahead_s > 0 and generator.processing_s >= 0
    frames = list(generate_offline(generator, [speech]))
    assert [round(f.t * 30.0) for f in frames] == list(range(60))
    assert frames[-1].visemes.keys() == frames[0].visemes.keys() and 0.0 <= frames[-1].voice <= 1.0
    assert GENERATOR_CHOICES == ("rule", "learned") and DEFAULT_GENERATOR in GENERATOR_CHOICES


def test_an_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="unknown generator 'diffusion': choose one of rule, learned"):
        make_generator("diffusion")
    with pytest.raises(ValueError, match="offline"):
        make_generator("rule", frames=10)


def test_offline_learned_is_the_whole_clip_model_with_the_voice_analysis(sample_speech: Path) -> None:
    """`facecast render` / `motion` with the learned model: the same frames as generating from the whole clip's
    log-mel and Whisper states at once (with the steadied head), with visemes and voice level from the voice
    analysis; exactly `frames` when asked. (The voice gate, which shuts the mouth in the sample's pauses, is tested
    on its own.)"""
    samples = decode_mono(sample_speech)[: SAMPLE_RATE * 3]
    generator = make_generator("learned", fps=25.0, seed=3, streaming=False, voice_gate=False)
    assert all(generator.push(block) == [] for block in iter_mono_blocks(sample_speech))   # all frames at the end
    frames = list(generator.finish())
    everything = np.concatenate(list(iter_mono_blocks(sample_speech)))
    total = round(len(everything) / SAMPLE_RATE * 25)
    states = offline_states(load(), everything)           # what the offline mouth-gap nets hear beside log-mel
    whole = list(steady_frames(generate_frames(speech_features(everything, "logmel"), 25.0, total, seed=3,
                                               states=states), 25.0))
    assert len(frames) == total and [_motion(f) for f in frames] == [_motion(f) for f in whole]
    voices = list(voice_frames([everything], 25.0))[:total]
    assert [f.visemes for f in frames] == [pytest.approx(v.visemes, abs=1e-6) for v in voices]
    assert list(generator.finish()) == []
    exact = make_generator("learned", fps=30.0, streaming=False, frames=61, voice_gate=False)
    made = exact.push(samples) + list(exact.finish())
    assert [_motion(f) for f in made] == [_motion(f) for f in steady_frames(learned_motion(samples, 30.0, 61), 30.0)]


def test_a_render_streams_the_same_frames_across_whispers_windows(sample_speech: Path, tmp_path: Path) -> None:
    """`facecast render` reads the file ahead for its loud level and streams frames as the audio comes
    (`make_generator(clip=...)`); over a recording longer than Whisper's 30 s window, pushed in blocks of any size,
    it gives the frames generating from the whole recording gives."""
    from conftest import write_audio

    speech = decode_mono(sample_speech)
    long = np.concatenate([speech] * int(np.ceil(33 * SAMPLE_RATE / len(speech))))[: 33 * SAMPLE_RATE]
    clip = write_audio(tmp_path / "long.flac", long, SAMPLE_RATE)
    samples = decode_mono(clip)
    generator = make_generator("learned", fps=25.0, streaming=False, clip=clip, voice_gate=False)
    rng, made, at = np.random.default_rng(1), [], 0
    while at < len(samples):
        size = int(rng.integers(100, 3 * SAMPLE_RATE))
        made += generator.push(samples[at: at + size])
        at += size
    made += list(generator.finish())
    total = round(len(samples) / SAMPLE_RATE * 25)
    whole = steady_frames(learned_motion(samples, 25.0, total), 25.0)
    assert len(made) == total and [_motion(f) for f in made] == [_motion(f) for f in whole]


def test_offline_rule_frames_are_cut_or_held_to_an_exact_length(sample_speech: Path) -> None:
    samples = decode_mono(sample_speech)[: SAMPLE_RATE]
    own = RuleMotionGenerator(fps=25.0, seed=2)
    natural = list(steady_frames(own.push(samples) + own.finish(), 25.0))
    for count in (10, len(natural), len(natural) + 7):
        generator = make_generator("rule", fps=25.0, seed=2, streaming=False, frames=count)
        made = generator.push(samples) + generator.finish()
        assert made == list(exactly(natural, 25.0, count))
        assert len(made) == count and [f.t for f in made] == [i / 25.0 for i in range(count)]
    assert made[-1].head == natural[-1].head and made[-1].expressions == natural[-1].expressions
