"""A small causal student of Whisper's encoder: log-mel frames -> the teacher's principal components.

Why: fed Whisper's encoder states instead of log-mel, the mouth-gap net follows
voices it never heard far better on the speaker folds (model card: "Voices it
never heard"), but Whisper reads 30 s windows both ways and is 70 MB: no live
stream can run it. A student that hears only the past (a causal dilated
convolution, ~5 s back, nothing ahead) and is small enough to ship learns to
predict the teacher's components from log-mel, on every recording with sound we
hold (the talking clips, `audio/`), its inputs augmented like other voices and
microphones (`mouth_gap._augmented`) against the clean recording's teacher: what
it should learn is what Whisper hears regardless of who speaks. The gap nets
then hear its outputs (`Recipe(features="student")`).

This is a fold candidate (`benchmarks/mouth_gap_folds.py`); nothing ships it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from facecast.dataset.cache import DEFAULT_DATA, iter_clips
from facecast.errors import FacecastError
from facecast.media import decode_mono
from facecast.speech.learned import frame_audio, speech_features
from facecast.speech.mouth_gap import FRAME_DIMS

#: The student's causal dilations (kernel 3): each output hears 126 frames (5 s) back and none ahead.
DILATIONS = (1, 2, 4, 8, 16, 32)
RECEPTIVE_FIELD = sum(2 * d for d in DILATIONS)
WIDTH = 192
#: Teacher components it predicts (as many as the "teacher" diagnostic heard).
DIMS = 128
#: The log-mel level (dB / 20 below the loud level) it hears before a recording starts: the features' floor.
FLOOR = -4.0


def _torch():
    import torch

    return torch


def build_student(width: int = WIDTH, dims: int = DIMS):
    """(B, FRAME_DIMS, T) frame audio -> (B, dims, T), each output frame from the RECEPTIVE_FIELD frames up to and
    including its own (causal: it streams with no lookahead)."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional

    class Student(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Conv1d(FRAME_DIMS, width, 1)
            self.layers = nn.ModuleList(nn.Conv1d(width, width, 3, dilation=d) for d in DILATIONS)
            # per frame, over channels only: a norm over time as well would hear the future
            self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in DILATIONS)
            self.out = nn.Conv1d(width, dims, 1)

        def forward(self, x):
            h = F.gelu(self.inp(x))
            for d, layer, norm in zip(DILATIONS, self.layers, self.norms):
                normed = norm(h.transpose(1, 2)).transpose(1, 2)
                h = h + F.gelu(layer(F.pad(normed, (2 * d, 0))))
            return self.out(h)

    return Student()


def student_sources(exclude_speakers: Sequence[str] = (),
                    data: Path | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(frame audio, teacher states) at 25 fps of every training-split talking clip whose speaker is not excluded
    and of every recording in `audio/` (other languages, narration; no speaker in any fold), the states cached by
    `training.teacher`."""
    from facecast.dataset.cache import clip_audio
    from facecast.training.mouth_gap import _teacher_frames
    from facecast.training.teacher import load_states

    sources = []
    excluded = set(exclude_speakers)
    for clip in iter_clips(split="train", kind="talking"):
        if str(clip["speaker"]) in excluded or not len(clip["audio"]):
            continue
        hops = clip_audio(clip, "logmel", data)
        count = len(hops) // 4
        states = _teacher_frames(clip, count)
        if states is not None and count >= 10:
            sources.append((frame_audio(hops, count, "logmel"), states))
    root = Path(data or DEFAULT_DATA)
    for path in sorted((root / "audio").glob("*.flac")):
        states = load_states(str(path.relative_to(root)))
        if states is None:
            continue
        hops = speech_features(decode_mono(path, 16000), "logmel")
        count = min(len(states), len(hops) // 4)
        sources.append((frame_audio(hops, count, "logmel"), states[:count]))
    if not sources:
        raise FacecastError("no recordings with cached teacher states (python -m facecast.training.teacher)")
    return sources


def train_student(sources: Sequence[tuple[np.ndarray, np.ndarray]], steps: int = 1000, batch: int = 32,
                  length: int = 100, seed: int = 0, progress=print) -> dict:
    """Train the student on (frame audio, teacher states) sources, windows drawn by length; its inputs are
    augmented (`mouth_gap._augmented`: another vocal tract and microphone), its targets the clean recording's
    teacher components. Returns {"net": state dict, "projection": (mean, components, scale) tensors}."""
    from facecast.training.mouth_gap import _augmented
    from facecast.training.teacher import fit_teacher_projection

    torch = _torch()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    frames = np.array([len(a) for a, _ in sources], np.float64)
    weights = frames / frames.sum()
    projection = fit_teacher_projection([s for _, s in sources], weights, DIMS, rng)
    mean, components, scale = projection
    targets = [((s - mean) @ components.T / scale).astype(np.float32) for _, s in sources]
    net = build_student()
    optimiser = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-2)
    span = RECEPTIVE_FIELD + length
    started = time.monotonic()
    for step in range(1, steps + 1):
        for group in optimiser.param_groups:
            group["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
        audio = np.zeros((batch, span, FRAME_DIMS), np.float32)
        target = np.zeros((batch, length, DIMS), np.float32)
        mask = np.zeros((batch, length), np.float32)
        for b in range(batch):
            pick = int(rng.choice(len(sources), p=weights))
            a, t = sources[pick][0], targets[pick]
            end = int(rng.integers(min(len(a), length), len(a) + 1))
            lo = max(0, end - span)
            # the stream's start is silence before the first frame, as at run time
            audio[b, span - (end - lo):] = _augmented(a[lo:end], rng)
            audio[b, : span - (end - lo)] = FLOOR
            got = min(length, end)
            target[b, length - got:] = t[end - got: end]
            mask[b, length - got:] = 1.0
        out = net(torch.from_numpy(audio).transpose(1, 2))[:, :, RECEPTIVE_FIELD:].transpose(1, 2)
        mask_t = torch.from_numpy(mask)
        loss = (((out - torch.from_numpy(target)) ** 2).mean(-1) * mask_t).sum() / mask_t.sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 250 == 0 or step == steps:
            progress(f"student: step {step} loss {loss.item():.3f} {time.monotonic() - started:.0f} s")
    net.eval()
    return {"net": {k: v.detach().clone() for k, v in net.state_dict().items()},
            "projection": tuple(torch.from_numpy(np.asarray(x, np.float32)) for x in projection)}


def student_features(student: dict, audio: np.ndarray) -> np.ndarray:
    """(T, DIMS) the student's teacher components for a clip's (T, FRAME_DIMS) frame audio, from its start."""
    torch = _torch()
    if "_built" not in student:                         # built once per student: clips are many and short
        student["_built"] = build_student()
        student["_built"].load_state_dict(student["net"])
        student["_built"].eval()
    net = student["_built"]
    x = np.asarray(audio, np.float32)
    history = np.full((RECEPTIVE_FIELD, FRAME_DIMS), FLOOR, np.float32)
    with torch.inference_mode():
        out = net(torch.from_numpy(np.concatenate([history, x]).T[None].copy()))[0, :, RECEPTIVE_FIELD:]
    return out.T.numpy().astype(np.float32)


def explained(student: dict, sources: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """Share of the teacher components' variance the student predicts on sources (1 is perfect)."""
    mean, components, scale = (np.asarray(x) for x in student["projection"])
    errors, totals = 0.0, 0.0
    for audio, states in sources:
        target = (states - mean) @ components.T / scale
        errors += float(((student_features(student, audio) - target) ** 2).sum())
        totals += float((target ** 2).sum())
    return 1.0 - errors / max(totals, 1e-9)
