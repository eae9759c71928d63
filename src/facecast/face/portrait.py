"""Portrait analysis: find the face in one picture and build a framed `PortraitRig`.

Framing (`FRAMINGS`, the CLI's `--framing`) takes the output from the picture
itself: by default (`auto`) a square crop inside the picture around the head,
tightened so the face fills 30-60 % of the height; never rotated, never zoomed
out past the picture's edges (`frame_square`). `full` keeps the whole picture
and animates a square around the head that the renderer's output is pasted
back into (`PortraitRig.backdrop`). The legacy framing (`LEGACY_FRAMING`: eyes
levelled, the face a fixed 40 % of the height, the border stretched where the
crop leaves the picture) stays for the quality benchmark and offline tools,
whose numbers must remain comparable. mediapipe's 478 face-mesh landmarks
(with iris) are expressed in the crop's pixels. Landmarks use pixel-centre coordinates (the centre of pixel
(0, 0) is at 0.0, 0.0), as OpenCV does; z has the same pixel scale.

Detection runs mediapipe's face mesh (`face.tracker`, on model files shipped inside
facecast; nothing is downloaded). When it finds nothing (paintings, statues, cartoons, dark or
sideways pictures) it retries on padded, rotated, contrast-enhanced and
upscaled copies and on crops around faces found by mediapipe's face detector;
`PortraitRig.method` records which retry worked.

Hand-placed landmarks (`landmarks_json`, the CLI's `--landmarks points.json`)
are for portraits where detection fails. The file is a JSON object with eight
points in the ORIGINAL picture's pixel coordinates (x right, y down). Left and
right are the subject's sides: the subject's left eye appears on the image right.

    {
      "left_eye_outer":  [x, y],   "left_eye_inner":  [x, y],
      "right_eye_inner": [x, y],   "right_eye_outer": [x, y],
      "nose_tip":        [x, y],
      "mouth_left":      [x, y],   "mouth_right":     [x, y],
      "chin":            [x, y]
    }

A shipped mean face (`data/mean_face.npy`, built by `facecast.training.mean_face`) is
fitted to these points to give all 478 landmarks; method is "manual".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import cv2
import numpy as np

from facecast import face_regions as fr
from facecast.errors import InputError, NoFaceError, check_regular_file
from facecast.face.measure import eye_openness, mouth_opening
from facecast.face.tracker import FaceDetector, FaceLandmarker
from facecast.media import load_image
from facecast.rig import PortraitRig

MIN_SIZE, MAX_SIZE = 256, 1024
DETECT_MAX_SIDE = 2048        # larger pictures are shrunk before detection (speed, same result)
DETECT_MIN_SIDE = 512         # smaller ones are enlarged so the face detector sees enough pixels
FACE_CROP_SIZE = 512          # side of the face crops where face mesh looks again (retries, second pass)
#: A picture's shorter side must be at least this: face mesh "found" faces in a 16x16 picture by fitting noise
#: (landmarks strewn over the whole picture); a 64x64 one is still read correctly.
MIN_PICTURE_SIDE = 32
STABLE_FIT = 0.04             # mean landmark shift between two measurements, in eye distances, of a good fit
MAX_FACES = 8
# The legacy framing (LEGACY_FRAMING), as fractions of the crop's size. FACE_LENGTH is also the reference
# framing head motion is expressed in (extraction measures head x, y as fractions of such a frame).
EYE_Y = 0.42                  # eye-centre height
FACE_LENGTH = 0.40            # forehead-top (landmark 10) to chin, measured in 3D so pitch does not shrink it
#: What `--framing` offers (see `frame_square`); LEGACY_FRAMING is for benchmarks and offline tools only.
FRAMINGS = ("auto", "face", "picture", "full")
DEFAULT_FRAMING = "auto"
LEGACY_FRAMING = "fixed"
AUTO_FACE_MIN, AUTO_FACE_MAX = 0.30, 0.60  # `auto`: the face's share (forehead to chin) of the output height
HAIR_ABOVE = 0.50             # the head's top above the forehead landmark, in face lengths
HEAD_WIDTH = 1.20             # the head's width (ears, hair) over the face oval's
CHIN_BELOW = 0.08             # the head's bottom below the chin, in face lengths
HEAD_CENTRE_Y = 0.40          # the head's centre height in a square with room to spare (shoulders below)
FACE_MARGIN = 0.05            # the face box (kept in the frame, invented if the picture cuts it off), face lengths
FEATHER = 0.03                # `full`: paste-back seam width, share of the animated square
MIN_FACE_PX = 64              # a face (forehead to chin) smaller than this in the picture earns a warning
CLOSED_EYES = 0.15            # eye openness (lid gap over eye width, ~0.3 open) below which eyes count as closed
#: Lips parted wider than this (inner gap over face height) earn a warning: the renderer shuts them
#: (`render.shut_lips`), and a mouth this open can shut with a fold at its corners (docs/shut_lips.png).
WIDE_OPEN_MOUTH = 0.08
NEUTRAL_GREY = 128            # background under transparent pixels while detecting
MEAN_FACE_PATH = Path(__file__).resolve().parent / "data" / "mean_face.npy"

MANUAL_POINTS = {
    "left_eye_outer": fr.LEFT_EYE_OUTER, "left_eye_inner": fr.LEFT_EYE_INNER,
    "right_eye_inner": fr.RIGHT_EYE_INNER, "right_eye_outer": fr.RIGHT_EYE_OUTER,
    "nose_tip": fr.NOSE_TIP, "mouth_left": fr.MOUTH_LEFT, "mouth_right": fr.MOUTH_RIGHT,
    "chin": fr.CHIN,
}
log = logging.getLogger("facecast.portrait")
_NO_FACE_HINT = ("try a clearer, front-facing picture, or give the face by hand with "
                 "--landmarks points.json (see `facecast render --help`)")


# ----------------------------------------------------------------------------- loading

def _as_image_array(source: np.ndarray) -> np.ndarray:
    """Validate an in-memory picture and normalise it to RGB/RGBA uint8."""
    if source.dtype != np.uint8:
        raise InputError(f"portrait array must be uint8, got {source.dtype}")
    if source.ndim == 3 and source.shape[2] == 1:
        source = source[..., 0]
    if source.ndim == 2:
        source = np.repeat(source[..., None], 3, axis=2)
    if source.ndim != 3 or source.shape[2] not in (3, 4) or min(source.shape[:2]) < 1:
        raise InputError(f"portrait array must be (H,W), (H,W,3) or (H,W,4), got {source.shape}")
    return np.ascontiguousarray(source)


# ----------------------------------------------------------------------------- geometry

def _affine(matrix: np.ndarray) -> np.ndarray:
    """2x3 -> 3x3 homogeneous."""
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


def _scale_matrix(factor_x: float, factor_y: float) -> np.ndarray:
    """Pixel-centre mapping of cv2.resize by these factors."""
    return np.array([[factor_x, 0, 0.5 * factor_x - 0.5], [0, factor_y, 0.5 * factor_y - 0.5], [0, 0, 1]])


def _translate(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0, dx], [0, 1.0, dy], [0, 0, 1]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N,3) points through a 3x3 similarity/affine; z scales with the linear part."""
    out = np.empty_like(points)
    out[:, :2] = points[:, :2] @ matrix[:2, :2].T + matrix[:2, 2]
    out[:, 2] = points[:, 2] * np.sqrt(abs(np.linalg.det(matrix[:2, :2])))
    return out


