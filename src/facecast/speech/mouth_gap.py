"""Mouth gap: a small dilated convolution from log-mel speech to the inner-lip gap and lip closure.

Why: the diffusion model (`learned`) makes the whole face, but its lips
followed held-out speakers' mouths at r 0.44 on the quality benchmark, and
training it longer, weighting the mouth in its loss or averaging samples did
not help. Its mouth is 12 correlated coefficients (jaw, lips) predicted jointly
with the head, blinks and gaze; what viewers and the benchmark read lip sync
from is one number: the gap between the inner lips (`face.measure.mouth_opening`).
A regressor of that measured gap, trained with augmentations that imitate other
voices (mel bands shifted, spectral tilt, speaking rate), follows unseen speakers
far more closely (model card: `data/motion_diffusion.md`).

So the diffusion model still makes every channel, and then the jaw is set so
that the gap the renderer draws equals this model's gap (`MouthGap.apply`): the
lips keep the diffusion model's shape (funnel, stretch, press), the opening
follows the regressor. A second output, the probability that the lips are shut
(trained on the frames where the real mouth is as closed as the quality
benchmark's "closed" words), closes the mouth where the regressor's average
would leave it half open; its labels are mostly pauses. A third, the
probability of a closure inside speech (shut, with the mouth open within 120 ms
on both sides: the b, p and m of "bin", "place", "jump"), closes the lips at
bilabials, which the first two left open at a quarter of such words.

Each net sees RECEPTIVE_FIELD frames of the past and `lookahead` frames of the
future (25 fps): offline 14 (0.56 s), live the stream's 2 (80 ms). The offline
nets also hear, beside the log-mel, the principal components of Whisper's encoder
states of the recording (`whisper_states`; `MouthGap.inputs`): they follow voices
no net trained on far more closely, but Whisper attends over 30 s both ways, so the
live nets hear log-mel alone. The shipped offline nets are two groups, one hearing
Whisper tiny.en, one Whisper base (`MouthGap.encoders`), averaged as seeds are. The offline nets' opening is
smoothed over a frame each way before the closures shut it (`MouthGap.target`),
which a stream could have only by waiting longer. The nets
(seeds) of one lookahead are averaged. They are stored in the motion model file
under "mouth" (a model file without them generates as before), with how far each
expression coefficient parts the rendered lips (GAP_GEOMETRY_KEY), which `apply`
needs and which is measured on the face model when they are trained.

This module is inference only; training is `facecast.training.mouth_gap`
(`python -m facecast.training mouth-gap train`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from facecast.motion import EXPRESSION_CHANNELS, gaussian_radius
from facecast.speech.whisper_states import DEFAULT_ENCODERS

#: Dilations of the residual causal convolutions (kernel 3): each frame's prediction sees 30 frames back.
DILATIONS = (1, 2, 4, 8)
RECEPTIVE_FIELD = sum(2 * d for d in DILATIONS)
WIDTH = 128
#: Future frames each net hears: offline (`LearnedMotion.generate`) and live (`learned_stream`, 80 ms).
OFFLINE_LOOKAHEAD = 14
LIVE_LOOKAHEAD = 2
#: How strongly the closure probability shuts the lips: gap * (1 - p ** E), E the nets' own ("closure_exponent"
#: in their state: the offline nets' 2, chosen on the speaker folds, model card "Seventeenth round") or this.
CLOSURE_EXPONENT = 4.0
#: How strongly the third output, the probability of a closure inside speech (b, p, m), shuts the lips on top
#: of the second's: gap * (1 - q ** IN_SPEECH_EXPONENT) (model card: "Bilabial closure").
IN_SPEECH_EXPONENT = 2.0
#: Outputs per frame: the normalised gap, the shut-lips logit, the in-speech closure logit.
OUTPUTS = 3
JAW, CLOSE = EXPRESSION_CHANNELS.index("jawOpen"), EXPRESSION_CHANNELS.index("mouthClose")
FRAME_DIMS = 160      # 4 hops x 40 log-mel bands (learned.frame_audio, "logmel")
#: The model-file key of the lip geometry `MouthGap.apply` needs: (len(EXPRESSION_CHANNELS),) how far each
#: expression coefficient at 1 parts the inner lips, in face heights, as the renderer draws the average face.
GAP_GEOMETRY_KEY = "mouth_gap_per_coefficient"
#: Frames predicted per pass over long audio (2 min).
BLOCK_FRAMES = 3000
#: Band normalisation (`BandNormaliser`, a fold candidate): frames whose mean band level is within 20 dB of the
#: clip's loud level count as voice and update the statistics; the training set's voice statistics count as
#: PRIOR_FRAMES frames of voice before the first (a warm start); "stream" forgets with this time constant.
VOICE_LEVEL = -1.0
PRIOR_FRAMES = 25
STREAM_TAU_S = 3.0
FPS = 25


def _torch():
    """torch, imported on first use: the rule generator and `facecast --help` never load it."""
    import torch

    return torch


def build_net(width: int = WIDTH, outputs: int = OUTPUTS, inputs: int = FRAME_DIMS):
    """(B, inputs, T) frame audio -> (B, outputs, T): the normalised gap and the closure logits (OUTPUTS),
    each output frame from the RECEPTIVE_FIELD frames up to and including its input frame. Model files made
    before the in-speech closure output have two; `inputs` other than FRAME_DIMS only in fold diagnostics
    (training-time features beside the log-mel)."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional

    class GapNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Conv1d(inputs, width, 1)
            self.layers = nn.ModuleList(nn.Conv1d(width, width, 3, dilation=d) for d in DILATIONS)
            self.drop = nn.Dropout(0.1)
            self.out = nn.Conv1d(width, outputs, 1)

        def forward(self, x):
            h = F.gelu(self.inp(x))
            for d, layer in zip(DILATIONS, self.layers):
                h = h + F.gelu(layer(F.pad(self.drop(h), (2 * d, 0))))
            return self.out(h)

    return GapNet()


