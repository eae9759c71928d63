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
* a speaking-style condition (the corpus: GRID, LRC-AR news, in the wild).
  Motion-only clips (head and blinks, no usable speech) train the in-the-wild
  style with the audio condition dropped;
* a window of WINDOW frames is denoised; the CONTEXT frames before it are given
  clean (the previous window's output), so long audio is generated window by
  window without seams. Some training windows end early, as the live stream's
  short chunks do (`learned_stream`);
* the network predicts the clean motion (x0) from the noised window at a
  cosine-schedule noise level; audio, context and style are each dropped at
  random in training, so sampling can use classifier-free guidance;
* sampling is deterministic DDIM in SAMPLE_STEPS steps with guidance on audio
  and a head guidance (style contrast on the head only); `calibrate` picks both
  scales on training clips and stores them in the model file;
* the jaw is then set by the mouth-gap nets stored in the same file
  (`mouth_gap`): a regressor of the measured inner-lip gap follows unseen
  speakers' mouths far better than the sampled lips.

Train (needs `facecast dataset build`; resumable with --resume; trains the mouth-gap nets and calibrates after):

    python -m facecast.speech.learned train --steps 6000 --minutes 120

Model card: `data/motion_diffusion.md`.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d

from facecast.dataset.cache import clip_group, resample_frames
from facecast.errors import FacecastError
from facecast.motion import Blink, Gaze, HeadPose, MotionFrame
from facecast.render.warp_basis import EXPRESSION_CHANNELS

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

def motion_matrix(clip: dict[str, np.ndarray]) -> np.ndarray:
    """(T, MOTION_DIMS) motion of a cached clip at its own frame rate (gaze readings of lost irises filled,
    for caches built before extraction did it)."""
    from facecast.face.extraction import plausible_gaze

    gaze = plausible_gaze(np.asarray(clip["gaze"], np.float32))
    return np.concatenate([clip["expressions"], clip["head"], clip["blink"], gaze], 1).astype(np.float32)


def frame_audio(audio: np.ndarray, frames: int, kind: str = "hop8") -> np.ndarray:
    """(frames, 4 x per-hop dims): each 25 fps frame's 4 hops, levels relative to the clip's loud level,
    padded with the clip's own silence where the audio ends early.

    hop8: normalised like the lip-sync scorer's input; logmel: dB / 20 relative to the 95th
    percentile of the hops' mean band level, so microphone gain does not matter."""
    from facecast.evaluation.sync_scorer import audio_track, silence_row

    dims = FEATURE_DIMS[kind]
    if kind == "hop8":
        track = audio_track(audio)
        silence = silence_row(track)
    elif kind == "allphone":
        from facecast.speech.phones import SILENCE

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
        from facecast.speech.phones import phone_track

        return phone_track(samples)
    from facecast.dataset.cache import AudioFeatureStream

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


def clip_audio(clip: dict[str, np.ndarray], kind: str, data: Path | None = None, cache: Path | None = None) -> np.ndarray:
    """A cached clip's per-hop audio of this kind: hop8 is in the dataset cache; the others are computed
    from the recording once and cached beside it (`<cache>/<kind>/`)."""
    if kind == "hop8":
        return clip["audio"]
    from facecast.dataset.cache import DEFAULT_DATA, cache_name, default_cache_dir
    from facecast.media import decode_mono

    folder = (Path(cache) if cache is not None else default_cache_dir()) / kind
    path = folder / cache_name(str(clip["path"])).replace(".npz", ".npy")
    if path.exists():
        return np.load(path)
    features = speech_features(decode_mono(Path(data or DEFAULT_DATA) / str(clip["path"])), kind).astype(np.float16)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(path, features)
    return features


# ----------------------------------------------------------------------------- the network

def _torch():
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


def _alpha_bar(t):
    """Cosine noise schedule: signal fraction at noise level t in [0, 1]."""
    torch = _torch()
    return torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2


# ----------------------------------------------------------------------------- data

#: Speaking styles the model is conditioned on: the corpora differ most in head motion (GRID speakers
#: sit still, news anchors nod a little, in-the-wild speakers move freely). Generation asks for
#: DEFAULT_STYLE, the lively one a streamer expects.
STYLES = ("grid", "lrc_ar", "wild")
DEFAULT_STYLE = "wild"
#: Share of training windows drawn from each group; motion-only clips (head and blinks of in-the-wild
#: people, no usable speech) train the wild style with the audio condition dropped.
GROUP_WEIGHTS = {"grid": 0.25, "lrc_ar": 0.25, "wild": 0.3, "motion_only": 0.2}


def _group(clip: dict[str, np.ndarray]) -> str:
    return "motion_only" if str(clip["kind"]) == "motion_only" else clip_group(str(clip["path"]))


class _Clips:
    """Training clips at 25 fps: normalised motion, frame audio, which frames had a face, and the style."""

    def __init__(self, clips: Sequence[dict[str, np.ndarray]], kind: str = "hop8", data: Path | None = None,
                 cache: Path | None = None, normalisation: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.kind = kind
        self.motion, self.audio, self.found, self.groups = [], [], [], []
        audio_dims = FEATURE_DIMS[kind] * HOPS_PER_FRAME
        for clip in clips:
            fps = float(clip["fps"])
            motion = resample_frames(motion_matrix(clip), fps, FPS)
            found = resample_frames(clip["found"][:, None].astype(np.float32), fps, FPS, count=len(motion))[:, 0] > 0.99
            if found.sum() < 10:
                continue
            group = _group(clip)
            self.motion.append(motion)
            self.audio.append(np.zeros((len(motion), audio_dims), np.float32) if group == "motion_only"
                              else frame_audio(clip_audio(clip, kind, data, cache), len(motion), kind))
            self.found.append(found)
            self.groups.append(group)
        if not self.motion:
            raise FacecastError("no training clips: run `facecast dataset build` first")
        if normalisation is None:
            stacked = np.concatenate([m[f] for m, f in zip(self.motion, self.found)])
            normalisation = stacked.mean(0), np.maximum(stacked.std(0), 1e-3)
        self.mean, self.std = (np.asarray(v, np.float32) for v in normalisation)
        self.motion = [((m - self.mean) / self.std).astype(np.float32) for m in self.motion]
        self.groups = np.array(self.groups)

    def batch(self, rng: np.random.Generator, size: int, weights: dict[str, float]):
        """Windows of CONTEXT + WINDOW frames: motion, audio, which frames exist with a face (valid), whether
        the window has speech, and its style index."""
        length = CONTEXT + WINDOW
        names = sorted(set(self.groups))
        p = np.array([weights.get(n, 1.0) for n in names])
        motion = np.zeros((size, length, MOTION_DIMS), np.float32)
        audio = np.zeros((size, length, FEATURE_DIMS[self.kind] * HOPS_PER_FRAME), np.float32)
        valid = np.zeros((size, length), bool)
        has_audio = np.ones(size, bool)
        style = np.zeros(size, np.int64)
        for b, g in enumerate(rng.choice(len(names), size=size, p=p / p.sum())):
            index = rng.choice(np.flatnonzero(self.groups == names[g]))
            m, a, f = self.motion[index], self.audio[index], self.found[index]
            start = int(rng.integers(-CONTEXT, max(1, len(m) - CONTEXT)))
            lo, hi = max(start, 0), min(start + length, len(m))
            motion[b, lo - start: hi - start] = m[lo:hi]
            audio[b, lo - start: hi - start] = a[lo:hi]
            valid[b, lo - start: hi - start] = f[lo:hi]
            has_audio[b] = names[g] != "motion_only"
            style[b] = STYLES.index(names[g]) if names[g] in STYLES else STYLES.index(DEFAULT_STYLE)
        return motion, audio, valid, has_audio, style


# ----------------------------------------------------------------------------- training

@dataclass
class Budget:
    """When training stops: after `minutes` of training time or `steps` steps, whichever comes first
    (time spent before a resume counts). The learning rate decays over the whole budget."""

    minutes: float = 20.0
    steps: int | None = None


def checkpoint_path(out: Path) -> Path:
    """Where training of `out` keeps its resumable state (beside it, `<name>.ckpt`)."""
    return Path(out).with_suffix(".ckpt")


def train(clips: Sequence[dict[str, np.ndarray]] | None = None, minutes: float = 20.0, batch: int = 64,
          seed: int = 0, out: Path = WEIGHTS_PATH, cache: Path | None = None, log_every: int = 200,
          audio_drop: float = 0.1, context_drop: float = 0.5, style_drop: float = 0.1, features: str = "logmel",
          data_dir: Path | None = None, steps: int | None = None, resume: bool = False,
          init_from: Path | None = None, learning_rate: float = 5e-4, save_every_s: float = 300.0,
          truncated: float = 0.3) -> dict[str, float]:
    """Train the denoiser on the cached training split (talking and motion-only clips); writes `out`.

    Every `save_every_s` the whole training state goes to `checkpoint_path(out)`; `resume=True` carries
    on from it (same result as an uninterrupted run up to the order of random draws after the resume).
    `init_from` starts from another model's weights and normalisation (fine-tuning). A `truncated` share
    of windows end after a random number of frames, as the live stream's short chunks do."""
    torch = _torch()
    from facecast.dataset.cache import iter_clips

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    budget = Budget(minutes, steps)
    checkpoint = checkpoint_path(out)
    base = read_model(init_from) if init_from is not None else None
    if base is not None:
        features = base.get("features", features)
    if clips is None:
        clips = [c for c in iter_clips(split="train", cache=cache)
                 if str(c["kind"]) == "motion_only" or len(c["audio"])]
    started_load = time.monotonic()
    data = _Clips(clips, features, data_dir, cache,
                  normalisation=(base["mean"].numpy(), base["std"].numpy()) if base is not None else None)
    print(f"{len(data.motion)} training clips ({features}) loaded in {time.monotonic() - started_load:.0f} s", flush=True)
    model = build_model(features)
    if base is not None:
        model.load_state_dict(base["model"])
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    step, total, spent, recent = 0, steps, 0.0, []
    if resume:
        if not checkpoint.exists():
            raise FacecastError(f"nothing to resume: {checkpoint} not found")
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        step, spent, recent = state["step"], state["spent"], state["recent"]
        total = steps if steps is not None else state["total"]   # a new step budget reshapes the decay
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed at step {step} after {spent / 60:.1f} min", flush=True)

    def save_checkpoint() -> None:
        temp = checkpoint.with_name(checkpoint.name + ".partial")
        torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(), "step": step, "total": total,
                    "spent": spent + time.monotonic() - started, "recent": recent[-log_every:],
                    "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}, temp)
        temp.replace(checkpoint)

    is_context = torch.zeros(batch, CONTEXT + WINDOW, dtype=torch.bool)
    is_context[:, :CONTEXT] = True
    started = last_save = time.monotonic()
    first_step = step
    model.train()
    while spent + time.monotonic() - started < budget.minutes * 60 and (budget.steps is None or step < budget.steps):
        motion, audio, valid, has_audio, style = data.batch(rng, batch, GROUP_WEIGHTS)
        ends = np.where(rng.random(batch) < truncated, CONTEXT + rng.integers(1, WINDOW + 1, batch), CONTEXT + WINDOW)
        valid &= np.arange(CONTEXT + WINDOW)[None] < ends[:, None]
        motion, audio, valid, style = (torch.from_numpy(x) for x in (motion, audio, valid, style))
        keep_context = torch.from_numpy(rng.random(batch) >= context_drop)
        context_valid = valid & is_context & keep_context[:, None]
        valid_tokens = torch.where(is_context, context_valid, valid)
        valid_tokens[:, CONTEXT] = True   # never an all-masked row
        level = torch.from_numpy(rng.random(batch).astype(np.float32))
        signal = _alpha_bar(level)[:, None, None]
        noisy = signal.sqrt() * motion + (1 - signal).sqrt() * torch.randn_like(motion)
        inputs = torch.where(is_context[..., None], motion * context_valid[..., None], noisy)
        audio_kept = torch.from_numpy((rng.random(batch) >= audio_drop) & has_audio)
        style = torch.where(torch.from_numpy(rng.random(batch) < style_drop), len(STYLES), style)
        predicted = model(inputs, is_context, audio, audio_kept, level, valid_tokens, style)
        target_mask = (valid & ~is_context)[..., None].float()
        error = ((predicted - motion) ** 2 * target_mask).sum() / target_mask.sum().clamp(min=1) / MOTION_DIMS
        velocity = (((predicted[:, 1:] - predicted[:, :-1]) - (motion[:, 1:] - motion[:, :-1])) ** 2
                    * (target_mask[:, 1:] * target_mask[:, :-1])).sum() / target_mask.sum().clamp(min=1) / MOTION_DIMS
        loss = error + velocity
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        step += 1
        recent.append(loss.item())
        if total is None and step - first_step == 50:
            rate = 50 / (time.monotonic() - started)
            total = step + int(rate * (budget.minutes * 60 - spent - (time.monotonic() - started)))
        if total:
            for group in optimiser.param_groups:
                group["lr"] = learning_rate * 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0)))
        if step % log_every == 0:
            elapsed = spent + time.monotonic() - started
            print(f"step {step:6d}  loss {np.mean(recent[-log_every:]):.4f}  {elapsed:6.0f} s", flush=True)
        if time.monotonic() - last_save >= save_every_s:
            save_checkpoint()
            last_save = time.monotonic()
    spent += time.monotonic() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "mean": torch.from_numpy(data.mean), "std": torch.from_numpy(data.std),
                "steps": step, "minutes": round(spent / 60, 1), "seed": seed, "window": WINDOW, "context": CONTEXT,
                "features": features, "styles": list(STYLES),
                # a fine-tuned model keeps its base's calibration until it is calibrated itself
                **{key: base[key] for key in ("sampling", "expression_gain", "mouth") if base is not None and key in base}},
               out)
    checkpoint.unlink(missing_ok=True)
    return {"steps": step, "loss": float(np.mean(recent[-log_every:])) if recent else float("nan"),
            "minutes": spent / 60}


