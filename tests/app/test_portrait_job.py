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

from facecast.app.portrait_job import prepare_portrait
from facecast.errors import FacecastError, InputError, NoFaceError
from facecast.face.portrait import analyze_portrait

SIZE = 256
REPO = Path(__file__).resolve().parents[2]


def test_the_child_builds_the_same_rig_as_in_process_and_reports_its_steps(sample_portrait: Path) -> None:
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


def test_a_child_that_dies_without_answering_is_one_clear_error(sample_portrait: Path,
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
