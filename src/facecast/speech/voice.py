"""Voice analysis: what the voice is doing at each output frame, from any 16 kHz speech, streaming.

Why its own module: the rule generator shapes the whole face from it, and the
learned generators (offline and live) take their visemes and voice level from it
(what VRM "A I U E O" avatars and VTube Studio read), as the training data's
came from it (`facecast extract`, the dataset). Neither needs the other's face.

1. `audio_features` turns each 10 ms hop into loudness, spectral balance,
   voicing/F0 and formants F1/F2 (vectorised over the hops a block completes).
2. A per-hop state machine normalises them online for the speaker (running
   noise floor, speech peak, formant and pitch statistics), infers mouth targets
   (openness, vowel class, lip closure for b/p/m and nasals, fricatives) and
   smooths them with attack/release filters; it also detects stressed syllables.
3. Output frame ``i`` (time ``i / fps``) interpolates that state once the audio
   up to ``i / fps + lookahead_s`` has been analysed (`VoiceAnalyser`), so the
   mouth moves slightly before the sound; the same frames whatever the block sizes.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from facecast.motion import VISEMES
from facecast.speech.audio_features import (
    HOP,
    SAMPLE_RATE,
    WIN,
    CaptureClock,
    HopFeatures,
    HopFramer,
    hop_features,
    offline_blocks,
)
from facecast.speech.voice_gate import VoiceGate

HOP_S = HOP / SAMPLE_RATE
#: How far past a frame's time the audio is read: features are centred ~12 ms
#: before the end of their window and the smoothing lags ~20 ms, so this makes
#: the mouth lead the sound by ~40-50 ms, as real articulation does. Frames
#: interpolate between the two hop states around ``t + LOOKAHEAD_S - HOP_S`` so
#: any frame rate (60, 120 fps) moves evenly.
LOOKAHEAD_S = 0.08

# --- loudness / speech activity (dB) -------------------------------------------------------------
NOISE_FLOOR_MIN_DB = -80.0
#: Minimum statistics: the noise floor is the lowest (lightly smoothed) level of the last
#: window; speech always has pauses or stop closures within it, so speech never becomes "noise".
NOISE_FLOOR_WINDOW_S = 1.5
NOISE_FLOOR_SMOOTH_S = 0.1           # ignores brief dips (stop closures, codec glitches)
#: The first hops' windows overlap the zeros before the stream: not evidence of the noise level.
_PADDED_HOPS = -(-(WIN - HOP) // HOP)
SPEECH_PEAK_INIT_DB = -20.0          # a typical speech level until the speaker's own is known
SPEECH_PEAK_DECAY_DB_PER_S = 2.0
SPEECH_PEAK_ATTACK = 0.3             # per voiced hop: a click or pop cannot set the speech level
MIN_DYNAMIC_RANGE_DB = 25.0          # keeps silence-only input from being normalised up to "speech"
ACTIVITY_SNR_DB = (6.0, 16.0)        # above the floor: silence -> fully speech
ACTIVITY_BELOW_PEAK_DB = (-30.0, -20.0)  # relative to the speech level: not speech -> speech
#: Speech is voiced within a syllable: an unvoiced burst (breath, click, lip smack) counts as
#: speech only this soon after voicing, so it does not open the mouth on its own.
VOICED_CONTEXT_S = 0.3
ABSOLUTE_GATE_DB = (-62.0, -52.0)    # dBFS: anything quieter is never speech
LOCAL_PEAK_RELEASE_S = 0.3           # recent speech level, for closure dips
CLOSURE_DIP_DB = (8.0, 18.0)         # dip below the recent level -> full closure
SPEECH_CONTEXT_S = 0.25              # a dip closes the lips only this soon after speech
NASAL_LOW_FRAC = (0.70, 0.90)        # share of energy < 500 Hz for nasal murmur
NASAL_MID_WEAKNESS = (2.5, 3.3)      # -log10 of the 1-3 kHz share: vowels ~2.2, nasal murmur ~3.3
NASAL_DIP_DB = (3.0, 9.0)            # nasals are a few dB weaker than vowels
FRICATIVE_HIGH_FRAC = (0.25, 0.55)   # share of energy > 3.5 kHz
VOICING_RANGE = (0.45, 0.75)

# --- speaker normalisation of formants and pitch (natural log of Hz) -----------------------------
STATS_PRIOR_HOPS = 50.0              # weight of the prior, in hops
STATS_WINDOW_HOPS = 600.0            # then an exponential window of ~6 s of voiced speech
LOG_F1_PRIOR = (math.log(500.0), 0.30)
LOG_F2_PRIOR = (math.log(1500.0), 0.22)
LOG_F0_PRIOR = (math.log(150.0), 0.20)

#: Vowel centres in speaker-normalised (F1 z, F2 z) space, and the soft-assignment width.
VOWEL_CENTRES = {"A": (1.2, 0.0), "I": (-1.0, 1.2), "U": (-1.0, -1.2), "E": (0.2, 0.9), "O": (0.3, -0.9)}
VOWEL_WIDTH = 0.9
VOWELS = tuple(VOWEL_CENTRES)

# --- smoothing time constants (s): (attack, release) ---------------------------------------------
OPEN_TC = (0.025, 0.045)
CLOSE_TC = (0.012, 0.06)
SHAPE_TC = 0.04
VOICE_TC = (0.02, 0.12)
ACCENT_TC = (0.03, 0.25)

# --- mouth mapping --------------------------------------------------------------------------------
JAW_MAX = 0.9                        # calibrated: lip gap during GRID words ~ the real s1 video's (0.027 face height)
UNVOICED_OPENING = 0.35              # share of full opening for voiceless speech

# --- prosody --------------------------------------------------------------------------------------
ACCENT_RISE_DB = (2.0, 8.0)          # energy above its slow average -> stressed syllable
ACCENT_SLOW_TC = 0.3


def smoothstep(x: float, lo_hi: tuple[float, float]) -> float:
    """0 below lo, 1 above hi, a smooth cubic in between."""
    lo, hi = lo_hi
    t = (x - lo) / (hi - lo)
    if t <= 0.0:
        return 0.0
    if t >= 1.0:
        return 1.0
    return t * t * (3.0 - 2.0 * t)


def clamp01(x: float) -> float:
    """x limited to [0, 1]."""
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def smoothing_coef(tc: float, step: float) -> float:
    """One-pole smoothing coefficient for time constant tc at the given step (s)."""
    return 1.0 - math.exp(-step / tc)


class _RunningStats:
    """Mean/std of a log-frequency with a prior, then an exponential window: online speaker adaptation."""

    def __init__(self, prior: tuple[float, float]) -> None:
        self.mean, std = prior
        self.var = std * std
        self.weight = STATS_PRIOR_HOPS
        self.floor_var = (0.4 * std) ** 2

    def update(self, value: float) -> None:
        self.weight = min(self.weight + 1.0, STATS_WINDOW_HOPS)
        rate = 1.0 / self.weight
        delta = value - self.mean
        self.mean += rate * delta
        self.var += rate * (delta * delta - self.var)

    def z(self, value: float) -> float:
        return (value - self.mean) / math.sqrt(max(self.var, self.floor_var))


@dataclass(slots=True)
class MouthState:
    """The smoothed per-hop analysis that output frames sample."""

    activity: float = 0.0
    voice: float = 0.0
    open: float = 0.0
    close: float = 0.0
    fricative: float = 0.0
    z1: float = 0.0      # speaker-normalised log F1 (vowel openness)
    z2: float = 0.0      # speaker-normalised log F2 (front/back)
    accent: float = 0.0
    pitch_z: float = 0.0
    speech: float = 0.0  # the voice gate (`voice_gate`): 1 while the sound is a voice, 0 on anything else

    def copy(self) -> "MouthState":
        return MouthState(self.activity, self.voice, self.open, self.close, self.fricative,
                          self.z1, self.z2, self.accent, self.pitch_z, self.speech)

    def lerp(self, other: "MouthState", w: float) -> "MouthState":
        """The state a fraction w of the way from self to other."""
        return MouthState(*(a + w * (b - a) for a, b in (
            (self.activity, other.activity), (self.voice, other.voice), (self.open, other.open),
            (self.close, other.close), (self.fricative, other.fricative), (self.z1, other.z1),
            (self.z2, other.z2), (self.accent, other.accent), (self.pitch_z, other.pitch_z),
            (self.speech, other.speech))))


class _HopAnalyser:
    """Per-hop online normalisation, mouth targets and smoothing (the stateful part of step 2)."""

    def __init__(self) -> None:
        self.floor = NOISE_FLOOR_MIN_DB
        self.smooth_level = NOISE_FLOOR_MIN_DB
        self.minima: deque[tuple[int, float]] = deque()  # (hop, level), increasing levels
        self.hop = 0
        self.peak = SPEECH_PEAK_INIT_DB
        self.local_peak = NOISE_FLOOR_MIN_DB
        self.context = 0.0
        self.voiced_context = 0.0
        self.slow_level = NOISE_FLOOR_MIN_DB
        self.f1_stats = _RunningStats(LOG_F1_PRIOR)
        self.f2_stats = _RunningStats(LOG_F2_PRIOR)
        self.f0_stats = _RunningStats(LOG_F0_PRIOR)
        self.state = MouthState()
        self.gate = VoiceGate()
        self._floor_smooth = smoothing_coef(NOISE_FLOOR_SMOOTH_S, HOP_S)
        self._floor_window = round(NOISE_FLOOR_WINDOW_S / HOP_S)
        self._peak_decay = SPEECH_PEAK_DECAY_DB_PER_S * HOP_S
        self._local_release = smoothing_coef(LOCAL_PEAK_RELEASE_S, HOP_S)
        self._context_decay = math.exp(-HOP_S / SPEECH_CONTEXT_S)
        self._voiced_decay = math.exp(-HOP_S / VOICED_CONTEXT_S)
        self._slow = smoothing_coef(ACCENT_SLOW_TC, HOP_S)
        self._shape = smoothing_coef(SHAPE_TC, HOP_S)
        self._open = tuple(smoothing_coef(tc, HOP_S) for tc in OPEN_TC)
        self._close = tuple(smoothing_coef(tc, HOP_S) for tc in CLOSE_TC)
        self._voice = tuple(smoothing_coef(tc, HOP_S) for tc in VOICE_TC)
        self._accent = tuple(smoothing_coef(tc, HOP_S) for tc in ACCENT_TC)

    def step(self, level: float, low: float, mid: float, high: float, voicing: float,
             f0: float, f1: float, f2: float, flatness: float) -> MouthState:
        """Advance by one hop and return the new smoothed state."""
        # Noise floor (sliding minimum) and the speaker's loud-speech level.
        minima = self.minima
        if self.hop >= _PADDED_HOPS:
            if self.hop == _PADDED_HOPS:
                self.smooth_level = level
            self.smooth_level += self._floor_smooth * (level - self.smooth_level)
            while minima and minima[-1][1] >= self.smooth_level:
                minima.pop()
            minima.append((self.hop, self.smooth_level))
            if minima[0][0] <= self.hop - self._floor_window:
                minima.popleft()
            self.floor = max(NOISE_FLOOR_MIN_DB, min(level, minima[0][1]))
        self.hop += 1
        if level > self.peak and voicing > VOICING_RANGE[0]:
            self.peak += SPEECH_PEAK_ATTACK * (level - self.peak)
        else:
            self.peak -= self._peak_decay
        self.peak = max(self.peak, self.floor + MIN_DYNAMIC_RANGE_DB)
        snr = level - self.floor
        loud_enough = (smoothstep(snr, ACTIVITY_SNR_DB) * smoothstep(level, ABSOLUTE_GATE_DB)
                       * smoothstep(level - self.peak, ACTIVITY_BELOW_PEAK_DB))
        voiced = smoothstep(voicing, VOICING_RANGE) * loud_enough
        self.voiced_context = max(voiced, self.voiced_context * self._voiced_decay)
        activity = loud_enough * self.voiced_context
        voiced = min(voiced, activity)
        loudness = clamp01((level - self.floor - ACTIVITY_SNR_DB[0]) / (self.peak - self.floor - ACTIVITY_SNR_DB[0]))

        # Closures: a sudden dip inside speech (stop closure) or a weak, low-frequency murmur (nasal).
        if activity > 0.5 and level > self.local_peak:
            self.local_peak = level
        else:
            self.local_peak += self._local_release * (max(level, self.floor) - self.local_peak)
        self.context = max(activity, self.context * self._context_decay)
        dip = self.local_peak - level
        fricative = activity * (1.0 - voiced) * smoothstep(high, FRICATIVE_HIGH_FRAC)
        stop_closure = self.context * smoothstep(dip, CLOSURE_DIP_DB) * (1.0 - fricative)
        weak_mid = smoothstep(-math.log10(mid + 1e-9), NASAL_MID_WEAKNESS)
        nasal = voiced * smoothstep(low, NASAL_LOW_FRAC) * weak_mid * smoothstep(dip, NASAL_DIP_DB)
        closure = max(stop_closure, nasal)

        # Vowel shape from speaker-normalised formants (held while unvoiced or not found).
        s = self.state
        shape = self._shape
        if voiced > 0.5 and f1 == f1 and f2 == f2:
            lf1, lf2 = math.log(f1), math.log(f2)
            self.f1_stats.update(lf1)
            self.f2_stats.update(lf2)
            s.z1 += shape * (self.f1_stats.z(lf1) - s.z1)
            s.z2 += shape * (self.f2_stats.z(lf2) - s.z2)
        pitch_z = s.pitch_z
        if voiced > 0.5:
            lf0 = math.log(f0)
            self.f0_stats.update(lf0)
            pitch_z = self.f0_stats.z(lf0)

        openness = clamp01(0.5 + 0.3 * s.z1)
        speech = UNVOICED_OPENING * activity + (1.0 - UNVOICED_OPENING) * voiced
        open_target = JAW_MAX * speech * (0.3 + 0.7 * openness) * (0.5 + 0.5 * loudness)
        open_target *= 1.0 - closure

        # Stressed syllables: energy jumping above its slow average, weighted up by high pitch.
        rise = level - self.slow_level
        self.slow_level += self._slow * (level - self.slow_level)
        accent = voiced * smoothstep(rise, ACCENT_RISE_DB) * (0.5 + 0.5 * clamp01(pitch_z))

        s.activity += shape * (activity - s.activity)
        s.voice = follow(s.voice, loudness * activity, self._voice)
        s.open = follow(s.open, open_target, self._open)
        s.close = follow(s.close, closure, self._close)
        s.fricative += shape * (fricative - s.fricative)
        s.accent = follow(s.accent, accent, self._accent)
        s.pitch_z += shape * (pitch_z - s.pitch_z) * voiced
        s.speech = self.gate.step(level, voicing, f0, flatness)
        return s


def follow(value: float, target: float, coefs: tuple[float, float]) -> float:
    """Asymmetric one-pole: fast towards larger values (attack), slower back (release)."""
    return value + (coefs[0] if target > value else coefs[1]) * (target - value)


_VOWEL_SCALE = -0.5 / (VOWEL_WIDTH * VOWEL_WIDTH)


def vowel_weights(z1: float, z2: float) -> list[float]:
    """Soft vowel class (sums to 1) from speaker-normalised formants."""
    raw = [math.exp(_VOWEL_SCALE * ((z1 - c1) ** 2 + (z2 - c2) ** 2)) for c1, c2 in VOWEL_CENTRES.values()]
    total = sum(raw) or 1.0
    return [r / total for r in raw]


def viseme_weights(m: MouthState, vowels: list[float]) -> dict[str, float]:
    """Silence takes what voiced vowels leave; closures count as silence (lips together)."""
    vowel_mass = clamp01(m.activity) * (1.0 - clamp01(m.close))
    out = {"sil": 1.0 - vowel_mass}
    out.update({name: vowel_mass * w for name, w in zip(VOWELS, vowels)})
    return {name: out[name] for name in VISEMES}


@dataclass(frozen=True, slots=True)
class VoiceFrame:
    """The voice at output frame `index` (time index / fps)."""

    index: int
    state: MouthState            # the smoothed per-hop analysis, interpolated to the frame's time
    vowels: list[float]          # soft vowel class, VOWELS order (sums to 1)
    capture_time: float | None   # capture time of the newest sample the frame needed (None: untimed input)

    @property
    def visemes(self) -> dict[str, float]:
        """VISEMES weights (sum to 1)."""
        return viseme_weights(self.state, self.vowels)

    @property
    def voice(self) -> float:
        """The voice level in [0, 1]."""
        return clamp01(self.state.voice)

    @property
    def speech(self) -> float:
        """The voice gate in [0, 1] (`voice_gate`): how far the mouth may move (0: the sound is not a voice)."""
        return clamp01(self.state.speech)


class VoiceAnalyser:
    """Streaming 16 kHz mono -> one `VoiceFrame` per output frame at `fps`; identical frames whatever the
    block sizes pushed. A frame comes out once the audio up to `lookahead_s` after its time is analysed."""

    SAMPLE_RATE = SAMPLE_RATE

    def __init__(self, fps: float = 25.0, lookahead_s: float = LOOKAHEAD_S) -> None:
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be a positive number, got {fps}")
        self.fps = float(fps)
        self.lookahead_s = lookahead_s
        self._framer = HopFramer()
        self._analyser = _HopAnalyser()
        self._clock = CaptureClock()  # real samples received and when
        self._hops = 0             # hops analysed
        self._next_frame = 0       # next frame whose mouth snapshot is pending
        self._emitted = 0          # frames returned
        self._snapshots: deque[tuple[MouthState, int]] = deque()  # (interpolated state, hops it needed)
        self._before = self._analyser.state.copy()  # state after k hops, for the next frame's interpolation
        self._finished = False

    def _frame_position(self, i: int) -> tuple[int, float]:
        """Frame i interpolates the states after k and k + 1 hops with weight w: (k, w).

        Hop k + 1 ends at most `lookahead_s` after the frame's time.
        """
        position = (i / self.fps + self.lookahead_s - HOP_S) * SAMPLE_RATE / HOP
        k = math.floor(position)
        return k, position - k

    def push(self, samples: np.ndarray, capture_time: float | None = None) -> list[VoiceFrame]:
        """Feed the next block of 16 kHz mono samples; return the frames that became final."""
        if self._finished:
            raise RuntimeError("push() after finish(): create a new generator for a new stream")
        block = np.asarray(samples, dtype=np.float64)
        if block.ndim != 1:
            raise ValueError(f"expected mono samples (a 1-D array), got shape {block.shape}")
        block = np.nan_to_num(block, nan=0.0, posinf=1.0, neginf=-1.0)
        self._clock.add(len(block), capture_time)
        self._analyse(block)
        # A frame exists only if the stream is certainly long enough: D * fps > i + 0.5.
        return self._emit(lambda i: self._clock.samples * self.fps > (i + 0.5) * SAMPLE_RATE)

    def finish(self) -> list[VoiceFrame]:
        """End of input: pad silence for the lookahead and return the remaining frames."""
        if self._finished:
            return []
        self._finished = True
        total = max(1, round(self._clock.samples / SAMPLE_RATE * self.fps))
        missing = (self._frame_position(total - 1)[0] + 1) * HOP - self._clock.samples
        if missing > 0:
            self._analyse(np.zeros(missing))
        return self._emit(lambda i: i < total)

    def _analyse(self, block: np.ndarray) -> None:
        step = self._analyser.step
        for windows in self._framer.push(block):
            f: HopFeatures = hop_features(windows)
            columns = zip(*(getattr(f, name).tolist() for name in
                            ("level_db", "low_frac", "mid_frac", "high_frac", "voicing", "f0", "f1", "f2",
                             "flatness")))
            k, w = self._frame_position(self._next_frame)
            for values in columns:
                if k == self._hops:
                    self._before = self._analyser.state.copy()
                state = step(*values)
                self._hops += 1
                while k < self._hops:
                    self._snapshots.append((self._before.lerp(state, w), self._hops))
                    self._next_frame += 1
                    k, w = self._frame_position(self._next_frame)

    def _emit(self, exists: Callable[[int], bool]) -> list[VoiceFrame]:
        frames = []
        while self._snapshots and exists(self._emitted):
            state, hops = self._snapshots.popleft()
            # the capture time of the newest sample the frame needed (the last real one for padding)
            frames.append(VoiceFrame(self._emitted, state, vowel_weights(state.z1, state.z2),
                                     self._clock.time_of(hops * HOP - 1)))
            self._emitted += 1
        return frames


def voice_frames(chunks: Iterable[np.ndarray], fps: float) -> Iterator[VoiceFrame]:
    """Offline: every `VoiceFrame` of a finite stream of 16 kHz mono chunks, lazily (constant memory)."""
    analyser = VoiceAnalyser(fps=fps)
    for block in offline_blocks(chunks):
        yield from analyser.push(block)
    yield from analyser.finish()


def voice_track(chunks: Iterable[np.ndarray], fps: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Visemes (count, len(VISEMES)) and voice level (count,) of 16 kHz mono speech at `fps` (silence past
    its end): what `facecast extract` and the dataset store beside the face's motion."""
    visemes = np.zeros((count, len(VISEMES)))
    visemes[:, VISEMES.index("sil")] = 1.0
    voice = np.zeros(count)
    for frame in voice_frames(chunks, fps):
        if frame.index >= count:
            break
        weights = frame.visemes
        visemes[frame.index] = [weights[name] for name in VISEMES]
        voice[frame.index] = frame.voice
    return visemes, voice
