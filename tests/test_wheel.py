"""The built wheel is the whole product: it installs on its own and renders from outside the repository.

The tests elsewhere import facecast from the source tree; this one catches what only a real
install shows: package data left out of the wheel (weights, the mean face, the overlay page,
the dataset split), code that finds its files through the repository instead of the package,
and stray top-level packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import av
import pytest

from conftest import REPO, write_audio
from facecast.media import MOTION_SAMPLE_RATE, decode_mono

#: Package data the runtime and the offline tools load from inside the installed package.
PACKAGE_DATA = (
    "facecast/bridges/overlay/overlay.html",
    "facecast/bridges/overlay/overlay.js",
    "facecast/speech/data/motion_diffusion.pt",
    "facecast/speech/data/whisper_encoder.pt",
    "facecast/speech/data/whisper_base_encoder.pt",
    "facecast/speech/data/WHISPER_LICENSE",
    "facecast/face/data/mean_face.npy",
    "facecast/face/models/face_landmarker.task",
    "facecast/face/models/face_detection_short_range.tflite",
    "facecast/face/models/face_detection_full_range_sparse.tflite",
    "facecast/face/models/selfie_segmentation.tflite",
    "facecast/face/models/LICENSE",
    "facecast/face/models/NOTICE.md",
    "facecast/evaluation/data/sync_scorer.pt",
    "facecast/dataset/split.json",
    "facecast/dataset/folds.json",
    "facecast/dataset/av_offsets.json",
)
#: Seconds of the sample speech the installed CLI renders: enough for a real clip, short enough to be quick.
SPEECH_SECONDS = 3.0


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a clean copy of the project, installed alone into a folder: that folder."""
    root = tmp_path_factory.mktemp("wheel")
    # A fresh copy: an in-tree build reuses build/lib, where modules deleted from src/ would linger.
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = root / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(wheels), str(source)], cwd=root)
    (wheel,) = wheels.glob("facecast-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top_level == {"facecast"}, f"stray top-level entries in the wheel: {sorted(top_level)}"
    target = root / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
          str(wheel)], cwd=root)
    return target


def test_the_wheel_carries_the_package_data(installed: Path) -> None:
    missing = [name for name in PACKAGE_DATA if not (installed / name).is_file()]
    assert not missing, f"not in the installed package: {missing}"


def test_the_installed_wheel_renders_from_outside_the_repository(installed: Path, sample_portrait: Path,
                                                                 sample_speech: Path, tmp_path: Path) -> None:
    speech = decode_mono(sample_speech, MOTION_SAMPLE_RATE)[: int(SPEECH_SECONDS * MOTION_SAMPLE_RATE)]
    audio = write_audio(tmp_path / "speech.wav", speech, MOTION_SAMPLE_RATE)
    # Only the installed folder on the path, run from a folder outside the repository.
    env = {**os.environ, "PYTHONPATH": str(installed)}
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([sys.executable, "-c", "import facecast; print(facecast.__file__)"], cwd=work, env=env)
    assert Path(where.stdout.strip()).resolve().is_relative_to(installed.resolve()), where.stdout

    output = work / "out.mp4"
    _run([sys.executable, "-m", "facecast.app.cli", "render", "--portrait", str(sample_portrait), "--audio",
          str(audio), "-o", str(output), "--generator", "learned", "--size", "256"], cwd=work, env=env)
    with av.open(str(output)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= int(SPEECH_SECONDS * 25) - 1, frames
