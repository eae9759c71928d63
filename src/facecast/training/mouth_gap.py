"""Training of the mouth-gap nets (`facecast.speech.mouth_gap`) into a motion model file.

Trains, per lookahead the generators use (offline and live), a few nets (seeds)
on the training split's talking clips: frame audio -> the measured inner-lip gap
above the clip's closed mouth, whether the lips are shut, and whether they shut
inside speech (b, p, m). Augmentations imitate other voices and microphones
(mel bands shifted, spectral tilt, per-band gains) and speaking rates.

Beside the nets, the model file gets the lip geometry `MouthGap.apply` sets the
jaw by (`GAP_GEOMETRY_KEY`: how far each expression coefficient parts the lips as
the renderer draws the average face), measured here on the face model so the
runtime never loads the face analysis for it.

    python -m facecast.training mouth-gap train            # into the shipped model file
    python -m facecast.training mouth-gap train --model M --exclude-fold 2   # without speaker fold 2, to score on it

How windows are drawn and augmented, and whether Whisper's encoder (`training.teacher`)
adds targets, is a `Recipe`; the speaker folds compared several
(`benchmarks/mouth_gap_folds.py`, model card: "Voices it never heard") and none
beat the shipped one (`RECIPE`).
    python -m facecast.training mouth-gap store-geometry   # only the lip geometry (model files made before it)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from facecast import face_regions as fr
from facecast.dataset.av_offsets import av_offset
from facecast.dataset.cache import DEFAULT_DATA, clip_audio, iter_clips
from facecast.dataset.folds import LRC_AR_PSEUDO_SPEAKERS, load_folds
from facecast.errors import FacecastError
from facecast.evaluation.motion_quality import CLOSED_FRACTION
from facecast.face.extraction import ExpressionFitter
from facecast.face.measure import face_height
from facecast.face.portrait import MEAN_FACE_PATH
from facecast.face_model import FaceFrame
from facecast.motion import EXPRESSION_CHANNELS, resample_frames
from facecast.speech.learned import FPS, forget, frame_audio, read_model
from facecast.speech.mouth_gap import (
    CLOSURE_EXPONENT,
    FRAME_DIMS,
    GAP_GEOMETRY_KEY,
    LIVE_LOOKAHEAD,
    OFFLINE_LOOKAHEAD,
    OUTPUTS,
    VOICE_LEVEL,
    BandNormaliser,
    build_net,
    heard_encoders,
    project_states,
)
from facecast.training.teacher import fit_teacher_projection

#: Nets (seeds) averaged per lookahead (`Recipe.seeds`'s default): on the held-out speakers two seeds' r differed
#: by 0.01-0.04.
SEEDS = (0, 1)
#: The third output's labels: a shut mouth with the mouth open within IN_SPEECH_FRAMES before and after (what
#: b, p and m make; the second output's labels are mostly silences). Its loss weighs them IN_SPEECH_WEIGHT
#: times (they are rare); the model card has the weights tried.
IN_SPEECH_FRAMES = 3
IN_SPEECH_WEIGHT = 10.0


@dataclass(frozen=True)
class Recipe:
    """How the nets are trained, the choices the speaker folds compare (model card: "Speaker folds").
    balance: every speaker counts once when windows are drawn (`speaker_weights`), else every clip;
    augment: "basic" (`_augmented`: mel shift, tilt, band gains) or "voice" (`_voice_augmented` first: wider
    vocal-tract shift, microphone EQ, reverb, noise); teacher_dims: 0, or that many extra outputs trained to
    predict the principal components of Whisper's encoder states (`training.teacher`), dropped afterwards:
    the hidden layers learn the teacher's speaker-robust features, the shipped net is unchanged in size."""

    balance: bool = False
    augment: str = "basic"
    teacher_dims: int = 0
    teacher_weight: float = 0.5
    #: What the nets hear: "logmel" (the runtime's frames, all a live stream can hear); "logmel+whisper" (the
    #: offline nets: log-mel and TEACHER_INPUT_DIMS principal components of the shipped full-context Whisper
    #: encoder's states, `speech.whisper_states`, each recording encoded alone as the runtime encodes it); fold
    #: candidates: "teacher" / "logmel+teacher" (the same components, clips packed into shared windows by
    #: ctranslate2's Whisper, alone or beside log-mel); "student" and "logmel+student": a causal student's
    #: prediction of those components (`training.student`); "encoder" and "logmel+encoder": the states of
    #: Whisper's encoder made to stream (`training.streaming_encoder`; cached by `training.speech_encoder`).
    features: str = "logmel"
    #: "" or a `speech.mouth_gap.BandNormaliser` kind ("utterance", "stream") applied to the (augmented) frames.
    normalise: str = ""
    #: Whether the third output (a closure inside speech) shuts the lips at run time (`MouthGap.target`); it is
    #: trained either way. The offline nets' shut-lips output alone already closes b, p and m: the third
    #: only adds closures at other words (model card: "Fifth round").
    in_speech_closure: bool = True
    #: Training steps per net (`add_to_model`'s default): the offline nets that hear Whisper follow unseen
    #: speakers better after 600 than after 2,000 (model card: "Fifth round").
    steps: int = 2000
    #: The opening smoothed at run time by a Gaussian of this many frames before the closures shut it
    #: (`MouthGap.target`; 0: not). Offline only: a stream would wait that much longer for its audio (model card:
    #: "Sixth round").
    target_smoothing: float = 0.0
    #: Whether each clip's mouth targets are first put in step with its sound (`dataset.av_offsets`).
    av_aligned: bool = True
    #: One net per seed, averaged (`add_to_model`'s default): the offline nets' seeds differ by up to 0.09 on a
    #: speaker fold, and four average out what two do not (model card: "Eleventh round").
    seeds: tuple[int, ...] = SEEDS
    #: The shipped Whisper encoders (`whisper_states.ENCODERS`) whose states "logmel+whisper" nets hear. With
    #: more than one, a group of nets (every seed) per encoder, each hearing log-mel and that encoder alone,
    #: then averaged as one ensemble (`combine_groups`): nets hearing tiny.en and nets hearing base err in
    #: different places (model card: "Seventeenth round").
    encoders: tuple[str, ...] = ("tiny.en",)
    #: E of the runtime's gap * (1 - p ** E) (`MouthGap.closure_exponent`): the offline nets' 2 was chosen on the
    #: speaker folds, where it follows the unseen speakers as well as 4 and closes their lips closer to as
    #: often as they do (model card: "Seventeenth round").
    closure_exponent: float = CLOSURE_EXPONENT


