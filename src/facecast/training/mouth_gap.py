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
    python -m facecast.training mouth-gap store-geometry   # only the lip geometry (model files made before it)
"""

from __future__ import annotations

import math
import time
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from facecast import face_regions as fr
from facecast.dataset.cache import clip_audio, iter_clips
from facecast.errors import FacecastError
from facecast.evaluation.motion_quality import CLOSED_FRACTION
from facecast.face.extraction import ExpressionFitter
from facecast.face.measure import face_height
from facecast.face.portrait import MEAN_FACE_PATH
from facecast.face_model import FaceFrame
from facecast.motion import EXPRESSION_CHANNELS, resample_frames
from facecast.speech.learned import FPS, forget, frame_audio, read_model
from facecast.speech.mouth_gap import (
    FRAME_DIMS,
    GAP_GEOMETRY_KEY,
    LIVE_LOOKAHEAD,
    OFFLINE_LOOKAHEAD,
    OUTPUTS,
    build_net,
)

#: Nets (seeds) averaged per lookahead: on the held-out speakers two seeds' r differed by 0.01-0.04.
SEEDS = (0, 1)
#: The third output's labels: a shut mouth with the mouth open within IN_SPEECH_FRAMES before and after (what
#: b, p and m make; the second output's labels are mostly silences). Its loss weighs them IN_SPEECH_WEIGHT
#: times (they are rare); the model card has the weights tried.
IN_SPEECH_FRAMES = 3
IN_SPEECH_WEIGHT = 10.0


def _torch():
    """torch, imported when training starts (a heavy import)."""
    import torch

    return torch


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


def _clip_targets(clip: dict, data_dir: Path | None, cache: Path | None):
    """A talking clip at 25 fps: (frame audio, gap above its closed mouth, shut-lips labels, in-speech closure
    labels, face found)."""
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
    return audio, (opening - low).astype(np.float32), shut, inside, found


def _augmented(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another voice and microphone: mel bands shifted by up to 2.5 bands (vocal tract length), a spectral
    tilt and per-band gains."""
    hops = audio.reshape(len(audio), -1, 40)
    position = np.clip(np.arange(40) + rng.uniform(-2.5, 2.5), 0, 39)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, 39)
    weight = position - low
    hops = hops[..., low] * (1 - weight) + hops[..., high] * weight
    hops = hops + rng.uniform(-0.3, 0.3) * np.linspace(-1, 1, 40) + rng.normal(0, 0.1, 40)
    return hops.reshape(len(audio), -1).astype(np.float32)


