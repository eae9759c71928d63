"""Rule-based audio -> motion: a talking, blinking, breathing face from any voice, no training data.

Why rules: they work for every voice and language on day one, run hundreds of
times faster than real time on a CPU, and give a baseline for learned models.

Pipeline (all streaming, so the live path and the offline path give the same frames):

1. `audio_features` turns each 10 ms hop into loudness, spectral balance,
   voicing/F0 and formants F1/F2 (vectorised over the hops a block completes).
2. A per-hop state machine normalises them online for the speaker (running
   noise floor, speech peak, formant and pitch statistics), infers mouth targets
   (openness, vowel class, lip closure for b/p/m and nasals, fricatives) and
   smooths them with attack/release filters; it also detects stressed syllables.
3. Output frame ``i`` (time ``i / fps``) interpolates that state once the audio
   up to ``i / fps + lookahead_s`` has been analysed, so the mouth moves slightly
   before the sound, and adds head motion, blinks, gaze and breathing driven by
   a seeded generator that draws a fixed number of numbers per frame.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from facecast.speech.audio_features import (
    HOP, SAMPLE_RATE, WIN, CaptureClock, HopFeatures, HopFramer, hop_features,
)
from facecast.motion import VISEMES, Blink, Gaze, HeadPose, MotionFrame

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
JAW_MAX = 0.9                        # calibrated: measured lip gap during GRID words ~ real s1 video (0.027 of face height)
UNVOICED_OPENING = 0.35              # share of full opening for voiceless speech
FRICATIVE_JAW = 0.12

# --- prosody --------------------------------------------------------------------------------------
ACCENT_RISE_DB = (2.0, 8.0)          # energy above its slow average -> stressed syllable
ACCENT_SLOW_TC = 0.3
ACCENT_EVENT_THRESHOLD = 0.5

# --- head, eyes (degrees, seconds) ---------------------------------------------------------------
@dataclass(frozen=True)
class _Drift:
    """One channel of slow head drift: filtered noise of unit std scaled by `std`."""

    std: float
    tc: float


HEAD_DRIFT = {
    "yaw": _Drift(3.0, 0.9), "pitch": _Drift(1.8, 0.7), "roll": _Drift(0.9, 1.2),
    "x": _Drift(0.004, 1.5), "y": _Drift(0.003, 1.5), "distance": _Drift(0.006, 2.5),
}
IDLE_DRIFT_GAIN = 0.45               # drift amplitude in silence relative to speech
TALK_TC = 0.8                        # how fast the head settles after speech
#: Hysteresis on the smoothed talk level: a phrase ends at a real pause, not at a stop closure.
PHRASE_ON, PHRASE_OFF = 0.5, 0.25
NOD_DEG = 2.5
NOD_TC = 0.12
TURN_DEG = 2.0
TURN_PROB = 0.5                      # share of stressed syllables that turn the head
TURN_TC = 0.35
PITCH_FOLLOW_DEG = 1.5               # head rises slightly with the voice's pitch...
PITCH_FOLLOW_TC = 0.3                # ...slowly, following the intonation contour, not syllables
BREATH_HZ = 0.25
BREATH_PITCH_DEG = 0.35
BREATH_Y = 0.0015
HEAD_FOLLOWS_GAZE = 0.2              # the head turns part of the way towards a glance...
HEAD_FOLLOW_TC = 0.3                 # ...more slowly than the eyes
BROW_LIFT = 0.35                     # brows lift on clearly stressed, high-pitched syllables
BROW_ACCENT = (0.4, 0.9)
BROW_PITCH_Z = (0.5, 1.5)
BROW_TC = (0.08, 0.5)

BLINK_RATE_PER_MIN = 16.0
BLINK_REFRACTORY_S = 0.8
PHRASE_END_BLINK_PROB = 0.5          # extra blink chance spread over the pause onset
PHRASE_END_WINDOW_S = 0.5
BLINK_CLOSE_S, BLINK_HOLD_S, BLINK_OPEN_S = 0.09, 0.06, 0.18
BLINK_ASYMMETRY = 0.06

GLANCE_RATE_PER_MIN = 4.0
GLANCE_DEG = (5.0, 12.0)
GLANCE_HOLD_S = (0.3, 1.2)
SACCADE_TC = 0.03
MICROSACCADE_RATE_HZ = 1.2
MICROSACCADE_DEG = 0.4

#: Offline block size: 10 s of audio per push keeps memory bounded for one huge chunk.
OFFLINE_PUSH_SAMPLES = 10 * SAMPLE_RATE

_N_NORMAL = len(HEAD_DRIFT) + 2      # drift channels + micro-saccade offset
_N_UNIFORM = 10


def _smoothstep(x: float, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    t = (x - lo) / (hi - lo)
    if t <= 0.0:
        return 0.0
    if t >= 1.0:
        return 1.0
    return t * t * (3.0 - 2.0 * t)


def _clamp01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def _coef(tc: float, step: float) -> float:
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
class _MouthState:
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

    def copy(self) -> "_MouthState":
        return _MouthState(self.activity, self.voice, self.open, self.close, self.fricative,
                           self.z1, self.z2, self.accent, self.pitch_z)

    def lerp(self, other: "_MouthState", w: float) -> "_MouthState":
        """The state a fraction w of the way from self to other."""
        return _MouthState(*(a + w * (b - a) for a, b in (
            (self.activity, other.activity), (self.voice, other.voice), (self.open, other.open),
            (self.close, other.close), (self.fricative, other.fricative), (self.z1, other.z1),
            (self.z2, other.z2), (self.accent, other.accent), (self.pitch_z, other.pitch_z))))


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
        self.state = _MouthState()
        self._floor_smooth = _coef(NOISE_FLOOR_SMOOTH_S, HOP_S)
        self._floor_window = round(NOISE_FLOOR_WINDOW_S / HOP_S)
        self._peak_decay = SPEECH_PEAK_DECAY_DB_PER_S * HOP_S
        self._local_release = _coef(LOCAL_PEAK_RELEASE_S, HOP_S)
        self._context_decay = math.exp(-HOP_S / SPEECH_CONTEXT_S)
        self._voiced_decay = math.exp(-HOP_S / VOICED_CONTEXT_S)
        self._slow = _coef(ACCENT_SLOW_TC, HOP_S)
        self._shape = _coef(SHAPE_TC, HOP_S)
        self._open = tuple(_coef(tc, HOP_S) for tc in OPEN_TC)
        self._close = tuple(_coef(tc, HOP_S) for tc in CLOSE_TC)
        self._voice = tuple(_coef(tc, HOP_S) for tc in VOICE_TC)
        self._accent = tuple(_coef(tc, HOP_S) for tc in ACCENT_TC)

    def step(self, level: float, low: float, mid: float, high: float, voicing: float,
             f0: float, f1: float, f2: float) -> _MouthState:
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
        loud_enough = (_smoothstep(snr, ACTIVITY_SNR_DB) * _smoothstep(level, ABSOLUTE_GATE_DB)
                       * _smoothstep(level - self.peak, ACTIVITY_BELOW_PEAK_DB))
        voiced = _smoothstep(voicing, VOICING_RANGE) * loud_enough
        self.voiced_context = max(voiced, self.voiced_context * self._voiced_decay)
        activity = loud_enough * self.voiced_context
        voiced = min(voiced, activity)
        loudness = _clamp01((level - self.floor - ACTIVITY_SNR_DB[0]) / (self.peak - self.floor - ACTIVITY_SNR_DB[0]))

        # Closures: a sudden dip inside speech (stop closure) or a weak, low-frequency murmur (nasal).
        if activity > 0.5 and level > self.local_peak:
            self.local_peak = level
        else:
            self.local_peak += self._local_release * (max(level, self.floor) - self.local_peak)
        self.context = max(activity, self.context * self._context_decay)
        dip = self.local_peak - level
        fricative = activity * (1.0 - voiced) * _smoothstep(high, FRICATIVE_HIGH_FRAC)
        stop_closure = self.context * _smoothstep(dip, CLOSURE_DIP_DB) * (1.0 - fricative)
        weak_mid = _smoothstep(-math.log10(mid + 1e-9), NASAL_MID_WEAKNESS)
        nasal = voiced * _smoothstep(low, NASAL_LOW_FRAC) * weak_mid * _smoothstep(dip, NASAL_DIP_DB)
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

        openness = _clamp01(0.5 + 0.3 * s.z1)
        speech = UNVOICED_OPENING * activity + (1.0 - UNVOICED_OPENING) * voiced
        open_target = JAW_MAX * speech * (0.3 + 0.7 * openness) * (0.5 + 0.5 * loudness)
        open_target *= 1.0 - closure

        # Stressed syllables: energy jumping above its slow average, weighted up by high pitch.
        rise = level - self.slow_level
        self.slow_level += self._slow * (level - self.slow_level)
        accent = voiced * _smoothstep(rise, ACCENT_RISE_DB) * (0.5 + 0.5 * _clamp01(pitch_z))

        s.activity += shape * (activity - s.activity)
        s.voice = _follow(s.voice, loudness * activity, self._voice)
        s.open = _follow(s.open, open_target, self._open)
        s.close = _follow(s.close, closure, self._close)
        s.fricative += shape * (fricative - s.fricative)
        s.accent = _follow(s.accent, accent, self._accent)
        s.pitch_z += shape * (pitch_z - s.pitch_z) * voiced
        return s


def _follow(value: float, target: float, coefs: tuple[float, float]) -> float:
    """Asymmetric one-pole: fast towards larger values (attack), slower back (release)."""
    return value + (coefs[0] if target > value else coefs[1]) * (target - value)


class _FaceAnimator:
    """Step 3: turns mouth snapshots into frames, adding seeded head, eye and brow life."""

    def __init__(self, fps: float, seed: int) -> None:
        self.fps = fps
        self.dt = 1.0 / fps
        self.rng = np.random.default_rng(seed)
        self.index = 0
        self.drift = {name: [0.0, 0.0] for name in HEAD_DRIFT}
        self.drift_coef = {name: _coef(d.tc, self.dt) for name, d in HEAD_DRIFT.items()}
        # Unit-variance gain of two cascaded one-poles driven by unit white noise.
        self.drift_gain = {name: _cascade_gain(c) for name, c in self.drift_coef.items()}
        self.talk = 0.0
        self.talk_coef = _coef(TALK_TC, self.dt)
        self.nod = 0.0
        self.lift = 0.0
        self.lift_coef = _coef(PITCH_FOLLOW_TC, self.dt)
        self.nod_coef = _coef(NOD_TC, self.dt)
        self.turn_target = 0.0
        self.turn = 0.0
        self.turn_coef = _coef(TURN_TC, self.dt)
        self.accent_armed = True
        self.blink_start: float | None = None
        self.blink_right_scale = 1.0
        self.last_blink = -BLINK_REFRACTORY_S
        self.since_speech_end = math.inf
        self.in_phrase = False
        self.glance_target = (0.0, 0.0)
        self.glance_until = -1.0
        self.micro = (0.0, 0.0)
        self.gaze = [0.0, 0.0]
        self.saccade_coef = _coef(SACCADE_TC, self.dt)
        self.breath_phase = 0.0
        self.head_gaze = [0.0, 0.0]
        self.head_gaze_coef = _coef(HEAD_FOLLOW_TC, self.dt)
        self.brow = 0.0
        self.brow_coefs = tuple(_coef(tc, self.dt) for tc in BROW_TC)

    def frame(self, m: _MouthState, capture_time: float | None) -> MotionFrame:
        t = self.index / self.fps
        self.index += 1
        normal = self.rng.standard_normal(_N_NORMAL).tolist()
        uniform = self.rng.random(_N_UNIFORM).tolist()
        dt = self.dt

        self.talk += self.talk_coef * (m.activity - self.talk)
        if self.in_phrase and self.talk < PHRASE_OFF:
            self.in_phrase = False
            self.since_speech_end = 0.0
        elif not self.in_phrase:
            self.in_phrase = self.talk > PHRASE_ON
            self.since_speech_end = math.inf if self.in_phrase else self.since_speech_end + dt

        # Head: drift (larger while talking), nods and turns on accents, breathing, gaze following.
        gain = IDLE_DRIFT_GAIN + (1.0 - IDLE_DRIFT_GAIN) * self.talk
        drift = {}
        for j, (name, spec) in enumerate(HEAD_DRIFT.items()):
            state, c = self.drift[name], self.drift_coef[name]
            state[0] += c * (normal[j] * gain * self.drift_gain[name] - state[0])
            state[1] += c * (state[0] - state[1])
            drift[name] = state[1] * spec.std
        if m.accent > ACCENT_EVENT_THRESHOLD and self.accent_armed:
            if uniform[9] < TURN_PROB:
                self.turn_target = TURN_DEG * (2.0 * uniform[0] - 1.0)
            self.accent_armed = False
        elif m.accent < 0.5 * ACCENT_EVENT_THRESHOLD:
            self.accent_armed = True
        self.turn += self.turn_coef * (self.turn_target * self.talk - self.turn)
        self.nod += self.nod_coef * (m.accent - self.nod)
        self.lift += self.lift_coef * (PITCH_FOLLOW_DEG * m.pitch_z * m.activity - self.lift)
        self.breath_phase += 2.0 * math.pi * BREATH_HZ * dt * (0.9 + 0.2 * uniform[1])
        breath = math.sin(self.breath_phase)
        gaze_yaw, gaze_pitch = self._gaze(t, normal, uniform)
        follow = self.head_gaze
        follow[0] += self.head_gaze_coef * (HEAD_FOLLOWS_GAZE * gaze_yaw - follow[0])
        follow[1] += self.head_gaze_coef * (HEAD_FOLLOWS_GAZE * gaze_pitch - follow[1])
        head = HeadPose(
            yaw=drift["yaw"] + self.turn + follow[0],
            pitch=drift["pitch"] - NOD_DEG * self.nod + self.lift
            + BREATH_PITCH_DEG * breath + follow[1],
            roll=drift["roll"],
            x=drift["x"],
            y=drift["y"] + BREATH_Y * breath,
            distance=1.0 + drift["distance"],
        )

        blink = self._blink(t, uniform)
        brow_target = BROW_LIFT * _smoothstep(m.accent, BROW_ACCENT) * _smoothstep(m.pitch_z, BROW_PITCH_Z)
        self.brow = _follow(self.brow, brow_target, self.brow_coefs)
        vowels = _vowel_weights(m.z1, m.z2)
        return MotionFrame(
            t=t, head=head, gaze=Gaze(gaze_yaw, gaze_pitch),
            blink=Blink(blink, blink * self.blink_right_scale),
            expressions=_mouth_expressions(m, vowels, self.brow), visemes=_visemes(m, vowels), voice=_clamp01(m.voice),
            capture_time=capture_time,
        )

    def _blink(self, t: float, uniform: list[float]) -> float:
        """Poisson-like blinks with a refractory gap, more likely right after a phrase ends."""
        hazard = BLINK_RATE_PER_MIN / 60.0 * self.dt
        if self.since_speech_end < PHRASE_END_WINDOW_S:
            hazard += PHRASE_END_BLINK_PROB * self.dt / PHRASE_END_WINDOW_S
        if self.blink_start is None and t - self.last_blink >= BLINK_REFRACTORY_S and uniform[2] < hazard:
            self.blink_start = self.last_blink = t - self.dt  # first frame is already on the way down
            self.blink_right_scale = 1.0 - BLINK_ASYMMETRY * uniform[3]
        if self.blink_start is None:
            return 0.0
        s = t - self.blink_start
        if s < BLINK_CLOSE_S:
            return _smoothstep(s, (0.0, BLINK_CLOSE_S))
        s -= BLINK_CLOSE_S + BLINK_HOLD_S
        if s <= 0.0:
            return 1.0
        if s < BLINK_OPEN_S:
            return 1.0 - _smoothstep(s, (0.0, BLINK_OPEN_S))
        self.blink_start = None
        return 0.0

    def _gaze(self, t: float, normal: list[float], uniform: list[float]) -> tuple[float, float]:
        """Mostly at the camera; occasional glances away and tiny micro-saccades."""
        if t >= self.glance_until:
            self.glance_target = (0.0, 0.0)
            if uniform[4] < GLANCE_RATE_PER_MIN / 60.0 * self.dt:
                angle = 2.0 * math.pi * uniform[5]
                size = GLANCE_DEG[0] + (GLANCE_DEG[1] - GLANCE_DEG[0]) * uniform[6]
                # Glances are mostly sideways and rather down than up.
                self.glance_target = (size * math.cos(angle), 0.5 * size * math.sin(angle) - 1.0)
                self.glance_until = t + GLANCE_HOLD_S[0] + (GLANCE_HOLD_S[1] - GLANCE_HOLD_S[0]) * uniform[7]
        n = len(HEAD_DRIFT)
        if uniform[8] < MICROSACCADE_RATE_HZ * self.dt:
            self.micro = (MICROSACCADE_DEG * normal[n], MICROSACCADE_DEG * normal[n + 1])
        for axis in range(2):
            target = self.glance_target[axis] + self.micro[axis]
            self.gaze[axis] += self.saccade_coef * (target - self.gaze[axis])
        return self.gaze[0], self.gaze[1]


def _cascade_gain(c: float) -> float:
    """Input gain making two cascaded one-poles (coefficient c) output unit variance for unit white noise."""
    a = 1.0 - c
    # Variance of y for x_n = a x + c w, y_n = a y + c x: c^4 (1 + a^2) / (1 - a^2)^3.
    return 1.0 / math.sqrt(c**4 * (1.0 + a * a) / (1.0 - a * a) ** 3)


_VOWEL_SCALE = -0.5 / (VOWEL_WIDTH * VOWEL_WIDTH)


def _vowel_weights(z1: float, z2: float) -> list[float]:
    """Soft vowel class (sums to 1) from speaker-normalised formants."""
    raw = [math.exp(_VOWEL_SCALE * ((z1 - c1) ** 2 + (z2 - c2) ** 2)) for c1, c2 in VOWEL_CENTRES.values()]
    total = sum(raw) or 1.0
    return [r / total for r in raw]


def _visemes(m: _MouthState, vowels: list[float]) -> dict[str, float]:
    """Silence takes what voiced vowels leave; closures count as silence (lips together)."""
    vowel_mass = _clamp01(m.activity) * (1.0 - _clamp01(m.close))
    out = {"sil": 1.0 - vowel_mass}
    out.update({name: vowel_mass * w for name, w in zip(VOWELS, vowels)})
    return {name: out[name] for name in VISEMES}


def _mouth_expressions(m: _MouthState, vowels: list[float], brow: float) -> dict[str, float]:
    a, i, u, e, o = vowels
    opening = _clamp01(m.open + FRICATIVE_JAW * m.fricative)
    active = _clamp01(m.activity)
    close = _clamp01(m.close) * active
    spread = active * (i + e)
    funnel = _clamp01((0.6 * o + 0.35 * u) * active * (0.4 + opening))
    pucker = _clamp01((0.7 * u + 0.35 * o) * active)
    stretch = _clamp01(0.35 * spread + 0.25 * m.fricative)
    smile = _clamp01(0.15 * spread)
    lower = _clamp01(opening * (0.6 * a + 0.4 * e + 0.3 * o) * 1.2)
    upper = _clamp01(opening * (0.4 * a + 0.3 * e + 0.2 * i) * 0.8)
    press = 0.3 * close
    return {
        "jawOpen": opening,
        "mouthClose": close,
        "mouthFunnel": funnel,
        "mouthPucker": pucker,
        "mouthStretchLeft": stretch,
        "mouthStretchRight": stretch,
        "mouthSmileLeft": smile,
        "mouthSmileRight": smile,
        "mouthLowerDownLeft": lower,
        "mouthLowerDownRight": lower,
        "mouthUpperUpLeft": upper,
        "mouthUpperUpRight": upper,
        "mouthPressLeft": press,
        "mouthPressRight": press,
        "browInnerUp": _clamp01(brow),
        "browOuterUpLeft": _clamp01(0.7 * brow),
        "browOuterUpRight": _clamp01(0.7 * brow),
    }


class RuleMotionGenerator:
    """Streaming audio -> `MotionFrame`s; identical frames whatever the block sizes pushed."""

    SAMPLE_RATE = SAMPLE_RATE

    def __init__(self, fps: float = 25.0, seed: int = 0) -> None:
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be a positive number, got {fps}")
        self.fps = float(fps)
        self.lookahead_s = LOOKAHEAD_S
        self._framer = HopFramer()
        self._analyser = _HopAnalyser()
        self._animator = _FaceAnimator(self.fps, seed)
        self._clock = CaptureClock()  # real samples received and when
        self._hops = 0             # hops analysed
        self._next_frame = 0       # next frame whose mouth snapshot is pending
        self._snapshots: deque[tuple[_MouthState, int]] = deque()  # (interpolated state, hops it needed)
        self._before = self._analyser.state.copy()  # state after k hops, for the next frame's interpolation
        self._finished = False

    def _frame_position(self, i: int) -> tuple[int, float]:
        """Frame i interpolates the states after k and k + 1 hops with weight w: (k, w).

        Hop k + 1 ends at most `lookahead_s` after the frame's time.
        """
        position = (i / self.fps + self.lookahead_s - HOP_S) * SAMPLE_RATE / HOP
        k = math.floor(position)
        return k, position - k

    def push(self, samples: np.ndarray, capture_time: float | None = None) -> list[MotionFrame]:
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

    def finish(self) -> list[MotionFrame]:
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
                            ("level_db", "low_frac", "mid_frac", "high_frac", "voicing", "f0", "f1", "f2")))
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

    def _emit(self, exists: Callable[[int], bool]) -> list[MotionFrame]:
        frames = []
        while self._snapshots and exists(self._animator.index):
            state, hops = self._snapshots.popleft()
            frames.append(self._animator.frame(state, self._capture_time(hops * HOP - 1)))
        return frames

    def _capture_time(self, sample: int) -> float | None:
        """Capture time of a sample, from the block that held it (the last real sample for padding)."""
        return self._clock.time_of(sample)


def generate_motion(chunks: Iterable[np.ndarray], fps: float = 25.0, seed: int = 0) -> Iterator[MotionFrame]:
    """Offline path: the same frames as live streaming, yielded lazily in constant memory."""
    generator = RuleMotionGenerator(fps=fps, seed=seed)
    for chunk in chunks:
        chunk = np.asarray(chunk)
        for start in range(0, max(len(chunk), 1), OFFLINE_PUSH_SAMPLES):
            yield from generator.push(chunk[start : start + OFFLINE_PUSH_SAMPLES])
    yield from generator.finish()