def _eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(subject's right eye, subject's left eye) centres from the eye corners, xy only."""
    right = points[[fr.RIGHT_EYE_OUTER, fr.RIGHT_EYE_INNER], :2].mean(axis=0)
    left = points[[fr.LEFT_EYE_OUTER, fr.LEFT_EYE_INNER], :2].mean(axis=0)
    return right, left


# ----------------------------------------------------------------------------- detection

@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Kept for its callers; touches no file descriptor.

    mediapipe's C++ graphs (TFLite, absl) log INFO/WARNING lines straight to the stderr
    descriptor. Pointing descriptor 2 at /dev/null around each analysis raced between threads:
    concurrent portrait swaps left the live daemon's stderr on /dev/null for good. The CLI keeps
    native logs off the terminal instead, once, at start-up (`facecast.app.logs`)."""
    yield


class _Detectors:
    """mediapipe graphs for one analysis, created on first use and closed together (a context manager)."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._mesh: FaceLandmarker | None = None
        self._face_detection: dict[str, FaceDetector] = {}

    def __enter__(self) -> _Detectors:
        self._stack.enter_context(native_stderr_silenced())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def mesh(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Face-mesh faces as (478,3) arrays in pixel-centre coordinates of `rgb`."""
        if self._mesh is None:
            self._mesh = self._stack.enter_context(FaceLandmarker(max_faces=MAX_FACES))
        return [face - (0.5, 0.5, 0.0) for face in self._mesh.faces(rgb)]

    def face_boxes(self, rgb: np.ndarray, model: str) -> list[tuple[float, float, float, float]]:
        """Face-detector boxes (x, y, w, h) in pixels of `rgb`."""
        if model not in self._face_detection:
            self._face_detection[model] = self._stack.enter_context(FaceDetector(model))
        return self._face_detection[model].boxes(rgb)


