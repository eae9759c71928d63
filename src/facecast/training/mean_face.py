"""Build `face/data/mean_face.npy`: the 478-point mean face used for hand-placed landmarks.

Run: `python -m facecast.training mean-face build`

Data source: frontal frames of the GRID audio-visual corpus (CC BY 4.0), speakers
s1 (male) and s4 (female) as stored in `shared/data/talking/grid_s1/*.mp4` and
`shared/data/talking/grid_s4/*.mp4`. Landmarks come from mediapipe's face mesh
(478 points with iris, `face.tracker` in image mode). Each face is similarity-aligned (eye-centre midpoint at
the origin, eyes level, inter-ocular distance 1, z scaled alike) and the aligned
faces are averaged. The result is (478, 3) float32, about 6 KB.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from facecast import face_regions as fr
from facecast.face.tracker import FaceLandmarker

DATA_DIR = Path(__file__).resolve().parents[4] / "shared" / "data" / "talking"
OUTPUT = Path(__file__).resolve().parents[1] / "face" / "data" / "mean_face.npy"


def normalize_face(points: np.ndarray) -> np.ndarray:
    """Similarity-normalise (478,3) landmarks: eye-centre midpoint at 0, eyes level, inter-ocular 1."""
    right_eye = points[[fr.RIGHT_EYE_OUTER, fr.RIGHT_EYE_INNER]].mean(axis=0)
    left_eye = points[[fr.LEFT_EYE_OUTER, fr.LEFT_EYE_INNER]].mean(axis=0)
    centre = (right_eye + left_eye) / 2
    dx, dy = (left_eye - right_eye)[:2]
    iod = float(np.hypot(dx, dy))
    cos, sin = dx / iod, dy / iod
    rel = points - centre
    out = np.empty_like(rel)
    out[:, 0] = (cos * rel[:, 0] + sin * rel[:, 1]) / iod
    out[:, 1] = (-sin * rel[:, 0] + cos * rel[:, 1]) / iod
    out[:, 2] = rel[:, 2] / iod
    return out


def _frames(path: Path, every: int):
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every == 0:
                yield frame.to_ndarray(format="rgb24")


def build(videos_per_speaker: int = 40, every: int = 15) -> np.ndarray:
    """Average normalised face-mesh landmarks over sampled GRID frames."""
    faces = []
    with FaceLandmarker() as mesh:
        for speaker in ("grid_s1", "grid_s4"):
            for video in sorted((DATA_DIR / speaker).glob("*.mp4"))[:videos_per_speaker]:
                for rgb in _frames(video, every):
                    found = mesh.faces(rgb)
                    if found:
                        faces.append(normalize_face(found[0]))
    if not faces:
        raise SystemExit(f"no GRID frames with a face found under {DATA_DIR}")
    print(f"averaged {len(faces)} frames")
    return np.mean(faces, axis=0).astype(np.float32)
