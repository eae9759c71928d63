"""Learned motion: a small diffusion transformer from speech features to the motion representation.

Why: the rule generator's mouth follows real speakers only weakly (quality
benchmark: r 0.29) and its head barely moves. VASA-1's answer is a diffusion
transformer over motion sequences conditioned on audio and on the previous
window; this is that design at CPU size:

* a token per 25 fps frame: the motion vector (`MOTION_DIMS`: 24 expression
  coefficients, head yaw/pitch/roll/x/y/distance, blinks, gaze; normalised by
  the training set's statistics) plus the frame's audio features for its 4
  10-ms hops: 40 log-mel bands, levels relative to the clip's loud level (the
  model card compares them with the rule generator's 8 per-hop features and
  with pocketsphinx allphone phones);
* a speaking-style condition (the corpus: GRID, LRC-AR news, in the wild);
* a window of WINDOW frames is denoised; the CONTEXT frames before it are given
  clean (the previous window's output), so long audio is generated window by
  window without seams (live, `learned_stream` commits shorter chunks);
* the network predicts the clean motion (x0) from the noised window at a
  cosine-schedule noise level; sampling is deterministic DDIM in SAMPLE_STEPS
  steps with classifier-free guidance on audio and a head guidance (style
  contrast on the head only), both scales calibrated and stored in the model file;
* the jaw is then set by the mouth-gap nets stored in the same file
  (`mouth_gap`): a regressor of the measured inner-lip gap follows unseen
  speakers' mouths far better than the sampled lips; offline, it also hears the
  recording's Whisper encoder states (`whisper_states`, `offline_states`).

This module is inference only. Training, fine-tuning and calibration are in
`facecast.training.motion_diffusion` (`python -m facecast.training motion-diffusion
train`). Model card: `data/motion_diffusion.md`.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from facecast.errors import FacecastError
from facecast.motion import (
    EXPRESSION_CHANNELS,
    VISEMES,
    Blink,
    Gaze,
    HeadPose,
    MotionFrame,
    gaussian_radius,
    resample_frames,
    scale_mouth,
)
from facecast.speech.audio_features import (
    SAMPLE_RATE,
    AudioFeatureStream,
    HopFramer,
    audio_track,
    log_mel,
    offline_blocks,
    silence_row,
)
from facecast.speech.mouth_gap import GAP_GEOMETRY_KEY, MouthGap
from facecast.speech.phones import SILENCE, phone_track
from facecast.speech.voice import VoiceAnalyser, VoiceFrame

FPS = 25.0
HOPS_PER_FRAME = 4
#: Audio feature kinds, per 10 ms hop: the rule generator's 8 features, 40 log-mel bands, or a one-hot
#: of pocketsphinx's allphone segmentation (39 phones + silence, offline only; see `phones`).
FEATURE_DIMS = {"hop8": 8, "logmel": 40, "allphone": 40}
WINDOW = 25                      # frames denoised together (1 s)
CONTEXT = 10                     # clean frames of the previous window given as context
MOTION_DIMS = len(EXPRESSION_CHANNELS) + 6 + 2 + 2   # expressions, head, blink, gaze
SAMPLE_STEPS = 8
WEIGHTS_PATH = Path(__file__).resolve().parent / "data" / "motion_diffusion.pt"


# ----------------------------------------------------------------------------- features

def frame_audio(audio: np.ndarray, frames: int, kind: str = "hop8") -> np.ndarray:
    """(frames, 4 x per-hop dims): each 25 fps frame's 4 hops, levels relative to the clip's loud level,
    padded with the clip's own silence where the audio ends early.

    hop8: normalised like the lip-sync scorer's input; logmel: dB / 20 relative to the 95th
    percentile of the hops' mean band level, so microphone gain does not matter."""
    dims = FEATURE_DIMS[kind]
    if kind == "hop8":
        track = audio_track(audio)
        silence = silence_row(track)
    elif kind == "allphone":
        track = np.asarray(audio, np.float32).reshape(-1, dims)
        silence = np.eye(dims, dtype=np.float32)[SILENCE]
    else:
        audio = np.asarray(audio, np.float32).reshape(-1, dims)
        track = relative_logmel(audio, loud_level(audio.mean(1)) if len(audio) else 0.0)
        silence = np.full(dims, track.min() if len(track) else -4.0, np.float32)
    needed = frames * HOPS_PER_FRAME
    if len(track) < needed:
        track = np.concatenate([track, np.repeat(silence[None], needed - len(track), 0)])
    return track[:needed].reshape(frames, dims * HOPS_PER_FRAME)


def speech_features(samples: np.ndarray, kind: str) -> np.ndarray:
    """(H, FEATURE_DIMS[kind]) per-hop features of 16 kHz mono speech."""
    if kind == "allphone":
        return phone_track(samples)
    stream = AudioFeatureStream(kind)
    stream.push(samples)
    return stream.matrix()


#: The loud level is never below this (dB), which is quieter than 99 % of the training clips' loud levels
#: (1st percentile -56 dB): so silence, or a quiet room, is not taken for speech at full voice.
QUIET_LOUD_DB = -58.0


def loud_level(hop_levels: np.ndarray) -> float:
    """The clip's loud level: the 95th percentile of its hops' mean log-mel band level (dB), at least
    QUIET_LOUD_DB."""
    return max(float(np.percentile(hop_levels, 95)), QUIET_LOUD_DB)