def _detection_base(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB picture for detection (alpha composited on grey, resized into a useful range) and its
    3x3 mapping from original pixels to detection pixels."""
    rgb = image[..., :3]
    if image.shape[2] == 4:
        alpha = image[..., 3:4].astype(np.float32) / 255.0
        rgb = (rgb * alpha + NEUTRAL_GREY * (1.0 - alpha) + 0.5).astype(np.uint8)
    h, w = rgb.shape[:2]
    long_side = max(h, w)
    factor = 1.0
    if long_side > DETECT_MAX_SIDE:
        factor = DETECT_MAX_SIDE / long_side
    elif long_side < DETECT_MIN_SIDE:
        factor = DETECT_MIN_SIDE / long_side
    if factor == 1.0:
        return np.ascontiguousarray(rgb), np.eye(3)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    resized = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
    return resized, _scale_matrix(size[0] / w, size[1] / h)


def _clahe(rgb: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def _auto_gamma(rgb: np.ndarray) -> np.ndarray:
    """Gamma that brings the mean brightness to mid-grey (lifts dark pictures, tames washed-out ones)."""
    mean = float(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).mean()) / 255.0
    gamma = np.log(0.5) / np.log(np.clip(mean, 0.02, 0.98))
    table = np.clip((np.arange(256) / 255.0) ** gamma * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(rgb, table)


def _stretch_contrast(rgb: np.ndarray) -> np.ndarray:
    low, high = np.percentile(rgb, (1, 99))
    if high - low < 1:
        return rgb
    return np.clip((rgb.astype(np.float32) - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)


def _grey_equalised(rgb: np.ndarray) -> np.ndarray:
    grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)


def _pad(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add a border of a quarter of the long side so a face that fills the frame gets context."""
    border = max(rgb.shape[:2]) // 4
    padded = cv2.copyMakeBorder(rgb, border, border, border, border, cv2.BORDER_CONSTANT,
                                value=(NEUTRAL_GREY,) * 3)
    return padded, _translate(border, border)


def _rotate(rgb: np.ndarray, degrees: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotate clockwise by 90/180/270 and give the mapping from the unrotated pixels."""
    h, w = rgb.shape[:2]
    code, forward = {90: (cv2.ROTATE_90_CLOCKWISE, [[0, -1, h - 1], [1, 0, 0]]),
                     180: (cv2.ROTATE_180, [[-1, 0, w - 1], [0, -1, h - 1]]),
                     270: (cv2.ROTATE_90_COUNTERCLOCKWISE, [[0, 1, 0], [-1, 0, w - 1]])}[degrees]
    return cv2.rotate(rgb, code), _affine(np.array(forward, dtype=np.float64))


def _variants(base: np.ndarray, detectors: _Detectors) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Detection attempts in order of cost and likelihood: (name, picture, mapping from base pixels).

    Lazy, so the usual photo costs a single detection attempt."""
    identity = np.eye(3)
    yield "", base, identity
    padded, pad_matrix = _pad(base)
    yield "pad", padded, pad_matrix
    for degrees in (90, 270, 180):
        rotated, rot_matrix = _rotate(padded, degrees)
        yield f"rot{degrees}", rotated, rot_matrix @ pad_matrix
    for name, enhance in (("clahe", _clahe), ("gamma", _auto_gamma), ("contrast", _stretch_contrast),
                          ("grey", _grey_equalised)):
        enhanced = enhance(base)
        yield name, enhanced, identity
        yield f"{name}+pad", *_pad(enhanced)
    if max(base.shape[:2]) <= DETECT_MAX_SIDE // 2:
        upscale = cv2.resize(base, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        yield "upscale", upscale, _scale_matrix(2, 2)
    for model in ("full", "short"):
        for picture_name, picture in (("", base), ("+clahe", _clahe(base))):
            for x, y, w, h in detectors.face_boxes(picture, model):
                yield f"detect-{model}{picture_name}", *_crop_around(picture, x, y, w, h)


def _crop_around(rgb: np.ndarray, x: float, y: float, w: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Square crop of 2.2x a detector box, edge-replicated where it leaves the picture."""
    scale = FACE_CROP_SIZE / (2.2 * max(w, h))
    centre = FACE_CROP_SIZE / 2
    matrix = np.array([[scale, 0, centre - scale * (x + w / 2)], [0, scale, centre - scale * (y + h / 2)]])
    crop = cv2.warpAffine(rgb, matrix, (FACE_CROP_SIZE, FACE_CROP_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, _affine(matrix)


def _bbox_area(points: np.ndarray) -> float:
    extent = points[:, :2].max(axis=0) - points[:, :2].min(axis=0)
    return float(extent[0] * extent[1])


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two detected faces are the same face (their eye centres are within half an eye distance)."""
    a_right, a_left = _eye_centres(a)
    b_right, b_left = _eye_centres(b)
    iod = np.linalg.norm(a_left - a_right)
    return bool(np.linalg.norm((a_right + a_left) / 2 - (b_right + b_left) / 2) < 0.5 * iod)


def _detect_faces(base: np.ndarray, to_base: np.ndarray, detectors: _Detectors,
                  index: int) -> tuple[list[np.ndarray], str]:
    """All faces as (478,3) landmarks in original pixels, largest first, and the method that found them.

    Face mesh sometimes fits a sideways or odd face with a wrong pose that it then
    reproduces on its own crop. A good fit is stable: the chosen face (faces[index]) is
    measured twice more on its aligned crop, and an attempt is accepted at once when the
    two agree. Otherwise the most stable attempt wins, then any unconfirmed detection."""
    best: tuple[float, list[np.ndarray], str] | None = None
    unconfirmed: tuple[list[np.ndarray], str] = ([], "")
    most: tuple[list[np.ndarray], str] = ([], "")    # the attempt that found the most faces (for index's error)
    for retry, picture, base_to_picture in _variants(base, detectors):
        found = detectors.mesh(picture)
        if not found:
            continue
        to_original = np.linalg.inv(base_to_picture @ to_base)
        faces: list[np.ndarray] = []
        for face in sorted((_apply(to_original, f) for f in found), key=_bbox_area, reverse=True):
            if not any(_overlaps(kept, face) for kept in faces):
                faces.append(face)
        method = "face_mesh" + (f"+retry:{retry}" if retry else "")
        if index >= len(faces):   # a retry (a turned picture) may find fewer faces than an attempt before it
            most = most if len(most[0]) >= len(faces) else (faces, method)
            continue
        first = _refine(base, to_base, faces[index], detectors)
        second = None if first is None else _refine(base, to_base, first, detectors)
        if second is None:
            unconfirmed = unconfirmed if unconfirmed[0] else (faces, method)
            continue
        right, left = _eye_centres(first)
        instability = float(np.linalg.norm(second[:, :2] - first[:, :2], axis=1).mean() / np.linalg.norm(left - right))
        faces[index] = second
        if instability < STABLE_FIT:
            return faces, method
        if best is None or instability < best[0]:
            best = (instability, faces, method)
    return best[1:] if best else unconfirmed if unconfirmed[0] else most


def _refine(base: np.ndarray, to_base: np.ndarray, face: np.ndarray, detectors: _Detectors) -> np.ndarray | None:
    """Face mesh again on an upright, framed crop of the face, or None when it does not find it there.

    Landmarks from sideways, tiny or retried pictures are rough; the second pass on the
    crop the renderer will see gives accurate ones."""
    to_crop = _alignment(face, FACE_CROP_SIZE) @ np.linalg.inv(to_base)
    crop = cv2.warpAffine(base, (to_crop @ to_base)[:2], (FACE_CROP_SIZE, FACE_CROP_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    expected_right, expected_left = _eye_centres(_apply(to_crop, face))
    for candidate in detectors.mesh(crop):
        right, left = _eye_centres(candidate)
        if max(np.linalg.norm(right - expected_right), np.linalg.norm(left - expected_left)) \
                < 0.25 * np.linalg.norm(expected_left - expected_right):
            return _apply(np.linalg.inv(to_crop), candidate)
    return None


# ----------------------------------------------------------------------------- manual landmarks

def _load_mean_face() -> np.ndarray:
    return np.load(MEAN_FACE_PATH).astype(np.float64)


def _read_manual_points(path: Path, width: int, height: int) -> np.ndarray:
    """Validated (8,2) points in MANUAL_POINTS order, in original pixels."""
    if path.exists():
        check_regular_file(path, "landmarks")   # a folder, pipe or device: one line, never a hang
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"landmarks file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"landmarks file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"landmarks file {path} must hold a JSON object with the keys {', '.join(MANUAL_POINTS)}")
    missing = [key for key in MANUAL_POINTS if key not in data]
    if missing:
        raise InputError(f"landmarks file {path} is missing {', '.join(missing)} "
                         f"(all of {', '.join(MANUAL_POINTS)} are needed)")
    points = []
    for key in MANUAL_POINTS:
        value = data[key]
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value)):
            raise InputError(f"landmarks file {path}: {key} must be [x, y] pixel numbers, got {json.dumps(value)}")
        x, y = value
        if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
            raise InputError(f"landmarks file {path}: {key} [{x}, {y}] is outside the {width}x{height} picture")
        points.append((float(x), float(y)))
    points = np.array(points)
    _check_manual_geometry(points, path)
    return points


def _check_manual_geometry(points: np.ndarray, path: Path) -> None:
    """Reject point sets that cannot be a face: coincident eyes, swapped sides, chin not below the eyes."""
    p = dict(zip(MANUAL_POINTS, points))
    right_eye = (p["right_eye_outer"] + p["right_eye_inner"]) / 2
    left_eye = (p["left_eye_outer"] + p["left_eye_inner"]) / 2
    eye_vector = left_eye - right_eye
    iod = float(np.linalg.norm(eye_vector))
    if iod < 4:
        raise InputError(f"landmarks file {path}: the eyes are {iod:.1f} px apart; place the points on the eye corners")
    mouth = (p["mouth_left"] + p["mouth_right"]) / 2
    down = np.array([-eye_vector[1], eye_vector[0]]) / iod      # eye line turned 90 deg towards the chin
    eye_mid = (left_eye + right_eye) / 2
    if np.dot(p["chin"] - eye_mid, down) < 0.5 * iod or np.dot(mouth - eye_mid, down) < 0.3 * iod:
        raise InputError(f"landmarks file {path}: mouth and chin must lie below the eyes, and the subject's "
                         "left eye on the image right (left/right are the subject's sides)")
    outer = np.linalg.norm(p["left_eye_outer"] - p["right_eye_outer"])
    if outer <= np.linalg.norm(p["left_eye_inner"] - p["right_eye_inner"]):
        raise InputError(f"landmarks file {path}: the outer eye corners must be farther apart than the inner ones")


def _fit_mean_face(points: np.ndarray) -> np.ndarray:
    """Least-squares similarity (no shear, no mirroring) of the mean face onto the hand-placed
    points -> (478,3) landmarks in original pixels. Complex numbers: point = a * template + b."""
    template = _load_mean_face()
    source = template[list(MANUAL_POINTS.values()), :2] @ [1, 1j]
    target = points @ [1, 1j]
    (a, b), *_ = np.linalg.lstsq(np.stack([source, np.ones_like(source)], axis=1), target, rcond=None)
    matrix = np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag], [0, 0, 1]])
    return _apply(matrix, template)


