"""Mouth gap: a small dilated convolution from log-mel speech to the inner-lip gap and lip closure.

Why: the diffusion model (`motion_diffusion`) makes the whole face, but its lips
followed held-out speakers' mouths at r 0.44 on the quality benchmark, and
training it longer, weighting the mouth in its loss or averaging samples did
not help. Its mouth is 12 correlated coefficients (jaw, lips) predicted jointly
with the head, blinks and gaze; what viewers and the benchmark read lip sync
from is one number: the gap between the inner lips (`face_measure.mouth_opening`).
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
future (25 fps): offline 14 (0.56 s), live the stream's 2 (80 ms). Two nets
(seeds) per lookahead are averaged. They are stored in the motion model file
under "mouth" (a model file without them generates as before).

Train (adds them to a model file; `motion_diffusion train` runs it too):

    python -m facecast.speech.mouth_gap train
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from facecast.errors import FacecastError
from facecast.render.warp_basis import EXPRESSION_CHANNELS

#: Dilations of the residual causal convolutions (kernel 3): each frame's prediction sees 30 frames back.
DILATIONS = (1, 2, 4, 8)
RECEPTIVE_FIELD = sum(2 * d for d in DILATIONS)
WIDTH = 128
#: Future frames each net hears: offline (`LearnedMotion.generate`) and live (`learned_stream`, 80 ms).
OFFLINE_LOOKAHEAD = 14
LIVE_LOOKAHEAD = 2
#: Nets (seeds) averaged per lookahead: on the held-out speakers two seeds' r differed by 0.01-0.04.
SEEDS = (0, 1)
#: How strongly the closure probability shuts the lips: gap * (1 - p ** CLOSURE_EXPONENT).
CLOSURE_EXPONENT = 4.0
#: The third output: the probability of a closure inside speech, a shut mouth with the mouth open within
#: IN_SPEECH_FRAMES before and after (what b, p and m make; the second output's labels are mostly silences).
#: Its loss weighs closures IN_SPEECH_WEIGHT times (they are rare), and it shuts the lips by
#: (1 - q ** IN_SPEECH_EXPONENT) on top of the second output's. The model card has the weights tried.
IN_SPEECH_FRAMES = 3
IN_SPEECH_WEIGHT = 10.0
IN_SPEECH_EXPONENT = 2.0
#: Outputs per frame: the normalised gap, the shut-lips logit, the in-speech closure logit.
OUTPUTS = 3
JAW, CLOSE = EXPRESSION_CHANNELS.index("jawOpen"), EXPRESSION_CHANNELS.index("mouthClose")
FRAME_DIMS = 160      # 4 hops x 40 log-mel bands (motion_diffusion.frame_audio, "logmel")
#: Frames predicted per pass over long audio (2 min).
BLOCK_FRAMES = 3000


def _torch():
    import torch

    return torch


def build_net(width: int = WIDTH, outputs: int = OUTPUTS):
    """(B, FRAME_DIMS, T) frame audio -> (B, outputs, T): the normalised gap and the closure logits (OUTPUTS),
    each output frame from the RECEPTIVE_FIELD frames up to and including its input frame. Model files made
    before the in-speech closure output have two."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional

    class GapNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Conv1d(FRAME_DIMS, width, 1)
            self.layers = nn.ModuleList(nn.Conv1d(width, width, 3, dilation=d) for d in DILATIONS)
            self.drop = nn.Dropout(0.1)
            self.out = nn.Conv1d(width, outputs, 1)

        def forward(self, x):
            h = F.gelu(self.inp(x))
            for d, layer in zip(DILATIONS, self.layers):
                h = h + F.gelu(layer(F.pad(self.drop(h), (2 * d, 0))))
            return self.out(h)

    return GapNet()


@lru_cache(maxsize=1)
def gap_per_coefficient() -> np.ndarray:
    """(len(EXPRESSION_CHANNELS),) how far each coefficient at 1 parts the inner lips, in face heights, as the
    renderer draws it on the average face (jawOpen 0.22, mouthClose -0.22, the lips' up/down ~0.01)."""
    from facecast import face_regions as fr
    from facecast.face.extraction import ExpressionFitter
    from facecast.face.measure import face_height
    from facecast.face.portrait import MEAN_FACE_PATH
    from facecast.render.warp_basis import FaceFrame

    face = np.load(MEAN_FACE_PATH).astype(np.float64)
    fitter = ExpressionFitter(face)
    down = FaceFrame.from_landmarks(face).v
    per_channel = (fitter.basis[:, fr.LOWER_LIP_CENTER] - fitter.basis[:, fr.UPPER_LIP_CENTER]) @ down / face_height(face)
    out = np.zeros(len(EXPRESSION_CHANNELS))
    for name, value in zip(fitter.names, per_channel):
        out[EXPRESSION_CHANNELS.index(name)] = value
    return out


def rendered_gap(rows: np.ndarray) -> np.ndarray:
    """(T,) the inner-lip gap (face heights above the neutral face's) that motion rows' expressions render."""
    coefficients = np.clip(np.asarray(rows, np.float64)[:, : len(EXPRESSION_CHANNELS)], 0.0, 1.0)
    coefficients[:, CLOSE] = np.minimum(coefficients[:, CLOSE], coefficients[:, JAW])   # the renderer's clamp
    return coefficients @ gap_per_coefficient()