def default_own_model_path() -> Path:
    """Where `facecast train --data` writes a fine-tuned model: ~/.local/share/facecast/motion_model.pt."""
    import os

    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "facecast" / "motion_model.pt"


#: Steps per mouth-gap net when fine-tuning on a user's videos (about a minute each on 2 cores).
MOUTH_FINE_TUNE_STEPS = 300


def fine_tune(videos: Path, out: Path | None = None, minutes: float = 10.0, steps: int | None = None,
              resume: bool = False, cache: Path | None = None, base: Path = WEIGHTS_PATH,
              progress=print) -> dict[str, float]:
    """`facecast train --data DIR`: extract a folder of one person's talking videos (cached, incremental),
    then continue training `base` on them at a lower learning rate, its mouth-gap nets too; writes `out`."""
    import hashlib

    from facecast.dataset.cache import build, default_cache_dir, iter_clips, list_videos
    from facecast.errors import InputError

    videos = Path(videos)
    out = Path(out) if out is not None else default_own_model_path()
    if cache is None:
        key = hashlib.sha1(str(videos.resolve()).encode()).hexdigest()[:12]
        cache = default_cache_dir().parent / "own_videos" / key
    wanted = {rel for rel, _ in list_videos(videos)}
    report = build(videos, cache, progress=progress, own_videos=True)
    for rel, reason in report.failed or []:
        progress(f"skipped {rel}: {reason}")
    clips = [c for c in iter_clips(cache=cache) if str(c["path"]) in wanted and len(c["audio"])]
    if not clips:
        raise InputError(f"none of the videos under {videos} has both a face and a voice to learn from")
    seconds = sum(len(c["found"]) / float(c["fps"]) for c in clips)
    progress(f"fine-tuning on {len(clips)} videos ({seconds / 60:.1f} min) from {base}")
    result = train(clips=clips, minutes=minutes, steps=steps, resume=resume, out=out, cache=cache, data_dir=videos,
                   init_from=base, learning_rate=1e-4, log_every=100)
    if read_model(out).get("mouth"):
        from facecast.speech.mouth_gap import add_to_model

        add_to_model(out, steps=min(MOUTH_FINE_TUNE_STEPS, steps or MOUTH_FINE_TUNE_STEPS), cache=cache,
                     data_dir=videos, clips=clips, progress=progress, fine_tune=True)
    return result


