"""Learned motion: a small diffusion transformer from speech features to the motion representation.

Why: the rule generator's mouth follows real speakers only weakly (quality
benchmark: r 0.29) and its head barely moves. VASA-1's answer is a diffusion
transformer over motion sequences conditioned on audio and on the previous
window; this is that design at CPU size:

* a token per 25 fps frame: the motion vector (`MOTION_DIMS`: 24 expression
  coefficients, head yaw/pitch/roll/x/y/distance, blinks, gaze; normalised by
  the training set's statistics) plus the frame's audio features for its 4
  10-ms hops: 40 log-mel bands (or the rule generator's 8 per-hop features;
  log-mel won on the quality benchmark, see the model card), levels relative
  to the clip's loud level;
* a window of WINDOW frames is denoised; the CONTEXT frames before it are given
  clean (the previous window's output), so long audio is generated window by
  window without seams;
* the network predicts the clean motion (x0) from the noised window at a
  cosine-schedule noise level; audio and context are each dropped at random in
  training, so sampling can use classifier-free guidance on audio;
* sampling is deterministic DDIM in SAMPLE_STEPS steps.

Train (needs `facecast dataset build`):

    python -m facecast.models.motion_diffusion train --features logmel --minutes 20

Model card: `data/motion_diffusion.md`.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from facecast.models.dataset import clip_group, resample_frames
from facecast.models.errors import FacecastError
from facecast.models.motion import Blink, Gaze, HeadPose, MotionFrame
from facecast.models.warp_basis import EXPRESSION_CHANNELS

FPS = 25.0
HOPS_PER_FRAME = 4
#: Audio feature kinds, per 10 ms hop: the rule generator's 8 features, or 40 log-mel bands.
FEATURE_DIMS = {"hop8": 8, "logmel": 40}
WINDOW = 25                      # frames denoised together (1 s)
CONTEXT = 10                     # clean frames of the previous window given as context
MOTION_DIMS = len(EXPRESSION_CHANNELS) + 6 + 2 + 2   # expressions, head, blink, gaze
SAMPLE_STEPS = 8
WEIGHTS_PATH = Path(__file__).resolve().parent / "data" / "motion_diffusion.pt"


# ----------------------------------------------------------------------------- features

def motion_matrix(clip: dict[str, np.ndarray]) -> np.ndarray:
    """(T, MOTION_DIMS) motion of a cached clip at its own frame rate."""
    return np.concatenate([clip["expressions"], clip["head"], clip["blink"], clip["gaze"]], 1).astype(np.float32)


def frame_audio(audio: np.ndarray, frames: int, kind: str = "hop8") -> np.ndarray:
    """(frames, 4 x per-hop dims): each 25 fps frame's 4 hops, levels relative to the clip's loud level,
    padded with the clip's own silence where the audio ends early.

    hop8: normalised like the lip-sync scorer's input; logmel: dB / 20 relative to the 95th
    percentile of the hops' mean band level, so microphone gain does not matter."""
    from facecast.models.sync_scorer import audio_track, silence_row

    dims = FEATURE_DIMS[kind]
    if kind == "hop8":
        track = audio_track(audio)
        silence = silence_row(track)
    else:
        audio = np.asarray(audio, np.float32).reshape(-1, dims)
        loud = np.percentile(audio.mean(1), 95) if len(audio) else 0.0
        track = np.clip((audio - loud) / 20.0, -4.0, 1.0).astype(np.float32)
        silence = np.full(dims, track.min() if len(track) else -4.0, np.float32)
    needed = frames * HOPS_PER_FRAME
    if len(track) < needed:
        track = np.concatenate([track, np.repeat(silence[None], needed - len(track), 0)])
    return track[:needed].reshape(frames, dims * HOPS_PER_FRAME)


def clip_audio(clip: dict[str, np.ndarray], kind: str, data: Path | None = None, cache: Path | None = None) -> np.ndarray:
    """A cached clip's per-hop audio of this kind: hop8 is in the dataset cache; log-mel is computed
    from the recording once and cached beside it (`<cache>/logmel/`)."""
    if kind == "hop8":
        return clip["audio"]
    from facecast.models.dataset import DEFAULT_DATA, AudioFeatureStream, cache_name, default_cache_dir
    from facecast.plugin.media import decode_mono

    folder = (Path(cache) if cache is not None else default_cache_dir()) / "logmel"
    path = folder / cache_name(str(clip["path"])).replace(".npz", ".npy")
    if path.exists():
        return np.load(path)
    stream = AudioFeatureStream("logmel")
    stream.push(decode_mono(Path(data or DEFAULT_DATA) / str(clip["path"])))
    features = stream.matrix().astype(np.float16)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(path, features)
    return features