class BandNormaliser:
    """Per-band mean and variance normalisation of frame audio (each frame's 4 hops x 40 bands) by the voice
    heard so far: what removes a speaker's and a microphone's long-term spectrum (cepstral mean and variance
    normalisation, on log-mel). "utterance" uses the whole clip's voice frames (offline only); "stream" is
    causal, an exponentially forgetting mean over voice frames (STREAM_TAU_S), the same live and offline: its
    state is three running sums, so audio pushed in pieces gives exactly what the whole clip gives.

    Both start from the training set's voice statistics (`mean`, `var`, per band) weighted as PRIOR_FRAMES
    frames, so the first second of a stream is not normalised by a few frames."""

    def __init__(self, kind: str, mean: np.ndarray, var: np.ndarray) -> None:
        if kind not in ("utterance", "stream"):
            raise ValueError(f"unknown band normalisation {kind!r}")
        self.kind = kind
        self.mean, self.var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
        self.decay = np.exp(-1.0 / (STREAM_TAU_S * FPS)) if kind == "stream" else 1.0
        self.reset()

    def reset(self) -> None:
        """Forget everything heard: back to the prior."""
        self._weight = float(PRIOR_FRAMES)
        self._sum = PRIOR_FRAMES * self.mean
        self._squares = PRIOR_FRAMES * (self.var + self.mean ** 2)

    def push(self, frames: np.ndarray) -> np.ndarray:
        """(T, FRAME_DIMS) frame audio -> the same normalised: "stream" by the statistics up to and including each
        frame (state kept for the next push), "utterance" by those of all of `frames` (one clip)."""
        from scipy.signal import lfilter

        frames = np.asarray(frames, np.float32)
        bands = frames.reshape(len(frames), -1, 40).astype(np.float64)
        level = bands.mean((1, 2))
        voice = (level > VOICE_LEVEL).astype(np.float64)
        per_frame = bands.mean(1)                                    # (T, 40) the frame's 4 hops
        sums = np.concatenate([voice[:, None], voice[:, None] * per_frame, voice[:, None] * (bands ** 2).mean(1)], 1)
        if self.kind == "utterance":
            weight = self._weight + voice.sum()
            mean = (self._sum + sums[:, 1:41].sum(0)) / weight
            squares = (self._squares + sums[:, 41:].sum(0)) / weight
            mean, squares = np.broadcast_to(mean, per_frame.shape), np.broadcast_to(squares, per_frame.shape)
        else:
            start = np.concatenate([[self._weight], self._sum, self._squares]) * self.decay
            running, _ = lfilter([1.0], [1.0, -self.decay], sums, axis=0, zi=start[None])
            if len(frames):
                self._weight, self._sum, self._squares = running[-1, 0], running[-1, 1:41], running[-1, 41:]
            mean, squares = running[:, 1:41] / running[:, :1], running[:, 41:] / running[:, :1]
        scale = 1.0 / np.sqrt(np.maximum(squares - mean ** 2, 1e-4))
        return ((bands - mean[:, None]) * scale[:, None]).reshape(frames.shape).astype(np.float32)