class MouthGap:
    """An ensemble of gap nets with one lookahead: frame audio -> gap (face heights above a closed mouth), the
    probability that the lips are shut and that of a closure inside speech."""

    def __init__(self, state: dict) -> None:
        self.lookahead = int(state["lookahead"])
        self.mean, self.std = float(state["mean"]), float(state["std"])
        self._fuse(state["nets"])

    def _fuse(self, nets: Sequence[dict]) -> None:
        """The ensemble as one net whose convolutions have a group per member: the same numbers as running
        each net and averaging, in a third of the time for the live stream's short calls (1.3 ms instead
        of 3.3 for two nets)."""
        torch = _torch()
        self._members = len(nets)
        self._inp = (torch.cat([n["inp.weight"] for n in nets]), torch.cat([n["inp.bias"] for n in nets]))
        self._layers = [(torch.cat([n[f"layers.{i}.weight"] for n in nets]), torch.cat([n[f"layers.{i}.bias"] for n in nets]))
                        for i in range(len(DILATIONS))]
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
        """Frame audio rows (T, FRAME_DIMS) -> (gap, shut, in-speech closure) for the first T - `future` rows
        (the last `future` rows are audio heard after them; lookahead beyond it is taken as silence); the last
        is zeros for nets without that output. Long audio goes through in blocks, so an hour costs no more
        memory than a minute."""
        torch = _torch()
        audio = np.asarray(audio, np.float32)
        frames = len(audio) - future
        audio = audio[: frames + min(future, self.lookahead)]
        silence = np.full((frames + self.lookahead - len(audio), FRAME_DIMS), audio.min() if audio.size else -4.0,
                          np.float32)
        audio = np.concatenate([audio, silence])
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

    def target(self, audio: np.ndarray, future: int = 0) -> np.ndarray:
        """The gap the lips should show (face heights), `predict`'s rows: the gap shut by both closures."""
        gap, closure, inside = self.predict(audio, future)
        return np.maximum(gap, 0.0) * (1.0 - closure ** CLOSURE_EXPONENT) * (1.0 - inside ** IN_SPEECH_EXPONENT)

    def apply(self, rows: np.ndarray, audio: np.ndarray, future: int = 0) -> np.ndarray:
        """Set the jaw of `rows` so the rendered gap is this model's (in place; returns rows). `audio`: frame
        audio ending with the rows' own frames and then `future` rows heard after them; rows before theirs
        (up to RECEPTIVE_FIELD) are history."""
        target = self.target(audio, future)[-len(rows):]
        per = gap_per_coefficient()
        closed = np.clip(rows[:, CLOSE], 0.0, 1.0)
        parting = np.flatnonzero(per > 0)
        parting = parting[parting != JAW]
        rows[:, parting] = np.clip(rows[:, parting], 0.0, 1.0)
        lips = rows.copy()
        lips[:, [JAW, CLOSE]] = 0.0
        opened = rows[:, parting] @ per[parting]           # what the lip coefficients that part them add
        parted = rendered_gap(lips)                        # ... with the ones that press them together
        # where the lips alone part wider than the target (a funnel at a "b"), the coefficients that part them
        # are scaled down: a closure must close
        wider = parted > target
        scale = np.where(wider, np.clip((target - (parted - opened)) / np.maximum(opened, 1e-9), 0.0, 1.0), 1.0)
        rows[:, parting] *= scale[:, None]
        lips[:, parting] = rows[:, parting]
        # the jaw opens past mouthClose (lips held together while the chin drops) by what the lips leave to it
        rows[:, JAW] = np.clip(closed + np.maximum(target - rendered_gap(lips), 0.0) / per[JAW], 0.0, 1.0)
        return rows


# ----------------------------------------------------------------------------- training

def _clip_targets(clip: dict, data_dir: Path | None, cache: Path | None):
    """A talking clip at 25 fps: (frame audio, gap above its closed mouth, shut-lips labels, in-speech closure
    labels, face found)."""
    from facecast.dataset.cache import resample_frames
    from facecast.speech.learned import FPS, clip_audio, frame_audio
    from facecast.evaluation.motion_quality import CLOSED_FRACTION

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
    mean, std = (float(init["mean"]), float(init["std"])) if init else (float(gaps.mean()), float(max(gaps.std(), 1e-6)))
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
                heard = np.concatenate([a, np.full((lookahead, FRAME_DIMS), a.min(), np.float32)])[start: end + lookahead]
                audio[b, : len(heard)] = _augmented(heard, rng)
                target[b, : end - start] = (g[start:end] - mean) / std
                shut[b, : end - start] = s[start:end]
                inside[b, : end - start] = i[start:end]
                mask[b, : end - start] = f[start:end]
            audio_t, target_t, shut_t, inside_t, mask_t = (torch.from_numpy(x) for x in (audio, target, shut, inside, mask))
            out = net(audio_t.transpose(1, 2))[:, :, lookahead:]
            per_frame = (out[:, 0] - target_t) ** 2 + F.binary_cross_entropy_with_logits(out[:, 1], shut_t, reduction="none")
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
    them in the motion model file at `path`; `fine_tune` continues the file's own nets at a fifth of the
    learning rate instead (`facecast train --data`)."""
    torch = _torch()
    from facecast.dataset.cache import iter_clips
    from facecast.speech.learned import _LOADED, read_model

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
    torch.save(state, path)
    _LOADED.pop(path, None)
    minutes = (time.monotonic() - started) / 60
    progress(f"mouth gap nets trained on {len(clips)} clips in {minutes:.1f} min, stored in {path}")
    return {"clips": len(clips), "minutes": minutes}


def _main(argv: list[str] | None = None) -> int:
    from facecast.speech.learned import WEIGHTS_PATH

    parser = argparse.ArgumentParser(prog="python -m facecast.speech.mouth_gap", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train the mouth-gap nets into a motion model file")
    train.add_argument("--model", type=Path, default=WEIGHTS_PATH, help="the motion model file (default: shipped)")
    train.add_argument("--steps", type=int, default=2000, help="steps per net (default 2000)")
    args = parser.parse_args(argv)
    try:
        add_to_model(args.model, steps=args.steps)
    except FacecastError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
