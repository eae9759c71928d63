"""The voice gate: is this sound a voice? The mouth stays shut on anything else the microphone hears.

Why: a streamer's microphone also picks up game audio, keyboard clicks, music,
breathing and room noise. The generators open the mouth on loud sound (the
learned model has only ever heard speech), so an avatar would chatter along
with the soundtrack. Every generator, offline and live, takes the gate from its
voice analysis (`voice.VoiceAnalyser`, which feeds it hop by hop) and shuts the
mouth by it (`motion.scale_mouth`): one gate for the rule and learned
generators, for render and live.

Per 10 ms hop, from features the voice analysis computes anyway
(`audio_features.hop_features`), speech evidence is the product of:

* harmonicity: voicing (pitch periodicity) averaged over 50 ms; noise,
  clicks and breaths are aperiodic;
* not noise: spectral flatness averaged over 50 ms (white noise ~0.56, pink
  ~0.3, voiced speech < 0.08);
* not music: a voice's pitch glides all the time (speech moves ~1-10 % of an
  octave per 10 ms hop, even Mandarin's level tone), a note holds it (~0.1 %);
  the typical step, a running geometric mean over ~150 ms of voiced hops;
* syllable rhythm: the level's spread over ~0.25 s (speech swings 5-15 dB at
  the syllable rate of ~4 Hz; steady noise and sustained chords 1-3 dB);
* above the noise floor: babble and hum in a noisy room's pauses sit at it.
  The floor falls at once to any lower level and rises slowly (FLOOR_RISE_S),
  so a long stretch of unbroken speech does not become the floor (the voice
  analysis' 1.5 s minimum would);
* near the speaker's own level: a voice across the room (a colleague, the
  television) can look like speech in every other way, but it is far quieter
  than the streamer's into the microphone. The speaker's level follows the
  level of the hops that sound like a voice, quickly up and slowly down, so it
  is their syllables' level and follows a speaker who gets quieter within
  seconds of their speaking.

The evidence is smoothed over EVIDENCE_SMOOTH_S (single hops of noise that
happen to look like a voice do not count), held for HOLD_S (so unvoiced consonants and the gaps between
syllables keep the mouth free) and then released. It is causal: a frame's gate
uses the same audio as its mouth (up to `voice.LOOKAHEAD_S`, 80 ms, after the
frame's time; the learned stream's lookahead is the same), so the gate adds no
latency. Music and hum are recognised once ~0.15 s of their steady pitch has
been heard. Measured by `benchmarks/voice_gate.py` (README: "The voice gate").
"""

from __future__ import annotations

import math
from collections import deque

from facecast.speech.audio_features import HOP, SAMPLE_RATE

HOP_S = HOP / SAMPLE_RATE
#: Voicing averaged over this long (s) and the range from "not a voice" to "a voice": noise's median is ~0.45,
#: its 90th percentile ~0.7; vowels are above 0.9.
VOICING_AVERAGE_S = 0.05
VOICING_RANGE = (0.62, 0.8)
#: Spectral flatness (averaged as voicing) from "could be a voice" to "noise".
FLATNESS_RANGE = (0.08, 0.25)
#: Typical pitch step between voiced hops (octaves): from "a held note" to "a gliding voice"; averaged (in
#: logs) over about PITCH_AVERAGE_S of voiced hops. Unknown (too few voiced hops yet) counts as a voice.
PITCH_STEP_RANGE = (0.0025, 0.006)
PITCH_AVERAGE_S = 0.15
#: The level's spread (dB) over about RHYTHM_S: from "steady" to "syllables".
RHYTHM_S = 0.25
RHYTHM_RANGE_DB = (1.0, 2.5)
#: Level above the noise floor (dB) from "the room" to "a voice in it"; the floor follows the level (smoothed
#: over LEVEL_SMOOTH_S) down at once and up with a time constant of FLOOR_RISE_S.
SNR_RANGE_DB = (3.0, 8.0)
LEVEL_SMOOTH_S = 0.05
FLOOR_RISE_S = 3.0
#: Level (dB) relative to the speaker's, from "a sound across the room" to "the speaker". The speaker's level
#: follows the hops whose other evidence says voice: up within VOICE_RISE_S of them (their syllables' level, not
#: the quiet ends of words), down within VOICE_FALL_S (a speaker who gets quieter); unknown until then: no limit.
RELATIVE_RANGE_DB = (-16.0, -10.0)
VOICE_RISE_S = 0.5
VOICE_FALL_S = 30.0
#: Speech evidence is smoothed over this long (s), then held this long (s) after it was last seen, then released
#: with RELEASE_S.
EVIDENCE_SMOOTH_S = 0.04
#: The held evidence from "not a voice" (the mouth shut) to "a voice" (the mouth free): the factors are soft, so
#: speech seldom scores a full 1 and noise seldom a clean 0.
OPEN_RANGE = (0.2, 0.7)
HOLD_S = 0.25
RELEASE_S = 0.06
#: Levels below this (dBFS) count as this (digital silence would otherwise look like a huge level swing).
LEVEL_FLOOR_DB = -80.0


