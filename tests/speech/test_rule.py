"""RuleMotionGenerator on real speech: streaming = offline, frame timing, and motion that matches the audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.evaluation.motion_quality import head_motion
from facecast.motion import ARKIT_BLENDSHAPES, VISEMES, MotionFrame
from facecast.speech.rule import MOUTH_GAIN, RuleMotionGenerator, generate_motion
from facecast.speech.voice import JAW_MAX

av = pytest.importorskip("av")

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
GRID = DATA / "talking" / "grid_s1"
ENGLISH = DATA / "audio" / "musetalk_eng.flac"
SR = RuleMotionGenerator.SAMPLE_RATE
BILABIAL_WORDS = {"bin", "blue", "by", "place", "please", "b", "p", "m"}


def _decode(path: Path) -> np.ndarray:
    if not path.exists():
        pytest.skip(f"test audio {path} is missing")
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SR)
        out = [f.to_ndarray().reshape(-1) for frame in container.decode(audio=0) for f in resampler.resample(frame)]
        out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out)


def _align(name: str) -> list[tuple[float, float, str]]:
    path = GRID / "align" / f"{name}.align"
    if not path.exists():
        pytest.skip(f"alignment {path} is missing")
    words = []
    for line in path.read_text().split("\n"):
        if line.strip():
            start, end, word = line.split()
            words.append((int(start) / 25000, int(end) / 25000, word))
    return words


def _stream(audio: np.ndarray, sizes: list[int], fps: float = 25.0, seed: int = 0) -> list[MotionFrame]:
    gen = RuleMotionGenerator(fps=fps, seed=seed)
    frames, pos, i = [], 0, 0
    while pos < len(audio):
        size = sizes[i % len(sizes)]
        frames += gen.push(audio[pos : pos + size])
        pos += size
        i += 1
    return frames + gen.finish()


def _vector(frame: MotionFrame) -> np.ndarray:
    values = [frame.t, *vars(frame.head).values(), *vars(frame.gaze).values(), *vars(frame.blink).values(),
              frame.voice, *(frame.arkit()[n] for n in ARKIT_BLENDSHAPES), *(frame.visemes[v] for v in VISEMES)]
    return np.array(values)


def _matrix(frames: list[MotionFrame]) -> np.ndarray:
    return np.stack([_vector(f) for f in frames])


def _expr(frames: list[MotionFrame], name: str) -> np.ndarray:
    return np.array([f.expression(name) for f in frames])


@pytest.fixture(scope="module")
def english() -> np.ndarray:
    return _decode(ENGLISH)


@pytest.fixture(scope="module")
def grid_clips() -> list[tuple[np.ndarray, list[tuple[float, float, str]]]]:
    paths = sorted(GRID.glob("*.mp4"))[:40]
    if not paths:
        pytest.skip(f"no GRID clips in {GRID}")
    return [(_decode(p), _align(p.stem)) for p in paths]


def test_block_size_invariance(english: np.ndarray) -> None:
    audio = english[: 8 * SR]
    reference = _matrix(_stream(audio, [len(audio)]))
    for sizes in ([160], [512], [1024], [4800], [1, 7, 333, 4000, 160, 2]):
        got = _matrix(_stream(audio, sizes))
        assert got.shape == reference.shape, sizes
        assert np.abs(got - reference).max() < 1e-6, sizes


def test_one_sample_pushes(english: np.ndarray) -> None:
    audio = english[2 * SR : 2 * SR + SR // 2]  # one sample per push is slow in Python: half a second
    got = _matrix(_stream(audio, [1]))
    assert np.abs(got - _matrix(_stream(audio, [len(audio)]))).max() < 1e-6
    assert len(got) == round(len(audio) / SR * 25)


def test_block_size_invariance_at_60_fps(english: np.ndarray) -> None:
    # Frames fall between hops at 60 fps (interpolated states): still independent of blocks.
    audio = english[SR : 4 * SR]
    reference = _matrix(_stream(audio, [len(audio)], fps=60.0, seed=5))
    for sizes in ([160], [999], [37, 4096, 1]):
        assert np.abs(_matrix(_stream(audio, sizes, fps=60.0, seed=5)) - reference).max() < 1e-6, sizes


@pytest.mark.parametrize("name", ["dreamtalk_German1", "dreamtalk_french1", "dreamtalk_japan1",
                                  "dreamtalk_korean1", "dreamtalk_chinese1_haierlizhi", "dreamtalk_spanish1",
                                  "dreamtalk_italian1"])
def test_any_language_moves_the_mouth(name: str) -> None:
    frames = _stream(_decode(DATA / "audio" / f"{name}.flac"), [1024])
    jaw = _expr(frames, "jawOpen")
    speaking = np.array([1.0 - f.visemes["sil"] for f in frames])
    assert 0.25 < np.mean(speaking > 0.5) < 0.98  # speech detected, pauses too
    # the voice gate shuts visemes with the mouth, so "speaking" is the surer speech (Japanese: mean jaw 0.50)
    assert 0.1 < jaw[speaking > 0.5].mean() < 0.55
    assert jaw[speaking > 0.5].mean() > 3 * jaw[speaking < 0.1].mean()
    # The mouth follows syllables (several open/close swings per second), not loudness alone.
    swings = np.sum(np.abs(np.diff(np.sign(np.diff(jaw)))) > 0) / (len(jaw) / 25)
    assert 2.0 < swings < 12.0


def test_female_voice() -> None:
    paths = sorted((DATA / "talking" / "grid_s4").glob("*.mp4"))[:10]
    if not paths:
        pytest.skip("no grid_s4 clips")
    frames = _stream(np.concatenate([_decode(p) for p in paths]), [2048])
    jaw = _expr(frames, "jawOpen")
    assert np.percentile(jaw, 90) > 0.3 and np.percentile(jaw, 20) < 0.05
    # not wider than real speakers': a 90th percentile of 0.57 rendered mouths twice as wide (quality benchmark)
    assert np.percentile(jaw, 90) < 0.45
    vowels = np.array([[f.visemes[v] for v in VISEMES[1:]] for f in frames]).sum(axis=0)
    assert (vowels > 0.05 * vowels.sum()).sum() >= 3


def test_generate_motion_matches_streaming(english: np.ndarray) -> None:
    audio = english[: 5 * SR]
    offline = list(generate_motion(iter([audio[:1000], audio[1000:]]), fps=30.0, seed=3))
    live = _stream(audio, [512], fps=30.0, seed=3)
    assert np.abs(_matrix(offline) - _matrix(live)).max() < 1e-6


@pytest.mark.parametrize("fps", [25.0, 30.0, 60.0])
@pytest.mark.parametrize("seconds", [0.0, 0.01, 0.5, 1.234, 3.0])
def test_frame_count_and_times(fps: float, seconds: float) -> None:
    audio = np.zeros(round(seconds * SR), dtype=np.float32)
    frames = _stream(audio, [777], fps=fps) if len(audio) else RuleMotionGenerator(fps).finish()
    assert len(frames) == max(1, round(len(audio) / SR * fps))
    assert [f.t for f in frames] == pytest.approx([i / fps for i in range(len(frames))])


def test_seed_determinism(english: np.ndarray) -> None:
    audio = english[: 6 * SR]
    a = _matrix(_stream(audio, [1024], seed=7))
    b = _matrix(_stream(audio, [1024], seed=7))
    c = _matrix(_stream(audio, [1024], seed=8))
    assert np.array_equal(a, b)
    assert np.abs(a - c).max() > 0.1


def test_values_in_range_and_visemes_sum_to_one(english: np.ndarray) -> None:
    frames = _stream(english[: 20 * SR], [4800])
    for f in frames:
        assert all(0.0 <= v <= 1.0 for v in f.expressions.values())
        assert 0.0 <= f.blink.left <= 1.0 and 0.0 <= f.blink.right <= 1.0
        assert 0.0 <= f.voice <= 1.0
        assert all(0.0 <= v <= 1.0 for v in f.visemes.values())
        assert sum(f.visemes.values()) == pytest.approx(1.0, abs=1e-9)
    jaw = _expr(frames, "jawOpen")
    assert jaw.max() > 0.3  # the mouth really opens in speech
    vowels = np.array([[f.visemes[v] for v in VISEMES[1:]] for f in frames]).sum(axis=0)
    assert (vowels > 0.03 * vowels.sum()).sum() >= 4  # not stuck on one vowel


def test_silence_is_a_calm_living_idle() -> None:
    frames = _stream(np.zeros(60 * SR, dtype=np.float32), [SR])
    jaw = _expr(frames, "jawOpen")
    assert jaw.max() < 0.02 and _expr(frames, "mouthClose").max() < 0.02
    assert all(f.visemes["sil"] > 0.99 for f in frames)
    yaw = np.array([f.head.yaw for f in frames])
    pitch = np.array([f.head.pitch for f in frames])
    assert 0.2 < yaw.std() < 4.0 and 0.1 < pitch.std() < 3.0  # alive but calm
    assert np.abs(np.diff(yaw)).max() < 1.0  # no jumps (a turning head reaches ~25 degrees/s: 1 per frame)
    blink = np.array([f.blink.left for f in frames])
    blinks = np.sum((blink[1:] > 0.5) & (blink[:-1] <= 0.5))
    assert 5 <= blinks <= 35
    assert blink.max() > 0.95  # blinks close the eyes fully


def test_speech_blinks_and_head_motion(english: np.ndarray) -> None:
    frames = _stream(english, [SR])
    minutes = len(frames) / 25 / 60
    blink = np.array([f.blink.left for f in frames])
    assert 8 <= np.sum((blink[1:] > 0.5) & (blink[:-1] <= 0.5)) / minutes <= 28
    yaw = np.array([f.head.yaw for f in frames])
    pitch = np.array([f.head.pitch for f in frames])
    # a minute of talk: real speakers' heads spread ~4 degrees per axis within 10 s clips (quality benchmark)
    assert 1.0 < yaw.std() < 10.0 and 0.7 < pitch.std() < 6.0
    # no shaking: real speakers' heads turn 14.3 degrees/s (0.57 per frame at 25 fps, all three axes together)
    assert np.abs(np.diff(yaw)).mean() < 0.6 and np.abs(np.diff(pitch)).mean() < 0.6
    gaze = np.array([abs(f.gaze.yaw) for f in frames])
    assert 0.0 < np.mean(gaze > 4.0) < 0.3  # mostly at the camera, some glances


def test_jaw_follows_words_and_closes_on_bilabials(grid_clips) -> None:
    word_jaw, sil_jaw, onset_close, middle_close = [], [], [], []
    for audio, words in grid_clips:
        frames = _stream(audio, [640])
        t = np.arange(len(frames)) / 25
        jaw, close = _expr(frames, "jawOpen"), _expr(frames, "mouthClose")
        for start, end, word in words:
            inside = (t >= start) & (t < end)
            if word == "sil":
                sil_jaw += list(jaw[(t >= start + 0.1) & (t < end - 0.1)])
                continue
            word_jaw += list(jaw[inside])
            middle = (t >= start + 0.35 * (end - start)) & (t < start + 0.65 * (end - start))
            middle_close += list(close[middle])
            if word in BILABIAL_WORDS:
                onset_close.append(close[(t >= start - 0.04) & (t < start + 0.08)].max())
    assert np.mean(word_jaw) > 3 * np.mean(sil_jaw)
    assert np.mean(sil_jaw) < 0.08
    assert len(onset_close) > 20
    assert np.mean(onset_close) > 1.5 * np.mean(middle_close)


OPEN_FRACTION = 0.15  # 'the mouth has started to open': a fraction of the generator's full jaw range


def test_mouth_anticipates_first_word(grid_clips) -> None:
    leads = []
    for audio, words in grid_clips:
        frames = _stream(audio, [SR])
        first = next(start for start, _, word in words if word != "sil")
        jaw = _expr(frames, "jawOpen")
        t = np.arange(len(frames)) / 25
        opening = t[(jaw > OPEN_FRACTION * MOUTH_GAIN * JAW_MAX) & (t > first - 0.5)]
        if len(opening):
            leads.append(first - opening[0])
    assert np.median(leads) > 0.0  # opens before the sound, ...
    assert np.median(leads) <= RuleMotionGenerator().lookahead_s + 0.05  # ... but not long before


def test_capture_time_propagation(english: np.ndarray) -> None:
    audio = english[: 2 * SR]
    gen = RuleMotionGenerator()
    frames, block, clock = [], 480, 100.0
    for pos in range(0, len(audio), block):
        chunk = audio[pos : pos + block]
        end_time = clock + (pos + len(chunk)) / SR
        frames += gen.push(chunk, capture_time=end_time)
    frames += gen.finish()
    assert len(frames) == 50
    for f in frames:
        # The newest sample a frame depends on is at t + lookahead (capped at the end of the audio).
        newest = min(f.t + gen.lookahead_s, len(audio) / SR)
        assert f.capture_time == pytest.approx(clock + newest, abs=0.011)
    assert all(f.capture_time is None for f in _stream(audio, [480]))


def test_speed(english: np.ndarray) -> None:
    import time

    start = time.perf_counter()
    frames = list(generate_motion([english]))
    elapsed = time.perf_counter() - start
    assert len(frames) == round(len(english) / SR * 25)
    assert elapsed < len(english) / SR / 50  # >= 50x real time even on a loaded test machine


def test_the_head_moves_as_much_as_a_real_speakers() -> None:
    """On in-the-wild talk the head turns and spreads like real speakers' (quality benchmark, held-out wild:
    14.3 degrees/s, 4.1 degrees per axis); the rule generator used to ask for 3 degrees/s and 1.1 here."""
    paths = sorted((DATA / "talking" / "wild").glob("*.mp4"))[:12]
    if not paths:
        pytest.skip("no in-the-wild clips")
    speed, spread = zip(*(head_motion(_head(_stream(_decode(p), [SR])), 25.0) for p in paths))
    assert 2.5 < np.mean(spread) < 6.0
    assert 7.0 < np.mean(speed) < 20.0


def _head(frames: list[MotionFrame]) -> np.ndarray:
    return np.array([[f.head.yaw, f.head.pitch, f.head.roll] for f in frames])