#: The recipe of the shipped live nets, and of the offline ones, which hear Whisper's states beside log-mel.
RECIPE = Recipe()
OFFLINE_RECIPE = Recipe(features="logmel+whisper", in_speech_closure=False, steps=600, target_smoothing=1.0,
                        seeds=(0, 1, 2, 3), encoders=("tiny.en", "base"), closure_exponent=2.0)
#: Features that replace the log-mel frames (nothing of them to augment: cached states).
STATES_ALONE = ("teacher", "student", "encoder", "whisper")
#: Features that hear cached encoder states.
STATE_SOURCES = ("teacher", "encoder", "whisper")
#: Principal components of the teacher's states the "teacher" features give the nets.
TEACHER_INPUT_DIMS = 128
#: Frames before a window that a band normaliser hears first (its statistics then are those of a stream 5 s in).
NORMALISE_HISTORY = 125


def _torch():
    """torch, imported when training starts (a heavy import)."""
    import torch

    return torch


def _source(features: str) -> str:
    """Whose cached states features hear: "encoder" (Whisper made to stream), "whisper" (the shipped
    full-context encoder, `speech.whisper_states`) or "teacher" (Whisper, clips packed, by ctranslate2)."""
    return next((source for source in STATE_SOURCES if features.endswith(source)), "teacher")


@lru_cache(maxsize=1)
def gap_per_coefficient() -> np.ndarray:
    """(len(EXPRESSION_CHANNELS),) how far each coefficient at 1 parts the inner lips, in face heights, as the
    renderer draws it on the average face (jawOpen 0.22, mouthClose -0.22, the lips' up/down ~0.01): what the
    model file stores under GAP_GEOMETRY_KEY."""
    face = np.load(MEAN_FACE_PATH).astype(np.float64)
    fitter = ExpressionFitter(face)
    down = FaceFrame.from_landmarks(face).v
    parting = fitter.basis[:, fr.LOWER_LIP_CENTER] - fitter.basis[:, fr.UPPER_LIP_CENTER]
    per_channel = parting @ down / face_height(face)
    out = np.zeros(len(EXPRESSION_CHANNELS))
    for name, value in zip(fitter.names, per_channel):
        out[EXPRESSION_CHANNELS.index(name)] = value
    return out


