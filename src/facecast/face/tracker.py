"""The face tracker: mediapipe's face landmarker and face detector, on model files facecast ships.

The one module that talks to mediapipe. It runs the Tasks API of the installed
mediapipe (1.x) on MediaPipe's own face models, which ship inside facecast
(`face/models/`, Apache-2.0, see `NOTICE.md` there; nothing is downloaded).
They are the models of mediapipe 0.10.21, which facecast was built and
measured with, and the results are those of its legacy `solutions` API
(`benchmarks/landmarks.py` measures how close):

* `FaceLandmarker` — 478 face-mesh landmarks with iris per face, as
  `mp.solutions.face_mesh.FaceMesh(refine_landmarks=True)` gave them. Image mode
  finds faces afresh in every picture (portraits); video mode tracks the face
  from frame to frame (clips, rendered output).
* `FaceDetector` — face boxes from the short- or full-range face detector, as
  `mp.solutions.face_detection.FaceDetection` gave them.
* `PersonSegmenter` — the selfie-segmentation model's person confidence per pixel
  (`ImageSegmenter`), as `mp.solutions.selfie_segmentation` gave it: the cut-out.

Landmarks are mediapipe's normalised coordinates times the picture size:
(x * width, y * height, z * width), so the centre of pixel (0, 0) is at (0.5, 0.5).

mediapipe's C++ core logs to the stderr descriptor; the `facecast` command keeps
those lines off the terminal once, at start-up (`facecast.app.logs`): nothing here
redirects a descriptor, which raced between threads.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from typing import Any, Self

import numpy as np

MODELS = Path(__file__).resolve().parent / "models"
LANDMARKER_MODEL = MODELS / "face_landmarker.task"
DETECTOR_MODELS = {"short": MODELS / "face_detection_short_range.tflite",
                   "full": MODELS / "face_detection_full_range_sparse.tflite"}
SEGMENTATION_MODEL = MODELS / "selfie_segmentation.tflite"

#: The detectors' score thresholds. mediapipe 0.10.21's FaceDetection ignored its
#: min_detection_confidence and kept its graphs' own thresholds: 0.5 short range, 0.6 full range.
DETECTOR_THRESHOLDS = {"short": 0.5, "full": 0.6}
#: Video mode's timestamps step this far (milliseconds) per frame. The Tasks landmarker smooths
#: landmarks over time in video mode (the legacy face mesh did not); at this spacing its filter
#: passes every frame through unchanged. Tracking itself does not depend on time.
VIDEO_STEP_MS = 1_000_000_000
#: The Tasks graph counts time in int64 microseconds: start a fresh graph well before it overflows.
_VIDEO_MAX_MS = 2 ** 62 // 1000


#: mediapipe's vision package imports its drawing helpers, and they import matplotlib.pyplot: 40 MiB of memory and
#: about 0.9 s of start-up on the 2-core machine, for code facecast never calls. They are deferred: loaded on
#: first use, by the standard library's LazyLoader.
_DEFERRED = frozenset(f"mediapipe.tasks.python.vision.{name}" for name in ("drawing_utils", "drawing_styles"))


class _DeferDrawing(importlib.abc.MetaPathFinder):
    """Finds the `_DEFERRED` modules as usual but hands them a LazyLoader: the module object exists at once (its
    package binds it), its code runs when an attribute is first read."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name not in _DEFERRED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def _mediapipe() -> Any:
    """The mediapipe package, imported on first use with its drawing helpers deferred (`_DEFERRED`)."""
    if "mediapipe" not in sys.modules and not any(isinstance(f, _DeferDrawing) for f in sys.meta_path):
        sys.meta_path.insert(0, _DeferDrawing())
    import mediapipe

    return mediapipe


def _model(path: Path) -> bytes:
    """A model file's bytes (given to mediapipe as a buffer: native code never opens a path, which
    may hold characters it reads differently on Windows)."""
    return path.read_bytes()


def _image(rgb: np.ndarray):
    mp = _mediapipe()  # heavy (loads the native library): only when a model runs

    rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)


