"""The portrait analysis in a child process (`facecast.app.portrait_job`): the same rig, errors and warnings as
in-process, and mediapipe never loaded by the render or live process."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecast.app import portrait_job
from facecast.app.portrait_job import CACHE_ENV, PortraitJob, prepare_portrait
from facecast.errors import FacecastError, InputError, NoFaceError
from facecast.face.portrait import analyze_portrait

SIZE = 256
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


def test_the_child_builds_the_same_rig_as_in_process_and_reports_its_steps(sample_portrait: Path, cache: Path) -> None:
    here = analyze_portrait(sample_portrait, size=SIZE, framing="auto")
    seconds: dict[str, float] = {}
    there = prepare_portrait(sample_portrait, size=SIZE, framing="auto", stage_seconds=seconds)
    assert np.array_equal(there.image, here.image) and np.allclose(there.landmarks, here.landmarks, atol=1e-3)
    assert there.framing == "auto" and there.source == str(sample_portrait)
    assert set(seconds) == {"analysis"} and seconds["analysis"] > 0


def test_the_childs_errors_arrive_as_the_same_one_line_errors(tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.new("RGB", (480, 480), (180, 180, 180)).save(blank)
    with pytest.raises(NoFaceError, match="no face found in blank.png"):
        prepare_portrait(blank, size=SIZE, framing="auto")
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    with pytest.raises(InputError, match="notes.jpg"):
        prepare_portrait(text, size=SIZE, framing="auto")


def test_the_childs_warnings_are_logged_here(sample_portrait: Path, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """A picture cut off below the mouth: the child's one warning line reaches this process's log."""
    cut = tmp_path / "cut.png"
    Image.fromarray(np.asarray(Image.open(sample_portrait).convert("RGB"))[:400]).save(cut)
    with caplog.at_level(logging.WARNING, logger="facecast.portrait"):
        prepare_portrait(cut, size=SIZE, framing="auto")
    messages = [r.getMessage() for r in caplog.records if r.name == "facecast.portrait"]
    assert len(messages) == 1 and "cuts off the face in cut.png" in messages[0]


def test_a_child_that_dies_without_answering_is_one_clear_error(sample_portrait: Path, cache: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A real child process that ends without an answer (as a crash in native code would)."""
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(FacecastError, match="portrait analysis of mona_lisa.jpg stopped unexpectedly"):
        prepare_portrait(sample_portrait, size=SIZE, framing="auto")


def test_render_never_loads_mediapipe(sample_portrait: Path, sample_speech: Path, tmp_path: Path) -> None:
    """The point of the child: the render process itself holds no mediapipe (its ~90 MiB)."""
    probe = ("import json, sys; from pathlib import Path; from facecast.app.render import RenderRequest, render; "
             "render(RenderRequest(portrait=Path(sys.argv[1]), audio=Path(sys.argv[2]), output=Path(sys.argv[3]), "
             "size=256, progress=False, generator='rule', cutout=True)); "
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'mediapipe', 'facecast'})))")
    result = subprocess.run([sys.executable, "-c", probe, str(sample_portrait), str(sample_speech),
                             str(tmp_path / "out.mp4")], capture_output=True, text=True, cwd=REPO, check=True)
    assert json.loads(result.stdout.splitlines()[-1]) == ["facecast"]
    assert (tmp_path / "out.mp4").stat().st_size > 0


# ----------------------------------------------------------------------------- the cache

def test_the_same_picture_again_comes_from_the_cache_with_its_warnings(
        sample_portrait: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    cut = tmp_path / "cut.png"
    Image.fromarray(np.asarray(Image.open(sample_portrait).convert("RGB"))[:400]).save(cut)
    first = prepare_portrait(cut, size=SIZE, framing="auto")
    assert len(list(cache.glob("*.npz"))) == 1
    monkeypatch.setattr(sys, "executable", "/bin/false")   # no child can answer now: only the cache can
    seconds: dict[str, float] = {}
    with caplog.at_level(logging.WARNING, logger="facecast.portrait"):
        again = prepare_portrait(cut, size=SIZE, framing="auto", stage_seconds=seconds)
    assert list(seconds) == ["portrait cache"]
    for name in ("image", "landmarks", "transform"):
        assert np.array_equal(getattr(again, name), getattr(first, name)), name
    assert (again.backdrop, again.placement, again.picture_size, again.motion_scale, again.framing, again.source) == \
        (None, first.placement, first.picture_size, first.motion_scale, "auto", str(cut))
    assert [r.getMessage() for r in caplog.records if r.name == "facecast.portrait"] == \
        [m for m in caplog.messages if "cuts off the face in cut.png" in m] != []
    with pytest.raises(FacecastError, match="stopped unexpectedly"):   # other options: not in the cache
        prepare_portrait(cut, size=SIZE, framing="face")


def test_a_changed_or_damaged_picture_entry_is_analysed_again(sample_portrait: Path, tmp_path: Path,
                                                                cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    picture = tmp_path / "p.png"
    image = np.asarray(Image.open(sample_portrait).convert("RGB"))
    Image.fromarray(image).save(picture)
    prepare_portrait(picture, size=SIZE, framing="auto")
    Image.fromarray(np.ascontiguousarray(image[:, ::-1])).save(picture)   # same path, mirrored picture
    mirrored = prepare_portrait(picture, size=SIZE, framing="auto")
    assert np.array_equal(mirrored.image, analyze_portrait(picture, size=SIZE, framing="auto").image)
    entries = list(cache.glob("*.npz"))
    assert len(entries) == 2
    for entry in entries:
        entry.write_bytes(b"damaged")
    assert np.array_equal(prepare_portrait(picture, size=SIZE, framing="auto").image, mirrored.image)


def test_the_cache_can_be_turned_off_and_keeps_a_bounded_number_of_entries(
        sample_portrait: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(portrait_job, "CACHE_ENTRIES", 2)
    for size in (256, 320, 384):
        prepare_portrait(sample_portrait, size=size, framing="auto")
    assert len(list(cache.glob("*.npz"))) == 2
    monkeypatch.setenv(CACHE_ENV, "")
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(FacecastError, match="stopped unexpectedly"):
        prepare_portrait(sample_portrait, size=384, framing="auto")


def test_a_job_no_longer_wanted_ends_its_child(sample_portrait: Path, cache: Path) -> None:
    job = PortraitJob(sample_portrait, size=SIZE, framing="auto")
    child = job._child
    assert child is not None and child.poll() is None   # working (it takes about a second)
    job.cancel()
    assert child.poll() is not None and not list(cache.glob("*.npz"))


def test_a_cache_write_that_fails_leaves_no_partial_entry(sample_portrait: Path, cache: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk (np.savez failing after it began writing): the rig still comes back, and nothing is left."""
    def full_disk(file, **arrays) -> None:  # noqa: ANN001 - np.savez's
        file.write(b"PK\x03\x04 half an entry")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(portrait_job.np, "savez", full_disk)
    rig = prepare_portrait(sample_portrait, size=SIZE, framing="auto")
    assert rig.image.shape[0] == SIZE and list(cache.iterdir()) == []
