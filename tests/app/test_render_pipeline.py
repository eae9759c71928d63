"""`facecast render`'s threaded pipeline: order, bounded memory, errors that stop it, the encoder's options."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import threading
import time

import av
import numpy as np
import pytest

from conftest import tone_speech, write_audio
from facecast.app.render import PIPELINE_DEPTH, RenderRequest, _Stage, render
from facecast.errors import InputError
from facecast.media import Mp4Writer


def test_frames_and_audio_keep_their_order_through_the_stages(tmp_path):
    """Frames pass a render-like stage and an encoding stage (real x264) and come out in the order put."""
    path = tmp_path / "ordered.mp4"
    writer = Mp4Writer(path, 256, 25.0)
    encoder = _Stage("test-encode", lambda item: writer.write_frame(item[1]))
    drawer = _Stage("test-draw", lambda item: encoder.put(("video", np.full((256, 256, 3), item[1], np.uint8))))
    levels = list(range(10, 250, 4))
    for level in levels:
        drawer.put(("video", level))
    drawer.close()
    encoder.close()
    writer.close()
    with av.open(str(path)) as container:
        decoded = [float(f.to_ndarray(format="rgb24").mean()) for f in container.decode(video=0)]
    assert len(decoded) == len(levels)
    assert np.allclose(decoded, levels, atol=2.0)


def test_the_queue_is_bounded_so_a_slow_stage_holds_the_producer_back():
    release = threading.Event()
    handled: list[int] = []
    stage = _Stage("test-slow", lambda item: (release.wait(), handled.append(item[1])))
    put = []

    def produce() -> None:
        for i in range(PIPELINE_DEPTH + 5):
            stage.put(("video", i))
            put.append(i)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    time.sleep(0.5)
    # one item in the (blocked) handler and PIPELINE_DEPTH waiting: the producer waits for room
    assert len(put) == PIPELINE_DEPTH + 1 and producer.is_alive()
    release.set()
    producer.join(timeout=5)
    stage.close()
    assert handled == list(range(PIPELINE_DEPTH + 5))


def test_a_failing_stage_stops_the_producer_with_its_error():
    def fail_at_five(item: tuple[str, object]) -> None:
        if item[1] == 5:
            raise OSError(28, "No space left on device")

    stage = _Stage("test-fail", fail_at_five)
    with pytest.raises(OSError, match="No space left"):
        for i in range(10_000):           # never waits forever: the error comes back on a later put
            stage.put(("video", i))
    stage.cancel()


def _small_file_limit() -> None:
    # the render's output may not grow past 20 kB: the encoder's write fails half-way through
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs a file size limit (POSIX)")
def test_an_output_that_cannot_be_written_mid_render_is_one_line_and_leaves_nothing(tmp_path, sample_portrait):
    speech = write_audio(tmp_path / "speech.wav", tone_speech(4.0, 16000), 16000)
    out = tmp_path / "out.mp4"
    result = subprocess.run([sys.executable, "-m", "facecast.app.cli", "render", "-p", str(sample_portrait),
                             "-a", str(speech), "-o", str(out), "--generator", "rule", "--size", "256"],
                            capture_output=True, text=True, preexec_fn=_small_file_limit, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"facecast: error: cannot write {out}: File too large"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speech.wav"]   # no partial output left


@pytest.mark.parametrize(("option", "message"), [
    ({"crf": 52}, "--crf must be between 0 and 51"),
    ({"crf": -1}, "--crf must be between 0 and 51"),
    ({"preset": "turbo"}, "unknown --preset 'turbo': choose one of ultrafast, superfast"),
])
def test_crf_and_preset_are_checked_before_any_work(tmp_path, sample_portrait, sample_speech, option, message):
    with pytest.raises(InputError, match=message):
        render(RenderRequest(portrait=sample_portrait, audio=sample_speech, output=tmp_path / "x.mp4",
                             progress=False, **option))
    assert not list(tmp_path.iterdir())


def test_crf_and_preset_reach_the_encoder(tmp_path, sample_portrait):
    """A lower CRF makes a larger file of the same frames; the CLI takes both options."""
    speech = write_audio(tmp_path / "speech.wav", tone_speech(2.0, 16000), 16000)
    sizes = {}
    for crf in (14, 30):
        out = tmp_path / f"crf{crf}.mp4"
        result = subprocess.run([sys.executable, "-m", "facecast.app.cli", "render", "-p", str(sample_portrait),
                                 "-a", str(speech), "-o", str(out), "--generator", "rule", "--size", "256",
                                 "--crf", str(crf), "--preset", "ultrafast", "--quiet"],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        with av.open(str(out)) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            frames = sum(1 for _ in container.decode(video=0))
            video_s, audio_s = float(video.duration * video.time_base), float(audio.duration * audio.time_base)
        assert frames == 50 and abs(video_s - audio_s) <= 1 / 25     # every frame, in sync with the sound
        sizes[crf] = out.stat().st_size
    assert sizes[14] > 2 * sizes[30]