def _ramp(x: float, lo_hi: tuple[float, float]) -> float:
    """0 at or below lo, 1 at or above hi, linear in between."""
    lo, hi = lo_hi
    return min(1.0, max(0.0, (x - lo) / (hi - lo)))


class VoiceGate:
    """Per-hop speech probability (`step`), causal; `value` is the held, released gate in [0, 1]."""

    def __init__(self) -> None:
        self._average = 1.0 - math.exp(-HOP_S / VOICING_AVERAGE_S)
        self._pitch_average = 1.0 - math.exp(-HOP_S / PITCH_AVERAGE_S)
        self._rhythm = 1.0 - math.exp(-HOP_S / RHYTHM_S)
        self._release = 1.0 - math.exp(-HOP_S / RELEASE_S)
        self._evidence_smooth = 1.0 - math.exp(-HOP_S / EVIDENCE_SMOOTH_S)
        self._level_smooth = 1.0 - math.exp(-HOP_S / LEVEL_SMOOTH_S)
        self._floor_rise = 1.0 - math.exp(-HOP_S / FLOOR_RISE_S)
        self._voice_rise = 1.0 - math.exp(-HOP_S / VOICE_RISE_S)
        self._voice_fall = 1.0 - math.exp(-HOP_S / VOICE_FALL_S)
        self._voice_level: float | None = None   # the speaker's level (dB), once a voice has been heard
        self._smooth_level = self._floor = LEVEL_FLOOR_DB
        self._hold = round(HOLD_S / HOP_S)
        self.voicing = 0.0
        self.flatness = 1.0
        self._log_step: float | None = None      # running mean of log2(pitch step), None until voiced hops
        self._voiced_pairs = 0
        self._last_f0: float | None = None
        self._level_mean: float | None = None
        self._level_var = 0.0
        self._recent: deque[tuple[int, float]] = deque()  # (hop, evidence), decreasing evidence: a running max
        self._hop = 0
        self.evidence = 0.0
        self.value = 0.0

    def step(self, level: float, voicing: float, f0: float, flatness: float) -> float:
        """Advance by one hop (its level in dBFS, voicing, F0 in Hz, spectral flatness); returns the gate."""
        a = self._average
        self.voicing += a * (voicing - self.voicing)
        self.flatness += a * (flatness - self.flatness)
        # pitch glide: steps between consecutive clearly voiced hops (an octave jump is a pitch error, not a glide)
        if voicing > 0.7 and math.isfinite(f0) and f0 > 0:
            if self._last_f0 is not None:
                step = abs(math.log2(f0 / self._last_f0))
                if step < 0.5:
                    log_step = math.log2(step + 1e-4)
                    self._log_step = log_step if self._log_step is None else (
                        self._log_step + self._pitch_average * (log_step - self._log_step))
                    self._voiced_pairs += 1
            self._last_f0 = f0
        else:
            self._last_f0 = None
        level = max(level, LEVEL_FLOOR_DB)
        if self._level_mean is None:
            self._level_mean = self._smooth_level = self._floor = level
        self._smooth_level += self._level_smooth * (level - self._smooth_level)
        if self._smooth_level < self._floor:
            self._floor = self._smooth_level
        else:
            self._floor += self._floor_rise * (self._smooth_level - self._floor)
        deviation = level - self._level_mean
        self._level_mean += self._rhythm * deviation
        self._level_var += self._rhythm * (deviation * deviation - self._level_var)

        gliding = 1.0 if self._voiced_pairs < 3 or self._log_step is None else _ramp(
            2.0 ** self._log_step, PITCH_STEP_RANGE)
        evidence = (_ramp(self.voicing, VOICING_RANGE) * (1.0 - _ramp(self.flatness, FLATNESS_RANGE)) * gliding
                    * _ramp(math.sqrt(self._level_var), RHYTHM_RANGE_DB) * _ramp(level - self._floor, SNR_RANGE_DB))
        if evidence > 0.5:             # a voice by everything else: the speaker's level learns from it
            if self._voice_level is None:
                self._voice_level = self._smooth_level
            rate = self._voice_rise if self._smooth_level > self._voice_level else self._voice_fall
            self._voice_level += rate * (self._smooth_level - self._voice_level)
        if self._voice_level is not None:
            evidence *= _ramp(self._smooth_level - self._voice_level, RELATIVE_RANGE_DB)
        self.evidence += self._evidence_smooth * (evidence - self.evidence)
        evidence = self.evidence
        recent = self._recent
        while recent and recent[-1][1] <= evidence:
            recent.pop()
        recent.append((self._hop, evidence))
        while recent[0][0] <= self._hop - self._hold:
            recent.popleft()
        self._hop += 1
        held = _ramp(recent[0][1], OPEN_RANGE)
        self.value = held if held >= self.value else self.value + self._release * (held - self.value)
        return self.value
