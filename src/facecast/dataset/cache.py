"""The motion dataset: extracted motion + audio features of shared/data, split by speaker, cached.

Why: training (speech -> motion) and validation (on speakers no model saw)
need the same measurements of every clip, and extracting them takes ~30
minutes of CPU, so it is done once, incrementally, into a cache:

* `talking/` clips (speech-to-motion): motion (`extraction`), the audio's
  per-hop features (`audio_features`, 100 per second), word timings where known
  (GRID s1: the corpus' alignments; GRID s4: forced alignment of the sentence
  its file name encodes; lrc_ar: the transcript's words, untimed);
* `motion_only/` clips (head and blink statistics): motion only.

The speaker split lives in `data/split.json` (committed, reviewed by hand);
every clip must belong to exactly one speaker there. Each clip is cached as one
`.npz` keyed by its path, its size and modification time and the extraction
version, so a rebuild only does new or changed clips. Arrays per clip:

    t (T,)  found (T,)  head (T, 6)  head_camera (T, 3)  gaze (T, 2)  blink (T, 2)
    expressions (T, 24, EXPRESSION_CHANNELS order)  visemes (T, 6)  voice (T,)
    mouth_opening (T,)  eye_openness (T, 2)
    lips (T, 40, 2): inner+outer lip landmarks in the reference head pose, in face
        heights from the reference mouth centre (for lip-sync models)
    audio (H, 8), audio_names (8,): per-hop features (talking clips with audio; the learned model's
        other feature kinds are computed on first use and cached beside the clips, `clip_audio`)
    word_start, word_end (W,) seconds, words (W,): word timings (empty when unknown)
    fps, reference, and the metadata strings kind, speaker, split, path
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from facecast.dataset.word_timing import ForcedAligner, grid_sentence, read_grid_align
from facecast.errors import FacecastError, InputError
from facecast.face.extraction import EXTRACTION_VERSION, extract, open_video
from facecast.media import decode_mono, iter_mono_blocks
from facecast.speech.audio_features import AUDIO_FEATURES, AudioFeatureStream
from facecast.speech.learned import speech_features
from facecast.speech.voice import voice_track

SPLIT_PATH = Path(__file__).resolve().parent / "split.json"
DEFAULT_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
#: Bump when the cached arrays change meaning (the extraction version is part of the key too).
DATASET_VERSION = 1
KINDS = ("talking", "motion_only")
SPLITS = ("train", "validation")


def default_cache_dir() -> Path:
    """~/.cache/facecast/dataset (or under $XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "facecast" / "dataset"


# ----------------------------------------------------------------------------- the split

@dataclass(frozen=True)
class Speaker:
    id: str
    split: str
    clips: tuple[str, ...]
    note: str = ""


def load_split(path: Path = SPLIT_PATH) -> list[Speaker]:
    """The speakers of the split file; raises FacecastError when it is malformed."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    speakers = [Speaker(s["id"], s["split"], tuple(s["clips"]), s.get("note", "")) for s in data["speakers"]]
    ids = [s.id for s in speakers]
    if len(set(ids)) != len(ids):
        raise FacecastError(f"{path}: speaker ids must be unique")
    bad = [s.id for s in speakers if s.split not in SPLITS]
    if bad:
        raise FacecastError(f"{path}: split must be one of {', '.join(SPLITS)} (speakers {', '.join(bad)})")
    return speakers


def speaker_of(relpath: str, speakers: list[Speaker]) -> Speaker:
    """The one speaker a clip belongs to; a clip matching none or several is an error in the split file."""
    matches = [s for s in speakers if any(fnmatch.fnmatchcase(relpath, pattern) for pattern in s.clips)]
    if len(matches) != 1:
        which = ", ".join(s.id for s in matches) or "no speaker"
        raise FacecastError(f"{relpath} matches {which} in {SPLIT_PATH.name}: each clip needs exactly one speaker")
    return matches[0]


def list_clips(data: Path) -> list[tuple[str, str]]:
    """(relative path, kind) of every clip under talking/ and motion_only/, sorted."""
    if not data.is_dir():
        raise InputError(f"data folder not found: {data}")
    clips = []
    for kind in KINDS:
        for path in sorted((data / kind).rglob("*.mp4")):
            clips.append((path.relative_to(data).as_posix(), kind))
    if not clips:
        raise InputError(f"no clips under {data}/talking or {data}/motion_only")
    return clips


#: Video files `list_videos` picks up.
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


def list_videos(folder: Path) -> list[tuple[str, str]]:
    """(relative path, "talking") of every video anywhere under `folder`, sorted."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file, not a folder: give the folder that holds the videos")
    if not folder.is_dir():
        raise InputError(f"video folder not found: {folder}")
    videos = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                    if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not videos:
        raise InputError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) under {folder}")
    return [(rel, "talking") for rel in videos]


