"""Lip-sync scorer: a SyncNet-style audio/mouth embedding pair, trained by us on the training speakers.

Why: lip sync is the first thing viewers notice, and correlating mouth opening
with the real video only works where a real video exists. A scorer that judges
any video from its own audio and mouth (the SyncNet protocol) also measures
generated output, finds audio/video offsets, and never saw the validation
speakers (`data/split.json`).

Inputs are what the dataset caches (`dataset/cache.py`):

* mouth: the 40 lip landmarks in the reference head pose, in face heights,
  resampled to 25 fps; each clip's median shape is removed (identity), and a
  window is 9 frames (360 ms; SyncNet's 5 frames scored worse, see the model card);
* audio: the 8 per-hop features (`AUDIO_FEATURES`, 100 hops per second), the
  level made relative to the clip's loud level (microphone gain does not
  matter); a window is the 36 hops (360 ms) centred on the same instant.

Two small conv encoders map each window to a unit vector; training is
contrastive (InfoNCE): the true pairing against the same clip's audio shifted
by 3-15 frames and against other clips' audio. Scoring follows SyncNet: for
every audio offset in -15..+15 frames, the mean embedding distance over the
clip's frames; the offset is the minimum, the confidence is median minus
minimum. A positive offset means the audio comes late.

This module scores; training is `facecast.training.sync_scorer` (12 minutes on a
CPU; needs `facecast dataset build`; model card: `data/sync_scorer.md`):

    python -m facecast.training sync-scorer train --minutes 10
    python -m facecast.training sync-scorer validate
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from facecast.errors import FacecastError
from facecast.motion import resample_frames
from facecast.speech.audio_features import audio_track, silence_row

FPS = 25.0
WINDOW_FRAMES = 9
HOPS_PER_FRAME = 4           # 100 audio hops per second at 25 fps
AUDIO_HOPS = WINDOW_FRAMES * HOPS_PER_FRAME   # the same span as the mouth window
#: Audio window of frame k = hops [4k + FIRST_HOP, 4k + FIRST_HOP + AUDIO_HOPS): hop h is centred at
#: h*10 ms + 12.5 ms (a 25 ms window), so these are the hops centred within half a window of k/25.
FIRST_HOP = -(AUDIO_HOPS // 2) - 1
MAX_OFFSET = 15
EMBEDDING = 64
LIP_POINTS = 40
LIP_SCALE = 50.0             # lip displacements are ~0.01 face heights
AUDIO_PAD_HOPS = 4 * (MAX_OFFSET + 10) + 20
WEIGHTS_PATH = Path(__file__).resolve().parent / "data" / "sync_scorer.pt"
MIN_FACE_SECONDS = 2.0


# ----------------------------------------------------------------------------- features

def lip_track(lips: np.ndarray, found: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """(N, 80) mouth shapes at 25 fps (median removed, scaled) and (N,) which frames had a face."""
    lips = np.asarray(lips, np.float64).reshape(len(lips), -1)
    found = np.asarray(found, bool)
    if len(lips) == 0:
        return np.zeros((0, 2 * LIP_POINTS), np.float32), np.zeros(0, bool)
    resampled = resample_frames(lips, fps, FPS)
    if abs(fps - FPS) < 1e-6:
        ok = found[: len(resampled)]
    else:
        nearest = np.clip(np.round(np.arange(len(resampled)) / FPS * fps).astype(int), 0, len(lips) - 1)
        ok = found[nearest]
    centre = np.median(resampled[ok], axis=0) if ok.any() else np.zeros(lips.shape[1])
    return ((resampled - centre) * LIP_SCALE).astype(np.float32), ok.astype(bool)


def pad_audio(track: np.ndarray, pad: int = AUDIO_PAD_HOPS) -> np.ndarray:
    """The normalised audio with `pad` hops of the clip's own silence level on both sides."""
    filler = np.repeat(silence_row(track)[None], pad, 0)
    return np.concatenate([filler, track, filler]).astype(np.float32)


def delay_audio(audio: np.ndarray, frames: int) -> np.ndarray:
    """Raw per-hop features with the sound moved `frames` video frames later (silence fills the start)."""
    hops = frames * HOPS_PER_FRAME
    if hops <= 0:
        return np.concatenate([audio[-hops:], np.repeat(_quiet(audio), -hops, 0)])
    return np.concatenate([np.repeat(_quiet(audio), hops, 0), audio[:-hops]])


def _quiet(audio: np.ndarray) -> np.ndarray:
    row = np.zeros((1, audio.shape[1]), audio.dtype)
    row[0, 0] = np.min(audio[:, 0])
    row[0, 5:] = np.nan
    return row