#: Guidance scales `calibrate` tries: audio guidance x head guidance.
CALIBRATION_GRID = ((1.5, 2.0, 3.0), (0.0, 0.5, 1.0, 1.5))
#: Settings whose jaw correlation is within this of the best count as equally good lip sync ...
JAW_TOLERANCE = 0.01


def calibrate(path: Path = WEIGHTS_PATH, cache: Path | None = None, progress=print,
              clips: Sequence[dict[str, np.ndarray]] | None = None, data_dir: Path | None = None) -> dict[str, float]:
    """Choose the guidance scales on training clips and store them in the model file.

    Criterion: among the settings whose jaw-opening correlation with the real speakers is within
    JAW_TOLERANCE of the best, the one whose head speed and spread on the in-the-wild training clips
    are closest (largest relative miss) to the real ones. Held-out speakers are never looked at.
    """
    torch = _torch()
    from facecast.dataset.cache import iter_clips
    from facecast.evaluation.motion_quality import head_motion, pearson

    model = LearnedMotion(path)
    model.expression_gain[:] = 1.0          # measured afresh below
    model.mouth = {}                        # the diffusion model's own jaw is what guidance is chosen on
    if clips is None:
        clips = [c for c in iter_clips(split="train", kind="talking", cache=cache) if len(c["audio"])]
    wild = [c for c in clips if clip_group(str(c["path"])) == "wild"]
    others = [c for c in clips if clip_group(str(c["path"])) != "wild"][:: 100 if len(clips) > 1000 else 1]
    if not wild:
        raise FacecastError("calibration needs in-the-wild training clips (their head motion is the target)")
    chosen = wild + others
    n = len(EXPRESSION_CHANNELS)
    real = [resample_frames(motion_matrix(c), float(c["fps"]), FPS) for c in chosen]
    audio = [clip_audio(c, model.features, data_dir, cache) for c in chosen]

    def head_stats(rows: list[np.ndarray]) -> tuple[float, float]:
        stats = [head_motion(r[:, n: n + 6], FPS) for r in rows]
        return float(np.nanmean([s for s, _ in stats])), float(np.nanmean([d for _, d in stats]))

    target_speed, target_spread = head_stats(real[: len(wild)])
    results = []
    for guidance in CALIBRATION_GRID[0]:
        for head_guidance in CALIBRATION_GRID[1]:
            sampling = Sampling(guidance=guidance, head_guidance=head_guidance)
            generated = [model.generate(a, len(r), sampling) for a, r in zip(audio, real)]
            jaw = float(np.nanmean([pearson(g[:, 0], r[:, 0]) for g, r in zip(generated, real)]))
            speed, spread = head_stats(generated[: len(wild)])
            miss = max(abs(speed / target_speed - 1), abs(spread / target_spread - 1))
            results.append((jaw, miss, sampling, generated))
            progress(f"guidance {guidance:.1f} head {head_guidance:.1f}: jaw r {jaw:.3f}, head {speed:.1f} deg/s "
                     f"spread {spread:.2f} (training speakers: {target_speed:.1f}, {target_spread:.2f})")
    best_jaw = max(r[0] for r in results)
    _, _, best, generated = min((r for r in results if r[0] >= best_jaw - JAW_TOLERANCE), key=lambda r: r[1])
    gain = expression_gain(real, generated)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state["sampling"] = {"guidance": best.guidance, "head_guidance": best.head_guidance}
    state["expression_gain"] = torch.from_numpy(gain)
    torch.save(state, path)
    _LOADED.pop(path, None)
    progress(f"chose guidance {best.guidance}, head guidance {best.head_guidance} ({len(wild)} in-the-wild + "
             f"{len(others)} other training clips); expression gain: jawOpen {gain[0]:.2f}, "
             f"median {float(np.median(gain)):.2f}")
    return {**asdict(best), "expression_gain": gain.tolist()}


