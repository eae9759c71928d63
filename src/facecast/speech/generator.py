"""Speech -> motion generators behind one interface and one factory.

Why: `facecast render`, `facecast motion`, `facecast live` and the quality
benchmark each need "the generator called NAME"; picking and building it in one
place keeps their choices, defaults and model files the same everywhere.

Every generator takes 16 kHz mono blocks as they arrive (`push`, with their
capture time when live) and returns the frames that became final; `finish`
returns the rest. Streaming generators (`rule`, and `learned` streamed with an
80 ms lookahead, `learned_stream`) emit frames as the audio comes; offline, the
learned model hears each whole 1 s window before generating it
(`learned.LearnedClipGenerator`): given the audio file (`clip`), its frames
stream too (some seconds behind the audio); otherwise all come from `finish`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Protocol

import numpy as np

from facecast.errors import InputError
from facecast.media import iter_mono_blocks
from facecast.motion import MotionFrame
from facecast.speech.audio_features import offline_blocks
from facecast.speech.learned import WEIGHTS_PATH, LearnedClipGenerator, clip_loud_level, load
from facecast.speech.learned_stream import LearnedMotionGenerator
from facecast.speech.rule import RuleMotionGenerator
from facecast.speech.steady import SteadyHead

#: Speech -> motion: the rule-based generator or the learned diffusion model (`learned`).
GENERATOR_CHOICES = ("rule", "learned")
#: The learned model: on the quality benchmark it follows real mouths better (r 0.61 vs 0.29) and moves the
#: head about as fast as real speakers (README: Measuring motion); live uses it too.
DEFAULT_GENERATOR = "learned"


class MotionGenerator(Protocol):
    """What render, the live daemon and the benchmarks drive."""

    SAMPLE_RATE: int            # of the samples `push` takes (16 kHz mono)
    fps: float                  # output frames per second
    lookahead_s: float          # how far past a frame's time the audio is heard before the frame is final
    processing_s: float         # compute per frame after its audio (the live daemon schedules frames by it)

    def push(self, samples: np.ndarray, capture_time: float | None = None) -> list[MotionFrame]:
        """Feed the next block of samples; return the frames that became final."""
        ...

    def finish(self) -> Iterable[MotionFrame]:
        """End of input: the remaining frames (lazily for the offline learned model)."""
        ...


def make_generator(name: str, fps: float = 25.0, seed: int = 0, model_path: Path | str | None = None,
                   streaming: bool = True, frames: int | None = None, clip: Path | None = None,
                   voice_gate: bool = True, latency: str = "low") -> MotionGenerator:
    """The generator called `name` (GENERATOR_CHOICES) at `fps`, random choices seeded by `seed`.

    `model_path`: the learned model's weights (default: the shipped model; the rule generator has none).
    `streaming`: frames as the audio comes (live); False: the learned model over whole windows (render,
    `facecast motion`), which the rule generator does not need. `frames` (offline only): exactly this many
    frames, the learned model generating them all (audio past the end is silence) and the rule generator's
    cut or its last one held; default: as many as the audio lasts. `clip` (offline only): the audio file the
    blocks will come from, read ahead once (a fraction of a second per minute) for the learned model's loud
    level so its frames stream from the first seconds instead of all coming at the end. `voice_gate`: the mouth
    stays shut on sound that is not a voice (`voice_gate`; off for singing or for comparisons). `latency` (the
    learned model streamed): "low" or "sync" (`learned_stream.LATENCIES`: the mouth as offline, about 1.7 s
    behind the voice). Every
    generator's head leaves through `steady.SteadyHead` (a causal low-pass: real people's head jitter, the head
    65 ms behind slow motion at 25 fps)."""
    if name not in GENERATOR_CHOICES:
        raise InputError(f"unknown generator {name!r}: choose one of {', '.join(GENERATOR_CHOICES)}")
    if frames is not None and streaming:
        raise ValueError("frames= is for offline generation (streaming=False)")
    if latency != "low" and (name != "learned" or not streaming):
        raise InputError(f"--latency {latency} is for the learned generator streamed live (use --latency low)")
    path = Path(model_path) if model_path is not None else WEIGHTS_PATH
    if name == "learned":
        if streaming:
            return SteadyHead(LearnedMotionGenerator(fps=fps, seed=seed, path=path, voice_gate=voice_gate,
                                                     latency=latency))
        loud = None
        if clip is not None and load(path).features == "logmel":
            loud = clip_loud_level(iter_mono_blocks(clip))
        return SteadyHead(LearnedClipGenerator(fps=fps, seed=seed, path=path, frames=frames, loud=loud,
                                               voice_gate=voice_gate))
    rule = SteadyHead(RuleMotionGenerator(fps=fps, seed=seed, voice_gate=voice_gate))
    return rule if frames is None else _ExactLength(rule, frames)


def generate_offline(generator: MotionGenerator, chunks: Iterable[np.ndarray]) -> Iterator[MotionFrame]:
    """Every frame of a finite stream of 16 kHz mono chunks, lazily (long chunks pushed in bounded blocks)."""
    for block in offline_blocks(chunks):
        yield from generator.push(block)
    yield from generator.finish()


def exactly(frames: Iterable[MotionFrame], fps: float, count: int) -> Iterator[MotionFrame]:
    """`count` frames: the first `count` of `frames`, then the last one held (`held`): a video's frame count
    from a generator that stops with its audio."""
    made, last = 0, None
    for frame in frames:
        if made == count:
            return
        yield frame
        made, last = made + 1, frame
    while made < count:
        last = held(last, made, fps)
        yield last
        made += 1


def held(last: MotionFrame | None, index: int, fps: float) -> MotionFrame:
    """Frame `index` with `last`'s head, gaze, blinks and expressions (a face at rest without one)."""
    last = last or MotionFrame(t=0.0)
    return MotionFrame(t=index / fps, head=last.head, gaze=last.gaze, blink=last.blink,
                       expressions=dict(last.expressions))


class _ExactLength:
    """A streaming generator's frames, offline, cut to or held up to exactly `frames` (as `exactly`)."""

    def __init__(self, generator: MotionGenerator, frames: int) -> None:
        self._generator = generator
        self.SAMPLE_RATE, self.fps = generator.SAMPLE_RATE, generator.fps
        self.lookahead_s, self.processing_s = generator.lookahead_s, generator.processing_s
        self._frames = frames
        self._count = 0
        self._last: MotionFrame | None = None

    def push(self, samples: np.ndarray, capture_time: float | None = None) -> list[MotionFrame]:
        return self._keep(self._generator.push(samples, capture_time))

    def finish(self) -> list[MotionFrame]:
        out = self._keep(self._generator.finish())
        while self._count < self._frames:
            self._last = held(self._last, self._count, self.fps)
            out.append(self._last)
            self._count += 1
        return out

    def _keep(self, frames: Iterable[MotionFrame]) -> list[MotionFrame]:
        out = list(frames)[: max(0, self._frames - self._count)]
        if out:
            self._last = out[-1]
        self._count += len(out)
        return out