# ----------------------------------------------------------------------------- alignment

def _alignment(points: np.ndarray, size: int) -> np.ndarray:
    """3x3 similarity from original pixels to the output crop: eyes level, face framed with hair and shoulders."""
    right_eye, left_eye = _eye_centres(points)
    dx, dy = left_eye - right_eye
    angle = np.arctan2(dy, dx)
    face_length = float(np.linalg.norm(points[fr.FOREHEAD_TOP] - points[fr.CHIN]))
    scale = FACE_LENGTH * size / face_length
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    linear = np.array([[cos, sin], [-sin, cos]])                 # rotate by -roll, then scale
    # Centre horizontally on the face outline (not the eyes) so turned heads stay centred.
    oval_x = (points[list(fr.FACE_OVAL), :2] @ linear.T)[:, 0]
    eye_mid = ((right_eye + left_eye) / 2) @ linear.T
    offset = np.array([(size - 1) / 2 - (oval_x.min() + oval_x.max()) / 2,
                       EYE_Y * size - eye_mid[1]])
    return _affine(np.hstack([linear, offset[:, None]]))


def _warp(image: np.ndarray, matrix: np.ndarray, size: int, extend: bool = False) -> np.ndarray:
    """Resample the crop: area-shrink first when reducing (warpAffine has no area filter), Lanczos otherwise.

    Outside the picture RGBA becomes transparent. RGB is filled: by default (the legacy framing) with its
    edge replicated and blurred progressively; with `extend` by a mirrored extension that fades into a blur
    (`_extend_outside`), which leaves no streaks."""
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64)
    source_corners = (np.linalg.inv(matrix) @ corners.T).T[:, :2]
    scale = np.sqrt(abs(np.linalg.det(matrix[:2, :2])))
    margin = 4 / scale + 2
    h, w = image.shape[:2]
    # Only the part of the picture the crop sees (at least one pixel, for the edge replicate).
    x0, y0 = np.floor(source_corners.min(axis=0) - margin).astype(int)
    x1, y1 = np.ceil(source_corners.max(axis=0) + margin).astype(int)
    x0, y0 = int(np.clip(x0, 0, w - 1)), int(np.clip(y0, 0, h - 1))
    x1, y1 = int(np.clip(x1, x0 + 1, w)), int(np.clip(y1, y0 + 1, h))
    region = image[y0:y1, x0:x1]
    matrix = matrix @ _translate(x0, y0)
    interpolation = cv2.INTER_LANCZOS4
    if scale < 1:
        new_size = (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale)))
        shrink = _scale_matrix(new_size[0] / region.shape[1], new_size[1] / region.shape[0])
        region = cv2.resize(region, new_size, interpolation=cv2.INTER_AREA)
        matrix = matrix @ np.linalg.inv(shrink)
        interpolation = cv2.INTER_CUBIC
    m = matrix[:2]
    rgb = cv2.warpAffine(np.ascontiguousarray(region[..., :3]), m, (size, size), flags=interpolation,
                         borderMode=cv2.BORDER_REFLECT_101 if extend else cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(np.full(region.shape[:2], 255, np.uint8), m, (size, size),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if image.shape[2] == 4:
        alpha = cv2.warpAffine(np.ascontiguousarray(region[..., 3]), m, (size, size), flags=interpolation,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return np.dstack([rgb, np.minimum(alpha, inside)])
    if inside.min() == 255:
        return rgb
    return (_extend_outside if extend else _soften_outside)(rgb, inside, size)


def _soften_outside(rgb: np.ndarray, inside: np.ndarray, size: int) -> np.ndarray:
    outside = (inside < 128).astype(np.uint8)
    distance = cv2.distanceTransform(outside, cv2.DIST_L2, 5)
    weight = np.clip(distance / (0.08 * size), 0, 1)[..., None]
    blurred = cv2.GaussianBlur(rgb, (0, 0), sigmaX=0.04 * size)
    blurred = cv2.GaussianBlur(blurred, (0, 0), sigmaX=0.04 * size)
    return (rgb * (1 - weight) + blurred * weight + 0.5).astype(np.uint8)


def _extend_outside(rgb: np.ndarray, inside: np.ndarray, size: int) -> np.ndarray:
    """Invented pixels (a mirrored extension beyond the picture's edge) fade from the mirror into a blur of
    the picture's own colours: continuous at the edge, no smeared streaks, no recognisable mirrored face."""
    outside = (inside < 128).astype(np.uint8)
    distance = cv2.distanceTransform(outside, cv2.DIST_L2, 5)
    weight = np.clip(distance / (0.025 * size), 0, 1)[..., None]   # the mirror only bridges the edge
    # the blur is taken from the picture's pixels only (normalised convolution), so it carries no mirror
    sigma = 0.05 * size
    known = (1 - outside).astype(np.float32)
    blurred = cv2.GaussianBlur(rgb.astype(np.float32) * known[..., None], (0, 0), sigmaX=sigma)
    support = cv2.GaussianBlur(known, (0, 0), sigmaX=sigma)[..., None]
    mirrored_blur = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), sigmaX=sigma)
    # far from the picture its own blur has no support: the blurred mirror takes over there
    trust = np.clip(support * 4, 0, 1)
    background = blurred / np.maximum(support, 1e-6) * trust + mirrored_blur * (1 - trust)
    return np.clip(rgb * (1 - weight) + background * weight + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- framing from the picture

def _face_length(points: np.ndarray) -> float:
    """Forehead top to chin in the picture plane (what a viewer sees as the face's height)."""
    return float(np.linalg.norm(points[fr.FOREHEAD_TOP, :2] - points[fr.CHIN, :2]))


def head_boxes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(whole head, face) boxes [x0, y0, x1, y1] in pixel-edge coordinates of the landmarks' picture.

    The head adds hair above the forehead, ears and hair beside the oval and a little below the chin,
    along the face's own axes (a tilted head gets the box of its tilted outline). The face box is the
    oval with a thin margin: what a frame must never cut off."""
    oval = points[list(fr.FACE_OVAL), :2] + 0.5
    top, chin = points[fr.FOREHEAD_TOP, :2] + 0.5, points[fr.CHIN, :2] + 0.5
    length = _face_length(points)
    up = (top - chin) / max(length, 1e-6)
    centre = oval.mean(0)
    wide = centre + (oval - centre) * HEAD_WIDTH
    hair = wide[(wide - centre) @ up > 0] + up * HAIR_ABOVE * length
    head = np.vstack([wide, hair, chin - up * CHIN_BELOW * length])
    face = np.vstack([oval, top, chin])
    margin = FACE_MARGIN * length
    return (np.concatenate([head.min(0), head.max(0)]),
            np.concatenate([face.min(0) - margin, face.max(0) + margin]))


def frame_square(points: np.ndarray, width: int, height: int, framing: str,
                 invent: bool = True) -> tuple[float, float, float]:
    """The output square (x0, y0, side) in pixel-edge coordinates of a width x height picture.

    auto: the largest square around the head the picture holds, its side kept between the face over
    AUTO_FACE_MAX (and the whole head) and the face over AUTO_FACE_MIN; face: the tightest square holding
    the whole head; picture: the largest square inside the picture. Every mode stays inside the picture
    (no zooming out past its edges); only a face the picture cuts off pushes the square beyond it, and
    only with `invent` (`full` keeps its animated square inside)."""
    head, face = head_boxes(points)
    length = _face_length(points)
    short = min(width, height)
    head_side = float(max(head[2] - head[0], head[3] - head[1]))
    if framing == "face":
        side = head_side
    elif framing == "picture":
        side = float(short)
    else:
        side = float(np.clip(short, max(length / AUTO_FACE_MAX, head_side), length / AUTO_FACE_MIN))
    side = min(side, short)
    if invent:
        side = max(side, float(face[2] - face[0]), float(face[3] - face[1]))
    x0 = (head[0] + head[2]) / 2 - side / 2
    y0 = (head[1] + head[3]) / 2 - HEAD_CENTRE_Y * side
    if head[3] - head[1] <= side:
        y0 = min(max(y0, float(head[3]) - side), float(head[1]))   # the whole head, hair and chin
    else:
        y0 = max(float(head[1]), float(face[3]) - side)            # as much hair as the chin leaves room for
    x0, y0 = _inside(x0, side, width), _inside(y0, side, height)
    if invent:
        x0 = min(max(x0, float(face[2]) - side), float(face[0]))
        y0 = min(max(y0, float(face[3]) - side), float(face[1]))
    return x0, y0, side


def _inside(start: float, side: float, extent: int) -> float:
    """The start of a span of `side` moved inside [0, extent] (centred on it when it is longer)."""
    if side >= extent:
        return (extent - side) / 2
    return float(np.clip(start, 0, extent - side))


def _crop_matrix(x0: float, y0: float, side: float, size: int) -> np.ndarray:
    """3x3 from picture pixels to the output crop of the square (x0, y0, side), pixel-centre coordinates."""
    k = size / side
    return np.array([[k, 0, (0.5 - x0) * k - 0.5], [0, k, (0.5 - y0) * k - 0.5], [0, 0, 1]])


def _motion_scale(landmarks: np.ndarray, size: int) -> float:
    """How much larger the face is in this crop than in the reference framing head motion is given in."""
    return float(np.linalg.norm(landmarks[fr.FOREHEAD_TOP] - landmarks[fr.CHIN])) / (FACE_LENGTH * size)


def _full_rig(image: np.ndarray, face: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                      tuple[int, int]]:
    """`full`: the whole picture with its longer side = size (even sides, as video encoders need), and the
    animated square around the head cut from it at whole pixels, so rendered pixels that do not move equal
    the backdrop's exactly. Returns (backdrop, square, picture -> square matrix, square's top-left)."""
    h, w = image.shape[:2]
    k = size / max(w, h)
    width, height = (size, max(2, 2 * round(h * k / 2))) if w >= h else (max(2, 2 * round(w * k / 2)), size)
    backdrop = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
    x0, y0, side = frame_square(face, w, h, "auto", invent=False)
    fx, fy = width / w, height / h
    square = max(1, min(round(side * min(fx, fy)), width, height))
    left = int(np.clip(round(x0 * fx), 0, width - square))
    top = int(np.clip(round(y0 * fy), 0, height - square))
    matrix = _translate(-left, -top) @ _scale_matrix(fx, fy)
    return backdrop, backdrop[top:top + square, left:left + square].copy(), matrix, (left, top)


def _warn_about(face: np.ndarray, label: str) -> None:
    """One line for each thing about the picture that will look wrong, and what to try."""
    openness = max(eye_openness(face, "left"), eye_openness(face, "right"))
    if openness < CLOSED_EYES:
        log.warning("the eyes in %s look closed (openness %.2f): blinks and gaze will not show; "
                    "a picture with open eyes animates better", label, openness)
    gap = mouth_opening(face)
    if gap > WIDE_OPEN_MOUTH:
        log.warning("the mouth in %s is wide open (lips %.2f of the face's height apart): it is shut before "
                    "animating and may show a fold at its corners; a picture with the lips together looks best",
                    label, gap)
    length = _face_length(face)
    if length < MIN_FACE_PX:
        log.warning("the face in %s is only %d px tall (forehead to chin): the output will be blurry and "
                    "its details rough; try a larger picture or one taken closer", label, round(length))


# ----------------------------------------------------------------------------- entry point

def analyze_portrait(source: str | Path | np.ndarray, size: int = 512, face_index: int | None = None,
                     landmarks_json: str | Path | None = None, framing: str = DEFAULT_FRAMING) -> PortraitRig:
    """Find the face (or use hand-placed points) and return the portrait rig framed as `framing` says.

    face_index picks among several faces ordered by size (0 = largest, the default). framing is one of
    FRAMINGS (see `frame_square`) or LEGACY_FRAMING, which benchmarks and offline tools keep so their
    numbers stay comparable."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise InputError(f"portrait size must be between {MIN_SIZE} and {MAX_SIZE} px, got {size}")
    if framing not in FRAMINGS and framing != LEGACY_FRAMING:
        raise InputError(f"unknown framing '{framing}': use {', '.join(FRAMINGS)}")
    if isinstance(source, np.ndarray):
        image, name, label = _as_image_array(source), "portrait array", "the portrait array"
    else:
        image, name, label = load_image(source), str(source), Path(source).name
    if min(image.shape[:2]) < MIN_PICTURE_SIDE:
        raise InputError(f"{label} is {image.shape[1]}x{image.shape[0]} px: too small to animate (use a picture "
                         f"at least {MIN_PICTURE_SIDE} px on its shorter side; 256 px or more looks good)")
    index = 0 if face_index is None else face_index
    if landmarks_json is not None:
        points = _fit_mean_face(_read_manual_points(Path(landmarks_json), image.shape[1], image.shape[0]))
        _check_face_index(index, 1, label)
        face, face_count, method = points, 1, "manual"
    else:
        base, to_base = _detection_base(image)
        with _Detectors() as detectors:
            faces, method = _detect_faces(base, to_base, detectors, index)
        if not faces:
            raise NoFaceError(f"no face found in {label}: {_NO_FACE_HINT}")
        _check_face_index(index, len(faces), label)
        face, face_count = faces[index], len(faces)
    height, width = image.shape[:2]
    if framing == LEGACY_FRAMING:
        matrix = _alignment(face, size)
        return PortraitRig(image=_warp(image, matrix, size), landmarks=_apply(matrix, face).astype(np.float32),
                           source=name, face_count=face_count, method=method, framing=framing,
                           transform=matrix, picture_size=(width, height))
    _warn_about(face, label)
    backdrop, placement = None, (0, 0)
    if framing == "full":
        backdrop, crop, matrix, placement = _full_rig(image, face, size)
    else:
        matrix = _crop_matrix(*frame_square(face, width, height, framing), size)
        crop = _warp(image, matrix, size, extend=True)
        invented = _outside_share(matrix, size, width, height)
        if invented > 0:
            log.warning("the picture cuts off the face in %s: %.0f %% of the frame lies beyond its edge and is "
                        "%s; a picture with room around the face avoids that", label, 100 * invented,
                        "left transparent" if image.shape[2] == 4 else "filled in (mirrored and blurred)")
    landmarks = _apply(matrix, face).astype(np.float32)
    return PortraitRig(image=crop, landmarks=landmarks, source=name, face_count=face_count, method=method,
                       framing=framing, transform=matrix, picture_size=(width, height), backdrop=backdrop,
                       placement=placement, motion_scale=_motion_scale(landmarks, crop.shape[0]))


def _outside_share(matrix: np.ndarray, size: int, width: int, height: int) -> float:
    """Share of the crop's pixels whose centre lies outside the width x height picture."""
    centres = np.arange(size, dtype=np.float64)
    inverse = np.linalg.inv(matrix)
    xs = centres * inverse[0, 0] + inverse[0, 2]   # the crop is axis-aligned: x depends on the column alone
    ys = centres * inverse[1, 1] + inverse[1, 2]
    inside_x = ((xs >= -0.5) & (xs <= width - 0.5)).mean()
    inside_y = ((ys >= -0.5) & (ys <= height - 0.5)).mean()
    return float(1 - inside_x * inside_y)


def _check_face_index(index: int, face_count: int, label: str) -> None:
    if not 0 <= index < face_count:
        raise InputError(f"face_index {index} is out of range: found {face_count} face"
                         f"{'s' if face_count != 1 else ''} in {label} (use 0..{face_count - 1}, 0 = largest)")