#: Expression gains are kept within these bounds (never narrowed: a calm model stays calm where it should).
EXPRESSION_GAIN_RANGE = (1.0, 3.0)


def expression_gain(real: Sequence[np.ndarray], generated: Sequence[np.ndarray]) -> np.ndarray:
    """Per expression channel, the real clips' movement about each clip's own mean over the generated
    clips' (standard deviations pooled over clips), within EXPRESSION_GAIN_RANGE."""
    n = len(EXPRESSION_CHANNELS)

    def spread(rows: Sequence[np.ndarray]) -> np.ndarray:
        return np.sqrt(np.concatenate([(r[:, :n] - r[:, :n].mean(0)) ** 2 for r in rows]).mean(0))

    ratio = spread(real) / np.maximum(spread(generated), 1e-6)
    return np.clip(ratio, *EXPRESSION_GAIN_RANGE).astype(np.float32)


# ----------------------------------------------------------------------------- generation

@dataclass
class Sampling:
    """How motion is drawn from the model. The guidance scales are calibrated on training clips
    (`python -m facecast.speech.learned calibrate`; the model card has the numbers)."""

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
#: Sigma (s) of the zero-phase smoothing of the offline head rotation and position. Sampled, the head shook:
#: on the 9 held-out in-the-wild clips its jitter (`motion_quality.jitter`) was 1.03 deg against the real
#: speakers' 0.52 (tracking noise included); smoothed by 0.04 s, 0.44 deg, and its speed 14.2 deg/s against
#: 14.3 real (15.7 unsmoothed). Live smooths causally instead (`learned_stream.HEAD_SMOOTHING_S`).
OFFLINE_HEAD_SMOOTHING_S = 0.04
#: Time scale (s) over which the head comes back to the portrait's pose: the head's slow drift (its mean over
#: about this long) is taken out, offline by a Gaussian of this sigma, live by a causal average of this time
#: constant. Head guidance pushes the head towards one side: on the 9 held-out in-the-wild clips the
#: generated head sat 5.0 deg of yaw off the portrait on average (real speakers: 1.9 deg from their first frame;
#: on the bundled sample, 17 deg); re-centred over 4 s, 0.9 deg, with speed 14.1 deg/s (real 14.3) and
#: spread 3.37 deg (real 4.15). An avatar keeps facing the camera, over any length of audio.
HEAD_RECENTRE_S = 4.0
#: The motion dimensions of the two blinks.
BLINKS = slice(len(EXPRESSION_CHANNELS) + 6, len(EXPRESSION_CHANNELS) + 8)