# ----------------------------------------------------------------------------- per clip

def audio_features(samples: np.ndarray) -> np.ndarray:
    """(H, 8) per-hop features (AUDIO_FEATURES order) of 16 kHz mono speech, as the rule generator sees them."""
    stream = AudioFeatureStream()
    stream.push(samples)
    return stream.matrix()


def clip_words(data: Path, relpath: str, samples: np.ndarray | None,
               aligner: Callable[[], object]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Words and their start/end seconds where known: GRID s1 alignments, GRID s4 forced alignment,
    lrc_ar transcripts (untimed: NaN)."""
    path = data / relpath
    if relpath.startswith("talking/grid_s1/"):
        align = path.parent / "align" / (path.stem + ".align")
        if align.exists():
            words = read_grid_align(align)
            return [w.word for w in words], np.array([w.start for w in words]), np.array([w.end for w in words])
    if relpath.startswith("talking/grid_") and samples is not None:
        words = aligner().align(samples, grid_sentence(path.name))  # type: ignore[attr-defined]
        return [w.word for w in words], np.array([w.start for w in words]), np.array([w.end for w in words])
    if relpath.startswith("talking/lrc_ar/"):
        transcript = path.parent / "transcripts" / (path.stem + ".csv")
        if transcript.exists():
            rows = [line.strip() for line in transcript.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
            return rows, np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    return [], np.zeros(0), np.zeros(0)


def extract_clip(data: Path, relpath: str, kind: str, speaker: Speaker,
                 aligner: Callable[[], object]) -> dict[str, np.ndarray]:
    """Every cached array of one clip (see the module docstring)."""
    path = data / relpath
    result = extract(path, reference="neutral")
    count = len(result.found)
    lips = result.lip_shape()
    spoken = kind == "talking" and open_video(path).has_audio
    # visemes and voice level of the audio track: what the learned generators' output carries beside the motion
    visemes, voice = (voice_track(iter_mono_blocks(path), result.fps, count) if spoken
                      else (np.zeros((count, 6)), np.zeros(count)))
    samples = decode_mono(path) if spoken else None
    words, start, end = clip_words(data, relpath, samples, aligner)
    return {
        "t": np.arange(count) / result.fps, "fps": np.float64(result.fps), "reference": np.int64(result.reference),
        "found": result.found, "head": result.head.astype(np.float32),
        "head_camera": result.head_camera.astype(np.float32), "gaze": result.gaze.astype(np.float32),
        "blink": result.blink.astype(np.float32), "expressions": result.expressions.astype(np.float32),
        "visemes": visemes.astype(np.float32), "voice": voice.astype(np.float32),
        "mouth_opening": result.mouth_opening.astype(np.float32),
        "eye_openness": result.eye_openness.astype(np.float32), "lips": lips.astype(np.float32),
        "audio": audio_features(samples) if samples is not None else np.zeros((0, len(AUDIO_FEATURES)), np.float32),
        "audio_names": np.array(AUDIO_FEATURES), "words": np.array(words, dtype=str),
        "word_start": start.astype(np.float64), "word_end": end.astype(np.float64),
        "kind": np.array(kind), "speaker": np.array(speaker.id), "split": np.array(speaker.split),
        "path": np.array(relpath),
    }


def clip_group(relpath: str) -> str:
    """The corpus a talking clip comes from, for balanced sampling: grid, lrc_ar or wild."""
    if "/grid_" in relpath:
        return "grid"
    if "/lrc_ar/" in relpath:
        return "lrc_ar"
    return "wild"


# ----------------------------------------------------------------------------- the cache

def cache_name(relpath: str) -> str:
    """The cache file name of a clip: its relative path, flattened ("a/b.mp4" -> "a__b.npz"). A path that has
    "__" of its own gets a hash of itself too, so "a/b.mp4" and "a__b.mp4" never share a file."""
    flat = relpath.replace("/", "__").removesuffix(".mp4")
    if "__" in relpath:
        flat += "-" + hashlib.sha1(relpath.encode("utf-8")).hexdigest()[:8]
    return flat + ".npz"


def _is_cache_entry(name: str) -> bool:
    """A file facecast's cache writes: clips, the index, and their half-written forms."""
    return name.endswith(".npz") or name.startswith("index.json")


def read_index(cache: Path) -> dict[str, dict]:
    """The index of a cache folder ({} for a new or empty one); an InputError of one line for a folder that is
    not a facecast cache (another index.json, or other files), which a build must not write into."""
    path = Path(cache) / "index.json"
    if not path.exists():
        others = sorted(p.name for p in Path(cache).iterdir() if not _is_cache_entry(p.name)) \
            if Path(cache).is_dir() else []
        if others:
            raise InputError(f"{cache} is not a facecast cache: it holds other files ({others[0]}, ...); "
                             "give --cache an empty or new folder")
        return {}
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        index = None
    if not (isinstance(index, dict)
            and all(isinstance(e, dict) and isinstance(e.get("file"), str) for e in index.values())):
        raise InputError(f"{cache} is not a facecast cache: its index.json is not facecast's; give --cache an "
                         "empty or new folder")
    return index


def _signature(path: Path) -> str:
    """What makes a cached clip stale: the file's size and mtime, the extraction and dataset versions."""
    stat = path.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}-x{EXTRACTION_VERSION}-d{DATASET_VERSION}"


