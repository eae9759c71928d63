"""The `facecast` command as a user meets it: help, and one clear line for every bad input.

Each bad input must give a non-zero exit, exactly one line on stderr, no
traceback, and leave no output (not even a partial file) behind.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import pytest
from PIL import Image

from conftest import assert_one_line_error, run_facecast, tone_speech, write_audio


def assert_nothing_written(folder: Path, before: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == before


def test_help_lists_the_subcommands():
    result = run_facecast("--help")
    assert result.returncode == 0
    for command in ("render", "motion", "analyze"):
        assert command in result.stdout


@pytest.fixture()
def workdir(tmp_path: Path, sample_portrait: Path, sample_speech: Path) -> Path:
    (tmp_path / "face.jpg").write_bytes(sample_portrait.read_bytes())
    (tmp_path / "speech.flac").write_bytes(sample_speech.read_bytes())
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    (tmp_path / "notes.txt").write_text("hello\n" * 50)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 20)
    Image.new("RGB", (400, 400), (120, 160, 200)).save(tmp_path / "sky.png")
    with wave.open(str(tmp_path / "empty.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
    (tmp_path / "existing.mp4").write_bytes(b"keep me")
    (tmp_path / "folder.mp4").mkdir()
    (tmp_path / "bad.jsonl").write_text('{"format": "facecast.motion", "version": 1, "fps": 25}\n{"t": "soon"}\n')
    return tmp_path


@pytest.mark.parametrize("args, fragments", [
    (["--portrait", "missing.jpg", "--audio", "speech.flac", "-o", "out.mp4"], ["missing.jpg"]),
    (["--portrait", "corrupt.jpg", "--audio", "speech.flac", "-o", "out.mp4"], ["corrupt.jpg"]),
    (["--portrait", "notes.txt", "--audio", "speech.flac", "-o", "out.mp4"], ["notes.txt"]),
    (["--portrait", "sky.png", "--audio", "speech.flac", "-o", "out.mp4"], ["no face", "--landmarks"]),
    (["--portrait", "face.jpg", "--audio", "missing.wav", "-o", "out.mp4"], ["missing.wav", "not found"]),
    (["--portrait", "face.jpg", "--audio", "corrupt.wav", "-o", "out.mp4"], ["corrupt.wav"]),
    (["--portrait", "face.jpg", "--audio", "notes.txt", "-o", "out.mp4"], ["notes.txt"]),
    (["--portrait", "face.jpg", "--audio", "empty.wav", "-o", "out.mp4"], ["zero-length"]),
    (["--portrait", "face.jpg", "--audio", "speech.flac", "-o", "no/such/dir/out.mp4"], ["does not exist"]),
    (["--portrait", "face.jpg", "--audio", "speech.flac", "-o", "existing.mp4"], ["already exists", "--overwrite"]),
    (["--portrait", "face.jpg", "--audio", "speech.flac", "-o", "folder.mp4", "--overwrite"], ["folder"]),
    (["--portrait", "face.jpg", "--audio", "speech.flac", "-o", "out.avi"], ["unsupported output format"]),
    (["--portrait", "face.jpg", "--motion", "bad.jsonl", "-o", "out.mp4"], ["bad.jsonl:2"]),
    (["--portrait", "face.jpg", "--motion", "notes.txt", "-o", "out.mp4"], ["not a facecast motion file"]),
    (["--portrait", "face.jpg", "--audio", "speech.flac", "-o", "out.mp4", "--size", "4000"], ["--size"]),
    (["--portrait", "face.jpg", "--audio", "speech.flac", "-o", "out.mp4", "--fps", "24"], ["--fps"]),
    (["--portrait", "face.jpg", "--audio", "speech.flac", "-o", "out.mp4", "--background", "blue"], ["#RRGGBB"]),
    (["--portrait", "face.jpg", "--audio", "speech.flac", "-o", "out.mp4", "--face-index", "3"], ["face"]),
    (["--portrait", "face.jpg", "--audio", "speech.flac", "-o", "out.mp4", "--framing", "zoom"],
     ["--framing", "auto, face, picture, full"]),
    (["--portrait", "face.jpg", "--audio", "speech.flac", "-o", "out.mp4", "--size", "257"], ["even", "--size"]),
    (["--portrait", "face.jpg", "-o", "out.mp4"], ["--audio"]),
    (["--portrait", "face.jpg", "--audio", "speech.flac", "-o", "out.mp4", "--fps", "0"], ["--fps", "got 0"]),
    (["--portrait", "face.jpg", "--audio", "speech.flac", "-o", "out.mp4", "--seed", "99999999999999999999"],
     ["--seed", "between 0 and 4294967295"]),
    (["--portrait", "face.jpg", "--audio", "speech.flac", "-o", "out.mp4", "--motion-model", "nope.pt"],
     ["motion model not found: nope.pt"]),
    (["--portrait", "face.jpg", "--audio", "speech.flac", "-o", "out.mp4", "--generator", "rule",
      "--motion-model", "nope.pt"], ["--motion-model is for --generator learned"]),
    # argparse's own errors: one line too, not its usage block
    (["--portrait", "face.jpg", "--audio", "speech.flac", "-o", "out.mp4", "--size", "nan"],
     ["--size", "'nan'", "facecast render --help"]),
    (["--portrait", "face.jpg", "--audio", "speech.flac", "-o", "out.mp4", "--frames", "dir"],
     ["not allowed with argument --output"]),
    (["--portrait", "face.jpg", "--audio", "speech.flac", "-o", "out.mp4", "--generator", "magic"],
     ["invalid choice: 'magic'"]),
])
def test_bad_render_input_is_one_line_and_leaves_nothing(workdir, args, fragments):
    before = {p.name for p in workdir.iterdir()}
    result = run_facecast("render", *args, cwd=workdir)
    assert_one_line_error(result, *fragments)
    assert_nothing_written(workdir, before)
    assert (workdir / "existing.mp4").read_bytes() == b"keep me"


def test_bad_motion_command_input(workdir):
    before = {p.name for p in workdir.iterdir()}
    assert_one_line_error(run_facecast("motion", "--audio", "corrupt.wav", "-o", "m.jsonl", cwd=workdir), "corrupt.wav")
    assert_one_line_error(run_facecast("motion", "--audio", "empty.wav", "-o", "m.jsonl", cwd=workdir), "zero-length")
    write_audio(workdir / "tone.wav", tone_speech(1.0, 16000), 16000)
    before = {p.name for p in workdir.iterdir()}
    (workdir / "junk.pt").write_bytes(b"not a model")
    for model, fragment in (("missing.pt", "not found"), ("junk.pt", "not a facecast motion model")):
        result = run_facecast("motion", "--audio", "tone.wav", "-o", "m.jsonl", "--motion-model", model, cwd=workdir)
        assert_one_line_error(result, model, fragment)
    (workdir / "junk.pt").unlink()
    for args, fragment in ((["-o", "m.mp4"], "name it .jsonl"), (["-o", "m.jsonl", "--seed", "-1"], "--seed"),
                           (["-o", "m.jsonl", "--fps", "abc"], "--fps")):
        assert_one_line_error(run_facecast("motion", "--audio", "tone.wav", *args, cwd=workdir), fragment)
    assert_nothing_written(workdir, before)


@pytest.mark.parametrize("args, fragments", [
    (["analyze", "-p", "face.jpg", "-o", "face.jpg", "--overwrite"], ["is also the input"]),
    (["analyze", "-p", "face.jpg", "-o", "framed.txt"], [".png, .jpg or .webp"]),
    (["analyze", "-p", "face.jpg", "--landmarks", "pipe.json"], ["not a file but a device, pipe or socket"]),
    (["verify", "pipe.mp4"], ["not a file but a device, pipe or socket"]),
    (["verify", "face.jpg", "--seconds", "-1"], ["--seconds must be a positive number"]),
    (["verify", "face.jpg", "--seconds", "nan"], ["--seconds must be a positive number"]),
    (["train", "--data", ".", "--minutes", "-5"], ["--minutes must be a positive number"]),
    (["train", "--data", ".", "--steps", "0"], ["--steps must be positive"]),
    (["train", "--data", ".", "--cache", "face.jpg"], ["--cache face.jpg is a file"]),
    (["dataset", "build", "--data", ".", "--cache", "face.jpg"], ["--cache face.jpg is a file"]),
    (["train", "--data", "face.jpg"], ["face.jpg is a file, not a folder"]),
    (["extract", "face.jpg", "-o", "motion.mp4"], ["name it .jsonl"]),
])
def test_side_commands_refuse_bad_input_in_one_line(workdir, args, fragments):
    """A pipe never hangs a command, an input is never overwritten, options are checked before any work."""
    import os

    os.mkfifo(workdir / "pipe.mp4")
    os.mkfifo(workdir / "pipe.json")
    before = (workdir / "face.jpg").read_bytes()
    assert_one_line_error(run_facecast(*args, cwd=workdir), *fragments)
    assert (workdir / "face.jpg").read_bytes() == before


def test_dataset_build_says_when_only_matches_nothing(tmp_path, shared_data):
    result = run_facecast("dataset", "build", "--data", shared_data, "--cache", tmp_path / "cache", "--only",
                          "nomatch/*")
    assert_one_line_error(result, "matches --only 'nomatch/*'", "talking/")


def test_dataset_build_fails_when_every_clip_is_skipped(tmp_path):
    """A build that extracted nothing is an error (it exited 0), each skip said once."""
    clip = tmp_path / "data" / "talking" / "grid_s1" / "zzzz.mp4"
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"not a video" * 50)
    result = run_facecast("dataset", "build", "--data", tmp_path / "data", "--cache", tmp_path / "cache")
    assert result.returncode == 1 and "every clip was skipped" in result.stderr
    assert (result.stdout + result.stderr).count("not a supported video file") == 2   # the skip, the error


def test_train_says_each_skipped_video_once(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "broken.mp4").write_bytes(b"not a video" * 50)
    result = run_facecast("train", "--data", tmp_path / "videos", "--cache", tmp_path / "cache", "-o",
                          tmp_path / "mine.pt")
    assert_one_line_error(result, "none of the videos")
    assert result.stdout.count("not a supported video file") == 1, result.stdout


def test_doctor_fails_for_a_portrait_that_is_not_a_picture_file(tmp_path):
    result = run_facecast("doctor", "--portrait", tmp_path / "missing.png")
    assert result.returncode == 1 and "--portrait" in result.stdout and "not found" in result.stdout, result.stdout


@pytest.mark.parametrize("generator", ["learned", "rule"])
def test_motion_command_writes_editable_jsonl(workdir, generator):
    write_audio(workdir / "tone.wav", tone_speech(2.0, 44100, 2), 44100)
    flags = ["--generator", generator] if generator != "learned" else []        # learned is the default
    result = run_facecast("motion", "--audio", "tone.wav", "-o", "m.jsonl", "--fps", "30", *flags, cwd=workdir)
    assert result.returncode == 0, result.stderr
    lines = (workdir / "m.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "facecast.motion" and header["fps"] == 30 and header["generator"] == generator
    assert len(lines) - 1 == 60
    frames = [json.loads(line) for line in lines[1:]]
    assert set(frames[30]) >= {"t", "head", "gaze", "blink", "expressions", "visemes", "voice"}
    assert frames[30]["t"] == pytest.approx(1.0)
    assert max(f["voice"] for f in frames) > 0.3 and max(f["visemes"].get("A", 0) for f in frames) > 0.1
    assert max(f["expressions"].get("jawOpen", 0) for f in frames) > 0.05


def test_landmarks_file_problems_are_one_line(workdir):
    (workdir / "points.json").write_text(json.dumps({"nose_tip": [10, 10]}))
    result = run_facecast("render", "--portrait", "sky.png", "--landmarks", "points.json",
                          "--audio", "speech.flac", "-o", "out.mp4", cwd=workdir)
    assert_one_line_error(result, "points.json")
    assert not (workdir / "out.mp4").exists()


def test_analyze_reports_the_face_and_writes_the_aligned_crop(workdir):
    result = run_facecast("analyze", "--portrait", "face.jpg", "--size", "256", "-o", "crop.png", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "1 face(s) found" in result.stdout
    crop = Image.open(workdir / "crop.png")
    assert crop.size == (256, 256)
    assert_one_line_error(run_facecast("analyze", "--portrait", "sky.png", cwd=workdir), "no face")
    assert "parted" not in result.stdout  # her lips are together


def test_analyze_says_when_the_lips_are_parted(workdir, shared_data):
    from facecast.face.extraction import iter_video_frames

    first = next(iter(iter_video_frames(shared_data / "talking/wild/pcavs_Pose_Source_741400163.mp4")))
    Image.fromarray(first).save(workdir / "mid_word.png")
    result = run_facecast("analyze", "--portrait", "mid_word.png", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "lips are parted (0.0" in result.stdout and "shut before animating" in result.stdout
