"""Training of the learned motion model (`facecast.speech.learned`): the diffusion transformer, its fine-tuning on a
user's own videos (`facecast train --data`) and the calibration of its sampling.

Training draws windows of CONTEXT + WINDOW frames from the cached training split
(`facecast dataset build`): talking clips in all three speaking styles and
motion-only clips (head and blinks of in-the-wild people, no usable speech),
which train the in-the-wild style with the audio condition dropped. Audio,
context and style are each dropped at random, so sampling can use
classifier-free guidance; some windows end early, as the live stream's short
chunks do (`learned_stream`). After training, the mouth-gap nets are trained
into the same file (`training.mouth_gap`) and `calibrate` chooses the guidance
scales on training clips and stores them there too.

    python -m facecast.training motion-diffusion train --steps 6000 --minutes 120   # resumable with --resume
    python -m facecast.training motion-diffusion calibrate

Model card: `speech/data/motion_diffusion.md`.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from facecast.dataset.cache import build, clip_audio, clip_group, default_cache_dir, iter_clips, list_videos
from facecast.errors import FacecastError, InputError
from facecast.evaluation.motion_quality import head_motion, pearson
from facecast.face.extraction import plausible_gaze
from facecast.motion import EXPRESSION_CHANNELS, resample_frames
from facecast.speech.learned import (
    CONTEXT,
    DEFAULT_STYLE,
    FEATURE_DIMS,
    FPS,
    HOPS_PER_FRAME,
    MOTION_DIMS,
    STYLES,
    WEIGHTS_PATH,
    WINDOW,
    LearnedMotion,
    Sampling,
    alpha_bar,
    build_model,
    forget,
    frame_audio,
    read_model,
)
from facecast.speech.mouth_gap import GAP_GEOMETRY_KEY
from facecast.training.mouth_gap import add_to_model


def _torch():
    """torch, imported when training starts (a heavy import)."""
    import torch

    return torch


# ----------------------------------------------------------------------------- data

def motion_matrix(clip: dict[str, np.ndarray]) -> np.ndarray:
    """(T, MOTION_DIMS) motion of a cached clip at its own frame rate (gaze readings of lost irises filled,
    for caches built before extraction did it)."""
    gaze = plausible_gaze(np.asarray(clip["gaze"], np.float32))
    return np.concatenate([clip["expressions"], clip["head"], clip["blink"], gaze], 1).astype(np.float32)


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
    """Where training of `out` keeps its resumable state: beside it, `<name>.ckpt` (`model.pt.ckpt`: a name of
    facecast's own, never another file of the user's, which training removes at its end)."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def train(clips: Sequence[dict[str, np.ndarray]] | None = None, minutes: float = 20.0, batch: int = 64,
          seed: int = 0, out: Path = WEIGHTS_PATH, cache: Path | None = None, log_every: int = 200,
          audio_drop: float = 0.1, context_drop: float = 0.5, style_drop: float = 0.1, features: str = "logmel",
          data_dir: Path | None = None, steps: int | None = None, resume: bool = False,
          init_from: Path | None = None, learning_rate: float = 5e-4, save_every_s: float = 300.0,
          truncated: float = 0.3, checkpoint: Path | None = None,
          keep_checkpoint: bool = False) -> dict[str, float]:
    """Train the denoiser on the cached training split (talking and motion-only clips); writes `out`.

    Every `save_every_s`, and when interrupted (Ctrl-C, or a stop signal the caller turns into one), the whole
    training state goes to `checkpoint` (default `checkpoint_path(out)`); `resume=True` carries on from it (same
    result as an uninterrupted run up to the order of random draws after the resume). It is removed once `out`
    is written, unless `keep_checkpoint` (the caller has more to do before its output is complete: a resume
    then skips straight to that).
    `init_from` starts from another model's weights and normalisation (fine-tuning). A `truncated` share
    of windows end after a random number of frames, as the live stream's short chunks do."""
    torch = _torch()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    budget = Budget(minutes, steps)
    checkpoint = Path(checkpoint) if checkpoint is not None else checkpoint_path(out)
    base = read_model(init_from) if init_from is not None else None
    if base is not None:
        features = base.get("features", features)
    if clips is None:
        clips = [c for c in iter_clips(split="train", cache=cache)
                 if str(c["kind"]) == "motion_only" or len(c["audio"])]
    started_load = time.monotonic()
    data = _Clips(clips, features, data_dir, cache,
                  normalisation=(base["mean"].numpy(), base["std"].numpy()) if base is not None else None)
    print(f"{len(data.motion)} training clips ({features}) loaded in {time.monotonic() - started_load:.0f} s",
          flush=True)
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
    try:
        while (spent + time.monotonic() - started < budget.minutes * 60
               and (budget.steps is None or step < budget.steps)):
            motion, audio, valid, has_audio, style = data.batch(rng, batch, GROUP_WEIGHTS)
            ends = np.where(rng.random(batch) < truncated, CONTEXT + rng.integers(1, WINDOW + 1, batch),
                            CONTEXT + WINDOW)
            valid &= np.arange(CONTEXT + WINDOW)[None] < ends[:, None]
            motion, audio, valid, style = (torch.from_numpy(x) for x in (motion, audio, valid, style))
            keep_context = torch.from_numpy(rng.random(batch) >= context_drop)
            context_valid = valid & is_context & keep_context[:, None]
            valid_tokens = torch.where(is_context, context_valid, valid)
            valid_tokens[:, CONTEXT] = True   # never an all-masked row
            level = torch.from_numpy(rng.random(batch).astype(np.float32))
            signal = alpha_bar(level)[:, None, None]
            noisy = signal.sqrt() * motion + (1 - signal).sqrt() * torch.randn_like(motion)
            inputs = torch.where(is_context[..., None], motion * context_valid[..., None], noisy)
            audio_kept = torch.from_numpy((rng.random(batch) >= audio_drop) & has_audio)
            style = torch.where(torch.from_numpy(rng.random(batch) < style_drop), len(STYLES), style)
            predicted = model(inputs, is_context, audio, audio_kept, level, valid_tokens, style)
            target_mask = (valid & ~is_context)[..., None].float()
            error = ((predicted - motion) ** 2 * target_mask).sum() / target_mask.sum().clamp(min=1) / MOTION_DIMS
            velocity = (((predicted[:, 1:] - predicted[:, :-1]) - (motion[:, 1:] - motion[:, :-1])) ** 2
                        * (target_mask[:, 1:] * target_mask[:, :-1])).sum() / target_mask.sum().clamp(min=1) \
                / MOTION_DIMS
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
    except KeyboardInterrupt:   # Ctrl-C, or a stop signal: what was learned so far can be resumed
        if step > first_step:
            save_checkpoint()
            print(f"saved the training state at step {step}: run again with --resume to carry on", flush=True)
        raise
    if keep_checkpoint:   # (before `spent` takes this run's time in: the checkpoint adds it itself)
        save_checkpoint()
    spent += time.monotonic() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "mean": torch.from_numpy(data.mean), "std": torch.from_numpy(data.std),
                "steps": step, "minutes": round(spent / 60, 1), "seed": seed, "window": WINDOW, "context": CONTEXT,
                "features": features, "styles": list(STYLES),
                # a fine-tuned model keeps its base's calibration until it is calibrated itself
                **{key: base[key] for key in ("sampling", "expression_gain", "mouth", GAP_GEOMETRY_KEY)
                   if base is not None and key in base}},
               out)
    if not keep_checkpoint:
        checkpoint.unlink(missing_ok=True)
    return {"steps": step, "loss": float(np.mean(recent[-log_every:])) if recent else float("nan"),
            "minutes": spent / 60}


