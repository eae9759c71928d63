"""Live audio input: files played as a microphone (fake clock), and a REAL PortAudio device.

The real device is a private PulseAudio server with a FIFO-fed source
(scripts/virtual_mic.sh), reached through ALSA's pulse plugin like any desktop
microphone; the tests skip, naming the missing Debian packages, without it.
"""

from __future__ import annotations

import ctypes.util
import errno
import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, FakeClock, tone_speech, write_audio
from facecast.app import audio_input
from facecast.app.audio_input import AudioDeviceError, FileSource, MicrophoneSource, list_input_devices
from facecast.errors import InputError
from facecast.media import MOTION_SAMPLE_RATE, decode_mono

BLOCK_MS = 10.0
BLOCK = int(MOTION_SAMPLE_RATE * BLOCK_MS / 1000)




def read_all(source: FileSource, clock: FakeClock, extra_blocks: int = 0, late: float = 0.0):
    blocks = []
    while not source.finished:
        blocks.append(source.read(timeout=1.0))
        clock.now += late  # a consumer that runs late must not shift the schedule
    return blocks, [source.read(timeout=1.0) for _ in range(extra_blocks)]


# --- FileSource ----------------------------------------------------------------------------------

@pytest.mark.parametrize("rate,channels,suffix", [(44100, 2, ".wav"), (8000, 1, ".flac"), (48000, 6, ".wav")])
def test_file_source_is_real_time_on_a_fixed_grid(tmp_path: Path, rate: int, channels: int, suffix: str) -> None:
    path = write_audio(tmp_path / f"in{suffix}", tone_speech(0.73, rate, channels), rate)
    clock = FakeClock()
    source = FileSource(path, block_ms=BLOCK_MS, clock=clock, sleep=clock.sleep)
    assert source.status["sample_rate"] == rate and source.status["channels"] == channels
    source.start()
    t0 = clock.now
    blocks, after = read_all(source, clock, extra_blocks=5, late=0.002)

    samples = np.concatenate([b.samples for b in blocks])
    expected = decode_mono(path)
    assert samples.size == expected.size  # every decoded sample, none invented
    np.testing.assert_array_equal(samples, expected)
    assert all(b.samples.dtype == np.float32 and b.samples.ndim == 1 for b in blocks)
    assert all(b.samples.size == BLOCK for b in blocks[:-1])  # only the file's last block may be short
    ends = np.cumsum([b.samples.size for b in blocks])
    np.testing.assert_allclose([b.capture_time for b in blocks], t0 + ends / MOTION_SAMPLE_RATE, atol=1e-9)
    assert np.allclose(np.diff([b.capture_time for b in blocks[:-1]]), BLOCK_MS / 1000)

    # after the end: silence on the same grid, the avatar idles
    assert source.finished and source.status["state"] == "finished"
    assert source.read(timeout=0.0) is None and source.finished  # a timed-out read changes nothing
    assert all(b.samples.size == BLOCK and not b.samples.any() for b in after)
    np.testing.assert_allclose([b.capture_time for b in after],
                               blocks[-1].capture_time + np.arange(1, 6) * BLOCK_MS / 1000, atol=1e-9)


def test_file_source_waits_for_real_time_and_times_out(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "in.wav", tone_speech(0.2, 16000), 16000)
    clock = FakeClock()
    source = FileSource(path, block_ms=20.0, clock=clock, sleep=clock.sleep)
    source.start()
    first = source.read(timeout=1.0)
    assert clock.sleeps == [pytest.approx(0.02)] and first.capture_time == pytest.approx(clock.now)
    assert source.read(timeout=0.005) is None  # not due yet: nothing released, nothing lost
    second = source.read(timeout=1.0)
    assert second.capture_time == pytest.approx(first.capture_time + 0.02)
    np.testing.assert_array_equal(np.concatenate([first.samples, second.samples]), decode_mono(path)[:640])


def test_file_source_loops_seamlessly(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "in.flac", tone_speech(0.25, 22050, 2), 22050)
    clock = FakeClock()
    source = FileSource(path, block_ms=BLOCK_MS, clock=clock, sleep=clock.sleep, loop=True)
    source.start()
    once = decode_mono(path)
    blocks = [source.read(timeout=1.0) for _ in range(int(2.5 * once.size / BLOCK))]
    assert not source.finished
    assert all(b.samples.size == BLOCK for b in blocks)
    samples = np.concatenate([b.samples for b in blocks])
    np.testing.assert_array_equal(samples, np.tile(once, 3)[:samples.size])
    assert np.allclose(np.diff([b.capture_time for b in blocks]), BLOCK_MS / 1000)


def test_file_source_rejects_a_bad_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not audio")
    with pytest.raises(InputError):
        FileSource(tmp_path / "notes.txt")
    with pytest.raises(InputError):
        FileSource(tmp_path / "missing.wav")


