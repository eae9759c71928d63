"""Training of the lip-sync scorer (`facecast.evaluation.sync_scorer`) on the training speakers.

Contrastive (InfoNCE): each mouth window against its true audio, the same clip's
audio shifted by SHIFT_RANGE frames and the other windows' audio in the batch;
clips are drawn by corpus (GROUP_WEIGHTS). Model card: `evaluation/data/sync_scorer.md`.

    python -m facecast.training sync-scorer train --minutes 10   # then validates on the held-out speakers
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from facecast.dataset.cache import clip_group, iter_clips
from facecast.errors import FacecastError
from facecast.evaluation.sync_scorer import (
    AUDIO_HOPS,
    AUDIO_PAD_HOPS,
    FIRST_HOP,
    HOPS_PER_FRAME,
    MAX_OFFSET,
    WEIGHTS_PATH,
    WINDOW_FRAMES,
    build_model,
    lip_track,
    mouth_windows,
    pad_audio,
    scorable,
)
from facecast.speech.audio_features import audio_track

SHIFT_RANGE = (3, MAX_OFFSET)  # negatives: the same clip's audio this many frames away


def _torch():
    """torch, imported when training starts (a heavy import)."""
    import torch

    return torch


class _Pool:
    """Every training clip's mouth track and padded audio, concatenated, for fast window gathering."""

    def __init__(self, clips: Iterable[dict[str, np.ndarray]]) -> None:
        tracks, audios, anchors, groups = [], [], [], []
        lip_base = audio_base = 0
        self.clip_frames: list[int] = []
        for clip in clips:
            track, ok = lip_track(clip["lips"], clip["found"], float(clip["fps"]))
            windows, valid = mouth_windows(track, ok)
            if valid.sum() < 3:
                continue
            padded = pad_audio(audio_track(clip["audio"]))
            frames = np.flatnonzero(valid)
            anchors.append(np.stack([lip_base + frames, audio_base + AUDIO_PAD_HOPS + HOPS_PER_FRAME * frames
                                     + FIRST_HOP, np.full(len(frames), len(self.clip_frames))], 1))
            groups.append(clip_group(str(clip["path"])))
            tracks.append(track)
            audios.append(padded)
            self.clip_frames.append(len(track))
            lip_base += len(track)
            audio_base += len(padded)
        if not tracks:
            raise FacecastError("no training clips: run `facecast dataset build` first")
        self.tracks = np.concatenate(tracks)
        self.audio = np.concatenate(audios)
        self.anchors = anchors
        self.groups = np.array(groups)

    def sample(self, rng: np.random.Generator, batch: int, group_weights: dict[str, float]) -> np.ndarray:
        """(batch, 3) anchors [mouth frame, audio start hop, clip], clips drawn by speaker-group weight."""
        names = sorted(set(self.groups))
        weights = np.array([group_weights.get(name, 1.0) for name in names])
        chosen_groups = rng.choice(len(names), size=batch, p=weights / weights.sum())
        rows = []
        for g in chosen_groups:
            members = np.flatnonzero(self.groups == names[g])
            clip_anchors = self.anchors[rng.choice(members)]
            rows.append(clip_anchors[rng.integers(len(clip_anchors))])
        return np.array(rows)


GROUP_WEIGHTS = {"grid": 0.35, "lrc_ar": 0.35, "wild": 0.3}


def train(cache: Path | None = None, minutes: float = 10.0, batch: int = 192, negatives: int = 8,
          temperature: float = 0.07, seed: int = 0, out: Path = WEIGHTS_PATH, log_every: int = 200,
          clips: Sequence[dict[str, np.ndarray]] | None = None) -> dict[str, float]:
    """Contrastive training on the cached training split; writes `out` and returns the last losses."""
    torch = _torch()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if clips is None:
        clips = [c for c in iter_clips(split="train", kind="talking", cache=cache) if scorable(c)]
    pool = _Pool(clips)
    model = build_model()
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    tracks = torch.from_numpy(pool.tracks)
    audio = torch.from_numpy(pool.audio)
    half = WINDOW_FRAMES // 2
    frame_offsets = torch.arange(-half, half + 1)
    hop_offsets = torch.arange(AUDIO_HOPS)
    deadline = time.monotonic() + minutes * 60
    step, started, recent = 0, time.monotonic(), []
    total_steps = None
    while time.monotonic() < deadline:
        rows = pool.sample(rng, batch, GROUP_WEIGHTS)
        shifts = (rng.integers(SHIFT_RANGE[0], SHIFT_RANGE[1] + 1, size=(batch, negatives))
                  * rng.choice([-1, 1], size=(batch, negatives)))
        lip_index = torch.from_numpy(rows[:, 0])[:, None] + frame_offsets[None]
        mouth = tracks[lip_index]                                          # (B, 5, 80)
        scale = torch.from_numpy(rng.uniform(0.8, 1.25, size=(batch, 1, 1)).astype(np.float32))
        mouth = mouth * scale + 0.05 * torch.randn_like(mouth)
        starts = np.concatenate([rows[:, 1:2], rows[:, 1:2] + HOPS_PER_FRAME * shifts], 1)   # (B, 1 + K)
        starts = np.clip(starts, 0, len(pool.audio) - AUDIO_HOPS)
        sound = audio[torch.from_numpy(starts)[..., None] + hop_offsets]   # (B, 1+K, 20, 8)
        m = model.embed_mouth(mouth.transpose(1, 2))
        a = model.embed_audio(sound.reshape(-1, AUDIO_HOPS, 8).transpose(1, 2)).reshape(batch, 1 + negatives, -1)
        shifted = torch.einsum("be,bke->bk", m, a)                          # own positive + shifted negatives
        others = m @ a[:, 0].T                                             # other anchors' true audio
        others = others.masked_fill(torch.eye(batch, dtype=torch.bool), float("-inf"))
        logits = torch.cat([shifted, others], 1) / temperature
        loss = torch.nn.functional.cross_entropy(logits, torch.zeros(batch, dtype=torch.long))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        recent.append(loss.item())
        if total_steps is None and step == 50:
            rate = step / (time.monotonic() - started)
            total_steps = int(rate * minutes * 60)
        if total_steps:
            for group in optimiser.param_groups:   # cosine decay over the estimated run
                group["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * min(step / total_steps, 1.0)))
        if step % log_every == 0:
            print(f"step {step:6d}  loss {np.mean(recent[-log_every:]):.3f}  {time.monotonic() - started:6.0f} s",
                  flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "steps": step, "minutes": minutes, "seed": seed,
                "window_frames": WINDOW_FRAMES}, out)
    return {"steps": step, "loss": float(np.mean(recent[-log_every:])) if recent else float("nan")}