@dataclass
class BuildReport:
    """What one build did."""

    clips: int = 0
    extracted: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] | None = None
    frames: int = 0
    lost: int = 0
    seconds: float = 0.0
    bytes: int = 0


def build(data: Path = DEFAULT_DATA, cache: Path | None = None, only: str | None = None,
          progress: Callable[[str], None] | None = None, own_videos: bool = False) -> BuildReport:
    """Extract every clip not yet cached (or changed); `only` is a glob on relative paths to limit the work.

    `own_videos`: `data` is any folder of talking videos of one person (a user's own recordings, for
    fine-tuning): every video in it is a training clip of speaker "you", and no split file is used.

    A clip that cannot be extracted (no face anywhere, undecodable) is reported
    and left out, not fatal: one bad file must not stop a 30-minute build.
    """
    started = time.perf_counter()
    data, cache = Path(data), Path(cache) if cache is not None else default_cache_dir()
    if own_videos:
        speakers = [Speaker("you", "train", ("*",), "the user's own videos")]
        listed = list_videos(data)
    else:
        speakers = load_split()
        listed = list_clips(data)
    index = read_index(cache)                      # a folder that is not a cache is refused before any write
    cache.mkdir(parents=True, exist_ok=True)
    clips = [(rel, kind) for rel, kind in listed if only is None or fnmatch.fnmatchcase(rel, only)]
    if only is not None and not clips:
        raise InputError(f"no clip under {data} matches --only {only!r} (paths look like {listed[0][0]})")
    owners = {rel: speaker_of(rel, speakers) for rel, _ in clips}  # all split errors before any work
    index_path = cache / "index.json"
    aligners: list[ForcedAligner] = []

    def aligner() -> ForcedAligner:
        if not aligners:
            aligners.append(ForcedAligner())
        return aligners[0]

    report = BuildReport(clips=len(clips), failed=[])
    for number, (rel, kind) in enumerate(clips, start=1):
        signature = _signature(data / rel)
        entry = index.get(rel)
        target = cache / cache_name(rel)
        if entry is not None and entry.get("signature") == signature and target.exists():
            report.skipped += 1
            continue
        clip_started = time.perf_counter()
        try:
            arrays = extract_clip(data, rel, kind, owners[rel], aligner)
        except FacecastError as exc:
            report.failed.append((rel, str(exc)))
            if progress:
                progress(f"[{number}/{len(clips)}] {rel}: skipped: {exc}")
            continue
        temp = target.with_name(target.name + ".partial.npz")
        np.savez_compressed(temp, **arrays)
        os.replace(temp, target)
        frames, lost = len(arrays["found"]), int((~arrays["found"]).sum())
        index[rel] = {"signature": signature, "file": target.name, "kind": kind, "speaker": owners[rel].id,
                      "split": owners[rel].split, "frames": frames, "lost": lost, "fps": float(arrays["fps"]),
                      "words": int(len(arrays["words"]))}
        report.extracted += 1
        report.frames += frames
        report.lost += lost
        if progress:
            progress(f"[{number}/{len(clips)}] {rel}: {frames} frames, {lost} lost, "
                     f"{time.perf_counter() - clip_started:.1f} s")
        if report.extracted % 20 == 0:
            _write_index(index_path, index)
    _write_index(index_path, index)
    report.seconds = time.perf_counter() - started
    report.bytes = sum(p.stat().st_size for p in cache.glob("*.npz"))
    return report


