"""Sounds a streamer's microphone hears besides the voice, and how far a generator opens the mouth on them.

Why: a live avatar whose mouth chatters along with game audio, keyboard
clicks, music or breathing looks broken. The voice gate (`speech.voice_gate`)
is judged here: each generator's mouth opening on synthesised non-speech sound
and in the pauses of real noisy recordings, as a share of its opening during
voiced speech in every language of shared/data/audio (`benchmarks/voice_gate.py`,
tests/speech/test_voice_gate.py). The sounds are made, not recorded, so the
measurement needs no data with unclear terms and every run hears the same ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from facecast.motion import EXPRESSION_CHANNELS, MotionFrame
from facecast.speech.audio_features import HopFramer, hop_features

RATE = 16000


def _at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """`x` scaled to an RMS of `dbfs`."""
    return x / (np.sqrt(np.mean(x**2)) + 1e-12) * 10 ** (dbfs / 20)


def white_noise(seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """Fan, hiss, a noisy preamp: flat-spectrum noise at -30 dBFS."""
    return _at_level(np.random.default_rng(seed).standard_normal(int(seconds * RATE)), -30)


def pink_noise(seconds: float = 4.0, seed: int = 1) -> np.ndarray:
    """Rain, wind, game ambience: 1/f noise at -30 dBFS."""
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.maximum(np.arange(len(spectrum)), 1)
    return _at_level(np.fft.irfft(spectrum / np.sqrt(f), n), -30)


def keyboard_clicks(seconds: float = 4.0, seed: int = 2) -> np.ndarray:
    """Typing: decaying broadband bursts with a 2-4 kHz ring, 4-12 a second, on a faint noise floor."""
    rng = np.random.default_rng(seed)
    n, length = int(seconds * RATE), int(0.015 * RATE)
    out = np.zeros(n)
    decay = np.arange(length) / RATE
    t = 0.1
    while t < seconds - 0.05:
        start = int(t * RATE)
        burst = rng.standard_normal(length) * np.exp(-decay / 0.002)
        burst += 0.5 * np.sin(2 * np.pi * rng.uniform(2000, 4000) * decay) * np.exp(-decay / 0.004)
        out[start:start + length] += burst * rng.uniform(0.3, 1.0)
        t += rng.uniform(0.08, 0.25)
    return _at_level(out, -32) + 1e-4 * rng.standard_normal(n)


def music(seconds: float = 4.0, seed: int = 3) -> np.ndarray:
    """Game or background music: a plucked chord sequence (root, third, fifth, octave, 5 harmonics each) with a
    melody note, a chord every 0.5 s (a syllable-like rhythm, strongly periodic: the hard case), -24 dBFS."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    out = np.zeros(n)
    roots = (220.0, 174.6, 261.6, 196.0)
    step = 0.5
    for k in range(int(seconds / step)):
        a, b = int(k * step * RATE), min(n, int((k + 1) * step * RATE))
        t = np.arange(b - a) / RATE
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-t / 0.6)
        root = roots[k % len(roots)]
        for ratio in (1.0, 1.25, 1.5, 2.0):
            for harmonic in range(1, 6):
                out[a:b] += envelope * np.sin(2 * np.pi * root * ratio * harmonic * t) / harmonic
        melody = 2 * root * (1.0, 1.125, 1.25, 1.5)[rng.integers(4)]
        out[a:b] += 0.6 * envelope * np.sin(2 * np.pi * melody * t)
    return _at_level(out, -24)


def breathing(seconds: float = 6.0, seed: int = 4) -> np.ndarray:
    """Breaths into the microphone: 400-2500 Hz noise swelling and fading 0.4 times a second, -36 dBFS."""
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    noise = sosfilt(butter(2, [400, 2500], "bandpass", fs=RATE, output="sos"), rng.standard_normal(n))
    return _at_level(noise * np.clip(np.sin(2 * np.pi * 0.4 * t), 0, None) ** 2, -36)