def default_own_model_path() -> Path:
    """Where `facecast train --data` writes a fine-tuned model: ~/.local/share/facecast/motion_model.pt."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "facecast" / "motion_model.pt"


#: Steps per mouth-gap net when fine-tuning on a user's videos (about a minute each on 2 cores).
MOUTH_FINE_TUNE_STEPS = 300


def fine_tune(videos: Path, out: Path | None = None, minutes: float = 10.0, steps: int | None = None,
              resume: bool = False, cache: Path | None = None, base: Path = WEIGHTS_PATH,
              progress=print, checkpoint: Path | None = None) -> dict[str, float]:
    """`facecast train --data DIR`: extract a folder of one person's talking videos (cached, incremental),
    then continue training `base` on them at a lower learning rate, its mouth-gap nets too; writes `out`
    (`checkpoint`: where the resumable state goes, default beside `out`; it stays until the caller removes it
    once `out` is complete: an interrupted mouth-gap phase resumes after the motion model's training)."""
    videos = Path(videos)
    out = Path(out) if out is not None else default_own_model_path()
    if cache is None:
        key = hashlib.sha1(str(videos.resolve()).encode()).hexdigest()[:12]
        cache = default_cache_dir().parent / "own_videos" / key
    wanted = {rel for rel, _ in list_videos(videos)}
    build(videos, cache, progress=progress, own_videos=True)   # its progress says each video skipped, once
    clips = []
    for clip in iter_clips(cache=cache):
        if str(clip["path"]) not in wanted:
            continue
        if len(clip["audio"]):
            clips.append(clip)
        else:   # a face but no sound: nothing for the lips to learn from (said, as other skips are)
            progress(f"skipped {clip['path']}: no audio track")
    if not clips:
        raise InputError(f"none of the videos under {videos} has both a face and a voice to learn from")
    seconds = sum(len(c["found"]) / float(c["fps"]) for c in clips)
    progress(f"fine-tuning on {len(clips)} videos ({seconds / 60:.1f} min) from {base}")
    result = train(clips=clips, minutes=minutes, steps=steps, resume=resume, out=out, cache=cache, data_dir=videos,
                   init_from=base, learning_rate=1e-4, log_every=100, checkpoint=checkpoint, keep_checkpoint=True)
    if read_model(out).get("mouth"):
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
    forget(path)
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
