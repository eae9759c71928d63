"""The speaker split, GRID word timings (given and forced-aligned) and the incremental dataset cache."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from facecast.dataset.cache import (
    AUDIO_FEATURES,
    audio_features,
    build,
    cache_name,
    iter_clips,
    list_clips,
    load_clip,
    load_index,
    load_split,
    speaker_of,
    summary,
)
from facecast.dataset.word_timing import ForcedAligner, grid_sentence, read_grid_align
from facecast.errors import FacecastError, InputError
from facecast.face.extraction import LIP_POINTS
from facecast.media import decode_mono
from facecast.motion import EXPRESSION_CHANNELS


def test_every_clip_has_exactly_one_speaker_and_no_speaker_is_in_both_splits(shared_data: Path) -> None:
    speakers = load_split()
    owners = {rel: speaker_of(rel, speakers) for rel, _ in list_clips(shared_data)}
    split_of: dict[str, set[str]] = {}
    for speaker in owners.values():
        split_of.setdefault(speaker.id, set()).add(speaker.split)
    assert all(len(splits) == 1 for splits in split_of.values())
    validation = {s.id for s in speakers if s.split == "validation"}
    assert "grid_s4" in validation
    wild = {owner.id for rel, owner in owners.items() if "/wild/" in rel and owner.split == "validation"}
    assert len(wild) >= 3
    assert {owner.split for rel, owner in owners.items() if "/lrc_ar/" in rel} == {"train"}
    # The same person in talking/ and motion_only/ is on one side: Obama appears in both.
    assert owners["motion_only/styletalk_style_Obama_clip3.mp4"].split == "validation"
    assert all(any(owner is s for owner in owners.values()) for s in speakers), "a speaker matches no clip"


def test_a_clip_matching_two_speakers_is_an_error() -> None:
    speakers = load_split()
    twice = speakers + [speakers[0].__class__("again", "train", ("talking/grid_s1/*.mp4",))]
    with pytest.raises(FacecastError, match="exactly one speaker"):
        speaker_of("talking/grid_s1/bbaf2n.mp4", twice)


def test_grid_sentences_decode_from_file_names() -> None:
    assert grid_sentence("bbaf2n.mp4") == ["bin", "blue", "at", "f", "two", "now"]
    assert grid_sentence("swwz9s") == ["set", "white", "with", "z", "nine", "soon"]
    assert grid_sentence("lgizza") == ["lay", "green", "in", "z", "zero", "again"]
    for bad in ("bbaf2", "xbaf2n", "bbaw2n"):
        with pytest.raises(InputError):
            grid_sentence(bad)


@pytest.fixture(scope="module")
def aligner() -> ForcedAligner:
    return ForcedAligner()


def test_forced_alignment_matches_grid_s1_alignments(shared_data: Path, aligner: ForcedAligner) -> None:
    """Word boundaries from pocketsphinx against the corpus' own timings, on clips of the s1 speaker."""
    folder = shared_data / "talking" / "grid_s1"
    errors = []
    for name in ("bbaf2n", "lgaz8p", "sria6n", "bwba6p", "pbap1a", "sbwh8p"):
        given = read_grid_align(folder / "align" / f"{name}.align")
        found = aligner.align(decode_mono(folder / f"{name}.mp4"), grid_sentence(name))
        assert [w.word for w in found] == [w.word for w in given]
        errors += [abs(a.start - b.start) for a, b in zip(found, given)]
        errors += [abs(a.end - b.end) for a, b in zip(found, given)]
    errors = np.array(errors)
    assert np.median(errors) < 0.05 and (errors < 0.1).mean() >= 0.9


def test_forced_alignment_of_a_grid_s4_clip_is_plausible(shared_data: Path, aligner: ForcedAligner) -> None:
    path = shared_data / "talking" / "grid_s4" / "swau8a.mp4"
    samples = decode_mono(path)
    words = aligner.align(samples, grid_sentence(path.name))
    assert [w.word for w in words] == ["set", "white", "at", "u", "eight", "again"]
    starts, ends = np.array([w.start for w in words]), np.array([w.end for w in words])
    assert starts[0] > 0.1 and ends[-1] < len(samples) / 16000 - 0.1   # silence around the sentence
    assert (ends > starts).all() and (starts[1:] >= ends[:-1] - 1e-9).all()
    assert ((ends - starts) > 0.05).all() and ((ends - starts) < 0.8).all()