# ----------------------------------------------------------------------------- the model

def _torch():
    """torch, imported on first use (a heavy import)."""
    import torch

    return torch


def build_model():
    """The two encoders (torch modules), mouth and audio, each window -> a unit vector."""
    torch = _torch()
    nn = torch.nn

    class Encoders(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mouth = nn.Sequential(
                nn.Conv1d(2 * LIP_POINTS, 128, 3, padding=1), nn.ReLU(),
                nn.Conv1d(128, 128, 3, padding=1), nn.ReLU(), nn.Flatten(),
                nn.Linear(128 * WINDOW_FRAMES, 128), nn.ReLU(), nn.Linear(128, EMBEDDING))
            self.audio = nn.Sequential(
                nn.Conv1d(8, 64, 5, padding=2), nn.ReLU(),
                nn.Conv1d(64, 128, 5, padding=2, stride=2), nn.ReLU(),
                nn.Conv1d(128, 128, 3, padding=1, stride=2), nn.ReLU(), nn.Flatten(),
                nn.Linear(128 * (AUDIO_HOPS // 4), 128), nn.ReLU(), nn.Linear(128, EMBEDDING))

        def embed_mouth(self, windows):   # (B, 80, 5)
            return nn.functional.normalize(self.mouth(windows), dim=1)

        def embed_audio(self, windows):   # (B, 8, 20)
            return nn.functional.normalize(self.audio(windows), dim=1)

    return Encoders()


def mouth_windows(track: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 80, 5) windows centred on every frame (edges repeated) and which are wholly face-found."""
    half = WINDOW_FRAMES // 2
    n = len(track)
    index = np.clip(np.arange(n)[:, None] + np.arange(-half, half + 1)[None], 0, max(n - 1, 0))
    inside = (np.arange(n) >= half) & (np.arange(n) < n - half)
    valid = inside & ok[index].all(1) if n else np.zeros(0, bool)
    return np.transpose(track[index], (0, 2, 1)), valid


def audio_windows(padded: np.ndarray, frames: np.ndarray, pad: int = AUDIO_PAD_HOPS) -> np.ndarray:
    """(len(frames), 8, 20) audio windows of the given (possibly shifted) frame indices from `pad_audio` output."""
    start = pad + HOPS_PER_FRAME * np.asarray(frames) + FIRST_HOP
    start = np.clip(start, 0, len(padded) - AUDIO_HOPS)
    return np.transpose(padded[start[:, None] + np.arange(AUDIO_HOPS)[None]], (0, 2, 1))


# ----------------------------------------------------------------------------- scoring

@dataclass(frozen=True)
class SyncScore:
    """SyncNet-protocol result: `offset` frames (positive: audio late), confidence = median - min distance."""

    offset: int
    confidence: float
    min_distance: float
    distances: np.ndarray  # (2 * MAX_OFFSET + 1,) mean distance per offset, -MAX_OFFSET first
    frames: int            # the frames that were scored

    @property
    def offsets(self) -> np.ndarray:
        return np.arange(-MAX_OFFSET, MAX_OFFSET + 1)


class SyncScorer:
    """The shipped scorer: `score(lips, found, fps, audio)` on dataset-style arrays."""

    def __init__(self, path: Path = WEIGHTS_PATH, model=None) -> None:
        torch = _torch()
        if model is None:
            if not Path(path).exists():
                raise FacecastError(f"lip-sync scorer weights not found: {path}")
            state = torch.load(path, map_location="cpu", weights_only=True)
            if state.get("window_frames") != WINDOW_FRAMES:
                raise FacecastError(f"{path} was trained for {state.get('window_frames')}-frame windows, "
                                    f"this code uses {WINDOW_FRAMES}: retrain it")
            model = build_model()
            model.load_state_dict(state["model"])
        self.model = model.eval()

    def embed(self, lips: np.ndarray, found: np.ndarray, fps: float,
              audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mouth embeddings (N, E), which frames count (N,), audio embeddings for frames -MAX..N+MAX (N+2MAX, E)."""
        torch = _torch()
        track, ok = lip_track(lips, found, fps)
        windows, valid = mouth_windows(track, ok)
        padded = pad_audio(audio_track(audio))
        frames = np.arange(-MAX_OFFSET, len(track) + MAX_OFFSET)
        with torch.inference_mode():
            mouth = self.model.embed_mouth(torch.from_numpy(np.ascontiguousarray(windows))).numpy()
            windows = np.ascontiguousarray(audio_windows(padded, frames))
            sound = self.model.embed_audio(torch.from_numpy(windows)).numpy()
        return mouth, valid, sound

    def score(self, lips: np.ndarray, found: np.ndarray, fps: float, audio: np.ndarray) -> SyncScore:
        """Offset and confidence of one clip (lips (T, 40, 2) at `fps`, audio (H, 8) raw per-hop features)."""
        mouth, valid, sound = self.embed(lips, found, fps, audio)
        if valid.sum() == 0:
            raise FacecastError("no frame with the face found in 5 consecutive frames: cannot score lip sync")
        frames = np.flatnonzero(valid)
        distances = np.array([
            np.linalg.norm(mouth[frames] - sound[frames + MAX_OFFSET + offset], axis=1).mean()
            for offset in range(-MAX_OFFSET, MAX_OFFSET + 1)])
        best = int(np.argmin(distances))
        return SyncScore(offset=best - MAX_OFFSET, confidence=float(np.median(distances) - distances[best]),
                         min_distance=float(distances[best]), distances=distances, frames=len(frames))

    def score_clip(self, clip: dict[str, np.ndarray], audio: np.ndarray | None = None) -> SyncScore:
        """Score a cached dataset clip (optionally with other per-hop audio features)."""
        return self.score(clip["lips"], clip["found"], float(clip["fps"]), clip["audio"] if audio is None else audio)


# ----------------------------------------------------------------------------- validation

@dataclass(frozen=True)
class Validation:
    """The scorer's checks on held-out clips (see `validate`)."""

    clips: int
    real_confidence: float          # mean confidence with the clip's own audio
    mismatched_confidence: float    # mean confidence with another clip's audio
    real_beats_mismatched: float    # fraction of clips where real > mismatched
    offset_zero: float              # fraction of real clips found at offset 0 +-1
    shift_found: float              # fraction of +-10-frame shifts found within +-1 frame of own offset + shift
    shift_exact: float              # ... found exactly
    shift_found_absolute: float     # ... found within +-1 frame of the shift itself (assumes the clip is in sync)

    def lines(self) -> list[str]:
        return [
            f"held-out clips                 {self.clips}",
            f"confidence, own audio          {self.real_confidence:.3f}",
            f"confidence, other clip's audio {self.mismatched_confidence:.3f}",
            f"own audio scores higher        {100 * self.real_beats_mismatched:.1f} %",
            f"offset 0 +-1 on real clips     {100 * self.offset_zero:.1f} %",
            f"10-frame shift found +-1       {100 * self.shift_found:.1f} %   (exact {100 * self.shift_exact:.1f} %; "
            f"+-1 of the bare shift {100 * self.shift_found_absolute:.1f} %)",
        ]


def _fit_length(audio: np.ndarray, hops: int) -> np.ndarray:
    """Another clip's audio cut or looped to `hops` hops."""
    reps = int(math.ceil(hops / max(len(audio), 1)))
    return np.concatenate([audio] * reps)[:hops]


def validate(scorer: SyncScorer, clips: Sequence[dict[str, np.ndarray]], shift: int = 10) -> Validation:
    """Real vs another clip's audio, offset on real clips, and a +-`shift`-frame audio shift found as such.

    A shift is judged against the offset the scorer finds on the untouched clip: recordings are not
    always in sync (the styletalk clips were muxed from separate files)."""
    real, other, beats, zero, found, exact, absolute = [], [], [], [], [], [], []
    for i, clip in enumerate(clips):
        own = scorer.score_clip(clip)
        donor = clips[(i + max(1, len(clips) // 2)) % len(clips)]["audio"]
        mismatched = scorer.score_clip(clip, _fit_length(donor, len(clip["audio"])))
        real.append(own.confidence)
        other.append(mismatched.confidence)
        beats.append(own.confidence > mismatched.confidence)
        zero.append(abs(own.offset) <= 1)
        for signed in (shift, -shift):
            shifted = scorer.score_clip(clip, delay_audio(clip["audio"], signed))
            found.append(abs(shifted.offset - own.offset - signed) <= 1)
            exact.append(shifted.offset - own.offset == signed)
            absolute.append(abs(shifted.offset - signed) <= 1)
    return Validation(len(clips), float(np.mean(real)), float(np.mean(other)), float(np.mean(beats)),
                      float(np.mean(zero)), float(np.mean(found)), float(np.mean(exact)), float(np.mean(absolute)))


def enough_face(found: np.ndarray, fps: float) -> bool:
    """At least MIN_FACE_SECONDS of frames with the face found: enough evidence to score."""
    return int(np.sum(found)) >= MIN_FACE_SECONDS * float(fps)


def scorable(clip: dict[str, np.ndarray]) -> bool:
    """A talking clip with audio and enough found face (`enough_face`)."""
    return len(clip["audio"]) > 0 and enough_face(clip["found"], float(clip["fps"]))