def _rate_changed(arrays: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The clip spoken 15 % slower to 15 % faster: every array resampled along time (labels by their max)."""
    factor = rng.uniform(0.85, 1.15)
    length = len(arrays[0])
    position = np.linspace(0, length - 1, max(2, int(round(length / factor))))
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, length - 1)
    weight = position - low
    audio, gap, *labels, found = arrays
    blended_audio = audio[low] * (1 - weight[:, None]) + audio[high] * weight[:, None]
    blended_gap = gap[low] * (1 - weight) + gap[high] * weight
    return [blended_audio.astype(np.float32), blended_gap.astype(np.float32),
            *(np.maximum(label[low], label[high]) for label in labels), found[low] & found[high]]


def train_nets(clips: Sequence[dict], lookahead: int, steps: int = 2000, seeds: Sequence[int] = SEEDS,
               batch: int = 64, length: int = 75, data_dir: Path | None = None, cache: Path | None = None,
               progress=print, init: dict | None = None, learning_rate: float = 1e-3) -> dict:
    """Train one net per seed on talking clips; returns the state `MouthGap` reads. With `init` (such a
    state), its nets continue training (fine-tuning), with its gap normalisation."""
    torch = _torch()
    F = torch.nn.functional
    data = [_clip_targets(c, data_dir, cache) for c in clips]
    data = [d for d in data if d[-1].sum() >= 10]
    if not data:
        raise FacecastError("no talking clips with a face to train the mouth gap on")
    gaps = np.concatenate([d[1][d[-1]] for d in data])
    if init:
        mean, std = float(init["mean"]), float(init["std"])
    else:
        mean, std = float(gaps.mean()), float(max(gaps.std(), 1e-6))
    nets = []
    for index, seed in enumerate(seeds if init is None else range(len(init["nets"]))):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        net = build_net(outputs=OUTPUTS if init is None else int(init["nets"][index]["out.weight"].shape[0]))
        if init is not None:
            net.load_state_dict(init["nets"][index])
        outputs = int(net.out.weight.shape[0])
        in_speech_weight = torch.tensor(IN_SPEECH_WEIGHT)
        optimiser = torch.optim.AdamW(net.parameters(), learning_rate, weight_decay=1e-2)
        started = time.monotonic()
        for step in range(1, steps + 1):
            for group in optimiser.param_groups:
                group["lr"] = learning_rate * 0.5 * (1 + math.cos(math.pi * step / steps))
            audio = np.zeros((batch, length + lookahead, FRAME_DIMS), np.float32)
            target = np.zeros((batch, length), np.float32)
            shut = np.zeros((batch, length), np.float32)
            inside = np.zeros((batch, length), np.float32)
            mask = np.zeros((batch, length), np.float32)
            for b in range(batch):
                a, g, s, i, f = _rate_changed(data[int(rng.integers(len(data)))], rng)
                start = int(rng.integers(0, max(1, len(g) - length)))
                end = min(len(g), start + length)
                padded = np.concatenate([a, np.full((lookahead, FRAME_DIMS), a.min(), np.float32)])
                heard = padded[start: end + lookahead]
                audio[b, : len(heard)] = _augmented(heard, rng)
                target[b, : end - start] = (g[start:end] - mean) / std
                shut[b, : end - start] = s[start:end]
                inside[b, : end - start] = i[start:end]
                mask[b, : end - start] = f[start:end]
            audio_t, target_t, shut_t, inside_t, mask_t = (torch.from_numpy(x)
                                                           for x in (audio, target, shut, inside, mask))
            out = net(audio_t.transpose(1, 2))[:, :, lookahead:]
            per_frame = ((out[:, 0] - target_t) ** 2
                         + F.binary_cross_entropy_with_logits(out[:, 1], shut_t, reduction="none"))
            if outputs > 2:
                per_frame = per_frame + F.binary_cross_entropy_with_logits(out[:, 2], inside_t, reduction="none",
                                                                            pos_weight=in_speech_weight)
            loss = (per_frame * mask_t).sum() / mask_t.sum().clamp(min=1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if step % 500 == 0 or step == steps:
                progress(f"mouth gap (lookahead {lookahead}, seed {seed}): step {step} loss {loss.item():.3f} "
                         f"{time.monotonic() - started:.0f} s")
        net.eval()
        nets.append({k: v.detach().clone() for k, v in net.state_dict().items()})
    return {"lookahead": lookahead, "mean": mean, "std": std, "nets": nets, "steps": steps}


def add_to_model(path: Path, steps: int = 2000, cache: Path | None = None, data_dir: Path | None = None,
                 clips: Sequence[dict] | None = None, seeds: Sequence[int] = SEEDS, progress=print,
                 fine_tune: bool = False) -> dict:
    """Train the offline and live mouth-gap nets on the training split's talking clips (or `clips`) and store
    them, with their lip geometry (GAP_GEOMETRY_KEY), in the motion model file at `path`; `fine_tune` continues
    the file's own nets at a fifth of the learning rate instead (`facecast train --data`)."""
    torch = _torch()
    state = read_model(path)                        # a clear error for a missing or foreign file, before training
    base = state.get("mouth", {}) if fine_tune else {}
    if fine_tune and not base:
        raise FacecastError(f"{path} has no mouth-gap nets to fine-tune")
    if clips is None:
        clips = [c for c in iter_clips(split="train", kind="talking", cache=cache) if len(c["audio"])]
    started = time.monotonic()
    mouth = {str(look): train_nets(clips, look, steps, seeds, data_dir=data_dir, cache=cache, progress=progress,
                                   init=base.get(str(look)), learning_rate=2e-4 if fine_tune else 1e-3)
             for look in ((OFFLINE_LOOKAHEAD, LIVE_LOOKAHEAD) if not fine_tune else map(int, base))}
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