def test_forced_alignment_rejects_words_it_cannot_place(aligner: ForcedAligner) -> None:
    with pytest.raises(InputError):
        aligner.align(np.zeros(16000), ["qwzxv"])


def test_audio_features_are_per_10_ms_hop() -> None:
    features = audio_features(np.zeros(16000, np.float32))
    assert features.shape == (100, len(AUDIO_FEATURES))


def test_dataset_build_is_incremental(shared_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "talking" / "grid_s4").mkdir(parents=True)
    (data / "motion_only").mkdir()
    for name in ("bbaf2a", "lgar9n"):
        shutil.copy2(shared_data / "talking" / "grid_s4" / f"{name}.mp4", data / "talking" / "grid_s4")
    shutil.copy2(shared_data / "motion_only" / "liveportrait_d0.mp4", data / "motion_only")
    cache = tmp_path / "cache"

    first = build(data, cache)
    assert (first.clips, first.extracted, first.skipped, first.failed) == (3, 3, 0, [])
    again = build(data, cache)
    assert (again.extracted, again.skipped) == (0, 3)
    changed = data / "talking" / "grid_s4" / "lgar9n.mp4"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    third = build(data, cache)
    assert (third.extracted, third.skipped) == (1, 2)

    index = load_index(cache)
    assert index["talking/grid_s4/bbaf2a.mp4"]["split"] == "validation"
    lines = summary(index)
    assert len(lines) == 2 and lines[0].startswith("train      motion_only     1 clips")
    assert lines[1].startswith("validation talking         2 clips   1 speakers     150 frames")
    clip = load_clip("talking/grid_s4/bbaf2a.mp4", cache)
    frames = len(clip["found"])
    assert frames == 75 and clip["expressions"].shape == (frames, len(EXPRESSION_CHANNELS))
    assert clip["lips"].shape == (frames, len(LIP_POINTS), 2) and clip["head"].shape == (frames, 6)
    assert list(clip["words"]) == ["bin", "blue", "at", "f", "two", "again"]
    assert (np.diff(clip["word_start"]) > 0).all() and clip["word_end"][-1] <= 3.0
    assert abs(len(clip["audio"]) - 300) <= 15 and clip["voice"].max() > 0.5
    motion_only = next(iter_clips(kind="motion_only", cache=cache))
    assert str(motion_only["speaker"]) == "liveportrait_d0" and len(motion_only["audio"]) == 0
    assert len(motion_only["words"]) == 0 and motion_only["voice"].max() == 0.0


def test_two_videos_never_share_a_cache_file() -> None:
    """"x/y.mp4" and "x__y.mp4" both flattened to "x__y.npz": one video's frames were trained on twice, the
    other's never."""
    names = {cache_name(rel) for rel in ("x/y.mp4", "x__y.mp4", "x/y__z.mp4", "x__y/z.mp4", "a/b.mov")}
    assert len(names) == 5
    assert cache_name("talking/grid_s4/bbaf2a.mp4") == "talking__grid_s4__bbaf2a.npz"   # built caches stay valid


@pytest.mark.parametrize("index, fragment", [
    ('{"project": "my notes", "items": [1, 2]}', "its index.json is not facecast's"),
    ("not json", "its index.json is not facecast's"), ("[1, 2, 3]", "its index.json is not facecast's"),
    (None, "it holds other files (notes.txt, ...)"),
])
def test_a_folder_that_is_not_a_cache_is_refused_before_anything_is_written(
        shared_data: Path, tmp_path: Path, index: str | None, fragment: str) -> None:
    """`--cache` pointed at a folder of the user's: internal errors, and their index.json rewritten with
    facecast's entries merged in."""
    data = tmp_path / "data"
    (data / "talking" / "grid_s4").mkdir(parents=True)
    shutil.copy2(shared_data / "talking" / "grid_s4" / "bbaf2a.mp4", data / "talking" / "grid_s4")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    if index is not None:
        (folder / "index.json").write_text(index)
    with pytest.raises(InputError, match=re.escape(f"{folder} is not a facecast cache: ") + ".*" + re.escape(fragment)):
        build(data, folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["notes.txt"] + (["index.json"] if index else []))
    if index is not None:
        assert (folder / "index.json").read_text() == index