# ----------------------------------------------------------------------------- the network

def _torch():
    import torch

    return torch


def build_model(kind: str = "hop8", width: int = 192, layers: int = 4, heads: int = 4):
    """The denoiser: (noisy window + clean context, audio, noise level) -> clean window."""
    torch = _torch()
    nn = torch.nn
    audio_dims = FEATURE_DIMS[kind] * HOPS_PER_FRAME

    class Denoiser(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.motion_in = nn.Linear(MOTION_DIMS + 1, width)      # + "is context" flag
            self.audio_in = nn.Sequential(nn.Linear(audio_dims, width), nn.GELU(), nn.Linear(width, width))
            self.null_audio = nn.Parameter(torch.zeros(width))
            self.position = nn.Parameter(torch.randn(CONTEXT + WINDOW, width) * 0.02)
            self.level = nn.Sequential(nn.Linear(64, width), nn.GELU(), nn.Linear(width, width))
            layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.1, batch_first=True,
                                               norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, MOTION_DIMS))

        def forward(self, motion, is_context, audio, audio_kept, noise_level, valid):
            """motion (B, L, D), is_context (B, L), audio (B, L, A), audio_kept (B,), noise_level (B,), valid (B, L)."""
            half = 32
            freqs = torch.exp(torch.arange(half, dtype=motion.dtype) * (-math.log(1000.0) / half))
            angle = noise_level[:, None] * 1000.0 * freqs[None]
            level = self.level(torch.cat([angle.sin(), angle.cos()], 1))
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

class _Clips:
    """Training clips at 25 fps: normalised motion, frame audio and which frames had a face."""

    def __init__(self, clips: Sequence[dict[str, np.ndarray]], kind: str = "hop8", data: Path | None = None,
                 cache: Path | None = None) -> None:
        self.kind = kind
        self.motion, self.audio, self.found, self.groups = [], [], [], []
        for clip in clips:
            fps = float(clip["fps"])
            motion = resample_frames(motion_matrix(clip), fps, FPS)
            found = resample_frames(clip["found"][:, None].astype(np.float32), fps, FPS, count=len(motion))[:, 0] > 0.99
            if found.sum() < 10:
                continue
            self.motion.append(motion)
            self.audio.append(frame_audio(clip_audio(clip, kind, data, cache), len(motion), kind))
            self.found.append(found)
            self.groups.append(clip_group(str(clip["path"])))
        if not self.motion:
            raise FacecastError("no training clips: run `facecast dataset build` first")
        stacked = np.concatenate([m[f] for m, f in zip(self.motion, self.found)])
        mean, std = stacked.mean(0), np.maximum(stacked.std(0), 1e-3)
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)
        self.motion = [((m - self.mean) / self.std).astype(np.float32) for m in self.motion]
        self.groups = np.array(self.groups)

    def batch(self, rng: np.random.Generator, size: int, weights: dict[str, float]):
        """Windows of CONTEXT + WINDOW frames: motion, audio and which frames exist with a face (valid)."""
        length = CONTEXT + WINDOW
        names = sorted(set(self.groups))
        p = np.array([weights.get(n, 1.0) for n in names])
        motion = np.zeros((size, length, MOTION_DIMS), np.float32)
        audio = np.zeros((size, length, FEATURE_DIMS[self.kind] * HOPS_PER_FRAME), np.float32)
        valid = np.zeros((size, length), bool)
        for b, g in enumerate(rng.choice(len(names), size=size, p=p / p.sum())):
            index = rng.choice(np.flatnonzero(self.groups == names[g]))
            m, a, f = self.motion[index], self.audio[index], self.found[index]
            start = int(rng.integers(-CONTEXT, max(1, len(m) - CONTEXT)))
            lo, hi = max(start, 0), min(start + length, len(m))
            motion[b, lo - start: hi - start] = m[lo:hi]
            audio[b, lo - start: hi - start] = a[lo:hi]
            valid[b, lo - start: hi - start] = f[lo:hi]
        return motion, audio, valid