def rendered_gap(rows: np.ndarray, per_coefficient: np.ndarray) -> np.ndarray:
    """(T,) the inner-lip gap (face heights above the neutral face's) that motion rows' expressions render, given
    how far each coefficient parts the lips (GAP_GEOMETRY_KEY)."""
    coefficients = np.clip(np.asarray(rows, np.float64)[:, : len(EXPRESSION_CHANNELS)], 0.0, 1.0)
    coefficients[:, CLOSE] = np.minimum(coefficients[:, CLOSE], coefficients[:, JAW])   # the renderer's clamp
    return coefficients @ per_coefficient


def heard_encoders(state: dict) -> tuple[str, ...]:
    """The shipped Whisper encoders whose states, side by side in this order, the offline nets of a state hear
    ("whisper_encoders"; files that name none: tiny.en)."""
    return tuple(state.get("whisper_encoders", DEFAULT_ENCODERS))


def project_states(states: np.ndarray, projection: Sequence[np.ndarray]) -> np.ndarray:
    """(T, dims) principal components of encoder states (T, D) by a projection (mean, components (dims, D),
    scale), unit variance each on the states they were fitted on: what nets that hear the states get."""
    mean, components, scale = (np.asarray(x) for x in projection)
    return ((np.asarray(states) - mean) @ components.T / scale).astype(np.float32)