def relative_logmel(audio: np.ndarray, loud: float) -> np.ndarray:
    """Log-mel bands in units of 20 dB relative to the loud level, so microphone gain does not matter."""
    return np.clip((np.asarray(audio, np.float32) - loud) / 20.0, -4.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- the network

def _torch():
    """torch, imported on first use: the rule generator and `facecast --help` never load it."""
    import torch

    return torch


def build_model(kind: str = "hop8", width: int = 192, layers: int = 4, heads: int = 4):
    """The denoiser: (noisy window + clean context, audio, speaking style, noise level) -> clean window."""
    torch = _torch()
    nn = torch.nn
    audio_dims = FEATURE_DIMS[kind] * HOPS_PER_FRAME

    class Denoiser(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.motion_in = nn.Linear(MOTION_DIMS + 1, width)      # + "is context" flag
            self.audio_in = nn.Sequential(nn.Linear(audio_dims, width), nn.GELU(), nn.Linear(width, width))
            self.null_audio = nn.Parameter(torch.zeros(width))
            self.style = nn.Embedding(len(STYLES) + 1, width)        # the last row: style not given
            self.position = nn.Parameter(torch.randn(CONTEXT + WINDOW, width) * 0.02)
            self.level = nn.Sequential(nn.Linear(64, width), nn.GELU(), nn.Linear(width, width))
            layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.1, batch_first=True,
                                               norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, MOTION_DIMS))

        def forward(self, motion, is_context, audio, audio_kept, noise_level, valid, style):
            """motion (B, L, D), is_context (B, L), audio (B, L, A), audio_kept (B,), noise_level (B,),
            valid (B, L), style (B,) indices into STYLES (len(STYLES): not given)."""
            half = 32
            freqs = torch.exp(torch.arange(half, dtype=motion.dtype) * (-math.log(1000.0) / half))
            angle = noise_level[:, None] * 1000.0 * freqs[None]
            level = self.level(torch.cat([angle.sin(), angle.cos()], 1)) + self.style(style)
            sound = self.audio_in(audio)
            sound = torch.where(audio_kept[:, None, None], sound, self.null_audio.expand_as(sound))
            tokens = self.motion_in(torch.cat([motion, is_context[..., None].to(motion.dtype)], -1))
            tokens = tokens + sound + self.position[None, : motion.shape[1]] + level[:, None]
            hidden = self.encoder(tokens, src_key_padding_mask=~valid)
            return self.out(hidden)

    return Denoiser()


def alpha_bar(t):
    """Cosine noise schedule: signal fraction at noise level t in [0, 1]."""
    torch = _torch()
    return torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2


#: Speaking styles the model is conditioned on: the corpora differ most in head motion (GRID speakers
#: sit still, news anchors nod a little, in-the-wild speakers move freely). Generation asks for
#: DEFAULT_STYLE, the lively one a streamer expects.
STYLES = ("grid", "lrc_ar", "wild")
DEFAULT_STYLE = "wild"


@dataclass
class Sampling:
    """How motion is drawn from the model. The guidance scales are calibrated on training clips
    (`python -m facecast.training motion-diffusion calibrate`; the model card has the numbers)."""

    steps: int = SAMPLE_STEPS
    guidance: float = 1.5       # classifier-free guidance on audio
    seed: int = 0
    style: str = DEFAULT_STYLE  # speaking style (STYLES), or "" for none
    #: Style guidance on head rotation and position only: the head is pushed further from how the
    #: still-sitting GRID speakers move (CONTRAST_STYLE). Diffusion sampling draws the head close to its
    #: mean (audio says little about it); this restores its range without touching the mouth's targets.
    head_guidance: float = 0.0


CONTRAST_STYLE = "grid"
#: Motion dimensions head guidance acts on: yaw, pitch, roll, x, y (not distance).
HEAD_GUIDED = slice(len(EXPRESSION_CHANNELS), len(EXPRESSION_CHANNELS) + 5)
#: Sigma (s) of the zero-phase smoothing of the offline head rotation and position: sampled, the head shakes
#: (model card: "Why these constants"). Live smooths causally instead (`learned_stream.HEAD_SMOOTHING_S`).
OFFLINE_HEAD_SMOOTHING_S = 0.04
#: Time scale (s) over which the head comes back to the portrait's pose: the head's slow drift (its mean over
#: about this long) is taken out, offline by a Gaussian of this sigma, live by a causal average of this time
#: constant, so the avatar keeps facing the camera over any length of audio (head guidance pushes it towards
#: one side; model card: "Why these constants").
HEAD_RECENTRE_S = 4.0
#: The motion dimensions of the two blinks.
BLINKS = slice(len(EXPRESSION_CHANNELS) + 6, len(EXPRESSION_CHANNELS) + 8)


