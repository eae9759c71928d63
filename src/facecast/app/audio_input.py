"""Live audio for the daemon: a microphone, or a file played as one, as 16 kHz mono blocks with capture times.

Both sources share one interface (`AudioSource`) so the daemon cannot tell a
file from a microphone: `read()` returns float32 mono blocks at
`MOTION_SAMPLE_RATE`, each stamped with the `time.monotonic()` moment its last
sample was captured, which is what lip-sync latency is measured against.

A stream must never stop the avatar. When the microphone disappears (unplugged,
sound server restarted, driver error) the source says so once, keeps returning
silent blocks at real-time pace so the face idles and frames keep flowing, and
reopens the device as soon as it is back.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Protocol

import av
import numpy as np

from facecast.errors import FacecastError, InputError
from facecast.media import MOTION_SAMPLE_RATE, AudioReader, MonoResampler, iter_mono_blocks

log = logging.getLogger("facecast.app.audio_input")

#: No callback for this long means the device is gone even if PortAudio did not say so.
STALL_S = 1.0
#: Seconds between attempts to reopen a lost device.
REOPEN_INTERVAL_S = 1.5
#: How often the supervisor thread checks the stream's health.
WATCHDOG_INTERVAL_S = 0.1
#: Capture blocks buffered between the audio callback and `read()`; beyond it the oldest is dropped.
QUEUE_BLOCKS = 100
#: ALSA's virtual devices ("pulse", "default", dmix) advertise 32 channels and
#: audio interfaces put a microphone on their first inputs, so at most this many
#: are opened; whatever is opened is averaged to mono.
MAX_CAPTURE_CHANNELS = 2
#: Device timestamps are trusted only when they put the block's last sample at
#: most this long before the callback ...
MAX_PLAUSIBLE_LATENCY_S = 0.5
#: ... and no more than this many block durations after it (driver clock jitter).
TIMESTAMP_JITTER_BLOCKS = 1.5

#: PortAudio lists a microphone once per host API that reaches it. On Windows that is up to four times (MME,
#: DirectSound, WASAPI, WDM-KS, where a name asked for would match several devices): facecast lists each
#: microphone once and opens it through the first of these that works, in this order (WASAPI's shared mode
#: has the lowest latency, MME is the most compatible). macOS has one host API (Core Audio); on Linux,
#: PulseAudio and PipeWire appear as ALSA devices ("pulse", "default"), so PortAudio's own order stands.
HOST_API_PREFERENCE: dict[str, tuple[str, ...]] = {
    "win32": ("Windows WASAPI", "MME", "Windows DirectSound", "Windows WDM-KS"),
}

PORTAUDIO_HINT = ("PortAudio is missing: on Debian/Ubuntu `sudo apt-get install libportaudio2`, on Fedora "
                  "`sudo dnf install portaudio`; on Windows and macOS reinstall sounddevice "
                  "(`pip install --force-reinstall sounddevice`), whose wheel bundles it")

# PortAudio's device list is process-wide: refreshing it while another thread
# opens a stream or lists devices would pull the list from under it.
_PORTAUDIO_LOCK = threading.Lock()


class AudioDeviceError(FacecastError):
    """Audio capture is impossible on this machine as set up (no PortAudio)."""


@dataclass(frozen=True)
class AudioBlock:
    """Mono float32 samples at MOTION_SAMPLE_RATE; capture_time is time.monotonic() of the last sample."""

    samples: np.ndarray
    capture_time: float


class AudioSource(Protocol):
    """What the live daemon reads audio from."""

    finished: bool

    @property
    def status(self) -> dict[str, Any]: ...

    def start(self) -> None: ...

    def read(self, timeout: float) -> AudioBlock | None: ...

    def stop(self) -> None: ...


def _sounddevice() -> ModuleType:
    """The sounddevice module; its import fails with OSError when the PortAudio library is missing."""
    try:
        import sounddevice
    except OSError as exc:
        raise AudioDeviceError(f"cannot use audio devices ({exc}). {PORTAUDIO_HINT}") from None
    return sounddevice


def list_input_devices(platform: str = sys.platform) -> list[dict[str, Any]]:
    """Capture devices as PortAudio sees them, each name once (through its preferred host API, see
    `HOST_API_PREFERENCE`); [] (with a logged reason) when there are none or no PortAudio."""
    try:
        sd = _sounddevice()
    except AudioDeviceError as exc:
        log.warning("%s", exc)
        return []
    with _PORTAUDIO_LOCK:
        try:
            devices = sd.query_devices()
            hostapis = sd.query_hostapis()
            default = _default_input_index(sd, hostapis)
        except sd.PortAudioError as exc:
            log.warning("cannot list audio devices: %s", exc)
            return []
    default_name = next((d["name"] for d in devices if d["index"] == default), None)
    listed: dict[str, dict[str, Any]] = {}
    for d in sorted(_inputs(devices), key=lambda d: _host_api_rank(d, hostapis, platform)):
        listed.setdefault(d["name"], {
            "name": d["name"], "index": d["index"], "channels": d["max_input_channels"],
            "default_sample_rate": d["default_samplerate"], "is_default": d["name"] == default_name,
            "host_api": hostapis[d["hostapi"]]["name"]})
    return sorted(listed.values(), key=lambda d: d["index"])


def _inputs(devices: Any) -> list[dict[str, Any]]:
    return [d for d in devices if d["max_input_channels"] > 0]


def _host_api_rank(device: dict[str, Any], hostapis: Any, platform: str) -> tuple[int, int]:
    """Sort key: the device's host API's place in `HOST_API_PREFERENCE` (others after), then its index."""
    order = HOST_API_PREFERENCE.get(platform, ())
    name = hostapis[device["hostapi"]]["name"]
    return (order.index(name) if name in order else len(order), device["index"])


def input_candidates(sd: ModuleType, wanted: int | str | None, platform: str = sys.platform) -> list[int]:
    """The device indices to try, best first, for `--device` (an index, a name or part of one, or None: the
    default input): every host API's device of the chosen name, in `HOST_API_PREFERENCE` order.

    A name matches exactly (any case) or, failing that, as sounddevice matches it (its words in order within
    "name, host API"); a part that matches several different names is refused as ambiguous.
    """
    if isinstance(wanted, int):
        return [wanted]
    devices = sd.query_devices()
    hostapis = sd.query_hostapis()
    inputs = _inputs(devices)
    if wanted is None:
        default = _default_input_index(sd, hostapis)
        name = next((d["name"] for d in devices if d["index"] == default), None)
        if name is None:
            raise ValueError("PortAudio lists no input device")
        chosen = [d for d in inputs if d["name"] == name] or [devices[default]]
    else:
        query = wanted.strip().lower()
        chosen = [d for d in inputs if d["name"].strip().lower() == query]
        if not chosen:
            words = query.split()
            chosen = [d for d in inputs if _words_in_order(words, f"{d['name']}, {hostapis[d['hostapi']]['name']}")]
            names = sorted({d["name"] for d in chosen})
            if not chosen:
                raise ValueError(f"No input device matching {wanted!r}")
            if len(names) > 1:
                raise ValueError(f"Multiple input devices found for {wanted!r}: {'; '.join(names)}")
    return [d["index"] for d in sorted(chosen, key=lambda d: _host_api_rank(d, hostapis, platform))]


def _words_in_order(words: list[str], text: str) -> bool:
    position, text = 0, text.lower()
    for word in words:
        position = text.find(word, position)
        if position < 0:
            return False
        position += len(word)
    return True


def _default_input_index(sd: ModuleType, hostapis: Any) -> int:
    index = sd.default.device[0]
    if index is None or index < 0:
        index = next((api["default_input_device"] for api in hostapis if api["default_input_device"] >= 0), -1)
    return int(index)


@dataclass(frozen=True)
class _Capture:
    """One callback's samples (frames, channels) at the device's rate, from stream `generation`."""

    samples: np.ndarray
    capture_time: float
    rate: int
    generation: int


class MicrophoneSource:
    """A capture device at its native rate/channels, downmixed and resampled to 16 kHz mono.

    The PortAudio callback only copies the block into a bounded queue (oldest
    dropped and counted on overflow); `read()` converts on the caller's thread.
    A supervisor thread notices a lost device (stream error, stream finished,
    or no callback for STALL_S) and reopens it every REOPEN_INTERVAL_S;
    meanwhile `read()` returns silence on a real-time grid. Every open
    refreshes PortAudio's device list, which would break any other PortAudio
    stream in the process: a daemon has one microphone and no other stream.
    `clock` must be a real monotonic clock; it is injectable so capture times
    share the daemon's clock.
    """

    def __init__(self, device: int | str | None = None, block_ms: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if block_ms <= 0:
            raise ValueError("block_ms must be positive")
        self._wanted = device
        self._block_s = block_ms / 1000.0
        self._clock = clock
        self._queue: queue.Queue[_Capture] = queue.Queue(maxsize=QUEUE_BLOCKS)
        self._lock = threading.Lock()  # guards the stream and state between read(), stop() and the supervisor
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._stream: Any = None
        self._generation = 0
        self._stream_failed = False
        self._last_callback = 0.0
        self._state = "stopped"
        self._device_name = str(device) if device is not None else "default input"
        self._rate = 0
        self._channels = 0
        self._errors = 0
        self._overflows = 0
        self._dropped = 0
        self._lost_since = 0.0
        self._next_reopen = 0.0
        self._silence_due = 0.0
        self._converter: _Converter | None = None
        self.finished = False  # a microphone never runs out

    @property
    def status(self) -> dict[str, Any]:
        return {"device": self._device_name, "state": self._state, "sample_rate": self._rate,
                "channels": self._channels, "errors": self._errors, "overflows": self._overflows,
                "dropped_blocks": self._dropped}

    def start(self) -> None:
        """Open the device (or start as "lost" and keep retrying) and start the supervisor."""
        with self._lock:
            self._stopping.clear()
            try:
                self._open()
            except Exception as exc:  # any failure to open means "no microphone yet", never a crash
                self._lose(f"cannot open it: {exc}")
        self._supervisor = threading.Thread(target=self._supervise, name="facecast-mic", daemon=True)
        self._supervisor.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join()
            self._supervisor = None
        with self._lock:
            self._close()
            self._state = "stopped"

    def read(self, timeout: float) -> AudioBlock | None:
        """The next block: captured audio while the device runs, paced silence while it is lost."""
        end = time.monotonic() + timeout
        while True:
            remaining = end - time.monotonic()
            if self._state != "running" and self._queue.empty():
                return self._silence(remaining)
            try:
                capture = self._queue.get(timeout=max(0.0, min(remaining, WATCHDOG_INTERVAL_S)))
            except queue.Empty:
                if remaining <= 0:
                    return None
                continue
            block = self._convert(capture)
            if block is not None:
                return block

    # --- reading -----------------------------------------------------------------------------------

    def _convert(self, capture: _Capture) -> AudioBlock | None:
        if self._converter is None or self._converter.generation != capture.generation:
            self._converter = _Converter(capture.rate, capture.generation)
        return self._converter(capture)

    def _silence(self, remaining: float) -> AudioBlock | None:
        """A silent block on the real-time grid started when the device was lost."""
        now = self._clock()
        if now - self._silence_due > STALL_S:  # the caller was away: restart the grid, no burst
            self._silence_due = now
        wait = self._silence_due - now
        if wait > remaining:
            time.sleep(max(0.0, remaining))
            return None
        if wait > 0:
            time.sleep(wait)
        block = AudioBlock(np.zeros(round(self._block_s * MOTION_SAMPLE_RATE), dtype=np.float32), self._silence_due)
        self._silence_due += self._block_s
        return block

    # --- device handling ---------------------------------------------------------------------------

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's thread: timestamp, copy, enqueue; nothing here may block."""
        now = self._clock()
        self._last_callback = now
        if status.input_overflow:
            self._overflows += 1
        capture = _Capture(indata.copy(), self._capture_time(now, frames, time_info), self._rate, self._generation)
        try:
            self._queue.put_nowait(capture)
        except queue.Full:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._dropped += 1
            try:
                self._queue.put_nowait(capture)
            except queue.Full:
                pass

    def _capture_time(self, now: float, frames: int, time_info: Any) -> float:
        """The last sample's capture moment: from the ADC timestamp if plausible, else one block back."""
        duration = frames / self._rate
        last_sample = time_info.inputBufferAdcTime + (frames - 1) / self._rate
        latency = time_info.currentTime - last_sample
        if (time_info.inputBufferAdcTime > 0 and time_info.currentTime > 0
                and -TIMESTAMP_JITTER_BLOCKS * duration <= latency <= MAX_PLAUSIBLE_LATENCY_S):
            return now - max(0.0, latency)
        return now - duration

    def _on_finished(self, generation: int) -> None:
        """PortAudio ended the stream; unless we closed it, the device failed."""
        if generation == self._generation and not self._stopping.is_set():
            self._stream_failed = True

    def _open(self) -> None:
        sd = _sounddevice()
        with _PORTAUDIO_LOCK:
            # PortAudio enumerates devices only when initialised: refresh so a device
            # plugged in (or a sound server started) since then is found.
            sd._terminate()
            sd._initialize()
            candidates = input_candidates(sd, self._wanted)
            for attempt, index in enumerate(candidates):  # the same microphone through each host API in turn
                try:
                    info, stream = self._open_stream(sd, index)
                    break
                except Exception as exc:
                    if attempt == len(candidates) - 1:
                        raise
                    log.debug("microphone %s: device %d failed (%s); trying the next host API", self._wanted,
                              index, exc)
        self._stream = stream
        self._device_name = info["name"]
        # A device named by index is found again by name: indices shift when devices come and go.
        self._wanted = info["name"] if isinstance(self._wanted, int) else self._wanted
        self._state = "running"

    def _open_stream(self, sd: ModuleType, index: int) -> tuple[Any, Any]:
        """Open and start device `index` at its own rate; (its info, the running stream)."""
        info = sd.query_devices(index, "input")
        rate = int(info["default_samplerate"])
        channels = min(int(info["max_input_channels"]), MAX_CAPTURE_CHANNELS)
        generation = self._generation + 1
        self._generation, self._rate, self._channels = generation, rate, channels
        self._stream_failed = False
        self._last_callback = self._clock()
        stream = sd.InputStream(device=info["index"], samplerate=rate, channels=channels, dtype="float32",
                                blocksize=max(1, round(rate * self._block_s)), latency="low",
                                callback=self._callback,
                                finished_callback=lambda: self._on_finished(generation))
        try:
            stream.start()
        except Exception:
            stream.close(ignore_errors=True)
            raise
        return info, stream

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            self._generation += 1  # so its finished_callback is not taken for a failure
            try:
                stream.close(ignore_errors=True)
            except Exception as exc:
                log.debug("closing the lost stream failed: %s", exc)

    def _lose(self, reason: str) -> None:
        self._close()
        self._errors += 1
        now = self._clock()
        if self._state not in ("lost", "reopening"):
            log.warning("microphone %s lost: %s; sending silence and retrying every %.1f s",
                        self._device_name, reason, REOPEN_INTERVAL_S)
            self._lost_since = now
            self._silence_due = now
        self._state = "lost"
        self._next_reopen = now + REOPEN_INTERVAL_S

    def _supervise(self) -> None:
        while not self._stopping.wait(WATCHDOG_INTERVAL_S):
            with self._lock:
                if self._stopping.is_set():
                    return
                now = self._clock()
                if self._state == "running":
                    if self._stream_failed:
                        self._lose("the audio stream stopped with an error")
                    elif now - self._last_callback > STALL_S:
                        self._lose(f"no audio for {STALL_S:.0f} s")
                elif self._state == "lost" and now >= self._next_reopen:
                    self._reopen(now)

    def _reopen(self, now: float) -> None:
        self._state = "reopening"
        try:
            self._open()
        except Exception as exc:
            log.debug("microphone %s still unavailable: %s", self._device_name, exc)
            self._state = "lost"
            self._next_reopen = now + REOPEN_INTERVAL_S
            return
        log.warning("microphone %s is back after %.1f s", self._device_name, now - self._lost_since)