# --- microphone logic without PortAudio ------------------------------------------------------------

class TimeInfo:
    def __init__(self, adc: float = 0.0, current: float = 0.0) -> None:
        self.inputBufferAdcTime = adc
        self.currentTime = current


class Status:
    input_overflow = False


def test_microphone_downmixes_any_channel_count_and_resamples(monkeypatch: pytest.MonkeyPatch) -> None:
    rate, channels, frames = 44100, 6, 441
    clock = FakeClock(start=100.0)
    mic = MicrophoneSource(block_ms=BLOCK_MS, clock=clock)
    mic._rate, mic._state = rate, "running"
    t = np.arange(rate) / rate
    tone = 0.4 * np.sin(2 * np.pi * 700 * t).astype(np.float32)
    wide = np.zeros((tone.size, channels), np.float32)
    wide[:, 0] = wide[:, 3] = tone * channels / 2  # the voice on two inputs of six
    out = []
    for start in range(0, tone.size, frames):
        # the callback runs 5 ms after the block's last sample; the device clock has another epoch
        clock.now = 100.0 + (start + frames - 1) / rate + 0.005
        device_time = TimeInfo(adc=7.0 + start / rate, current=7.0 + (start + frames - 1) / rate + 0.005)
        mic._callback(wide[start:start + frames], frames, device_time, Status())
        block = mic.read(timeout=0.1)
        if block is not None:
            out.append(block)
    samples = np.concatenate([b.samples for b in out])
    assert abs(samples.size - MOTION_SAMPLE_RATE) < 200
    spectrum = np.abs(np.fft.rfft(samples[4000:]))
    assert np.argmax(spectrum) * MOTION_SAMPLE_RATE / (samples.size - 4000) == pytest.approx(700, abs=5)
    assert np.abs(samples[4000:]).max() == pytest.approx(0.4, abs=0.02)
    # each block's last sample is stamped with when it was captured, resampler delay included
    ends = np.cumsum([b.samples.size for b in out])
    np.testing.assert_allclose([b.capture_time for b in out], 100.0 + (ends - 1) / MOTION_SAMPLE_RATE, atol=2e-4)


def test_microphone_capture_time_from_device_clock_or_block_duration() -> None:
    mic = MicrophoneSource(clock=lambda: 50.0)
    mic._rate = 48000
    # device clock (any epoch): the last sample 20 ms before "now"
    assert mic._capture_time(50.0, 480, TimeInfo(1e9, 1e9 + 0.03 - 1 / 48000)) == pytest.approx(49.98)
    # no device timestamps: one block back
    assert mic._capture_time(50.0, 480, TimeInfo()) == pytest.approx(49.99)
    # nonsense timestamps (seconds in the future or the past): one block back
    assert mic._capture_time(50.0, 480, TimeInfo(1e9 + 5, 1e9)) == pytest.approx(49.99)
    assert mic._capture_time(50.0, 480, TimeInfo(1e9 - 5, 1e9)) == pytest.approx(49.99)


def test_microphone_queue_drops_the_oldest_when_full() -> None:
    mic = MicrophoneSource()
    mic._rate, mic._state = 16000, "running"
    for i in range(audio_input.QUEUE_BLOCKS + 7):
        mic._callback(np.full((160, 1), i, np.float32), 160, TimeInfo(), Status())
    assert mic.status["dropped_blocks"] == 7
    assert mic._queue.get_nowait().samples[0, 0] == 7  # the oldest kept


