"""Shared test fixtures: sample files, the shared data folder, and audio/video makers."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import pytest

os.environ.setdefault("GLOG_minloglevel", "2")
# prepared portraits cached for this session only (`app.portrait_job`), never in the user's cache, and removed
# when the session ends
os.environ["FACECAST_PORTRAIT_CACHE"] = tempfile.mkdtemp(prefix="facecast-portraits-")
atexit.register(shutil.rmtree, os.environ["FACECAST_PORTRAIT_CACHE"], ignore_errors=True)

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def sample_portrait() -> Path:
    return SAMPLES / "mona_lisa.jpg"


@pytest.fixture(scope="session")
def sample_speech() -> Path:
    return SAMPLES / "grid_s1_speech.flac"


@pytest.fixture(scope="session")
def sample_words() -> list[tuple[float, float, str]]:
    rows = [line.split() for line in (SAMPLES / "grid_s1_speech.words.txt").read_text().splitlines() if line.strip()]
    return [(float(a), float(b), w) for a, b, w in rows]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared recordings not found at {SHARED_DATA}")
    return SHARED_DATA


def write_audio(path: Path, samples: np.ndarray, rate: int, codec: str | None = None) -> Path:
    """Encode float samples (n,) or (n, channels) with FFmpeg into `path` (format from its suffix)."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[:, None]
    channels = samples.shape[1]
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
    codec = codec or {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "libmp3lame", ".ogg": "libopus",
                      ".m4a": "aac"}[path.suffix]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        fmt = stream.codec_context.format.name if stream.codec_context.format else "s16"
        resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate,
                                      frame_size=stream.codec_context.frame_size or None)
        if samples.shape[0]:
            # packed float: channels interleaved in one plane
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples).reshape(1, -1), format="flt",
                                               layout=layout)
            frame.sample_rate = rate
            for out in resampler.resample(frame):
                container.mux(stream.encode(out))
        for out in resampler.resample(None):
            container.mux(stream.encode(out))
        container.mux(stream.encode(None))
    return path


def tone_speech(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    """A syllable-like test signal: voiced harmonic bursts at 4 Hz with gaps, the pitch gliding around 140 Hz as a
    voice's does (a steady tone is music to the voice gate, `speech.voice_gate`, which keeps the mouth shut)."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(140.0 * 2.0 ** (0.2 * np.sin(2 * np.pi * 3.0 * t))) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = (np.sin(2 * np.pi * 4 * t) > 0).astype(np.float32)
    mono = (0.2 * voice * envelope).astype(np.float32)
    return np.repeat(mono[:, None], channels, axis=1) if channels > 1 else mono


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps (or the test moves it)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def run_facecast(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`facecast ARGS...` as its own process, output captured as text."""
    return subprocess.run([sys.executable, "-m", "facecast.app.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


class Collector:
    """A live output that keeps every motion frame it is handed (the daemon's tests read them back)."""

    name = "collector"
    needs_image = False

    def __init__(self) -> None:
        from facecast.motion import MotionFrame

        self.frames: list[MotionFrame] = []

    def send(self, frame, image) -> None:  # noqa: ANN001 - the Output protocol's
        self.frames.append(frame)

    def close(self) -> None:
        pass


def live_endpoints(stderr) -> tuple[str, str]:  # noqa: ANN001 - a text stream
    """A starting `facecast live --ws`'s WebSocket base URL (ws://HOST:PORT) and control token, read from its log."""
    for line in stderr:
        if "overlay page" in line:
            url = line.split("overlay page ")[1].split("/overlay")[0].replace("http", "ws")
            return url, line.split("control token ")[1].split(")")[0]
    raise AssertionError("facecast live ended before its WebSocket server started")


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A user error: non-zero exit, one `facecast: error:` line on stderr naming the fragments, no traceback."""
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("facecast: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


#: Held-out clips the scorer and quality tests measure: three GRID s4 sentences and one in-the-wild speaker.
HELD_OUT_CLIPS = ("talking/grid_s4/bbaf2a.mp4", "talking/grid_s4/lgar9n.mp4", "talking/grid_s4/pric2a.mp4",
                  "talking/wild/pcavs_Audio_Source_00015.mp4")


@pytest.fixture(scope="session")
def held_out_dataset(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data folder, dataset cache) of HELD_OUT_CLIPS, built by the real dataset builder (~30 s)."""
    import shutil

    from facecast.dataset.cache import build

    root = tmp_path_factory.mktemp("held_out")
    data, cache = root / "data", root / "cache"
    for rel in HELD_OUT_CLIPS:
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shared_data / rel, data / rel)
    (data / "motion_only").mkdir()
    report = build(data, cache)
    assert report.failed == [] and report.clips == len(HELD_OUT_CLIPS)
    return data, cache


@pytest.fixture(scope="session")
def tiny_model(held_out_dataset: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A learned motion model trained for a few seconds on the held-out clips (for shapes and plumbing)."""
    import numpy as np

    from facecast.dataset.cache import load_clip
    from facecast.training.motion_diffusion import checkpoint_path, train
    from facecast.training.mouth_gap import add_to_model

    data, cache = held_out_dataset
    clips = [load_clip(rel, cache) for rel in HELD_OUT_CLIPS]
    out = tmp_path_factory.mktemp("learned") / "motion.pt"
    result = train(clips=clips, steps=20, minutes=5, batch=16, out=out, log_every=10**9, features="logmel",
                   data_dir=data, cache=cache)
    assert result["steps"] == 20 and np.isfinite(result["loss"])
    assert len(list((cache / "logmel").glob("*.npy"))) == len(HELD_OUT_CLIPS)   # log-mel cached beside the dataset
    assert not checkpoint_path(out).exists()                                     # a finished run leaves no checkpoint
    add_to_model(out, steps=20, cache=cache, data_dir=data, clips=clips, seeds=(0,), progress=lambda line: None)
    return out