def _in_step(frames: np.ndarray, late: int, fill) -> np.ndarray:
    """Per-frame targets of a clip whose sound is `late` frames late, moved so that frame t goes with the sound
    heard at t; the frames left without a target take `fill`."""
    if late == 0:
        return frames
    moved = np.full_like(frames, fill)
    if late > 0:
        moved[late:] = frames[:-late]
    else:
        moved[:late] = frames[-late:]
    return moved


def _clip_targets(clip: dict, data_dir: Path | None, cache: Path | None, aligned: bool = True):
    """A talking clip at 25 fps: (frame audio, gap above its closed mouth, shut-lips labels, in-speech closure
    labels, face found); `aligned`: the mouth put in step with the sound where the recording is not
    (`dataset.av_offsets`; the moved-out frames count as without a face)."""
    fps = float(clip["fps"])
    count = len(resample_frames(np.asarray(clip["head"], np.float32), fps, FPS))
    opening = resample_frames(clip["mouth_opening"][:, None].astype(np.float32), fps, FPS, count=count)[:, 0]
    found = resample_frames(clip["found"][:, None].astype(np.float32), fps, FPS, count=count)[:, 0] > 0.99
    seen = opening[found] if found.sum() > 5 else opening
    low, high = np.percentile(seen, [5, 95])
    shut = (opening <= low + CLOSED_FRACTION * (high - low)).astype(np.float32)
    opened = opening > low + 0.5 * (high - low)
    inside = np.zeros_like(shut)
    for t in np.flatnonzero(shut):
        if opened[max(0, t - IN_SPEECH_FRAMES): t].any() and opened[t + 1: t + 1 + IN_SPEECH_FRAMES].any():
            inside[t] = 1.0
    audio = frame_audio(clip_audio(clip, "logmel", data_dir, cache), count, "logmel")
    late = av_offset(str(clip["path"])) if aligned else 0
    gap = _in_step((opening - low).astype(np.float32), late, 0.0)
    return audio, gap, _in_step(shut, late, 0.0), _in_step(inside, late, 0.0), _in_step(found, late, False)


def _teacher_frames(clip: dict, count: int, source: str = "teacher", data_dir: Path | None = None,
                    cache: Path | None = None, encoders: Sequence[str] = ("tiny.en",)) -> np.ndarray | None:
    """The clip's cached states at 25 fps: Whisper's (`training.teacher`); with source "encoder" those of its
    streaming form; with "whisper" the shipped `encoders`' side by side (`training.speech_encoder`, computed
    from the recording in `data_dir` and cached beside the dataset cache `cache` when missing: a user's own
    videos). `count` frames (the last repeated where the video runs longer than the audio), or None when not
    computed."""
    if source == "whisper":
        parts = [_whisper_states(clip, name, data_dir, cache) for name in encoders]
        if any(part is None or not len(part) for part in parts):
            return None
        rows = min(len(part) for part in parts)
        states = np.concatenate([part[:rows] for part in parts], 1)
    elif source == "encoder":
        from facecast.training.speech_encoder import load_states

        states = load_states(str(clip["path"]))
    else:
        from facecast.training.teacher import load_states

        states = load_states(str(clip["path"]))
    if states is None or not len(states):
        return None
    if len(states) < count:
        states = np.concatenate([states, np.repeat(states[-1:], count - len(states), 0)])
    return states[:count]


def combine_groups(groups: Sequence[dict]) -> dict:
    """One state from groups of nets that each hear log-mel and one encoder's states (`train_nets` with one
    encoder each): the encoders' states side by side, projected block by block, and each net's input weights
    widened with zeros where the other encoders' components come in, so `MouthGap` averages every net as it
    averages seeds, the same numbers as each net hearing its own inputs."""
    torch = _torch()
    first = groups[0]
    for key in ("lookahead", "steps", "in_speech_closure", "target_smoothing", "features", "closure_exponent"):
        if any(group.get(key) != first.get(key) for group in groups):
            raise FacecastError(f"the groups of mouth-gap nets differ in {key}: they cannot be averaged")
    if any(not math.isclose(group[key], first[key], rel_tol=1e-6) for group in groups for key in ("mean", "std")):
        raise FacecastError("the groups of mouth-gap nets were trained on different gaps: they cannot be averaged")
    projections = [group["whisper_input"] for group in groups]
    dims = np.cumsum([0] + [len(p["scale"]) for p in projections])
    widths = np.cumsum([0] + [len(p["mean"]) for p in projections])
    components = torch.zeros(int(dims[-1]), int(widths[-1]), dtype=projections[0]["components"].dtype)
    nets = []
    for i, (group, projection) in enumerate(zip(groups, projections)):
        components[dims[i]: dims[i + 1], widths[i]: widths[i + 1]] = projection["components"]
        for net in group["nets"]:
            heard = net["inp.weight"]
            wide = heard.new_zeros(heard.shape[0], FRAME_DIMS + int(dims[-1]), heard.shape[2])
            wide[:, :FRAME_DIMS] = heard[:, :FRAME_DIMS]
            wide[:, FRAME_DIMS + dims[i]: FRAME_DIMS + dims[i + 1]] = heard[:, FRAME_DIMS:]
            nets.append({**net, "inp.weight": wide})
    joined = {k: torch.cat([p[k] for p in projections]) for k in ("mean", "scale")}
    return {**first, "nets": nets, "whisper_encoders": [name for group in groups for name in heard_encoders(group)],
            "whisper_input": {**joined, "components": components}}