GROUP_WEIGHTS = {"grid": 0.3, "lrc_ar": 0.3, "wild": 0.4}


# ----------------------------------------------------------------------------- training

def train(clips: Sequence[dict[str, np.ndarray]] | None = None, minutes: float = 20.0, batch: int = 64,
          seed: int = 0, out: Path = WEIGHTS_PATH, cache: Path | None = None, log_every: int = 200,
          audio_drop: float = 0.1, context_drop: float = 0.5, features: str = "logmel",
          data_dir: Path | None = None) -> dict[str, float]:
    """Train the denoiser for `minutes` on the cached training split; writes `out`."""
    torch = _torch()
    from facecast.models.dataset import iter_clips

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if clips is None:
        clips = [c for c in iter_clips(split="train", kind="talking", cache=cache) if len(c["audio"])]
    started_load = time.monotonic()
    data = _Clips(clips, features, data_dir, cache)
    print(f"{len(data.motion)} training clips ({features}) loaded in {time.monotonic() - started_load:.0f} s", flush=True)
    model = build_model(features)
    optimiser = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=1e-4)
    is_context = torch.zeros(batch, CONTEXT + WINDOW, dtype=torch.bool)
    is_context[:, :CONTEXT] = True
    deadline = time.monotonic() + minutes * 60
    started, step, recent, total = time.monotonic(), 0, [], None
    model.train()
    while time.monotonic() < deadline:
        motion, audio, valid = (torch.from_numpy(x) for x in data.batch(rng, batch, GROUP_WEIGHTS))
        keep_context = torch.from_numpy(rng.random(batch) >= context_drop)
        context_valid = valid & is_context & keep_context[:, None]
        valid_tokens = torch.where(is_context, context_valid, valid)
        valid_tokens[:, CONTEXT] = True   # never an all-masked row
        level = torch.from_numpy(rng.random(batch).astype(np.float32))
        signal = _alpha_bar(level)[:, None, None]
        noisy = signal.sqrt() * motion + (1 - signal).sqrt() * torch.randn_like(motion)
        inputs = torch.where(is_context[..., None], motion * context_valid[..., None], noisy)
        audio_kept = torch.from_numpy(rng.random(batch) >= audio_drop)
        predicted = model(inputs, is_context, audio, audio_kept, level, valid_tokens)
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
        if total is None and step == 50:
            total = int(step / (time.monotonic() - started) * minutes * 60)
        if total:
            for group in optimiser.param_groups:
                group["lr"] = 5e-4 * 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0)))
        if step % log_every == 0:
            print(f"step {step:6d}  loss {np.mean(recent[-log_every:]):.4f}  {time.monotonic() - started:6.0f} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "mean": torch.from_numpy(data.mean), "std": torch.from_numpy(data.std),
                "steps": step, "minutes": minutes, "seed": seed, "window": WINDOW, "context": CONTEXT,
                "features": features}, out)
    return {"steps": step, "loss": float(np.mean(recent[-log_every:])) if recent else float("nan")}


# ----------------------------------------------------------------------------- generation

@dataclass
class Sampling:
    steps: int = SAMPLE_STEPS
    guidance: float = 1.5       # classifier-free guidance on audio
    seed: int = 0