class BlinkShaper:
    """Turns the model's blink channels into clean blinks, frame by frame (offline and live alike).

    Sampled blinks flutter (closures half-open and re-closing within 0.2 s). A blink starts when the eyes
    close past START, not within REFRACTORY_S of the last start; the lids then close over CLOSE_S, stay shut
    until the model opens them below END (at least HOLD_S, at most MAX_CLOSED_S from the start: real blinks take
    0.1-0.4 s) and open over OPEN_S, as real lids do (they close faster than they open); outside blinks the
    eyes are open. Without the opening a blink snapped from shut to open, a one-frame flicker at its shortest.
    START gives real speakers' blink rate offline and streamed alike (model card: "Why these constants")."""

    START, END = 0.45, 0.3
    REFRACTORY_S = 1.5
    MAX_CLOSED_S = 0.25
    #: Closing, least shut and opening times (s). Real lids close in about 0.07 s and open in about twice that;
    #: a closing spread over two 25 fps frames read shallower on the viewer's face mesh (model card: "Why these
    #: constants"), so the lids shut within a frame and the opening is eased.
    CLOSE_S, HOLD_S, OPEN_S = 0.04, 0.06, 0.16

    def __init__(self, fps: float = FPS) -> None:
        self.fps = fps
        self._frame = 0
        self._last_start = -10**9
        self._started: int | None = None     # frame the current blink started, or None
        self._opening: list[float] = []      # the opening lids' next closures, once the blink is over
        closing = max(1, round(self.CLOSE_S * fps))
        # closing, then shut for at least HOLD_S (a frame at least)
        self._closing = [(k + 1) / closing for k in range(closing)] + [1.0] * max(0, round(self.HOLD_S * fps) - 1)
        opening = max(2, round(self.OPEN_S * fps))
        self._open_ramp = [0.5 * (1 + math.cos(math.pi * k / opening)) for k in range(1, opening)]

    def shape(self, rows: np.ndarray) -> np.ndarray:
        """Rows of motion (their BLINKS columns are rewritten in place); returns them."""
        for row in rows:
            closure = float(row[BLINKS].mean())
            value = 0.0
            if self._started is not None:
                held = self._frame - self._started
                if held >= len(self._closing) and (closure < self.END or held >= self.MAX_CLOSED_S * self.fps):
                    self._started, self._opening = None, list(self._open_ramp)
                else:
                    value = self._closing[held] if held < len(self._closing) else 1.0
            if self._started is None and self._opening:
                value = self._opening.pop(0)
            elif (self._started is None and closure > self.START
                    and self._frame - self._last_start >= self.REFRACTORY_S * self.fps):
                self._started = self._last_start = self._frame
                value = self._closing[0]
            row[BLINKS] = value
            self._frame += 1
        return rows