def test_no_portaudio_is_graceful(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def missing():
        raise AudioDeviceError(f"cannot use audio devices (PortAudio library not found). {audio_input.PORTAUDIO_HINT}")

    monkeypatch.setattr(audio_input, "_sounddevice", missing)
    assert list_input_devices() == []
    assert "apt-get install libportaudio2" in caplog.text

    mic = MicrophoneSource(block_ms=20.0)
    mic.start()
    try:
        assert mic.status["state"] in ("lost", "reopening")
        t0 = time.monotonic()
        blocks = [mic.read(timeout=1.0) for _ in range(10)]
        elapsed = time.monotonic() - t0
    finally:
        mic.stop()
    assert all(b.samples.size == 320 and not b.samples.any() for b in blocks)
    assert 0.15 < elapsed < 0.4  # real-time pace, not a burst
    assert np.allclose(np.diff([b.capture_time for b in blocks]), 0.02)
    assert "libportaudio2" in caplog.text


def test_no_devices_is_graceful(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Real PortAudio with nothing to capture from: no sound card, no sound server."""
    try:
        sd = audio_input._sounddevice()
    except AudioDeviceError as exc:
        pytest.skip(str(exc))
    if Path("/dev/snd").exists():
        pytest.skip("this machine has sound hardware")
    monkeypatch.setenv("PULSE_SERVER", "unix:/nonexistent/facecast/native")
    sd._terminate()
    sd._initialize()
    assert list_input_devices() == []
    mic = MicrophoneSource(block_ms=BLOCK_MS)
    mic.start()
    try:
        assert mic.status["state"] == "lost"
        blocks = [mic.read(timeout=1.0) for _ in range(5)]
    finally:
        mic.stop()
    assert all(b is not None and not b.samples.any() for b in blocks)
    assert "microphone default input lost" in caplog.text


# --- a real PortAudio device ---------------------------------------------------------------------

FEED_RATE, FEED_CHANNELS, FEED_CHUNK = 48000, 2, 480


def _missing_packages() -> list[str]:
    probes = {
        "libportaudio2": lambda: ctypes.util.find_library("portaudio"),
        "pulseaudio": lambda: shutil.which("pulseaudio"),
        "pulseaudio-utils": lambda: shutil.which("pactl"),
        "libasound2-plugins": lambda: glob.glob("/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so"),
    }
    return [name for name, probe in probes.items() if not probe()]


class VirtualMic:
    """scripts/virtual_mic.sh's server, fed in real time by a thread: a tone, or silence."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.frequency = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)

    def start_server(self) -> str:
        out = subprocess.run([str(REPO / "scripts" / "virtual_mic.sh"), "start", str(self.folder),
                              str(FEED_RATE), str(FEED_CHANNELS)], capture_output=True, text=True, timeout=30)
        if out.returncode:
            pytest.skip(f"cannot start a PulseAudio server here: {out.stderr.strip()[-300:]}")
        return out.stdout.strip().split("=", 1)[1]

    def stop_server(self) -> None:
        subprocess.run([str(REPO / "scripts" / "virtual_mic.sh"), "stop", str(self.folder)], timeout=30)

    def _feed(self) -> None:
        """Writes 10 ms chunks on a real-time grid; waits out a dead server and writes again when it is back."""
        fd, n, t0 = None, 0, time.monotonic()
        while not self._stop.is_set():
            if fd is None:
                try:
                    fd = os.open(self.folder / "mic.fifo", os.O_WRONLY | os.O_NONBLOCK)
                    os.set_blocking(fd, True)
                    n, t0 = 0, time.monotonic()
                except OSError:
                    time.sleep(0.05)
                    continue
            t = (n + np.arange(FEED_CHUNK)) / FEED_RATE
            chunk = (0.5 * np.sin(2 * np.pi * self.frequency * t) * 32767).astype(np.int16)
            try:
                os.write(fd, np.repeat(chunk[:, None], FEED_CHANNELS, axis=1).tobytes())
            except OSError as exc:
                assert exc.errno in (errno.EPIPE, errno.EAGAIN)
                os.close(fd)
                fd = None
                continue
            n += FEED_CHUNK
            delay = t0 + n / FEED_RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if fd is not None:
            os.close(fd)

    def start_feeding(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.stop_server()


@pytest.fixture
def virtual_mic(monkeypatch: pytest.MonkeyPatch):
    missing = _missing_packages()
    if missing:
        pytest.skip(f"a virtual microphone needs Debian packages: apt-get install {' '.join(missing)}")
    folder = Path(tempfile.mkdtemp(prefix="facecast-mic-"))  # short: unix socket paths max out at 107 bytes
    mic = VirtualMic(folder)
    monkeypatch.setenv("PULSE_SERVER", mic.start_server())
    mic.start_feeding()
    yield mic
    mic.close()
    shutil.rmtree(folder, ignore_errors=True)


def read_for(source: MicrophoneSource, seconds: float) -> list:
    blocks, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        block = source.read(timeout=0.2)
        if block is not None:
            blocks.append(block)
    return blocks


def dominant_hz(samples: np.ndarray) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(samples))) * MOTION_SAMPLE_RATE / samples.size)


def wait_for_state(source: MicrophoneSource, state: str, seconds: float) -> list:
    """Keeps reading (as the daemon does) until the state is reached; returns what was read."""
    blocks, end = [], time.monotonic() + seconds
    while source.status["state"] != state and time.monotonic() < end:
        block = source.read(timeout=0.1)
        if block is not None:
            blocks.append(block)
    assert source.status["state"] == state, source.status
    return blocks


def test_list_input_devices_sees_the_virtual_mic(virtual_mic: VirtualMic) -> None:
    sd = audio_input._sounddevice()
    sd._terminate()  # PortAudio listed devices at import, before this server existed
    sd._initialize()
    devices = list_input_devices()
    assert {"pulse", "default"} <= {d["name"] for d in devices}
    for d in devices:
        assert set(d) == {"name", "index", "channels", "default_sample_rate", "is_default", "host_api"}
        assert d["channels"] > 0 and d["default_sample_rate"] > 0 and d["host_api"] == "ALSA"
    assert sum(d["is_default"] for d in devices) == 1