class LearnedMotion:
    """The trained denoiser: speech features -> motion, window by window."""

    def __init__(self, path: Path = WEIGHTS_PATH) -> None:
        torch = _torch()
        if not Path(path).exists():
            raise FacecastError(f"learned motion weights not found: {path} (train them: "
                                "python -m facecast.models.motion_diffusion train)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.features: str = state.get("features", "hop8")
        self.model = build_model(self.features)
        self.model.load_state_dict(state["model"])
        self.model.eval()
        self.mean, self.std = state["mean"].numpy(), state["std"].numpy()

    def generate(self, audio: np.ndarray, frames: int, sampling: Sampling = Sampling()) -> np.ndarray:
        """(frames, MOTION_DIMS) motion at 25 fps for per-hop audio features (H, dims of `self.features`)."""
        torch = _torch()
        generator = torch.Generator().manual_seed(sampling.seed)
        features = torch.from_numpy(frame_audio(audio, frames, self.features))
        audio_dims = features.shape[1]
        out = np.zeros((frames, MOTION_DIMS), np.float32)
        previous = None
        length = CONTEXT + WINDOW
        is_context = torch.zeros(1, length, dtype=torch.bool)
        is_context[:, :CONTEXT] = True
        levels = torch.linspace(1.0, 0.0, sampling.steps + 1)
        with torch.inference_mode():
            for start in range(0, frames, WINDOW):
                count = min(WINDOW, frames - start)
                audio_window = torch.zeros(1, length, audio_dims)
                lo = max(0, start - CONTEXT)
                audio_window[0, CONTEXT - (start - lo): CONTEXT] = features[lo:start]
                audio_window[0, CONTEXT: CONTEXT + count] = features[start: start + count]
                context = torch.zeros(1, length, MOTION_DIMS)
                valid = torch.zeros(1, length, dtype=torch.bool)
                valid[0, CONTEXT: CONTEXT + count] = True
                if previous is not None:
                    have = min(CONTEXT, len(previous))
                    context[0, CONTEXT - have: CONTEXT] = previous[-have:]
                    valid[0, CONTEXT - have: CONTEXT] = True
                x = torch.randn(1, length, MOTION_DIMS, generator=generator)
                for i in range(sampling.steps):
                    t, t_next = levels[i], levels[i + 1]
                    inputs = torch.where(is_context[..., None], context, x)
                    level = t.reshape(1)
                    cond = self.model(inputs, is_context, audio_window, torch.tensor([True]), level, valid)
                    if sampling.guidance != 1.0:
                        uncond = self.model(inputs, is_context, audio_window, torch.tensor([False]), level, valid)
                        cond = uncond + sampling.guidance * (cond - uncond)
                    a_t, a_next = _alpha_bar(t), _alpha_bar(t_next)
                    eps = (x - a_t.sqrt() * cond) / (1 - a_t).clamp(min=1e-6).sqrt()
                    x = a_next.sqrt() * cond + (1 - a_next).sqrt() * eps
                window = x[0, CONTEXT: CONTEXT + count]
                previous = window if previous is None else torch.cat([previous, window])[-CONTEXT:]
                out[start: start + count] = window.numpy()
        return out * self.std + self.mean


def motion_frames(matrix: np.ndarray, fps: float) -> Iterator[MotionFrame]:
    """Rows of (expressions, head, blink, gaze) -> MotionFrames (coefficients clamped to their ranges), lazily."""
    n = len(EXPRESSION_CHANNELS)
    for i, row in enumerate(matrix):
        expressions = {name: float(v) for name, v in zip(EXPRESSION_CHANNELS, np.clip(row[:n], 0, 1)) if v > 1e-3}
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
    matrix = load(path).generate(audio, count, Sampling(seed=seed))
    return motion_frames(resample_frames(matrix, FPS, fps, count=frames), fps)


_LOADED: dict[Path, LearnedMotion] = {}


def learned_motion(samples: np.ndarray, fps: float, frames: int, path: Path = WEIGHTS_PATH) -> list[MotionFrame]:
    """Quality-benchmark generator: 16 kHz speech -> `frames` MotionFrames at `fps`."""
    from facecast.models.dataset import AudioFeatureStream

    stream = AudioFeatureStream(load(path).features)
    stream.push(samples)
    return list(generate_frames(stream.matrix(), fps, frames, path=path))


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facecast.models.motion_diffusion", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--minutes", type=float, default=20.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--cache", type=Path, default=None)
    t.add_argument("-o", "--output", type=Path, default=WEIGHTS_PATH)
    t.add_argument("--features", choices=tuple(FEATURE_DIMS), default="logmel", help="per-hop audio features")
    t.add_argument("--data", type=Path, default=None, help="the recordings (for log-mel; default ../shared/data)")
    args = parser.parse_args(argv)
    result = train(minutes=args.minutes, seed=args.seed, out=args.output, cache=args.cache, features=args.features,
                   data_dir=args.data)
    print(f"wrote {args.output} after {result['steps']} steps (loss {result['loss']:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
