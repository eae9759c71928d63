"""Per-hop speech features for audio-driven motion, computed block-size invariantly.

Every feature of hop ``k`` depends only on the analysis window that ends at
sample ``(k + 1) * HOP``, so feeding audio in any block sizes gives the same
features (`HopFramer` keeps the history across blocks). The features are what a
face needs and cheap enough to run hundreds of times faster than real time:
loudness, spectral balance (nasal murmur / fricatives), voicing + F0 (prosody)
and the first two formants (vowel shape) from selective LPC on 0-4 kHz, and
spectral flatness (noise, for the voice gate).

Also here, for the learned model and the lip-sync scorer: log-mel bands
(`log_mel`), whole streams of either kind kept compactly (`AudioFeatureStream`)
and the normalisation of the 8 features both read (`audio_track`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _scipy_fft():
    """scipy.fft, imported on first use: importing it adds about 90 ms to every `facecast` start-up."""
    import scipy.fft

    return scipy.fft


SAMPLE_RATE = 16000
#: 10 ms hop: fine enough to see 30 ms stop closures, coarse enough to be cheap.
HOP = 160
#: 25 ms analysis window, the usual speech frame: >= 2 periods of a 80 Hz voice.
WIN = 400
#: FFT length: 2x the window so the autocorrelation for pitch has no circular wrap.
NFFT = 800
#: Hops analysed per vectorised batch, bounding memory for huge blocks.
MAX_BATCH_HOPS = 2000

_FREQS = np.arange(NFFT // 2 + 1) * (SAMPLE_RATE / NFFT)
_WINDOW = np.hanning(WIN + 2)[1:-1]
_WINDOW_POWER = float(np.mean(_WINDOW**2))
_POWER_FLOOR = 1e-11  # -110 dBFS: digital silence stays finite

# Spectral bands (Hz). Nasal murmur puts its energy below ~500 Hz; fricatives above ~3.5 kHz.
_BAND_ALL = (_FREQS >= 60) & (_FREQS <= 7800)
_BAND_LOW = (_FREQS >= 60) & (_FREQS < 500)
_BAND_MID = (_FREQS >= 1000) & (_FREQS < 3000)
_BAND_HIGH = (_FREQS >= 3500) & (_FREQS <= 7800)

# Pitch: normalised autocorrelation (Boersma 1993) of the signal band-passed to 100-1500 Hz
# (rumble and hum below 100 Hz would otherwise look periodic; harmonics still carry F0).
F0_MIN_HZ = 70.0
F0_MAX_HZ = 500.0
_LAG_MIN = int(SAMPLE_RATE / F0_MAX_HZ)
_LAG_MAX = int(np.ceil(SAMPLE_RATE / F0_MIN_HZ))
_PITCH_BAND = ((_FREQS >= 100) & (_FREQS < 1500)).astype(float)
_WINDOW_ACF = np.correlate(_WINDOW, _WINDOW, mode="full")[WIN - 1 :]
_WINDOW_ACF_NORM = _WINDOW_ACF[: _LAG_MAX + 2] / _WINDOW_ACF[0]

# Formants: selective LPC on the 0-4 kHz part of the spectrum (an 8 kHz-rate autocorrelation).
LPC_ORDER = 12
_LPC_BAND_HZ = 4000.0
_LPC_BINS = int(_LPC_BAND_HZ / (SAMPLE_RATE / NFFT)) + 1
_PREEMPHASIS = 0.9
_PREEMPH_GAIN = np.abs(1 - _PREEMPHASIS * np.exp(-2j * np.pi * _FREQS[:_LPC_BINS] / SAMPLE_RATE)) ** 2
_LPC_BANDWIDTH_HZ = 50.0  # lag-window bandwidth expansion: keeps formant peaks from becoming spikes
_WHITE_NOISE_CORRECTION = 1e-4
_LAG_WINDOW = np.exp(-0.5 * (2 * np.pi * _LPC_BANDWIDTH_HZ * np.arange(LPC_ORDER + 1) / (2 * _LPC_BAND_HZ)) ** 2)
_ENV_NFFT = 256
_ENV_FREQS = np.arange(_ENV_NFFT // 2 + 1) * (_LPC_BAND_HZ / (_ENV_NFFT // 2))
F1_RANGE_HZ = (200.0, 1100.0)
F2_RANGE_HZ = (650.0, 3000.0)
_MIN_F1_F2_GAP_HZ = 200.0


@dataclass
class HopFeatures:
    """Features of consecutive hops (arrays of equal length, one value per hop)."""

    level_db: np.ndarray   # window power in dBFS (a full-scale sine is ~ -3 dB)
    low_frac: np.ndarray   # share of 60-7800 Hz energy below 500 Hz (nasal murmur, voicing bar)
    mid_frac: np.ndarray   # share in 1-3 kHz (F2/F3 of vowels; weak in nasal murmur)
    high_frac: np.ndarray  # share above 3.5 kHz (fricatives)
    voicing: np.ndarray    # peak normalised autocorrelation in the F0 range, 0..1
    f0: np.ndarray         # Hz (meaningful where voicing is high)
    f1: np.ndarray         # Hz, NaN where no F1 peak was found
    f2: np.ndarray         # Hz, NaN where no F2 peak was found
    flatness: np.ndarray   # spectral flatness of 60-7800 Hz, 0..1: ~0.56 for white noise, < 0.08 in voiced speech

    def __len__(self) -> int:
        return len(self.level_db)


class CaptureClock:
    """When each received sample was captured, from the capture time of the blocks that held them.

    Why: live latency is measured from the capture of the newest sample a
    frame used; generators record each timed block here and ask for a
    sample's time when they emit a frame (samples asked for must not go back
    in time, so old blocks are forgotten).
    """

    def __init__(self) -> None:
        self._blocks: deque[tuple[int, float]] = deque()   # (end sample index, capture time of that end)
        self.samples = 0

    def add(self, count: int, capture_time: float | None) -> None:
        """`count` more samples arrived; `capture_time` is when the last of them was captured (None: untimed)."""
        self.samples += count
        if capture_time is not None and count:
            self._blocks.append((self.samples, float(capture_time)))

    def time_of(self, sample: int) -> float | None:
        """Capture time of sample `sample` (0-based; beyond the received ones: the last received one)."""
        if not self._blocks:
            return None
        sample = min(sample, self.samples - 1)
        while len(self._blocks) > 1 and self._blocks[0][0] <= sample:
            self._blocks.popleft()
        end, captured = self._blocks[0]
        return captured - (end - 1 - sample) / SAMPLE_RATE


class HopFramer:
    """Cuts a stream of blocks into overlapping analysis windows, one per completed hop.

    The stream is preceded by ``WIN - HOP`` zeros so hop ``k``'s window always
    ends at sample ``(k + 1) * HOP``, whatever the block boundaries were.
    """

    def __init__(self) -> None:
        self._buffer = np.zeros(WIN - HOP)

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """Append samples; return window matrices (hops x WIN) for the hops they complete."""
        buffer = np.concatenate([self._buffer, samples]) if samples.size else self._buffer
        hops = (len(buffer) - (WIN - HOP)) // HOP
        batches = []
        for start in range(0, hops, MAX_BATCH_HOPS):
            count = min(MAX_BATCH_HOPS, hops - start)
            span = buffer[start * HOP : (start + count - 1) * HOP + WIN]
            batches.append(sliding_window_view(span, WIN)[::HOP])
        self._buffer = buffer[hops * HOP :]
        return batches


def hop_features(windows: np.ndarray) -> HopFeatures:
    """Features of a batch of analysis windows (hops x WIN); each row independent of the others."""
    spec = _scipy_fft().rfft(windows * _WINDOW, NFFT, axis=-1)
    power = spec.real**2 + spec.imag**2
    # Parseval: the window's mean power from its (one-sided) spectrum, without another pass.
    energy = 2 * power.sum(axis=-1) - power[:, 0] - power[:, -1]
    level = energy / (NFFT * WIN * _WINDOW_POWER)
    level_db = 10 * np.log10(level + _POWER_FLOOR)
    total = power[:, _BAND_ALL].sum(axis=-1) + _POWER_FLOOR
    low_frac = power[:, _BAND_LOW].sum(axis=-1) / total
    mid_frac = power[:, _BAND_MID].sum(axis=-1) / total
    high_frac = power[:, _BAND_HIGH].sum(axis=-1) / total
    voicing, f0 = _pitch(power)
    f1, f2 = _formants(power)
    # geometric over arithmetic mean of the band's power: how noise-like (flat) rather than peaked the spectrum is
    band = power[:, _BAND_ALL] + _POWER_FLOOR
    flatness = np.exp(np.log(band).mean(axis=-1)) / band.mean(axis=-1)
    return HopFeatures(level_db, low_frac, mid_frac, high_frac, voicing, f0, f1, f2, flatness)


def _pitch(power: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    acf = _scipy_fft().irfft(power * _PITCH_BAND, NFFT, axis=-1)[:, : _LAG_MAX + 2]
    norm = acf / (acf[:, :1] + _POWER_FLOOR) / _WINDOW_ACF_NORM
    search = norm[:, _LAG_MIN : _LAG_MAX + 1]
    best = np.argmax(search, axis=-1)
    rows = np.arange(len(norm))
    lag = best + _LAG_MIN
    peak = search[rows, best]
    # Parabolic interpolation around the peak for a sub-sample lag.
    left = norm[rows, lag - 1]
    right = norm[rows, lag + 1]
    curvature = left - 2 * peak + right
    shift = np.where(curvature < 0, 0.5 * (left - right) / np.where(curvature < 0, curvature, -1.0), 0.0)
    f0 = SAMPLE_RATE / (lag + np.clip(shift, -0.5, 0.5))
    # A maximum on the edge of the search range is a decaying (noise) autocorrelation, not a period.
    interior = (best > 0) & (best < search.shape[1] - 1)
    return np.where(interior, np.clip(peak, 0.0, 1.0), 0.0), f0


def _formants(power: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F1, F2 as the lowest two peaks of the LPC envelope (cheaper than root finding, as good for visemes)."""
    acf = _scipy_fft().irfft(power[:, :_LPC_BINS] * _PREEMPH_GAIN, 2 * (_LPC_BINS - 1), axis=-1)[:, : LPC_ORDER + 1]
    acf = acf * _LAG_WINDOW
    acf[:, 0] = acf[:, 0] * (1 + _WHITE_NOISE_CORRECTION) + _POWER_FLOOR
    lpc = _levinson(acf, LPC_ORDER)
    response = _scipy_fft().rfft(lpc, _ENV_NFFT, axis=-1)
    env = -np.log(response.real**2 + response.imag**2 + 1e-12)
    peaks = np.zeros(env.shape, dtype=bool)
    peaks[:, 1:-1] = (env[:, 1:-1] > env[:, :-2]) & (env[:, 1:-1] >= env[:, 2:])
    f1 = _first_peak(env, peaks & _in_range(F1_RANGE_HZ))
    lo = np.where(np.isnan(f1), F2_RANGE_HZ[0], np.maximum(F2_RANGE_HZ[0], f1 + _MIN_F1_F2_GAP_HZ))
    f2 = _first_peak(env, peaks & _in_range(F2_RANGE_HZ) & (_ENV_FREQS >= lo[:, None]))
    return f1, f2


