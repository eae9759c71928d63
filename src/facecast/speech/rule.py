"""Rule-based audio -> motion: a talking, blinking, breathing face from any voice, no training data.

Why rules: they work for every voice and language on day one, run hundreds of
times faster than real time on a CPU, and give a baseline for learned models.

Pipeline (all streaming, so the live path and the offline path give the same frames):

1. `voice.VoiceAnalyser` analyses the speech hop by hop (speaker-normalised
   loudness, voicing, formants, closures, stressed syllables) and interpolates
   its state at each output frame's time plus a lookahead, so the mouth moves
   slightly before the sound.
2. Each frame's mouth expressions and visemes come from that state; head
   motion, blinks, gaze and breathing are added by a seeded generator that
   draws a fixed number of numbers per frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from facecast.motion import Blink, Gaze, HeadPose, MotionFrame, scale_mouth
from facecast.speech.audio_features import SAMPLE_RATE, offline_blocks
from facecast.speech.voice import (
    LOOKAHEAD_S,
    MouthState,
    VoiceAnalyser,
    VoiceFrame,
    clamp01,
    follow,
    smoothing_coef,
    smoothstep,
)

# --- mouth mapping --------------------------------------------------------------------------------
FRICATIVE_JAW = 0.12
#: The voice's mouth opening is scaled by this: at 1 the rendered mouth opened twice as wide as real
#: speakers' (quality benchmark, mouth size 2.0 on held-out in-the-wild clips), and the face mesh read
#: the swinging jaw as head pitch (false head jitter).
MOUTH_GAIN = 0.6

# --- prosody --------------------------------------------------------------------------------------
ACCENT_EVENT_THRESHOLD = 0.5

# --- head, eyes (degrees, seconds) ---------------------------------------------------------------
@dataclass(frozen=True)
class _Drift:
    """One channel of slow head drift: filtered noise of unit std scaled by `std`."""

    std: float
    tc: float


#: Rotation drift std and time constants chosen on held-out in-the-wild clips' audio (quality benchmark):
#: real speakers' heads turn ~15 °/s with ~4° spread; 3, 1.8 and 0.9° (0.9, 0.7, 1.2 s) gave a third of both.
HEAD_DRIFT = {
    "yaw": _Drift(11.0, 0.5), "pitch": _Drift(7.0, 0.4), "roll": _Drift(4.0, 0.7),
    "x": _Drift(0.004, 1.5), "y": _Drift(0.003, 1.5), "distance": _Drift(0.006, 2.5),
}
IDLE_DRIFT_GAIN = 0.3                # drift amplitude in silence relative to speech
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

BLINK_RATE_PER_MIN = 14.0   # with phrase-end blinks ~15 a minute on in-the-wild talk, as real speakers (~16)
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


_N_NORMAL = len(HEAD_DRIFT) + 2      # drift channels + micro-saccade offset
_N_UNIFORM = 10


class _FaceAnimator:
    """Step 3: turns mouth snapshots into frames, adding seeded head, eye and brow life."""

    def __init__(self, fps: float, seed: int) -> None:
        self.fps = fps
        self.dt = 1.0 / fps
        self.rng = np.random.default_rng(seed)
        self.index = 0
        self.drift = {name: [0.0, 0.0] for name in HEAD_DRIFT}
        self.drift_coef = {name: smoothing_coef(d.tc, self.dt) for name, d in HEAD_DRIFT.items()}
        # Unit-variance gain of two cascaded one-poles driven by unit white noise.
        self.drift_gain = {name: _cascade_gain(c) for name, c in self.drift_coef.items()}
        self.talk = 0.0
        self.talk_coef = smoothing_coef(TALK_TC, self.dt)
        self.nod = 0.0
        self.lift = 0.0
        self.lift_coef = smoothing_coef(PITCH_FOLLOW_TC, self.dt)
        self.nod_coef = smoothing_coef(NOD_TC, self.dt)
        self.turn_target = 0.0
        self.turn = 0.0
        self.turn_coef = smoothing_coef(TURN_TC, self.dt)
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
        self.saccade_coef = smoothing_coef(SACCADE_TC, self.dt)
        self.breath_phase = 0.0
        self.head_gaze = [0.0, 0.0]
        self.head_gaze_coef = smoothing_coef(HEAD_FOLLOW_TC, self.dt)
        self.brow = 0.0
        self.brow_coefs = tuple(smoothing_coef(tc, self.dt) for tc in BROW_TC)

    def frame(self, voice: VoiceFrame) -> MotionFrame:
        m = voice.state
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
        towards = self.head_gaze
        towards[0] += self.head_gaze_coef * (HEAD_FOLLOWS_GAZE * gaze_yaw - towards[0])
        towards[1] += self.head_gaze_coef * (HEAD_FOLLOWS_GAZE * gaze_pitch - towards[1])
        head = HeadPose(
            yaw=drift["yaw"] + self.turn + towards[0],
            pitch=drift["pitch"] - NOD_DEG * self.nod + self.lift
            + BREATH_PITCH_DEG * breath + towards[1],
            roll=drift["roll"],
            x=drift["x"],
            y=drift["y"] + BREATH_Y * breath,
            distance=1.0 + drift["distance"],
        )

        blink = self._blink(t, uniform)
        brow_target = BROW_LIFT * smoothstep(m.accent, BROW_ACCENT) * smoothstep(m.pitch_z, BROW_PITCH_Z)
        self.brow = follow(self.brow, brow_target, self.brow_coefs)
        return MotionFrame(
            t=t, head=head, gaze=Gaze(gaze_yaw, gaze_pitch),
            blink=Blink(blink, blink * self.blink_right_scale),
            expressions=_mouth_expressions(m, voice.vowels, self.brow), visemes=voice.visemes, voice=voice.voice,
            capture_time=voice.capture_time,
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
            return smoothstep(s, (0.0, BLINK_CLOSE_S))
        s -= BLINK_CLOSE_S + BLINK_HOLD_S
        if s <= 0.0:
            return 1.0
        if s < BLINK_OPEN_S:
            return 1.0 - smoothstep(s, (0.0, BLINK_OPEN_S))
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


def _mouth_expressions(m: MouthState, vowels: list[float], brow: float) -> dict[str, float]:
    a, i, u, e, o = vowels
    opening = MOUTH_GAIN * clamp01(m.open + FRICATIVE_JAW * m.fricative)
    active = clamp01(m.activity)
    close = clamp01(m.close) * active
    spread = active * (i + e)
    funnel = clamp01((0.6 * o + 0.35 * u) * active * (0.4 + opening))
    pucker = clamp01((0.7 * u + 0.35 * o) * active)
    stretch = clamp01(0.35 * spread + 0.25 * m.fricative)
    smile = clamp01(0.15 * spread)
    lower = clamp01(opening * (0.6 * a + 0.4 * e + 0.3 * o) * 1.2)
    upper = clamp01(opening * (0.4 * a + 0.3 * e + 0.2 * i) * 0.8)
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
        "browInnerUp": clamp01(brow),
        "browOuterUpLeft": clamp01(0.7 * brow),
        "browOuterUpRight": clamp01(0.7 * brow),
    }


class RuleMotionGenerator:
    """Streaming audio -> `MotionFrame`s; identical frames whatever the block sizes pushed."""

    SAMPLE_RATE = SAMPLE_RATE
    #: Compute per frame after its audio: negligible (the live daemon schedules frames by it).
    processing_s = 0.0

    def __init__(self, fps: float = 25.0, seed: int = 0, voice_gate: bool = True) -> None:
        """`voice_gate`: shut the mouth on sound that is not a voice (`voice_gate`)."""
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be a positive number, got {fps}")
        self.fps = float(fps)
        self.lookahead_s = LOOKAHEAD_S
        self._voice = VoiceAnalyser(self.fps, LOOKAHEAD_S)
        self._animator = _FaceAnimator(self.fps, seed)
        self._gate = voice_gate

    def push(self, samples: np.ndarray, capture_time: float | None = None) -> list[MotionFrame]:
        """Feed the next block of 16 kHz mono samples; return the frames that became final."""
        return [self._frame(voice) for voice in self._voice.push(samples, capture_time)]

    def finish(self) -> list[MotionFrame]:
        """End of input: pad silence for the lookahead and return the remaining frames."""
        return [self._frame(voice) for voice in self._voice.finish()]

    def _frame(self, voice: VoiceFrame) -> MotionFrame:
        frame = self._animator.frame(voice)
        return scale_mouth(frame, voice.speech) if self._gate else frame


def generate_motion(chunks: Iterable[np.ndarray], fps: float = 25.0, seed: int = 0) -> Iterator[MotionFrame]:
    """Offline path: the same frames as live streaming, yielded lazily in constant memory."""
    generator = RuleMotionGenerator(fps=fps, seed=seed)
    for block in offline_blocks(chunks):
        yield from generator.push(block)
    yield from generator.finish()