class BlinkShaper:
    """Turns the model's blink channels into clean blinks, frame by frame (offline and live alike).

    Sampled blinks flutter: on the bundled GRID sample the model closed the eyes 11 times in 12 s, some
    closures half-open and re-closing within 0.2 s. A blink starts when the eyes close past START, not
    within REFRACTORY_S of the last start, and keeps them shut until they open below END or for at most
    MAX_CLOSED_S (real blinks take 0.1-0.4 s); outside blinks the eyes are open.

    START: on the 59 held-out clips the shaped motion blinks 10.1 / 11.4 / 13.3 times a minute offline
    starting at 0.7 / 0.6 / 0.5 (real speakers 13.3); streamed, two denoising steps draw the blinks shallower:
    3.4 / 10.3 / 15.4 at 0.7 / 0.5 / 0.4. One start, 0.5, for both."""

    START, END = 0.5, 0.3
    REFRACTORY_S = 1.5
    MAX_CLOSED_S = 0.25

    def __init__(self, fps: float = FPS) -> None:
        self.fps = fps
        self._frame = 0
        self._last_start = -10**9
        self._started: int | None = None     # frame the current blink started, or None

    def shape(self, rows: np.ndarray) -> np.ndarray:
        """Rows of motion (their BLINKS columns are rewritten in place); returns them."""
        for row in rows:
            closure = float(row[BLINKS].mean())
            if self._started is not None and (closure < self.END or
                                              self._frame - self._started >= self.MAX_CLOSED_S * self.fps):
                self._started = None
            if (self._started is None and closure > self.START
                    and self._frame - self._last_start >= self.REFRACTORY_S * self.fps):
                self._started = self._last_start = self._frame
            row[BLINKS] = 0.0 if self._started is None else 1.0
            self._frame += 1
        return rows