class MouthGap:
    """An ensemble of gap nets with one lookahead: frame audio -> gap (face heights above a closed mouth), the
    probability that the lips are shut and that of a closure inside speech. `per_coefficient`: how far each
    expression coefficient parts the rendered lips (GAP_GEOMETRY_KEY), which `apply` sets the jaw by."""

    def __init__(self, state: dict, per_coefficient: np.ndarray) -> None:
        self.lookahead = int(state["lookahead"])
        self.mean, self.std = float(state["mean"]), float(state["std"])
        self.per_coefficient = np.asarray(per_coefficient, np.float64)
        norm = state.get("normalise")
        #: Band normalisation the nets were trained with (`BandNormaliser`), None for the shipped nets.
        self.normalise = (None if not norm else (str(norm["kind"]), np.asarray(norm["mean"], np.float64),
                                                 np.asarray(norm["var"], np.float64)))
        #: What the nets hear beside the frame audio: nothing (log-mel alone), or (offline only, features
        #: "logmel+whisper") the principal components of Whisper's encoder states (`whisper_states`) by this
        #: projection, (mean, components, scale).
        projection = state.get("whisper_input")
        self._projection = (None if projection is None else
                            tuple(np.asarray(projection[k], np.float64) for k in ("mean", "components", "scale")))
        #: The shipped Whisper encoders whose rows, side by side in this order, make those states
        #: (`whisper_states.shared`); none for nets that hear log-mel alone.
        self.encoders: tuple[str, ...] = () if projection is None else heard_encoders(state)
        #: Whether the in-speech closure output shuts the lips (`target`); older files: always.
        self.in_speech_closure = bool(state.get("in_speech_closure", True))
        #: The opening (before the closures shut it) smoothed by a Gaussian of this many frames (0: not), and the
        #: frames that reaches each way: a stream gives `target` that many frames more (`ahead`, `history`).
        self.smoothing = float(state.get("target_smoothing", 0.0))
        self.reach = gaussian_radius(self.smoothing)
        #: E of gap * (1 - p ** E), the shut-lips output's strength (`target`).
        self.closure_exponent = float(state.get("closure_exponent", CLOSURE_EXPONENT))
        self._fuse(state["nets"])

    @property
    def ahead(self) -> int:
        """Frames of audio a stream hears after the last row it asks `apply` for: the lookahead and the reach of the
        smoothing (whose last rows need their own lookahead)."""
        return self.lookahead + self.reach

    @property
    def history(self) -> int:
        """Frames of audio before the first row asked for that make its target what the whole clip's would be."""
        return RECEPTIVE_FIELD + self.reach

    @property
    def hears_whisper(self) -> bool:
        """Whether `inputs` needs the recording's Whisper states (`whisper_states`) beside its frame audio."""
        return self._projection is not None

    def inputs(self, audio: np.ndarray, states: np.ndarray | None = None) -> np.ndarray:
        """The nets' input rows: frame audio (T, FRAME_DIMS), and for nets that hear Whisper, the principal
        components of its states (T, the `encoders`' widths together) after it."""
        audio = np.asarray(audio, np.float32)
        if self._projection is None:
            return audio
        if states is None or len(states) != len(audio):
            raise ValueError("these mouth-gap nets hear Whisper's states: give one row per frame of audio")
        return np.concatenate([audio, project_states(states, self._projection)], 1)

    def _silence(self, rows: np.ndarray) -> np.ndarray:
        """The input row of silence past the end: the rows' quietest log-mel level, and (Whisper) zero states."""
        quiet = rows[:, :FRAME_DIMS].min() if rows.size else -4.0
        if self._projection is None:     # (fold diagnostics with other inputs give their own lookahead rows)
            return np.full(rows.shape[1], quiet, np.float32)
        return self.inputs(np.full((1, FRAME_DIMS), quiet, np.float32), np.zeros((1, len(self._projection[0]))))[0]

    def _fuse(self, nets: Sequence[dict]) -> None:
        """The ensemble as one net whose convolutions have a group per member: the same numbers as running
        each net and averaging, in a fraction of the time for the live stream's short calls (model card)."""
        torch = _torch()
        self._members = len(nets)
        self._inp = (torch.cat([n["inp.weight"] for n in nets]), torch.cat([n["inp.bias"] for n in nets]))
        self._layers = [(torch.cat([n[f"layers.{i}.weight"] for n in nets]),
                         torch.cat([n[f"layers.{i}.bias"] for n in nets])) for i in range(len(DILATIONS))]
        self._out = (torch.cat([n["out.weight"] for n in nets]), torch.cat([n["out.bias"] for n in nets]))

    def _forward(self, x):
        """(1, FRAME_DIMS, T) -> (outputs, T), the members' mean; `build_net`'s forward, grouped."""
        F = _torch().nn.functional
        h = F.gelu(F.conv1d(x, *self._inp))
        for d, (weight, bias) in zip(DILATIONS, self._layers):
            h = h + F.gelu(F.conv1d(F.pad(h, (2 * d, 0)), weight, bias, dilation=d, groups=self._members))
        out = F.conv1d(h, *self._out, groups=self._members)
        return out.reshape(self._members, -1, out.shape[-1]).mean(0)

    def predict(self, audio: np.ndarray, future: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Input rows (T, dims: `inputs`) -> (gap, shut, in-speech closure) for the first T - `future` rows
        (the last `future` rows are audio heard after them; lookahead beyond it is taken as silence); the last
        is zeros for nets without that output. Long audio goes through in blocks, so an hour costs no more
        memory than a minute."""
        torch = _torch()
        audio = np.asarray(audio, np.float32)
        frames = len(audio) - future
        audio = audio[: frames + min(future, self.lookahead)]
        silence = np.repeat(self._silence(audio)[None], frames + self.lookahead - len(audio), 0)
        audio = np.concatenate([audio, silence])
        if self.normalise is not None:
            # offline: over the whole clip from its start (a live stream would keep one normaliser's state)
            audio = BandNormaliser(*self.normalise).push(audio)
        gap, closure, inside = (np.zeros(frames, np.float32) for _ in range(3))
        for start in range(0, frames, BLOCK_FRAMES):
            end = min(frames, start + BLOCK_FRAMES)
            history = min(start, RECEPTIVE_FIELD)
            block = torch.from_numpy(audio[start - history: end + self.lookahead].T[None].copy())
            with torch.inference_mode():
                out = self._forward(block)[:, history + self.lookahead:]
                out[1:] = out[1:].sigmoid()
            gap[start:end] = out[0].numpy() * self.std + self.mean
            closure[start:end] = out[1].numpy()
            if len(out) > 2:
                inside[start:end] = out[2].numpy()
        return gap, closure, inside

    def target(self, audio: np.ndarray, future: int = 0, more: int = 0,
               closure_exponent: float | None = None, gain: float = 1.0) -> np.ndarray:
        """The gap the lips should show (face heights), `predict`'s rows: the opening (smoothed: `smoothing`) shut
        by the closures, which stay as sharp as the nets make them. The smoothing reaches `more` of the `future`
        rows (rows of the recording whose own lookahead was heard: a stream's next rows) and treats the rows asked
        for as the recording's last otherwise. `closure_exponent`: other than the nets' own only in the speaker
        folds' comparison (`benchmarks/mouth_gap_folds.py --closure-exponents`). `gain` scales the
        opening (a stream's nets, which hear less, open the lips less wide than the speakers': `learned_stream`)."""
        frames = len(audio) - future
        gap, closure, inside = self.predict(audio, future - min(more, future))
        opening = gain * np.maximum(gap, 0.0)
        if self.smoothing > 0:
            from scipy.ndimage import gaussian_filter1d

            opening = gaussian_filter1d(opening, self.smoothing, mode="nearest")
        target = opening * (1.0 - closure ** (self.closure_exponent if closure_exponent is None else closure_exponent))
        if self.in_speech_closure:
            target = target * (1.0 - inside ** IN_SPEECH_EXPONENT)
        return target[:frames]

    def apply(self, rows: np.ndarray, audio: np.ndarray, future: int = 0, more: int = 0,
              gain: float = 1.0) -> np.ndarray:
        """Set the jaw of `rows` so the rendered gap is this model's (in place; returns rows). `audio`: input rows
        (`inputs`) ending with the rows' own frames and then `future` rows heard after them (`more` of them rows of
        the recording the smoothing reaches: `target`); rows before theirs (up to `history`) are history. `gain`:
        as `target`'s."""
        target = self.target(audio, future, more, gain=gain)[-len(rows):]
        per = self.per_coefficient
        closed = np.clip(rows[:, CLOSE], 0.0, 1.0)
        parting = np.flatnonzero(per > 0)
        parting = parting[parting != JAW]
        rows[:, parting] = np.clip(rows[:, parting], 0.0, 1.0)
        lips = rows.copy()
        lips[:, [JAW, CLOSE]] = 0.0
        opened = rows[:, parting] @ per[parting]           # what the lip coefficients that part them add
        parted = rendered_gap(lips, per)                   # ... with the ones that press them together
        # where the lips alone part wider than the target (a funnel at a "b"), the coefficients that part them
        # are scaled down: a closure must close
        wider = parted > target
        scale = np.where(wider, np.clip((target - (parted - opened)) / np.maximum(opened, 1e-9), 0.0, 1.0), 1.0)
        rows[:, parting] *= scale[:, None]
        lips[:, parting] = rows[:, parting]
        # the jaw opens past mouthClose (lips held together while the chin drops) by what the lips leave to it
        rows[:, JAW] = np.clip(closed + np.maximum(target - rendered_gap(lips, per), 0.0) / per[JAW], 0.0, 1.0)
        return rows