def read_model(path: Path) -> dict:
    """A trained model file's contents (weights, normalisation, features); a clear error for anything else."""
    torch = _torch()
    if not Path(path).exists():
        raise FacecastError(f"learned motion weights not found: {path} (train them: "
                            "python -m facecast.training motion-diffusion train)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not {"model", "mean", "std"} <= set(state):
            raise KeyError("model, mean, std")
    except Exception as exc:  # any unreadable or foreign file: one clear line
        raise FacecastError(f"{path} is not a facecast motion model ({type(exc).__name__})") from None
    width = state["model"]["null_audio"].shape[0]
    state["model"].setdefault("style.weight", torch.zeros(len(STYLES) + 1, width))  # trained before styles
    return state


class LearnedMotion:
    """The trained denoiser: speech features -> motion, window by window."""

    def __init__(self, path: Path = WEIGHTS_PATH) -> None:
        state = read_model(path)
        self.features: str = state.get("features", "hop8")
        self.model = build_model(self.features)
        self.model.load_state_dict(state["model"])
        self.model.eval()
        self.mean, self.std = state["mean"].numpy(), state["std"].numpy()
        #: The file's calibrated sampling (guidance scales), or the defaults.
        self.sampling = Sampling(**state.get("sampling", {}))
        #: Per expression channel, how much to widen the generated movement about the training mean
        #: (calibrated on training clips: sampling narrows it; the model card has the shipped model's gains).
        gain = state.get("expression_gain")
        self.expression_gain = gain.numpy() if gain is not None else np.ones(len(EXPRESSION_CHANNELS), np.float32)
        #: The mouth-gap nets by lookahead in frames (`mouth_gap`): they set the jaw so the lips part as far
        #: as they predict. None in a model file trained before them, or with other audio features.
        self.mouth: dict[int, MouthGap] = {}
        nets = state.get("mouth", {}) if self.features == "logmel" else {}
        if nets:
            if GAP_GEOMETRY_KEY not in state:
                raise FacecastError(f"{path} predates model files that keep their mouth-gap nets' lip geometry: "
                                    "add it once with `python -m facecast.training mouth-gap store-geometry "
                                    f"--model {path}`")
            geometry = state[GAP_GEOMETRY_KEY].numpy()
            self.mouth = {int(look): MouthGap(net, geometry) for look, net in nets.items()}

    @property
    def offline_mouth(self) -> MouthGap | None:
        """The offline mouth-gap nets (the longest lookahead: what a render hears), None in a file without nets."""
        return self.mouth[max(self.mouth)] if self.mouth else None

    def to_motion(self, normalised: np.ndarray) -> np.ndarray:
        """The model's normalised output rows -> motion rows, expressions widened by `expression_gain`."""
        rows = normalised * self.std + self.mean
        n = len(EXPRESSION_CHANNELS)
        rows[:, :n] = self.mean[:n] + self.expression_gain * (rows[:, :n] - self.mean[:n])
        return rows

    def sampling_for(self, seed: int) -> Sampling:
        """This model's calibrated sampling with another seed."""
        return replace(self.sampling, seed=seed)

    def generate(self, audio: np.ndarray, frames: int, sampling: Sampling | None = None,
                 states: np.ndarray | None = None) -> np.ndarray:
        """(frames, MOTION_DIMS) motion at 25 fps for per-hop audio features (H, dims of `self.features`),
        WINDOW frames at a time, each window continuing from the last CONTEXT frames before it
        (`sampling`: the model's calibrated one by default). `states`: the recording's Whisper rows
        (`whisper_states`), which offline mouth-gap nets that hear them need (`offline_states`)."""
        torch = _torch()
        sampling = sampling or self.sampling
        generator = torch.Generator().manual_seed(sampling.seed)
        features = torch.from_numpy(frame_audio(audio, frames, self.features))
        out = torch.zeros(frames, MOTION_DIMS)
        for start in range(0, frames, WINDOW):
            count = min(WINDOW, frames - start)
            lo = max(0, start - CONTEXT)
            out[start: start + count] = self.denoise(out[lo:start], features[lo: start + count], sampling, generator)
        rows = self.to_motion(out.numpy())
        mouth = self.offline_mouth
        if mouth is not None:
            heard = _rows_for(states, frames) if mouth.hears_whisper else None
            mouth.apply(rows, mouth.inputs(features.numpy(), heard))
        # scipy.ndimage on first use: importing it adds about 30 ms to every `facecast` start-up
        from scipy.ndimage import gaussian_filter1d

        head = gaussian_filter1d(rows[:, HEAD_GUIDED], OFFLINE_HEAD_SMOOTHING_S * FPS, axis=0, mode="nearest")
        rows[:, HEAD_GUIDED] = head - gaussian_filter1d(head, HEAD_RECENTRE_S * FPS, axis=0, mode="nearest")
        return BlinkShaper().shape(rows)

    def denoise(self, context, audio, sampling: Sampling, generator):
        """The next frames after `context` (c <= CONTEXT, MOTION_DIMS normalised frames, may be empty), given
        framed audio (c + n, A) for the context and the n new frames (n <= WINDOW): (n, MOTION_DIMS)."""
        torch = _torch()
        have, count = len(context), len(audio) - len(context)
        length = CONTEXT + count
        styled = STYLES.index(sampling.style) if sampling.style else len(STYLES)
        # One batch: with audio, without audio (audio guidance), and with audio in the contrast style.
        audio_kept, style = [True, False], [styled, styled]
        if sampling.head_guidance:
            audio_kept.append(True)
            style.append(STYLES.index(CONTRAST_STYLE))
        rows = len(style)
        is_context = torch.zeros(rows, length, dtype=torch.bool)
        is_context[:, :CONTEXT] = True
        audio_window = torch.zeros(rows, length, audio.shape[1])
        audio_window[:, CONTEXT - have:] = audio
        fixed = torch.zeros(rows, length, MOTION_DIMS)
        fixed[:, CONTEXT - have: CONTEXT] = context
        valid = torch.zeros(rows, length, dtype=torch.bool)
        valid[:, CONTEXT - have:] = True
        audio_kept, style = torch.tensor(audio_kept), torch.tensor(style)
        head = torch.zeros(MOTION_DIMS)
        head[HEAD_GUIDED] = sampling.head_guidance
        levels = torch.linspace(1.0, 0.0, sampling.steps + 1)
        x = torch.randn(1, length, MOTION_DIMS, generator=generator)
        with torch.inference_mode():
            for i in range(sampling.steps):
                t, t_next = levels[i], levels[i + 1]
                inputs = torch.where(is_context[..., None], fixed, x.expand(rows, -1, -1))
                predicted = self.model(inputs, is_context, audio_window, audio_kept, t.expand(rows), valid, style)
                cond, uncond = predicted[0], predicted[1]
                guided = uncond + sampling.guidance * (cond - uncond)
                if sampling.head_guidance:
                    guided = guided + head * (cond - predicted[2])
                guided = guided[None]
                a_t, a_next = alpha_bar(t), alpha_bar(t_next)
                eps = (x - a_t.sqrt() * guided) / (1 - a_t).clamp(min=1e-6).sqrt()
                x = a_next.sqrt() * guided + (1 - a_next).sqrt() * eps
        return x[0, CONTEXT:]


def motion_frames(matrix: np.ndarray, fps: float) -> Iterator[MotionFrame]:
    """Rows of (expressions, head, blink, gaze) -> MotionFrames (coefficients clamped to their ranges), lazily."""
    n = len(EXPRESSION_CHANNELS)
    for i, row in enumerate(matrix):
        # every channel, zeros too: receivers (VMC, VTube Studio, the JSON stream) see a stable set of names
        expressions = {name: float(v) for name, v in zip(EXPRESSION_CHANNELS, np.clip(row[:n], 0, 1))}
        yaw, pitch, roll, x, y, distance = (float(v) for v in row[n: n + 6])
        blink = np.clip(row[n + 6: n + 8], 0, 1)
        yield MotionFrame(t=i / fps, head=HeadPose(yaw, pitch, roll, x, y, max(0.5, distance)),
                          gaze=Gaze(float(row[n + 8]), float(row[n + 9])),
                          blink=Blink(float(blink[0]), float(blink[1])), expressions=expressions)


def load(path: Path = WEIGHTS_PATH) -> "LearnedMotion":
    """The model at `path`, loaded once per process."""
    if path not in _LOADED:
        _LOADED[path] = LearnedMotion(path)
    return _LOADED[path]


def forget(path: Path) -> None:
    """Drop the model loaded from `path` (its file was rewritten), so the next `load` reads it again."""
    _LOADED.pop(path, None)


def _rows_for(states: np.ndarray | None, frames: int) -> np.ndarray:
    """Whisper rows for exactly `frames` frames: past the recording's end, silence (zero rows)."""
    if states is None:
        raise FacecastError("this model's offline mouth-gap nets hear Whisper's states: pass the recording's")
    states = np.asarray(states, np.float32)[:frames]
    return np.concatenate([states, np.zeros((frames - len(states), states.shape[1]), np.float32)])


def _hears_whisper(model: "LearnedMotion") -> bool:
    """Whether the model's offline mouth-gap nets (the longest lookahead) hear Whisper's states."""
    return model.offline_mouth is not None and model.offline_mouth.hears_whisper


def offline_states(model: "LearnedMotion", samples: np.ndarray) -> np.ndarray | None:
    """The recording's Whisper rows if the model's offline mouth-gap nets hear them, else None."""
    if not _hears_whisper(model):
        return None
    return _offline_encoder(model).clip_rows(samples)


def _window_rows(model: "LearnedMotion"):
    """A `whisper_states.WindowRows` for the model's offline mouth-gap nets if they hear Whisper, else None."""
    if not _hears_whisper(model):
        return None
    from facecast.speech.whisper_states import WindowRows

    return WindowRows(_offline_encoder(model))


def _offline_encoder(model: "LearnedMotion"):
    """The shipped Whisper encoders the model's offline mouth-gap nets name, their rows side by side."""
    from facecast.speech.whisper_states import shared

    return shared(model.offline_mouth.encoders)


def generate_frames(audio: np.ndarray, fps: float, frames: int, seed: int = 0,
                    path: Path = WEIGHTS_PATH, states: np.ndarray | None = None) -> Iterator[MotionFrame]:
    """`frames` MotionFrames at `fps` for per-hop audio features of the model's kind (`load(path).features`);
    `states`: see `LearnedMotion.generate`."""
    count = max(1, int(math.ceil(frames / fps * FPS)))
    model = load(path)
    matrix = model.generate(audio, count, model.sampling_for(seed), states)
    return motion_frames(resample_frames(matrix, FPS, fps, count=frames), fps)


_LOADED: dict[Path, LearnedMotion] = {}


def learned_motion(samples: np.ndarray, fps: float, frames: int, path: Path = WEIGHTS_PATH) -> list[MotionFrame]:
    """16 kHz speech -> exactly `frames` MotionFrames at `fps` (motion only: no visemes or voice level)."""
    model = load(path)
    return list(generate_frames(speech_features(samples, model.features), fps, frames, path=path,
                                states=offline_states(model, samples)))


def clip_loud_level(chunks: Iterable[np.ndarray]) -> float:
    """The loud level (`loud_level`) of a whole clip of 16 kHz mono chunks, from a quick pass over it that keeps
    only each hop's mean log-mel level (4 bytes per 10 ms): what lets `LearnedClipGenerator` stream its frames."""
    framer, levels = HopFramer(), array("f")
    for block in offline_blocks(chunks):
        for windows in framer.push(np.asarray(block, dtype=np.float64)):
            levels.extend(log_mel(windows).mean(1))
    return loud_level(np.frombuffer(levels, np.float32)) if len(levels) else 0.0


class LearnedClipGenerator:
    """The learned model over a whole clip, with the streaming generators' interface (`generator`). Each window
    hears its whole second of audio. Given the clip's loud level (`loud`, from `clip_loud_level`), frames stream:
    each comes from `push` as soon as the audio and the frames it depends on are in (`_ClipStream`), the same
    frames as generating from the whole clip. Without it, `push` only analyses (the model's features, kept
    compactly, and the voice) and `finish` generates window by window, yielding the frames lazily. Visemes and
    the voice level come from the voice analysis, as live (`learned_stream`)."""

    SAMPLE_RATE = SAMPLE_RATE
    #: Offline only: a frame waits for its window's second of audio and the head's recentring (`_ClipStream`),
    #: or (without the loud level) for the end of the audio.
    lookahead_s = math.inf
    processing_s = 0.0

    def __init__(self, fps: float = 25.0, seed: int = 0, path: Path = WEIGHTS_PATH, frames: int | None = None,
                 loud: float | None = None, voice_gate: bool = True) -> None:
        """`frames`: exactly this many frames (audio past the end is silence); default: as long as the audio.
        `loud`: the whole clip's loud level (`clip_loud_level`), so frames stream (log-mel models only).
        `voice_gate`: shut the mouth on sound that is not a voice (`voice_gate`)."""
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be a positive number, got {fps}")
        self.fps, self.seed, self.path, self.frames = float(fps), seed, Path(path), frames
        self.features = load(self.path).features
        self._streamed = (_ClipStream(load(self.path), self.fps, seed, frames, loud, voice_gate)
                          if loud is not None and self.features == "logmel" else None)
        # Phones need the whole utterance (`phones`): for them the samples are kept (4 bytes per sample).
        self._stream = AudioFeatureStream(self.features) if self.features != "allphone" else None
        self._samples = array("f")
        # the offline mouth-gap nets' Whisper rows, window by window (`whisper_states`), where they hear them
        self._whisper = _window_rows(load(self.path)) if self._streamed is None else None
        self._states: list[np.ndarray] = []
        self._count = 0
        self._voice = VoiceAnalyser(self.fps)
        self._voiced = array("f")           # per frame: the VISEMES weights, the voice level, the voice gate
        self._gate = voice_gate
        self._finished = False

    def push(self, samples: np.ndarray, capture_time: float | None = None) -> list[MotionFrame]:
        """Analyse the next block of 16 kHz mono samples; frames come from `finish`."""
        if self._finished:
            raise RuntimeError("push() after finish(): create a new generator for a new stream")
        if self._streamed is not None:
            return self._streamed.push(samples)
        if self._stream is not None:
            self._stream.push(samples)
        if self._whisper is not None:
            self._states.append(self._whisper.push(samples))
        if self._stream is None:
            self._samples.extend(np.asarray(samples, np.float32))
        self._count += len(samples)
        self._keep(self._voice.push(samples))
        return []

    def finish(self) -> Iterator[MotionFrame]:
        """End of input: every frame, generated lazily."""
        if self._finished:
            return iter(())
        self._finished = True
        if self._streamed is not None:
            return iter(self._streamed.finish())
        self._keep(self._voice.finish())
        return self._frames()

    def _keep(self, frames: list[VoiceFrame]) -> None:
        for frame in frames:
            visemes = frame.visemes
            self._voiced.extend([*(visemes.get(name, 0.0) for name in VISEMES), frame.voice, frame.speech])

    def _frames(self) -> Iterator[MotionFrame]:
        audio = (self._stream.matrix() if self._stream is not None
                 else speech_features(np.frombuffer(self._samples, np.float32), self.features))
        total = self.frames if self.frames is not None else max(1, round(self._count / SAMPLE_RATE * self.fps))
        per_frame = len(VISEMES) + 2
        analysed = len(self._voiced) // per_frame
        gate = ahead_max(np.frombuffer(self._voiced, np.float32)[per_frame - 1::per_frame],
                         round(OFFLINE_GATE_LEAD_S * self.fps))
        states = np.concatenate([*self._states, self._whisper.finish()]) if self._whisper is not None else None
        for index, frame in enumerate(generate_frames(audio, self.fps, total, seed=self.seed, path=self.path,
                                                      states=states)):
            if analysed:
                start = min(index, analysed - 1) * per_frame
                row = self._voiced[start:start + per_frame]
                frame = replace(frame, visemes=dict(zip(VISEMES, row)), voice=row[-2])
                if self._gate:
                    frame = scale_mouth(frame, float(gate[min(index, analysed - 1)]))
            yield frame


#: Offline, the voice gate opens this long (s) before the voice: the model, hearing 0.56 s ahead, parts the lips
#: before the sound as real speakers do, and a gate that opened only with the sound cut that short (live, the
#: stream hears 80 ms ahead and the gate with it).
OFFLINE_GATE_LEAD_S = 0.3


def ahead_max(values: np.ndarray, lead: int) -> np.ndarray:
    """Each value replaced by the largest of it and the `lead` values after it."""
    if lead <= 0 or not len(values):
        return np.asarray(values)
    from numpy.lib.stride_tricks import sliding_window_view

    return sliding_window_view(np.concatenate([values, np.zeros(lead, values.dtype)]), lead + 1).max(1)


class _ClipStream:
    """`LearnedClipGenerator`'s frames as the audio comes, given the clip's loud level: the windows, mouth, head
    smoothing and recentring, blinks and resampling of `LearnedMotion.generate` + `generate_frames` over the whole
    clip, each step done once the audio and the frames it depends on are in (the head's recentring, a Gaussian of
    HEAD_RECENTRE_S, waits for ~16 s of frames after each), keeping only what later frames still need: memory
    stays flat and the first frame comes after seconds, not after the whole clip."""

    def __init__(self, model: LearnedMotion, fps: float, seed: int, frames: int | None, loud: float,
                 voice_gate: bool = True) -> None:
        torch = _torch()
        self.model, self.fps, self.loud, self.frames = model, fps, loud, frames
        # the voice gate at a frame: its largest value over the next OFFLINE_GATE_LEAD_S (`ahead_max`)
        self._gate_lead = round(OFFLINE_GATE_LEAD_S * fps) if voice_gate else None
        self._sampling = model.sampling_for(seed)
        self._random = torch.Generator().manual_seed(self._sampling.seed)
        self._mouth = model.offline_mouth
        self._mouth_ahead = self._mouth.ahead if self._mouth is not None else 0
        # the offline mouth-gap nets' Whisper rows (`whisper_states`), window by window, where they hear them
        self._whisper = _window_rows(model)
        self._states: dict[int, np.ndarray] = {}       # 25 fps frame -> its Whisper row, while still needed
        self._stated = 0
        self._samples = 0
        self._framer = HopFramer()
        self._hops: list[np.ndarray] = []               # log-mel hops not yet making up a whole 25 fps frame
        self._audio: dict[int, np.ndarray] = {}         # 25 fps frame -> its audio row, while still needed
        self._framed = 0
        self._track_min = math.inf                      # the relative log-mel's minimum: silence past the end
        self._feature_min = math.inf                    # ... over the clip's frames only (the mouth net's silence)
        self._count = self._frames_at_25(frames) if frames is not None else None
        self._context = torch.zeros(0, MOTION_DIMS)     # the last CONTEXT generated frames, normalised
        self._generated = 0
        self._raw: dict[int, np.ndarray] = {}           # generated motion rows, jaw set, head not yet smoothed
        self._mouthed = 0
        self._final: dict[int, np.ndarray] = {}         # finished 25 fps rows (head and blinks done)
        self._finalised = 0
        self._blinks = BlinkShaper()
        self._voice = VoiceAnalyser(fps)
        self._voiced: dict[int, VoiceFrame] = {}
        self._last_voiced: VoiceFrame | None = None
        self._emitted = 0
        self._finished = False
        # the head filters' kernels
        self._smooth_r = gaussian_radius(OFFLINE_HEAD_SMOOTHING_S * FPS)
        self._recentre_r = gaussian_radius(HEAD_RECENTRE_S * FPS)

    def _frames_at_25(self, frames: int) -> int:
        return max(1, int(math.ceil(frames / self.fps * FPS)))

    def push(self, samples: np.ndarray) -> list[MotionFrame]:
        block = np.asarray(samples, dtype=np.float64)
        self._samples += len(block)
        for frame in self._voice.push(block):
            self._voiced[frame.index] = frame
        for windows in self._framer.push(block):
            self._add_hops(log_mel(windows))
        if self._whisper is not None:
            self._add_states(self._whisper.push(block))
        return self._advance()

    def _add_states(self, rows: np.ndarray) -> None:
        for row in rows:
            self._states[self._stated] = row
            self._stated += 1

    def finish(self) -> list[MotionFrame]:
        if self._finished:
            return []
        self._finished = True
        for frame in self._voice.finish():
            self._voiced[frame.index] = frame
        total = self.frames if self.frames is not None else max(1, round(self._samples / SAMPLE_RATE * self.fps))
        self.frames = total
        self._count = self._frames_at_25(total)
        # as `frame_audio`: the hops of a partial last frame, then the clip's quietest level, make up the rest
        rest = relative_logmel(np.stack(self._hops), self.loud) if self._hops else None
        if rest is not None:
            self._track_min = min(self._track_min, float(rest.min()))
        silence = np.full((HOPS_PER_FRAME, FEATURE_DIMS["logmel"]),
                          self._track_min if math.isfinite(self._track_min) else -4.0, np.float32)
        if rest is not None and self._framed < self._count:
            silence_rows = silence[: HOPS_PER_FRAME - len(rest)]
            self._audio[self._framed] = np.concatenate([rest, silence_rows]).reshape(-1)
            self._feature_min = min(self._feature_min, float(self._audio[self._framed].min()))
            self._framed += 1
        if self._framed < self._count:
            self._feature_min = min(self._feature_min, float(silence.min()))
        while self._framed < self._count:
            self._audio[self._framed] = silence.reshape(-1)
            self._framed += 1
        if self._whisper is not None:
            self._add_states(self._whisper.finish())
        return self._advance()

    def _add_hops(self, hops: np.ndarray) -> None:
        self._hops.extend(hops)
        while len(self._hops) >= HOPS_PER_FRAME:
            row = relative_logmel(np.stack(self._hops[:HOPS_PER_FRAME]), self.loud).reshape(-1)
            del self._hops[:HOPS_PER_FRAME]
            self._track_min = min(self._track_min, float(row.min()))
            if self._count is None or self._framed < self._count:
                self._feature_min = min(self._feature_min, float(row.min()))
            self._audio[self._framed] = row
            self._framed += 1

    def _advance(self) -> list[MotionFrame]:
        self._generate()
        self._apply_mouth()
        self._finalise()
        return self._emit()

    def _generate(self) -> None:
        """Every whole window whose audio is in (windows of WINDOW frames, as `LearnedMotion.generate`); the
        clip's frame count is at least the frames framed so far, so a window ending there is a whole one."""
        torch = _torch()
        limit = self._count if self._count is not None else math.inf
        while self._generated < limit:
            start = self._generated
            end = min(start + WINDOW, limit)
            if end > self._framed:
                return
            lo = start - len(self._context)
            audio = torch.from_numpy(np.stack([self._audio[i] for i in range(lo, end)]))
            new = self.model.denoise(self._context, audio, self._sampling, self._random)
            self._context = torch.cat([self._context, new])[-CONTEXT:]
            for i, row in enumerate(self.model.to_motion(new.numpy())):
                self._raw[start + i] = row
            self._generated = end

    def _apply_mouth(self) -> None:
        """The mouth-gap net's jaw on generated frames once the audio it looks ahead to is in, a window or more at
        a time (each call costs about as much as a window's)."""
        heard_until = min(self._framed, self._stated) if self._whisper is not None else self._framed
        ready = self._generated if self._finished else min(self._generated, heard_until - self._mouth_ahead)
        if ready <= self._mouthed or (ready - self._mouthed < WINDOW and not self._finished):
            return
        start = self._mouthed
        if self._mouth is not None:
            lo = max(0, start - self._mouth.history)
            heard = [self._audio[i] for i in range(lo, min(self._framed, ready + self._mouth_ahead))]
            future = len(heard) - (ready - lo)
            # the rows after these that the target's smoothing reaches: none past the clip's last frame
            more = min(self._mouth.reach, max(future - self._mouth.lookahead, 0))
            if self._count is not None:
                more = min(more, self._count - ready)
            if self._finished and future < self._mouth.lookahead:   # past the end: silence, as over the whole clip
                heard += [np.full_like(heard[0], self._feature_min)] * (self._mouth.lookahead - future)
                future = self._mouth.lookahead
            states = None
            if self._whisper is not None:           # past the recording's end: silence, zero rows
                silent = np.zeros(self._whisper.encoder.width, np.float32)
                states = np.stack([self._states.get(i, silent) for i in range(lo, lo + len(heard))])
            rows = np.stack([self._raw[i] for i in range(start, ready)])
            self._mouth.apply(rows, self._mouth.inputs(np.stack(heard), states), future=future, more=more)
            for i, row in enumerate(rows):
                self._raw[start + i] = row
        self._mouthed = ready
        keep_from = self._mouthed - max(self._mouth.history if self._mouth is not None else 0, CONTEXT)
        for old in [i for i in self._audio if i < keep_from]:
            del self._audio[old]
        for old in [i for i in self._states if i < keep_from]:
            del self._states[old]

    def _finalise(self) -> None:
        """Head smoothing and recentring (`LearnedMotion.generate`'s zero-phase Gaussians, exact: each row waits
        for the rows its kernels reach), then blinks, in batches of at least a window (the recentring kernel is
        long)."""
        reach = self._smooth_r + self._recentre_r
        done = self._finished and self._mouthed == self._count
        ready = self._mouthed if done else self._mouthed - reach
        start = self._finalised
        if ready <= start or (ready - start < WINDOW and not done):
            return
        # scipy.ndimage on first use: importing it adds about 30 ms to every `facecast` start-up
        from scipy.ndimage import gaussian_filter1d

        lo, hi = max(0, start - reach), min(self._mouthed, ready + reach)
        rows = np.stack([self._raw[i] for i in range(lo, hi)])
        smooth = gaussian_filter1d(rows[:, HEAD_GUIDED], OFFLINE_HEAD_SMOOTHING_S * FPS, axis=0, mode="nearest")
        # the recentring Gaussian at the rows being finished only (the segment's ends are the clip's where they
        # are cut: "nearest" there is what it is over the whole clip)
        offsets = np.arange(-self._recentre_r, self._recentre_r + 1)
        kernel = np.exp(-0.5 * (offsets / (HEAD_RECENTRE_S * FPS)) ** 2)
        kernel /= kernel.sum()
        at = np.clip(np.arange(start - lo, ready - lo)[:, None] + offsets[None], 0, hi - lo - 1)
        drift = np.einsum("nkd,k->nd", smooth[at].astype(np.float64), kernel).astype(smooth.dtype)
        finished = rows[start - lo: ready - lo]
        finished[:, HEAD_GUIDED] = smooth[start - lo: ready - lo] - drift
        for i, row in enumerate(self._blinks.shape(finished)):
            self._final[start + i] = row
        self._finalised = ready
        for old in [i for i in self._raw if i < ready - reach]:
            del self._raw[old]

    def _emit(self) -> list[MotionFrame]:
        """Output frames at fps, linearly resampled from the finished 25 fps rows as `resample_frames` does,
        each once the rows on both sides of it (and its voice analysis) are in."""
        limit = self.frames if self.frames is not None else math.inf
        last = self._finalised - 1
        times = []
        while self._emitted + len(times) < limit:
            index = self._emitted + len(times)
            position = index / self.fps * FPS
            needed = min(int(position + 1e-9) + 1, self._count - 1 if self._finished else math.inf)
            heard = index + (self._gate_lead or 0)   # the voice analysis this frame waits for
            if needed > last or (not self._finished and heard not in self._voiced):
                break
            times.append(index)
        if not times:
            return []
        low = min(int(times[0] / self.fps * FPS + 1e-9), last)
        high = min(int(times[-1] / self.fps * FPS + 1e-9) + 1, last)
        rows = np.stack([self._final[i] for i in range(low, high + 1)])
        if abs(self.fps - FPS) < 1e-6:
            matrix = rows[[i - low for i in times]]
        else:
            source = np.arange(low, high + 1) / FPS
            target = np.asarray(times) / self.fps
            matrix = np.stack([np.interp(target, source, rows[:, j]) for j in range(rows.shape[1])], 1
                              ).astype(rows.dtype)
        out = []
        for index, frame in zip(times, motion_frames(matrix, self.fps)):
            voiced = self._voiced.pop(index, None) or self._last_voiced
            self._last_voiced = voiced
            if voiced is not None:
                frame = replace(frame, visemes={name: voiced.visemes.get(name, 0.0) for name in VISEMES},
                                voice=voiced.voice)
                if self._gate_lead is not None:
                    ahead = [self._voiced[i].speech for i in range(index + 1, index + self._gate_lead + 1)
                             if i in self._voiced]
                    frame = scale_mouth(frame, max([voiced.speech, *ahead]))
            out.append(replace(frame, t=index / self.fps))
        self._emitted = times[-1] + 1
        for old in [i for i in self._final if i < int(self._emitted / self.fps * FPS + 1e-9)]:
            del self._final[old]
        return out