def read_model(path: Path) -> dict:
    """A trained model file's contents (weights, normalisation, features); a clear error for anything else."""
    torch = _torch()
    if not Path(path).exists():
        raise FacecastError(f"learned motion weights not found: {path} (train them: "
                            "python -m facecast.speech.learned train)")
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
        #: (calibrated on training clips; for the shipped model 1.0 for the jaw, up to 1.9 for brows and cheeks).
        gain = state.get("expression_gain")
        self.expression_gain = gain.numpy() if gain is not None else np.ones(len(EXPRESSION_CHANNELS), np.float32)
        #: The mouth-gap nets by lookahead in frames (`mouth_gap`): they set the jaw so the lips part as far
        #: as they predict. None in a model file trained before them, or with other audio features.
        from facecast.speech.mouth_gap import MouthGap

        self.mouth: dict[int, MouthGap] = {int(look): MouthGap(nets) for look, nets in state.get("mouth", {}).items()
                                           if self.features == "logmel"}

    def to_motion(self, normalised: np.ndarray) -> np.ndarray:
        """The model's normalised output rows -> motion rows, expressions widened by `expression_gain`."""
        rows = normalised * self.std + self.mean
        n = len(EXPRESSION_CHANNELS)
        rows[:, :n] = self.mean[:n] + self.expression_gain * (rows[:, :n] - self.mean[:n])
        return rows

    def sampling_for(self, seed: int) -> Sampling:
        """This model's calibrated sampling with another seed."""
        return replace(self.sampling, seed=seed)

    def generate(self, audio: np.ndarray, frames: int, sampling: Sampling | None = None) -> np.ndarray:
        """(frames, MOTION_DIMS) motion at 25 fps for per-hop audio features (H, dims of `self.features`),
        WINDOW frames at a time, each window continuing from the last CONTEXT frames before it
        (`sampling`: the model's calibrated one by default)."""
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
        if self.mouth:
            self.mouth[max(self.mouth)].apply(rows, features.numpy())
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
                a_t, a_next = _alpha_bar(t), _alpha_bar(t_next)
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