def _whisper_states(clip: dict, encoder: str, data_dir: Path | None, cache: Path | None) -> np.ndarray | None:
    """A shipped encoder's states of a clip's recording (in `data_dir`), cached beside the dataset cache `cache`
    as `--cache whisper` caches them (computed first where missing); None without its recording."""
    from facecast.speech.whisper_states import encoder as shipped
    from facecast.training.speech_encoder import build_cache, load_whisper_states, whisper_cache_dir

    states = load_whisper_states(str(clip["path"]), cache, encoder)
    if states is None:
        build_cache([str(clip["path"])], Path(data_dir or DEFAULT_DATA), shipped(encoder).clip_rows,
                    whisper_cache_dir(cache, encoder), progress=lambda line: None)
        states = load_whisper_states(str(clip["path"]), cache, encoder)
    return states


def _shift_bands(hops: np.ndarray, shift: float) -> np.ndarray:
    """The 40 mel bands (last axis) read `shift` bands over, linearly interpolated and held at the edges: a longer
    or shorter vocal tract moves every formant by about the same number of mel bands."""
    position = np.clip(np.arange(40) + shift, 0, 39)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, 39)
    weight = position - low
    return hops[..., low] * (1 - weight) + hops[..., high] * weight


def _augmented(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another voice and microphone: mel bands shifted by up to 2.5 bands (vocal tract length), a spectral
    tilt and per-band gains."""
    hops = _shift_bands(audio.reshape(len(audio), -1, 40), rng.uniform(-2.5, 2.5))
    hops = hops + rng.uniform(-0.3, 0.3) * np.linspace(-1, 1, 40) + rng.normal(0, 0.1, 40)
    return hops.reshape(len(audio), -1).astype(np.float32)


def _voice_augmented(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Strong voice and channel augmentation on top of `_augmented` (candidate "voice" of the fold comparison):
    a wider vocal-tract shift (up to 4 bands), a smooth microphone EQ (+-6 dB), room reverb (RT60 0.1-0.8 s,
    mixed in at -12..0 dB), coloured noise at 0-20 dB SNR below the clip's loud level (half the clips), done on
    band powers (the features are dB / 20, so power is 10 ** (2 x)), then the clip's level normalisation again."""
    from scipy.signal import lfilter

    hops = _shift_bands(audio.reshape(-1, 40).astype(np.float64), rng.uniform(-4.0, 4.0))
    bands = np.linspace(0, np.pi, 40)
    hops = hops + sum(rng.uniform(-0.1, 0.1) * np.cos(k * bands + rng.uniform(0, np.pi)) for k in (1, 2, 3))
    power = 10.0 ** (2 * hops)
    if rng.random() < 0.5:
        decay = np.exp(-6.9 * 0.01 / rng.uniform(0.1, 0.8))       # per 10 ms hop, from the RT60
        tail = lfilter([0.0, 1 - decay], [1.0, -decay], power, axis=0)
        power = power + 10.0 ** rng.uniform(-1.2, 0.0) * tail
    if rng.random() < 0.5:
        tilt = rng.uniform(-0.5, 0.2) * np.linspace(0, 1, 40)        # from pink-ish to white-ish
        level = -rng.uniform(0.0, 20.0) / 20.0
        noise = 10.0 ** (2 * (level + tilt)) * rng.lognormal(0.0, 0.3, hops.shape)
        power = power + noise
    loud = float(np.percentile(hops.mean(1), 95))
    hops = 0.5 * np.log10(np.maximum(power, 1e-8))
    hops = hops - (float(np.percentile(hops.mean(1), 95)) - loud)      # the loud level moved by the noise
    return np.clip(hops, -4.0, 1.0).reshape(audio.shape).astype(np.float32)


def _rate_changed(arrays: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The clip spoken 15 % slower to 15 % faster: every array resampled along time (labels by their max)."""
    factor = rng.uniform(0.85, 1.15)
    length = len(arrays[0])
    position = np.linspace(0, length - 1, max(2, int(round(length / factor))))
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, length - 1)
    weight = position - low
    audio, gap, shut, inside, found, teacher = arrays
    blended_audio = audio[low] * (1 - weight[:, None]) + audio[high] * weight[:, None]
    blended_gap = gap[low] * (1 - weight) + gap[high] * weight
    blended_teacher = (None if teacher is None
                       else teacher[low] * (1 - weight[:, None]) + teacher[high] * weight[:, None])
    return [blended_audio.astype(np.float32), blended_gap.astype(np.float32),
            *(np.maximum(label[low], label[high]) for label in (shut, inside)), found[low] & found[high],
            blended_teacher]


def _augment_window(window: np.ndarray, recipe: Recipe, rng: np.random.Generator) -> np.ndarray:
    """A window of net inputs augmented by the recipe: the log-mel columns (the first FRAME_DIMS) only, the
    teacher's (features "logmel+teacher") as they are; "teacher" alone has nothing to augment."""
    if recipe.features in STATES_ALONE:
        return window
    mel = window[:, :FRAME_DIMS]
    mel = _augmented(_voice_augmented(mel, rng), rng) if recipe.augment == "voice" else _augmented(mel, rng)
    return np.concatenate([mel, window[:, FRAME_DIMS:]], 1) if window.shape[1] > FRAME_DIMS else mel


def _with_teacher(audio: np.ndarray, states: np.ndarray, projection, features: str) -> np.ndarray:
    """A clip's net inputs for teacher features: the states' principal components (`fit_teacher_projection`),
    alone ("teacher") or after the log-mel frames ("logmel+teacher")."""
    taught = project_states(states, projection)
    return taught if features in STATES_ALONE else np.concatenate([audio, taught], 1)


def _silence_row(inputs: np.ndarray, features: str, projection=None) -> np.ndarray:
    """The input row past a clip's end (where the lookahead hears nothing): the clip's quietest log-mel level,
    and the teacher's components of silence (states less a silent window's, `training.teacher`: zero), or
    the student's (`projection`: its state) after a long silence at the floor level."""
    quiet = np.full(FRAME_DIMS, inputs[:, :FRAME_DIMS].min(), np.float32)
    if features == "logmel":
        return quiet
    if features.endswith("student"):
        taught = _student_silence(projection)
    else:
        taught = _with_teacher(quiet[None], np.zeros((1, len(projection[0]))), projection, "teacher")[0]
    return taught if features in STATES_ALONE else np.concatenate([quiet, taught])


def _with_student(audio: np.ndarray, student: Callable[[np.ndarray], np.ndarray], features: str) -> np.ndarray:
    """A clip's net inputs for student features: the student's output, alone or after the log-mel."""
    taught = student(audio)
    return taught if features == "student" else np.concatenate([audio, taught], 1)


@lru_cache(maxsize=4)
def _student_silence(student: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The student's output after 6 s of silence at the log-mel floor (-4)."""
    return student(np.full((150, FRAME_DIMS), -4.0, np.float32))[-1]


def fold_inputs(clip: dict, audio: np.ndarray, state: dict) -> tuple[np.ndarray, int]:
    """(rows, future) for `MouthGap.predict` of nets `train_nets` made (`state`) on a clip's frame audio: the
    audio itself, or for teacher, encoder or student features (candidates) the inputs they were trained on,
    with the lookahead's silence after the clip (`future` rows)."""
    features = state.get("features", "logmel")
    if features == "logmel":
        return audio, 0
    if features.endswith("student"):
        projection = state["student"]
        rows = _with_student(audio, projection, features)
    else:
        projection = tuple(state[_source(features) + "_input"][k].numpy() for k in ("mean", "components", "scale"))
        states = _teacher_frames(clip, len(audio), _source(features), encoders=heard_encoders(state))
        rows = _with_teacher(audio, states, projection, features)
    pad = _silence_row(audio, features, projection)
    return np.concatenate([rows, np.repeat(pad[None], state["lookahead"], 0)]), int(state["lookahead"])


def voice_statistics(clips: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(40,) mean and variance of each log-mel band over the voice frames (`mouth_gap.VOICE_LEVEL`) of clips'
    frame audio, every hop: the warm start of a `BandNormaliser`."""
    bands = np.concatenate([c.reshape(len(c), -1, 40)[c.reshape(len(c), -1, 40).mean((1, 2)) > VOICE_LEVEL]
                            for c in clips]).reshape(-1, 40).astype(np.float64)
    return bands.mean(0), bands.var(0)


def speaker_weights(clips: Sequence[dict], frames: Sequence[int]) -> np.ndarray:
    """Sampling probability of each clip when every speaker counts once (`lrc_ar`, without speaker ids, as
    LRC_AR_PSEUDO_SPEAKERS): a speaker's share is spread over its clips by their length."""
    speakers = [str(c["speaker"]) for c in clips]
    totals: dict[str, int] = {}
    for speaker, count in zip(speakers, frames):
        totals[speaker] = totals.get(speaker, 0) + count
    share = {s: (LRC_AR_PSEUDO_SPEAKERS if s == "lrc_ar" else 1.0) for s in totals}
    weights = np.array([share[s] * n / totals[s] for s, n in zip(speakers, frames)])
    return weights / weights.sum()


def without_fold(clips: Sequence[dict], fold: int) -> list[dict]:
    """The clips none of whose speakers is in fold `fold` (1..k, `dataset.folds`): what a fold's refit trains on."""
    excluded = set(load_folds()[fold - 1])
    return [c for c in clips if str(c["speaker"]) not in excluded]


def train_nets(clips: Sequence[dict], lookahead: int, steps: int = 2000, seeds: Sequence[int] = SEEDS,
               batch: int = 64, length: int = 75, data_dir: Path | None = None, cache: Path | None = None,
               progress=print, init: dict | None = None, learning_rate: float = 1e-3,
               recipe: Recipe | None = None, student: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    """Train one net per seed on talking clips; returns the state `MouthGap` reads. With `init` (such a
    state), its nets continue training (fine-tuning), with its gap normalisation. `recipe`: sampling,
    augmentation and the teacher target (default: the shipped recipe, RECIPE); `student`: what student
    features need, a causal front-end from a clip's frame audio to its (T, D) features
    (`training.student.student_features` of a trained student), kept in the returned state."""
    torch = _torch()
    F = torch.nn.functional
    recipe = recipe or RECIPE
    if init is not None:                            # fine-tuning hears what the nets it continues heard
        recipe = Recipe(features=str(init.get("features", "logmel")),
                        in_speech_closure=bool(init.get("in_speech_closure", True)),
                        target_smoothing=float(init.get("target_smoothing", 0.0)), encoders=heard_encoders(init),
                        closure_exponent=float(init.get("closure_exponent", CLOSURE_EXPONENT)))
        if recipe.features not in (RECIPE.features, OFFLINE_RECIPE.features) or init.get("normalise"):
            raise FacecastError("fine-tuning continues the shipped recipes' nets only")
    if recipe.features != "logmel" and (recipe.teacher_dims or recipe.normalise):
        raise FacecastError("teacher features are a diagnostic alone: no teacher targets, no band normalisation")
    if init is None and recipe.features.endswith("whisper") and len(recipe.encoders) > 1:
        return combine_groups([train_nets(clips, lookahead, steps, seeds, batch, length, data_dir, cache, progress,
                                          recipe=replace(recipe, encoders=(name,))) for name in recipe.encoders])
    use_teacher = (recipe.teacher_dims > 0 and init is None) or recipe.features.endswith(STATE_SOURCES)
    if recipe.features.endswith("student") and student is None:
        raise FacecastError("student features need a trained student (training.student)")
    data, kept = [], []
    for clip in clips:
        targets = _clip_targets(clip, data_dir, cache, recipe.av_aligned)
        states = (_teacher_frames(clip, len(targets[0]), _source(recipe.features), data_dir, cache, recipe.encoders)
                  if use_teacher else None)
        if targets[-1].sum() >= 10 and (states is not None or not use_teacher):
            data.append((*targets, states))
            kept.append(clip)
    if not data:
        raise FacecastError("no talking clips with a face to train the mouth gap on")
    weights = (speaker_weights(kept, [len(d[1]) for d in data]) if recipe.balance
               else np.full(len(data), 1.0 / len(data)))        # (also what the teacher's PCA samples by)
    gaps = np.concatenate([d[1][d[4]] for d in data])
    if init:
        mean, std = float(init["mean"]), float(init["std"])
    else:
        mean, std = float(gaps.mean()), float(max(gaps.std(), 1e-6))
    extra = recipe.teacher_dims if init is None else 0
    if extra:
        t_mean, t_components, t_scale = fit_teacher_projection([d[5] for d in data], weights, extra,
                                                               np.random.default_rng(0))
        data = [(*d[:5], ((d[5] - t_mean) @ t_components.T / t_scale).astype(np.float32)) for d in data]
    extras: dict = {}
    projection = None
    if recipe.features.endswith("student"):
        extras.update(features=recipe.features, student=student)
        data = [(_with_student(d[0], student, recipe.features), *d[1:5], None) for d in data]
    elif recipe.features != "logmel":
        key = _source(recipe.features) + "_input"
        projection = (tuple(init[key][k].numpy() for k in ("mean", "components", "scale")) if init is not None
                      else fit_teacher_projection([d[5] for d in data], weights, TEACHER_INPUT_DIMS,
                                                  np.random.default_rng(0)))
        extras["features"] = recipe.features
        if key == "whisper_input":
            extras["whisper_encoders"] = list(recipe.encoders)
        extras[key] = dict(zip(("mean", "components", "scale"), map(torch.from_numpy, projection)))
        data = [(_with_teacher(d[0], d[5], projection, recipe.features), *d[1:5], None) for d in data]
    projected = projection if recipe.features.endswith(STATE_SOURCES) else student
    normaliser = None
    if recipe.normalise:
        voice_mean, voice_var = voice_statistics([d[0][:, :FRAME_DIMS] for d in data])
        extras["normalise"] = {"kind": recipe.normalise, "mean": torch.from_numpy(voice_mean),
                               "var": torch.from_numpy(voice_var)}
        normaliser = BandNormaliser(recipe.normalise, voice_mean, voice_var)
    history = NORMALISE_HISTORY if normaliser else 0
    inputs = data[0][0].shape[1]
    nets = []
    for index, seed in enumerate(seeds if init is None else range(len(init["nets"]))):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        net = build_net(outputs=(OUTPUTS + extra) if init is None else int(init["nets"][index]["out.weight"].shape[0]),
                        inputs=inputs)
        if init is not None:
            net.load_state_dict(init["nets"][index])
        outputs = int(net.out.weight.shape[0]) - extra
        in_speech_weight = torch.tensor(IN_SPEECH_WEIGHT)
        optimiser = torch.optim.AdamW(net.parameters(), learning_rate, weight_decay=1e-2)
        started = time.monotonic()
        for step in range(1, steps + 1):
            for group in optimiser.param_groups:
                group["lr"] = learning_rate * 0.5 * (1 + math.cos(math.pi * step / steps))
            audio = np.zeros((batch, length + lookahead, inputs), np.float32)
            target = np.zeros((batch, length), np.float32)
            shut = np.zeros((batch, length), np.float32)
            inside = np.zeros((batch, length), np.float32)
            mask = np.zeros((batch, length), np.float32)
            taught = np.zeros((batch, length, extra), np.float32)
            heard = np.zeros((batch, length), np.float32)
            for b in range(batch):
                # unbalanced, the draw is the one the shipped nets were trained with (same random stream)
                pick = rng.choice(len(data), p=weights) if recipe.balance else rng.integers(len(data))
                a, g, s, i, f, t = _rate_changed(data[int(pick)], rng)
                start = int(rng.integers(0, max(1, len(g) - length)))
                end = min(len(g), start + length)
                padded = np.concatenate([a, np.repeat(_silence_row(a, recipe.features, projected)[None], lookahead, 0)])
                lo = max(0, start - history)             # what a band normaliser hears before the window
                window = _augment_window(padded[lo: end + lookahead], recipe, rng)
                if normaliser is not None:
                    normaliser.reset()
                    window = normaliser.push(window)
                audio[b, : len(window) - (start - lo)] = window[start - lo:]
                target[b, : end - start] = (g[start:end] - mean) / std
                shut[b, : end - start] = s[start:end]
                inside[b, : end - start] = i[start:end]
                mask[b, : end - start] = f[start:end]
                heard[b, : end - start] = 1.0
                if extra:
                    taught[b, : end - start] = t[start:end]
            audio_t, target_t, shut_t, inside_t, mask_t = (torch.from_numpy(x)
                                                           for x in (audio, target, shut, inside, mask))
            out = net(audio_t.transpose(1, 2))[:, :, lookahead:]
            per_frame = ((out[:, 0] - target_t) ** 2
                         + F.binary_cross_entropy_with_logits(out[:, 1], shut_t, reduction="none"))
            if outputs > 2:
                per_frame = per_frame + F.binary_cross_entropy_with_logits(out[:, 2], inside_t, reduction="none",
                                                                            pos_weight=in_speech_weight)
            loss = (per_frame * mask_t).sum() / mask_t.sum().clamp(min=1)
            if extra:
                # the teacher's states are known wherever there is audio, face or not
                heard_t = torch.from_numpy(heard)
                taught_loss = ((out[:, outputs:].transpose(1, 2) - torch.from_numpy(taught)) ** 2).mean(-1)
                loss = loss + recipe.teacher_weight * (taught_loss * heard_t).sum() / heard_t.sum().clamp(min=1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if step % 500 == 0 or step == steps:
                progress(f"mouth gap (lookahead {lookahead}, seed {seed}): step {step} loss {loss.item():.3f} "
                         f"{time.monotonic() - started:.0f} s")
        net.eval()
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        # the teacher's outputs only shaped the hidden layers in training: the shipped net has OUTPUTS
        state["out.weight"], state["out.bias"] = state["out.weight"][:outputs], state["out.bias"][:outputs]
        nets.append(state)
    return {"lookahead": lookahead, "mean": mean, "std": std, "nets": nets, "steps": steps,
            "in_speech_closure": recipe.in_speech_closure, "target_smoothing": recipe.target_smoothing,
            "closure_exponent": recipe.closure_exponent, **extras}


def add_to_model(path: Path, steps: int | None = None, cache: Path | None = None, data_dir: Path | None = None,
                 clips: Sequence[dict] | None = None, seeds: Sequence[int] | None = None, progress=print,
                 fine_tune: bool = False, recipes: dict[int, Recipe] | None = None,
                 exclude_fold: int | None = None) -> dict:
    """Train the offline and live mouth-gap nets on the training split's talking clips (or `clips`) and store
    them, with their lip geometry (GAP_GEOMETRY_KEY), in the motion model file at `path`; `fine_tune` continues
    the file's own nets at a fifth of the learning rate instead (`facecast train --data`). `steps` per net
    (default: each recipe's), one net per seed (default: each recipe's). `recipes`: per lookahead (default:
    OFFLINE_RECIPE offline, RECIPE live).
    `exclude_fold` (1..k): without that speaker fold's clips (`without_fold`), to be scored on them."""
    recipes = recipes or {OFFLINE_LOOKAHEAD: OFFLINE_RECIPE, LIVE_LOOKAHEAD: RECIPE}
    torch = _torch()
    state = read_model(path)                        # a clear error for a missing or foreign file, before training
    base = state.get("mouth", {}) if fine_tune else {}
    if fine_tune and not base:
        raise FacecastError(f"{path} has no mouth-gap nets to fine-tune")
    if clips is None:
        clips = [c for c in iter_clips(split="train", kind="talking", cache=cache) if len(c["audio"])]
    if exclude_fold is not None:
        clips = without_fold(clips, exclude_fold)
    started = time.monotonic()
    mouth = {}
    for look in (OFFLINE_LOOKAHEAD, LIVE_LOOKAHEAD) if not fine_tune else map(int, base):
        recipe = recipes.get(look, RECIPE)
        mouth[str(look)] = train_nets(clips, look, steps or recipe.steps, seeds or recipe.seeds,
                                      data_dir=data_dir, cache=cache,
                                      progress=progress, init=base.get(str(look)),
                                      learning_rate=2e-4 if fine_tune else 1e-3, recipe=recipe)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state["mouth"] = mouth
    state[GAP_GEOMETRY_KEY] = torch.from_numpy(gap_per_coefficient())
    torch.save(state, path)
    forget(path)
    minutes = (time.monotonic() - started) / 60
    progress(f"mouth gap nets trained on {len(clips)} clips in {minutes:.1f} min, stored in {path}")
    return {"clips": len(clips), "minutes": minutes}


def store_geometry(path: Path) -> np.ndarray:
    """Store the lip geometry (GAP_GEOMETRY_KEY) in the motion model file at `path`, nothing else changed: model
    files whose mouth-gap nets were trained before it was stored there. Returns it."""
    torch = _torch()
    read_model(path)                                # a clear error for a missing or foreign file
    state = torch.load(path, map_location="cpu", weights_only=True)
    geometry = gap_per_coefficient()
    state[GAP_GEOMETRY_KEY] = torch.from_numpy(geometry)
    torch.save(state, path)
    forget(path)
    return geometry