def _write_index(path: Path, index: dict[str, dict]) -> None:
    temp = path.with_name(path.name + ".partial")
    temp.write_text(json.dumps(index, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(temp, path)


def load_index(cache: Path | None = None) -> dict[str, dict]:
    """The cache's index: relative clip path -> kind, speaker, split, frames, lost, file."""
    path = (Path(cache) if cache is not None else default_cache_dir()) / "index.json"
    if not path.exists():
        raise InputError(f"no dataset cache at {path.parent}: run `facecast dataset build` first")
    return read_index(path.parent)


def summary(index: dict[str, dict]) -> list[str]:
    """One line per split and kind: clips, speakers, frames and minutes, frames with the face lost."""
    lines = []
    for split in SPLITS:
        for kind in KINDS:
            entries = [e for e in index.values() if e["split"] == split and e["kind"] == kind]
            if entries:
                frames = sum(e["frames"] for e in entries)
                minutes = sum(e["frames"] / e["fps"] for e in entries) / 60
                speakers, lost = len({e["speaker"] for e in entries}), sum(e["lost"] for e in entries)
                lines.append(f"{split:10s} {kind:11s} {len(entries):5d} clips {speakers:3d} "
                             f"speakers {frames:7d} frames ({minutes:5.1f} min), {lost} lost")
    return lines


def load_clip(relpath: str, cache: Path | None = None) -> dict[str, np.ndarray]:
    """All cached arrays of one clip."""
    cache = Path(cache) if cache is not None else default_cache_dir()
    with np.load(cache / cache_name(relpath)) as npz:
        return {key: npz[key] for key in npz.files}


def iter_clips(split: str | None = None, kind: str | None = None,
               cache: Path | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Cached clips of one split and/or kind, in path order."""
    for rel, entry in sorted(load_index(cache).items()):
        if (split is None or entry["split"] == split) and (kind is None or entry["kind"] == kind):
            yield load_clip(rel, cache)


def clip_audio(clip: dict[str, np.ndarray], kind: str, data: Path | None = None,
               cache: Path | None = None) -> np.ndarray:
    """A cached clip's per-hop audio of this kind (`speech.learned.FEATURE_DIMS`): hop8 is in the clip; the others
    are computed from the recording once and cached beside the clips (`<cache>/<kind>/`)."""
    if kind == "hop8":
        return clip["audio"]
    folder = (Path(cache) if cache is not None else default_cache_dir()) / kind
    path = folder / cache_name(str(clip["path"])).replace(".npz", ".npy")
    if path.exists():
        return np.load(path)
    features = speech_features(decode_mono(Path(data or DEFAULT_DATA) / str(clip["path"])), kind).astype(np.float16)
    folder.mkdir(parents=True, exist_ok=True)
    # written whole under another name, then renamed: a second training process never reads half a file
    temp = path.with_name(f"{path.stem}.{os.getpid()}.partial.npy")
    np.save(temp, features)
    temp.replace(path)
    return features