def generate_frames(audio: np.ndarray, fps: float, frames: int, seed: int = 0,
                    path: Path = WEIGHTS_PATH) -> Iterator[MotionFrame]:
    """`frames` MotionFrames at `fps` for per-hop audio features of the model's kind (`load(path).features`)."""
    count = max(1, int(math.ceil(frames / fps * FPS)))
    model = load(path)
    matrix = model.generate(audio, count, model.sampling_for(seed))
    return motion_frames(resample_frames(matrix, FPS, fps, count=frames), fps)


_LOADED: dict[Path, LearnedMotion] = {}


def learned_motion(samples: np.ndarray, fps: float, frames: int, path: Path = WEIGHTS_PATH) -> list[MotionFrame]:
    """Quality-benchmark generator: 16 kHz speech -> `frames` MotionFrames at `fps`."""
    return list(generate_frames(speech_features(samples, load(path).features), fps, frames, path=path))


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facecast.speech.learned", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--minutes", type=float, default=20.0, help="training-time budget (default 20)")
    t.add_argument("--steps", type=int, default=None, help="stop after this many steps (a budget that does not "
                   "depend on the machine's speed)")
    t.add_argument("--resume", action="store_true", help="carry on from the checkpoint beside --output")
    t.add_argument("--truncated", type=float, default=0.3, help="share of training windows cut short, as live "
                   "streaming's chunks are (default 0.3)")
    t.add_argument("--no-calibrate", action="store_true", help="skip choosing the guidance scales afterwards")
    t.add_argument("--no-mouth", action="store_true", help="skip training the mouth-gap nets afterwards (log-mel)")
    t.add_argument("--init-from", type=Path, default=None, help="start from this model's weights (fine-tuning)")
    t.add_argument("--learning-rate", type=float, default=5e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--cache", type=Path, default=None)
    t.add_argument("-o", "--output", type=Path, default=WEIGHTS_PATH)
    t.add_argument("--features", choices=tuple(FEATURE_DIMS), default="logmel", help="per-hop audio features")
    t.add_argument("--data", type=Path, default=None, help="the recordings (for log-mel; default ../shared/data)")
    c = sub.add_parser("calibrate", help="choose the guidance scales on training clips; stored in the model file")
    c.add_argument("model", type=Path, nargs="?", default=WEIGHTS_PATH)
    c.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "calibrate":
        calibrate(args.model, args.cache)
        return 0
    result = train(minutes=args.minutes, steps=args.steps, resume=args.resume, seed=args.seed, out=args.output,
                   cache=args.cache, features=args.features, data_dir=args.data, truncated=args.truncated,
                   init_from=args.init_from, learning_rate=args.learning_rate)
    print(f"wrote {args.output} after {result['steps']} steps (loss {result['loss']:.4f})")
    if args.features == "logmel" and not args.no_mouth:
        from facecast.speech.mouth_gap import add_to_model

        add_to_model(args.output, cache=args.cache, data_dir=args.data)
    if not args.no_calibrate:
        calibrate(args.output, args.cache, data_dir=args.data)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