class _Converter:
    """One stream's device blocks -> 16 kHz mono, with capture times corrected for the resampler's delay."""

    def __init__(self, rate: int, generation: int) -> None:
        self.rate = rate
        self.generation = generation
        self._resample = MonoResampler(MOTION_SAMPLE_RATE)  # streaming: its filter state spans blocks
        self._samples_in = 0
        self._samples_out = 0

    def __call__(self, capture: _Capture) -> AudioBlock | None:
        # Microphone channels are inputs, not speaker positions: a plain average
        # (FFmpeg's layout-aware downmix would weight or drop some of them).
        mono = capture.samples.mean(axis=1, dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.rate
        out = self._resample(frame)
        self._samples_in += mono.size
        self._samples_out += out.size
        if not out.size:
            return None
        delay = self._samples_in / self.rate - self._samples_out / MOTION_SAMPLE_RATE
        return AudioBlock(out, capture.capture_time - delay)


class FileSource:
    """Any audio file FFmpeg reads, fed in real time as if a microphone heard it.

    Blocks are released on a fixed schedule from `start()` (no drift), each
    stamped with the moment its last sample was "heard". Decoding is the same as
    `facecast render --audio` (streamed through `iter_mono_blocks`). At the end
    `finished` turns True and silence follows so the avatar idles, unless
    `loop` starts the file again seamlessly. A reader more than `QUEUE_BLOCKS`
    blocks behind the schedule (a starved machine) loses the oldest audio, as
    the microphone's capture queue does, so the avatar never trails the sound
    by more than that.
    """

    def __init__(self, path: str | Path, block_ms: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, loop: bool = False) -> None:
        if block_ms <= 0:
            raise ValueError("block_ms must be positive")
        self.path = Path(path)
        with AudioReader(self.path) as reader:  # fails now, with a clear InputError, on a bad file
            self._info = reader.info
        self._block = max(1, round(MOTION_SAMPLE_RATE * block_ms / 1000.0))
        self._clock = clock
        self._sleep = sleep
        self._loop = loop
        self._start = 0.0
        self._fed = 0  # samples released so far, silence included
        self._pending = np.zeros(0, dtype=np.float32)
        self._held: np.ndarray | None = None  # the next block, taken but not yet due
        self._decoded: Iterator[np.ndarray] | None = None
        self._decoded_total = 0
        self._pass_samples = 0
        self._errors = 0
        self._dropped = 0
        self._state = "stopped"
        self._exhausted = False

    @property
    def finished(self) -> bool:
        """True once the file's last sample has been read (never in loop mode)."""
        return self._exhausted and self._fed >= self._decoded_total

    @property
    def status(self) -> dict[str, Any]:
        return {"device": str(self.path), "state": self._state, "sample_rate": self._info.sample_rate,
                "channels": self._info.channels, "errors": self._errors, "dropped_blocks": self._dropped}

    def start(self) -> None:
        self._start = self._clock()
        self._decoded = iter_mono_blocks(self.path)
        self._state = "running"

    def stop(self) -> None:
        self._decoded = None
        self._state = "stopped"

    def read(self, timeout: float) -> AudioBlock | None:
        """The next block once real time has caught up with its last sample; None if that is beyond timeout."""
        if self._held is None:
            self._held = self._take(self._block)
        samples = self._held
        due = self._start + (self._fed + samples.size) / MOTION_SAMPLE_RATE
        wait = due - self._clock()
        while -wait > QUEUE_BLOCKS * self._block / MOTION_SAMPLE_RATE and not self.finished:
            self._fed += samples.size  # skipped, as a full capture queue drops its oldest block
            self._dropped += 1
            samples = self._held = self._take(self._block)
            due = self._start + (self._fed + samples.size) / MOTION_SAMPLE_RATE
            wait = due - self._clock()
        if wait > timeout:
            self._sleep(max(0.0, timeout))
            return None
        if wait > 0:
            self._sleep(wait)
        self._held = None
        self._fed += samples.size
        return AudioBlock(samples, due)

    def _take(self, count: int) -> np.ndarray:
        """`count` samples; short only for the file's last block; silence once finished."""
        # Decode past `count` so the end of the file is known when its last sample goes out.
        while self._pending.size <= count and not self._exhausted:
            block = self._next_decoded()
            if block is None:
                break
            self._pending = np.concatenate([self._pending, block])
        if self._pending.size == 0 and self._exhausted:
            return np.zeros(count, dtype=np.float32)
        samples, self._pending = self._pending[:count], self._pending[count:]
        return samples

    def _next_decoded(self) -> np.ndarray | None:
        """The next decoded block, restarting the file in loop mode; None (and exhausted) at the end."""
        if self._decoded is None:
            raise RuntimeError("FileSource.read() before start()")
        for attempt in range(2):
            try:
                block = next(self._decoded)
            except StopIteration:
                block = None
            except InputError as exc:  # zero-length or corrupt half-way: idle rather than crash the daemon
                log.warning("%s", exc)
                self._errors += 1
                block = None
            if block is not None:
                self._pass_samples += block.size
                self._decoded_total += block.size
                return block
            if not (self._loop and self._pass_samples and attempt == 0):
                break
            self._decoded = iter_mono_blocks(self.path)
            self._pass_samples = 0
        self._exhausted = True
        self._state = "finished"
        return None