NON_SPEECH: dict[str, Callable[[], np.ndarray]] = {
    "white noise": white_noise, "pink noise": pink_noise, "keyboard clicks": keyboard_clicks, "music": music,
    "breathing": breathing,
}

#: Speech in every language of shared/data/audio (file stem -> language), for "the mouth still opens".
SPEECH_FILES = {
    "dreamtalk_German1": "German", "dreamtalk_chinese1_haierlizhi": "Mandarin", "dreamtalk_french1": "French",
    "dreamtalk_italian1": "Italian", "dreamtalk_japan1": "Japanese", "dreamtalk_korean1": "Korean",
    "dreamtalk_spanish1": "Spanish", "dreamtalk_out_of_domain_narrative": "English (narration)",
    "musetalk_eng": "English", "styletalk_intro": "English (intro)",
}
#: The noisy recordings (one English sentence under cafeteria babble at 0 dB SNR and meeting-room noise at
#: 10 dB), both ending at 6.44 s; their speech runs from 0.22 s to 5.45 s (read off the level of the 10 dB one:
#: same sentence, same timing).
NOISY_FILES = {"dreamtalk_noisy_audio_cafeter_snr_0": "cafeteria, 0 dB SNR",
               "dreamtalk_noisy_audio_meeting_snr_10": "meeting room, 10 dB SNR"}
NOISY_SPEECH_S, NOISY_END_S = (0.22, 5.45), 6.44
#: A pause, for the mouth, starts this long after the speech (the lips closing after the last syllable belong to
#: it) and ends this long before it: real speakers part their lips ahead of their first word (GRID s1 by the
#: corpus' word timings: a median 0.28 s, 0.40 s at the 75th percentile; benchmarks/README.md, "The voice gate").
PAUSE_AFTER_S, PAUSE_BEFORE_S = 0.3, 0.4
NOISY_PAUSES_S = tuple((a, b) for a, b in ((0.0, NOISY_SPEECH_S[0] - PAUSE_BEFORE_S),
                                           (NOISY_SPEECH_S[1] + PAUSE_AFTER_S, NOISY_END_S)) if b > a)


def mouth_opening(frames: Iterable[MotionFrame], per_coefficient: np.ndarray) -> np.ndarray:
    """(T,) how far the frames part the rendered lips (face heights; `mouth_gap.rendered_gap` on the frames'
    expressions): one number for every generator, whichever channels it moves."""
    from facecast.speech.mouth_gap import rendered_gap

    rows = np.array([[f.expressions.get(name, 0.0) for name in EXPRESSION_CHANNELS] for f in frames], float)
    return rendered_gap(rows.reshape(-1, len(EXPRESSION_CHANNELS)), per_coefficient)


def voiced_frames(samples: np.ndarray, fps: float, count: int) -> np.ndarray:
    """(count,) True for frames whose 40 ms around their time is voiced speech within 20 dB of the clip's loud
    level (clean recordings only): where a mouth must open."""
    hops = [hop_features(w) for w in HopFramer().push(np.asarray(samples, np.float64))]
    level = np.concatenate([h.level_db for h in hops])
    voicing = np.concatenate([h.voicing for h in hops])
    voiced = (voicing > 0.6) & (level > np.percentile(level, 95) - 20)
    # hop k's window ends at sample (k + 1) * 160: centred 12.5 ms before
    centre = (np.arange(len(level)) + 1) * 0.01 - 0.0125
    out = np.zeros(count, bool)
    for i in range(count):
        near = np.abs(centre - i / fps) <= 0.02
        out[i] = near.any() and voiced[near].mean() > 0.5
    return out


def in_spans(count: int, fps: float, spans: Iterable[tuple[float, float]]) -> np.ndarray:
    """(count,) True for frames whose time falls in one of `spans` (seconds)."""
    t = np.arange(count) / fps
    return np.any([(t >= a) & (t < b) for a, b in spans], axis=0)


def load_speech(data: Path, stem: str) -> np.ndarray:
    """16 kHz mono samples of shared/data/audio/`stem`.flac."""
    from facecast.media import decode_mono

    return decode_mono(data / "audio" / f"{stem}.flac")