def test_microphone_hears_the_tone_at_16k(virtual_mic: VirtualMic) -> None:
    virtual_mic.frequency = 1000.0
    mic = MicrophoneSource(device="pulse", block_ms=BLOCK_MS)
    mic.start()
    try:
        assert mic.status["state"] == "running" and mic.status["device"] == "pulse"
        read_for(mic, 0.3)  # the server's buffers settle
        t0 = time.monotonic()
        blocks = read_for(mic, 1.0)
        elapsed = time.monotonic() - t0
        status = mic.status
    finally:
        mic.stop()
    samples = np.concatenate([b.samples for b in blocks])
    assert samples.dtype == np.float32
    assert samples.size == pytest.approx(elapsed * MOTION_SAMPLE_RATE, rel=0.1)  # 16 kHz in real time
    assert dominant_hz(samples[-8000:]) == pytest.approx(1000, abs=10)
    assert np.abs(samples[-8000:]).max() == pytest.approx(0.5, abs=0.05)
    times = np.array([b.capture_time for b in blocks])
    assert np.all(np.diff(times) > 0)
    assert times[-1] <= time.monotonic() and times[-1] > time.monotonic() - 0.5
    # capture times advance with the audio itself (a few ms of callback jitter at most)
    span = times[-1] - times[0]
    assert span == pytest.approx(sum(b.samples.size for b in blocks[1:]) / MOTION_SAMPLE_RATE, abs=0.03)
    assert status["errors"] == 0 and status["channels"] in (1, 2) and status["sample_rate"] > 0


def test_microphone_survives_losing_the_device(virtual_mic: VirtualMic, caplog: pytest.LogCaptureFixture) -> None:
    virtual_mic.frequency = 500.0
    mic = MicrophoneSource(device="pulse", block_ms=BLOCK_MS)
    mic.start()
    try:
        assert dominant_hz(np.concatenate([b.samples for b in read_for(mic, 0.5)])) == pytest.approx(500, abs=10)

        # the sound server dies mid-stream while the daemon keeps reading
        killer = threading.Thread(target=virtual_mic.stop_server)
        killer.start()
        wait_for_state(mic, "lost", 3.0)
        while mic.read(timeout=0.1).samples.any():  # audio captured before the loss still comes first
            pass
        t0 = time.monotonic()
        silent = read_for(mic, 1.0)
        elapsed = time.monotonic() - t0
        killer.join()
        assert all(not b.samples.any() for b in silent)
        assert sum(b.samples.size for b in silent) == pytest.approx(elapsed * MOTION_SAMPLE_RATE, rel=0.15)
        assert np.allclose(np.diff([b.capture_time for b in silent]), BLOCK_MS / 1000)
        assert mic.status["state"] in ("lost", "reopening") and mic.status["errors"] >= 1

        virtual_mic.start_server()  # it comes back: the source reopens it by itself
        wait_for_state(mic, "running", 5.0)
        back = np.concatenate([b.samples for b in read_for(mic, 0.6)])
        assert dominant_hz(back[-4000:]) == pytest.approx(500, abs=10)
    finally:
        mic.stop()
    lost_logs = [r for r in caplog.records if "lost" in r.getMessage()]
    assert len(lost_logs) == 1  # logged once per outage, not per retry
    assert any("is back" in r.getMessage() for r in caplog.records)


def test_a_starved_reader_loses_the_oldest_audio_like_a_microphone(tmp_path: Path) -> None:
    """Behind by more than the capture queue, the file source skips ahead: latency stays bounded."""
    path = write_audio(tmp_path / "in.wav", tone_speech(5.0, 16000), 16000)
    clock = FakeClock()
    source = FileSource(path, block_ms=BLOCK_MS, clock=clock, sleep=clock.sleep)
    source.start()
    first = source.read(timeout=1.0)
    clock.now += 3.0  # the machine stalls the reader for 3 s
    late = source.read(timeout=1.0)
    backlog = clock.now - late.capture_time
    assert 0.9 < backlog <= 1.0 + 1e-9  # one capture queue's worth, not 3 s
    assert source.status["dropped_blocks"] == pytest.approx(200, abs=2)
    expected = decode_mono(path)
    skipped = source.status["dropped_blocks"] * BLOCK
    np.testing.assert_array_equal(late.samples, expected[first.samples.size + skipped:][:BLOCK])
    # it keeps the schedule from there: the next blocks come at once until caught up
    assert source.read(timeout=0.0).capture_time == pytest.approx(late.capture_time + BLOCK_MS / 1000)