def _in_range(bounds: tuple[float, float]) -> np.ndarray:
    return (_ENV_FREQS >= bounds[0]) & (_ENV_FREQS <= bounds[1])


def _first_peak(env: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Frequency of the first True in each row of mask (NaN if none), refined parabolically."""
    found = mask.any(axis=-1)
    idx = np.clip(np.argmax(mask, axis=-1), 1, env.shape[1] - 2)
    rows = np.arange(len(env))
    left, mid, right = env[rows, idx - 1], env[rows, idx], env[rows, idx + 1]
    curvature = left - 2 * mid + right
    shift = np.where(curvature < 0, 0.5 * (left - right) / np.where(curvature < 0, curvature, -1.0), 0.0)
    freq = (idx + np.clip(shift, -0.5, 0.5)) * (_ENV_FREQS[1] - _ENV_FREQS[0])
    return np.where(found, freq, np.nan)


def _levinson(acf: np.ndarray, order: int) -> np.ndarray:
    """Levinson-Durbin recursion over a batch of autocorrelation rows -> monic LPC polynomials."""
    n = len(acf)
    a = np.zeros((n, order + 1))
    a[:, 0] = 1.0
    err = acf[:, 0].copy()
    for i in range(1, order + 1):
        acc = acf[:, i] + np.einsum("ij,ij->i", a[:, 1:i], acf[:, i - 1 : 0 : -1])
        k = -acc / err
        a[:, 1:i] = a[:, 1:i] + k[:, None] * a[:, i - 1 : 0 : -1]
        a[:, i] = k
        err = err * (1 - k * k)
    return a


# ----------------------------------------------------------------------------- log-mel (for learned models)

#: Mel bands of `log_mel`: the usual speech front end, 60-7600 Hz.
MEL_BANDS = 40


def _mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_filterbank(bands: int = MEL_BANDS, low_hz: float = 60.0, high_hz: float = 7600.0) -> np.ndarray:
    """(bands, NFFT // 2 + 1) triangular filters, equally spaced on the mel scale (HTK formula)."""
    edges_mel = np.linspace(_mel(np.array(low_hz)), _mel(np.array(high_hz)), bands + 2)
    edges = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
    bank = np.zeros((bands, len(_FREQS)))
    for b in range(bands):
        lo, mid, hi = edges[b], edges[b + 1], edges[b + 2]
        rising = (_FREQS - lo) / (mid - lo)
        falling = (hi - _FREQS) / (hi - mid)
        bank[b] = np.clip(np.minimum(rising, falling), 0.0, None)
    return bank


_MEL_BANK = _mel_filterbank()


def log_mel(windows: np.ndarray) -> np.ndarray:
    """(hops, MEL_BANDS) log mel energies in dB of a batch of analysis windows (the hop grid of `hop_features`)."""
    spec = _scipy_fft().rfft(windows * _WINDOW, NFFT, axis=-1)
    power = (spec.real**2 + spec.imag**2) / (NFFT * WIN * _WINDOW_POWER)
    return (10 * np.log10(power @ _MEL_BANK.T + _POWER_FLOOR)).astype(np.float32)


# ----------------------------------------------------------------------------- whole-stream features

#: The 8 per-hop features of `hop_features`, in the column order of `AudioFeatureStream("hop8")` (and the
#: dataset cache's `audio` arrays).
AUDIO_FEATURES = ("level_db", "low_frac", "mid_frac", "high_frac", "voicing", "f0", "f1", "f2")


class AudioFeatureStream:
    """Per-hop features of a stream of 16 kHz mono blocks, kept compactly (32 bytes per 10 ms for the 8
    AUDIO_FEATURES, 160 for `kind="logmel"`), so hours of audio can be analysed before generating from it."""

    def __init__(self, kind: str = "hop8") -> None:
        if kind not in ("hop8", "logmel"):
            raise ValueError(f"audio feature kind must be hop8 or logmel, got {kind!r}")
        self.kind = kind
        self._framer = HopFramer()
        self._parts: list[np.ndarray] = []
        self.samples = 0

    def push(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float64)
        self.samples += len(block)
        for windows in self._framer.push(block):
            if self.kind == "logmel":
                self._parts.append(log_mel(windows))
                continue
            batch = hop_features(windows)
            self._parts.append(np.stack([getattr(batch, name) for name in AUDIO_FEATURES], 1).astype(np.float32))

    def matrix(self) -> np.ndarray:
        """(H, 8) or (H, MEL_BANDS) features of every completed hop so far."""
        if not self._parts:
            return np.zeros((0, MEL_BANDS if self.kind == "logmel" else len(AUDIO_FEATURES)), np.float32)
        return np.concatenate(self._parts)


def audio_track(audio: np.ndarray) -> np.ndarray:
    """(H, 8) per-hop features (AUDIO_FEATURES) normalised: level relative to the clip's loud level, pitch and
    formants scaled (the lip-sync scorer's input and the learned model's "hop8" features)."""
    a = np.asarray(audio, np.float64)
    out = np.zeros((len(a), a.shape[1] if a.ndim == 2 else 8), np.float32)
    if len(a) == 0:
        return out
    level = a[:, 0]
    loud = np.percentile(level, 95)
    out[:, 0] = np.clip((level - loud) / 20.0, -4.0, 1.0)
    out[:, 1:5] = np.nan_to_num(a[:, 1:5])
    voiced = (a[:, 4] > 0.5) & np.isfinite(a[:, 5]) & (a[:, 5] > 0)
    out[voiced, 5] = np.log2(a[voiced, 5] / 150.0)
    for column, centre, scale in ((6, 500.0, 500.0), (7, 1500.0, 1000.0)):
        values = a[:, column]
        finite = np.isfinite(values)
        out[finite, column] = np.clip((values[finite] - centre) / scale, -3, 3)
    return out


def silence_row(track: np.ndarray) -> np.ndarray:
    """One hop of the clip's own silence in `audio_track` features (its lowest level, nothing else)."""
    row = np.zeros(track.shape[1], np.float32)
    row[0] = track[:, 0].min() if len(track) else -4.0
    return row


#: Offline, a chunk of audio is pushed to a generator at most this much at a time (10 s), so one huge
#: chunk does not make one huge batch of analysis windows.
OFFLINE_PUSH_SAMPLES = 10 * SAMPLE_RATE


def offline_blocks(chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The samples of `chunks` in blocks of at most OFFLINE_PUSH_SAMPLES (an empty chunk: one empty block)."""
    for chunk in chunks:
        chunk = np.asarray(chunk)
        for start in range(0, max(len(chunk), 1), OFFLINE_PUSH_SAMPLES):
            yield chunk[start: start + OFFLINE_PUSH_SAMPLES]