class _Graph:
    """A mediapipe task graph (`self._graph`) closed with the object: `close()` or a `with` block."""

    _graph: Any

    def close(self) -> None:
        if self._graph is not None:
            graph, self._graph = self._graph, None
            graph.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class FaceLandmarker(_Graph):
    """Face-mesh landmarks (478 with iris) of the faces in pictures or video frames.

    video=False: every picture alone (the legacy static_image_mode=True). video=True: the
    pictures are consecutive frames of one clip and the face is tracked from the previous
    frame's landmarks, detected again only when lost (static_image_mode=False); a new clip
    needs a new FaceLandmarker. A context manager; close() releases the graph.

    Against mediapipe 0.10.21, video mode differs most on the frame after a detection (the
    clip's second frame): about 1 % of the eye distance there, against 0.02-0.08 % on the rest.
    The Tasks graph builds that frame's region differently and exposes no option for it.
    """

    def __init__(self, video: bool = False, max_faces: int = 1, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5) -> None:
        self.video = video
        self._options = dict(num_faces=max_faces, min_face_detection_confidence=min_detection_confidence,
                             min_face_presence_confidence=min_tracking_confidence,
                             min_tracking_confidence=min_tracking_confidence)
        self._timestamp = 0
        self._graph = self._create()

    def _create(self):
        _mediapipe()
        from mediapipe.tasks.python import BaseOptions, vision  # heavy: see _image

        mode = vision.RunningMode.VIDEO if self.video else vision.RunningMode.IMAGE
        options = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_buffer=_model(LANDMARKER_MODEL)),
                                               running_mode=mode, **self._options)
        return vision.FaceLandmarker.create_from_options(options)

    def faces(self, rgb: np.ndarray) -> list[np.ndarray]:
        """(478, 3) float64 landmarks of every face found in an (H, W, 3+) uint8 RGB picture."""
        if self._graph is None:
            raise RuntimeError("FaceLandmarker is closed")
        image = _image(rgb)
        if not self.video:
            result = self._graph.detect(image)
        else:
            if self._timestamp > _VIDEO_MAX_MS:
                self.close()
                self._graph, self._timestamp = self._create(), 0
            result = self._graph.detect_for_video(image, self._timestamp)
            self._timestamp += VIDEO_STEP_MS
        height, width = rgb.shape[:2]
        scale = np.array([width, height, width], np.float64)
        return [np.array([(p.x, p.y, p.z) for p in face], np.float64) * scale for face in result.face_landmarks]


class FaceDetector(_Graph):
    """Face boxes from mediapipe's face detector: range "short" (faces within about 2 m, the face
    mesh's own detector) or "full" (smaller, farther faces). A context manager."""

    def __init__(self, model: str = "short") -> None:
        _mediapipe()
        from mediapipe.tasks.python import BaseOptions, vision  # heavy: see _image

        if model not in DETECTOR_MODELS:
            raise ValueError(f"face detector model must be one of {', '.join(DETECTOR_MODELS)}, got {model!r}")
        base = BaseOptions(model_asset_buffer=_model(DETECTOR_MODELS[model]))
        options = vision.FaceDetectorOptions(base_options=base, running_mode=vision.RunningMode.IMAGE,
                                             min_detection_confidence=DETECTOR_THRESHOLDS[model])
        self._graph = vision.FaceDetector.create_from_options(options)

    def boxes(self, rgb: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Face boxes (x, y, width, height) in pixels of an (H, W, 3+) uint8 RGB picture, best first."""
        if self._graph is None:
            raise RuntimeError("FaceDetector is closed")
        result = self._graph.detect(_image(rgb))
        return [(float(d.bounding_box.origin_x), float(d.bounding_box.origin_y),
                 float(d.bounding_box.width), float(d.bounding_box.height)) for d in result.detections]


class PersonSegmenter(_Graph):
    """Person-vs-background confidence from mediapipe's selfie-segmentation model (`ImageSegmenter`).

    The model was trained on people near the camera, which is what a portrait holds; it sees a
    small copy of the picture and the graph upsamples its mask to the picture's size (a soft edge
    that `facecast.face.cutout` refines). A context manager."""

    def __init__(self) -> None:
        _mediapipe()
        from mediapipe.tasks.python import BaseOptions, vision  # heavy: see _image

        options = vision.ImageSegmenterOptions(base_options=BaseOptions(model_asset_buffer=_model(SEGMENTATION_MODEL)),
                                               running_mode=vision.RunningMode.IMAGE,
                                               output_confidence_masks=True, output_category_mask=False)
        self._graph = vision.ImageSegmenter.create_from_options(options)

    def confidence(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W) float32 in 0..1, the chance that each pixel of an (H, W, 3+) uint8 RGB picture is the person."""
        if self._graph is None:
            raise RuntimeError("PersonSegmenter is closed")
        masks = self._graph.segment(_image(rgb)).confidence_masks
        return np.array(masks[-1].numpy_view(), dtype=np.float32).reshape(rgb.shape[:2])
