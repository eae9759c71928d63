"""The face tracker: the shipped model files, landmarks as mediapipe 0.10.21 gave them, no smoothing in video mode."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from facecast import face_regions as fr
from facecast.face import tracker
from facecast.face.tracker import FaceDetector, FaceLandmarker
from facecast.training import face_models

HERE = Path(__file__).resolve().parent
#: mediapipe 0.10.21's image-mode landmarks of a few portraits (benchmarks/landmarks.py --test-reference).
REFERENCE = HERE / "data" / "landmarks_0.10.21.npz"
REPO = HERE.parents[1]
PORTRAITS = (REPO / "samples", REPO.parent / "shared" / "data" / "portraits")


def load(name: str) -> np.ndarray | None:
    """RGB as benchmarks/landmarks.py loads it (EXIF-upright, alpha over grey), None when absent."""
    path = next((folder / name for folder in PORTRAITS if (folder / name).is_file()), None)
    if path is None:
        return None
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
        image = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    if image.shape[2] == 4:
        alpha = image[..., 3:4].astype(np.float32) / 255.0
        image = (image[..., :3] * alpha + 128 * (1.0 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(image)


def iod(face: np.ndarray) -> float:
    right = face[[fr.RIGHT_EYE_OUTER, fr.RIGHT_EYE_INNER], :2].mean(0)
    left = face[[fr.LEFT_EYE_OUTER, fr.LEFT_EYE_INNER], :2].mean(0)
    return float(np.linalg.norm(left - right))


def test_shipped_model_files_are_the_built_ones():
    """face/models holds exactly what `python -m facecast.training face-models build` makes (NOTICE.md lists it)."""
    notice = (tracker.MODELS / "NOTICE.md").read_text(encoding="utf-8")
    for name, digest in face_models.SHIPPED.items():
        assert hashlib.sha256((tracker.MODELS / name).read_bytes()).hexdigest() == digest, name
        assert f"{digest}  {name}" in notice
    assert "Apache License" in (tracker.MODELS / "LICENSE").read_text(encoding="utf-8")


def test_landmark_index_tables():
    """The build's refinement tables: every point gets x, y, z from a head, irises from the iris heads."""
    index, z_points = face_models.gather_indices()
    assert index.shape == (478 * 3,) and z_points.shape == (2, 16)
    total = sum(size for _, size in face_models.HEADS)
    assert index.min() >= 0 and index.max() == total + 1          # the right iris z, appended last
    xyz = index.reshape(478, 3)
    assert (xyz[:468, 2] == np.arange(468) * 3 + 2).all()         # mesh z everywhere but the irises
    assert (xyz[468:, 0] >= total - 20).all() and (xyz[468:, 0] < total).all()


@pytest.mark.parametrize("position", range(4))
def test_image_mode_matches_mediapipe_0_10_21(position):
    """Static landmarks stay within 0.1 % of the eye distance of the stored 0.10.21 results."""
    with np.load(REFERENCE) as reference:
        name, expected = str(reference["names"][position]), reference["landmarks"][position].astype(np.float64)
    image = load(name)
    if image is None:
        pytest.skip(f"{name} not found (shared portraits are beside the repository)")
    with FaceLandmarker() as landmarker:
        faces = landmarker.faces(image)
    assert len(faces) == 1
    scale = iod(expected)
    assert np.linalg.norm(faces[0][:, :2] - expected[:, :2], axis=1).mean() < 0.001 * scale
    assert np.abs(faces[0][:, 2] - expected[:, 2]).mean() < 0.002 * scale


def test_video_mode_tracks_without_smoothing():
    """A face that jitters by a few pixels jitters as much in video mode: the Tasks graph's smoothing
    filter is off (the legacy face mesh had none; with it on, the steps below shrink to about a third)."""
    image = load("mona_lisa.jpg")
    shift = 3
    moved = np.ascontiguousarray(np.pad(image, ((0, 0), (shift, 0), (0, 0)), mode="edge")[:, :image.shape[1]])
    with FaceLandmarker() as still:
        static_step = (still.faces(moved)[0] - still.faces(image)[0])[:, 0].mean()
    with FaceLandmarker(video=True) as video:
        x = [video.faces(moved if i % 2 else image)[0][:, 0].mean() for i in range(10)]
    assert static_step > 1.5
    assert np.abs(np.diff(x)[2:]).mean() > static_step


def test_no_face_and_several_faces():
    image = load("mona_lisa.jpg")
    blank = np.full((320, 320, 3), 180, np.uint8)
    pair = np.ascontiguousarray(np.concatenate([image, image[:, ::-1]], axis=1))
    with FaceLandmarker(max_faces=4) as landmarker:
        assert landmarker.faces(blank) == []
        assert len(landmarker.faces(pair)) == 2
        assert len(landmarker.faces(np.dstack([image, np.full(image.shape[:2], 255, np.uint8)]))) == 1  # RGBA


@pytest.mark.parametrize("model", ["short", "full"])
def test_face_detector(model):
    image = load("mona_lisa.jpg")
    with FaceLandmarker() as landmarker:
        face = landmarker.faces(image)[0]
    with FaceDetector(model) as detector:
        assert detector.boxes(np.full((320, 320, 3), 180, np.uint8)) == []
        (x, y, w, h), *_ = detector.boxes(image)
    nose = face[fr.NOSE_TIP]
    assert x < nose[0] < x + w and y < nose[1] < y + h
    assert 0.5 * iod(face) < w < 4 * iod(face)


def test_bad_detector_model():
    with pytest.raises(ValueError, match="short, full"):
        FaceDetector("medium")


def test_closed_landmarker_refuses():
    landmarker = FaceLandmarker()
    landmarker.close()
    landmarker.close()
    with pytest.raises(RuntimeError, match="closed"):
        landmarker.faces(np.zeros((64, 64, 3), np.uint8))


def test_mediapipe_drawing_helpers_and_matplotlib_are_not_loaded_for_a_live_start(sample_portrait) -> None:
    """Live memory (issue 23, part 5): mediapipe's drawing helpers import matplotlib.pyplot (40 MiB) that facecast
    never uses; in a fresh interpreter doing what `facecast live` does (torch for the learned generator, then the
    portrait analysed) matplotlib stays out, and the helpers still load when something reads them."""
    code = f"""
import json, sys
import torch
from facecast.face.portrait import analyze_portrait
rig = analyze_portrait({str(sample_portrait)!r}, size=256)
before = 'matplotlib' in sys.modules
from mediapipe.tasks.python.vision import drawing_utils
spec = drawing_utils.DrawingSpec(color=(1, 2, 3))
print(json.dumps({{"before": before, "after": 'matplotlib.pyplot' in sys.modules, "color": list(spec.color)}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"before": False, "after": True, "color": [1, 2, 3]}
