"""The learned model streamed for live use: bounded lookahead, any block size and fps, real capture times."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.media import decode_mono
from facecast.speech.learned import FPS
from facecast.speech.learned_stream import CHUNK_FRAMES, LOOKAHEAD_FRAMES, SYNC_UPDATE_FRAMES, LearnedMotionGenerator

SAMPLE_RATE = 16000


def stream(generator: LearnedMotionGenerator, samples: np.ndarray, block: int) -> list:
    """Push `samples` in blocks as if captured in real time (block end = its capture time); then finish."""
    frames = []
    for start in range(0, len(samples), block):
        piece = samples[start:start + block]
        frames += generator.push(piece, capture_time=(start + len(piece)) / SAMPLE_RATE)
    return frames + generator.finish()


@pytest.mark.parametrize("fps", [25.0, 30.0, 60.0])
def test_every_frame_once_with_a_bounded_lookahead(tiny_model: Path, sample_speech: Path, fps: float) -> None:
    speech = decode_mono(sample_speech)[: int(SAMPLE_RATE * 2.3)]
    generator = LearnedMotionGenerator(fps=fps, path=tiny_model)
    assert generator.processing_s > 0                        # measured at start (the daemon schedules by it)
    frames = stream(generator, speech, 160)
    assert len(frames) == round(len(speech) / SAMPLE_RATE * fps)
    assert [round(f.t * fps) for f in frames] == list(range(len(frames)))
    duration = len(speech) / SAMPLE_RATE
    bound = (CHUNK_FRAMES + LOOKAHEAD_FRAMES + 1) / FPS + 1e-6    # its later 25 fps frame's chunk and lookahead
    for frame in frames:
        assert frame.capture_time <= min(frame.t + bound, duration)
        if frame.t <= duration - 1 / FPS:                        # (the last frames hold the final one)
            assert frame.capture_time >= frame.t - 1e-6          # a frame's own audio was heard before it
    captures = [f.capture_time for f in frames]
    assert captures == sorted(captures)
    assert all(0 <= f.expression("jawOpen") <= 1 and 0 <= f.blink.left <= 1 for f in frames)
    assert max(f.voice for f in frames) > 0.3 and max(f.visemes["A"] for f in frames) > 0.1   # for VRM avatars


def test_block_sizes_do_not_change_the_motion(tiny_model: Path, sample_speech: Path) -> None:
    speech = decode_mono(sample_speech)[: SAMPLE_RATE * 2]
    small = stream(LearnedMotionGenerator(fps=30.0, path=tiny_model), speech, 160)
    large = stream(LearnedMotionGenerator(fps=30.0, path=tiny_model), speech, 4801)
    assert len(small) == len(large)
    for a, b in zip(small, large):
        assert a.expressions == pytest.approx(b.expressions, abs=1e-5) and a.head == b.head


def test_frames_come_out_while_audio_arrives(tiny_model: Path, sample_speech: Path) -> None:
    """Live means no waiting for a window: after 0.5 s of audio, the frames up to ~0.5 s - lookahead exist."""
    speech = decode_mono(sample_speech)[: SAMPLE_RATE]
    generator = LearnedMotionGenerator(fps=25.0, path=tiny_model)
    frames = []
    for start in range(0, SAMPLE_RATE // 2, 160):
        frames += generator.push(speech[start:start + 160])
    assert len(frames) >= int(0.5 * FPS) - CHUNK_FRAMES - LOOKAHEAD_FRAMES
    with pytest.raises(RuntimeError):
        generator.finish()
        generator.push(speech[:160])


def test_silence_and_odd_input(tiny_model: Path) -> None:
    generator = LearnedMotionGenerator(fps=30.0, path=tiny_model)
    frames = stream(generator, np.zeros(SAMPLE_RATE), 333)
    assert len(frames) == 30
    nan_block = np.full(800, np.nan)
    frames = stream(LearnedMotionGenerator(fps=30.0, path=tiny_model), nan_block, 800)
    assert len(frames) == 2 and np.isfinite(frames[0].head.yaw)
    assert len(LearnedMotionGenerator(fps=30.0, path=tiny_model).finish()) == 1   # no audio: one still frame
    with pytest.raises(ValueError):
        LearnedMotionGenerator(fps=0.0, path=tiny_model)


def test_the_head_is_smoothed_and_the_mouth_is_not(tiny_model: Path, sample_speech: Path) -> None:
    """Each chunk is sampled afresh, so the raw head shakes between chunks; the output smooths it causally."""
    speech = decode_mono(sample_speech)[: SAMPLE_RATE * 3]
    raw = stream(LearnedMotionGenerator(fps=25.0, path=tiny_model, head_smoothing_s=0.0), speech, 160)
    smooth = stream(LearnedMotionGenerator(fps=25.0, path=tiny_model), speech, 160)

    def head_steps(frames: list) -> float:
        yaw_pitch_roll = np.array([[f.head.yaw, f.head.pitch, f.head.roll] for f in frames])
        return float(np.abs(np.diff(yaw_pitch_roll, axis=0)).sum(1).mean())

    assert head_steps(smooth) < 0.7 * head_steps(raw)
    assert [f.expression("jawOpen") for f in smooth] == pytest.approx([f.expression("jawOpen") for f in raw], abs=1e-6)


def test_sync_latency_streams_every_frame_once_about_a_second_behind(tiny_model: Path, sample_speech: Path) -> None:
    """With sync latency each frame's mouth waits for its batch's lookahead: frames still come out while audio
    arrives, each once, none later than `lookahead_s` after its time, and block sizes change nothing."""
    speech = decode_mono(sample_speech)[: SAMPLE_RATE * 4]
    generator = LearnedMotionGenerator(fps=30.0, path=tiny_model, latency="sync")
    nets = max(generator.model.mouth.values(), key=lambda net: net.lookahead)
    assert generator.lookahead_s == pytest.approx((nets.ahead + SYNC_UPDATE_FRAMES) / FPS)
    assert generator.burst_s == pytest.approx(SYNC_UPDATE_FRAMES / FPS)
    early = []
    for start in range(0, SAMPLE_RATE * 3, 160):
        early += generator.push(speech[start:start + 160], capture_time=(start + 160) / SAMPLE_RATE)
    assert 3.0 - generator.lookahead_s - 0.1 <= len(early) / 30 <= 3.0 - nets.ahead / FPS
    frames = early
    for start in range(SAMPLE_RATE * 3, len(speech), 160):
        frames += generator.push(speech[start:start + 160], capture_time=(start + 160) / SAMPLE_RATE)
    frames += generator.finish()
    assert [round(f.t * 30) for f in frames] == list(range(round(len(speech) / SAMPLE_RATE * 30)))
    for frame in frames[:-int(generator.lookahead_s * 30)]:
        assert frame.t + nets.ahead / FPS - 1e-6 <= frame.capture_time <= frame.t + generator.lookahead_s + 2 / FPS
    whole = stream(LearnedMotionGenerator(fps=30.0, path=tiny_model, latency="sync"), speech, len(speech))
    odd = stream(LearnedMotionGenerator(fps=30.0, path=tiny_model, latency="sync"), speech, 4801)
    for a, b, c in zip(frames, whole, odd):
        assert a.expressions == pytest.approx(b.expressions, abs=1e-5) == c.expressions
    with pytest.raises(ValueError, match="latency"):
        LearnedMotionGenerator(fps=30.0, path=tiny_model, latency="fast")


def test_sync_latency_moves_the_mouth_as_a_render_does(shared_data: Path) -> None:
    """On a held-out speaker's voice (never trained on) the sync stream's jaw follows the offline render's (the
    nets that hear Whisper) where the low-latency stream's log-mel nets do not (measured: r 0.76 against 0.37);
    and both open the lips about as wide as the render (the low-latency nets' LIVE_MOUTH_GAIN: without it
    0.77 of the render's, measured)."""
    from facecast.evaluation.motion_quality import pearson
    from facecast.motion import EXPRESSION_CHANNELS
    from facecast.speech.generator import generate_offline, make_generator
    from facecast.speech.learned import WEIGHTS_PATH, read_model
    from facecast.speech.mouth_gap import GAP_GEOMETRY_KEY, rendered_gap

    per_coefficient = read_model(WEIGHTS_PATH)[GAP_GEOMETRY_KEY].numpy()

    def gap(frames: list) -> np.ndarray:
        return rendered_gap(np.array([[f.expression(n) for n in EXPRESSION_CHANNELS] for f in frames]),
                            per_coefficient)

    speech = decode_mono(shared_data / "talking" / "wild" / "styletalk_feifeili_clip1.mp4")[: SAMPLE_RATE * 8]
    offline = list(generate_offline(make_generator("learned", fps=25.0, streaming=False), [speech]))
    streamed = {latency: stream(LearnedMotionGenerator(fps=25.0, latency=latency), speech, 160)
                for latency in ("low", "sync")}
    jaw = {latency: [f.expression("jawOpen") for f in frames] for latency, frames in streamed.items()}
    offline_jaw = [f.expression("jawOpen") for f in offline]
    assert pearson(jaw["sync"], offline_jaw) > 0.65 > 0.5 > pearson(jaw["low"], offline_jaw)
    for latency, frames in streamed.items():
        width = np.percentile(gap(frames), 90) / np.percentile(gap(offline), 90)
        assert 0.85 < width < 1.2, (latency, width)
