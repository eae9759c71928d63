"""Motion extraction: recover facecast's motion representation from a real talking video.

Why: learned generators need real motion to train on, and every generator
needs real motion to be judged against. Extraction measures the face the same
way the renderer moves it, so extracted motion re-renders faithfully:

* landmarks: mediapipe's face mesh (478 points with iris, `face.tracker`) in video mode, per frame;
  frames where the face is lost are filled by linear interpolation between the
  nearest found frames (held at the ends) and counted;
* head pose: a rigid 3-D similarity fit (Umeyama) of the upper-face landmarks
  (which expressions do not move) to the shipped mean face (`data/mean_face.npy`),
  expressed relative to a reference frame; translation and distance are given
  the way the renderer applies them (roll about the neck pivot, zoom about the
  face centre, then a shift in portrait-frame fractions);
* expressions: the frame's landmarks are brought into the reference frame's
  head pose (the fitted rotation, scale and shift removed) and their
  displacements are fitted by bounded least squares with the face model's
  per-channel landmark displacements (`facecast.face_model`, which the renderer
  draws) built on the reference frame's landmarks, so a channel means here what
  it does when rendered;
* blinks and eyeWide from each eye's openness relative to the reference frame
  (inverting the renderer's measured blink response); gaze from the iris
  centres relative to the eye corners, in the renderer's gaze scale;
* visemes and voice level are the audio's, not the face's: `facecast extract`
  (`app/extract.py`) and the dataset add them from the voice analysis
  (`speech.voice`), which this module does not know about.

The reference frame plays the portrait's part: ``"neutral"`` (the default)
picks a frame with eyes open, the head near its median pose and the mouth
most closed, so the motion suits any neutral portrait; an integer picks that
frame (0: re-render on the video's first frame).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

from facecast import face_regions as fr
from facecast.errors import InputError, NoFaceError, check_regular_file
from facecast.face.measure import FaceMeasurer, eye_openness, mouth_opening
from facecast.face.portrait import FACE_LENGTH, MEAN_FACE_PATH, native_stderr_silenced
from facecast.face_model import (
    EYE_WIDE_LIFT,
    GAZE_REF_DEG,
    GAZE_SHIFT_X,
    GAZE_SHIFT_Y,
    NECK_PIVOT_BELOW_CHIN,
    FaceFrame,
    landmark_displacements,
    shut_mouth,
)
from facecast.media import FFMPEG_ERRORS, error_reason
from facecast.motion import EXPRESSION_CHANNELS, VISEMES, Blink, Gaze, HeadPose, MotionFrame

#: The lip landmarks `Extraction.lip_shape` keeps: outer contour, then inner.
LIP_POINTS: tuple[int, ...] = fr.LIPS_OUTER + fr.LIPS_INNER

#: Bump when extraction changes what it produces (dataset caches key on it).
EXTRACTION_VERSION = 1

#: Upper-face landmarks that expressions barely move: forehead, nose ridge and wings,
#: eye corners, cheekbones, temples. The rigid head fit uses only these.
RIGID_POINTS: tuple[int, ...] = (
    10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 98, 327, 33, 133, 362, 263,
    116, 345, 123, 352, 234, 454, 127, 356, 162, 389, 21, 251, 54, 284, 103, 332, 67, 297, 109, 338,
)
#: Expression channels fitted from landmarks. Lid channels (eyeWide, eyeSquint) are not:
#: blinks move the same points; eyeWide comes from eye openness instead.
FITTED_CHANNELS: tuple[str, ...] = tuple(c for c in EXPRESSION_CHANNELS if not c.startswith(("eyeWide", "eyeSquint")))
#: Ridge weight relative to the basis' mean squared column norm: keeps near-duplicate
#: channels (e.g. jawOpen vs mouthLowerDown) from trading large opposite values on noise.
RIDGE = 1e-4
#: Coordinate-descent sweeps of the box-constrained least squares (converged well before).
SOLVER_SWEEPS = 60
#: Inner-lip points count this much more than other points: the lip gap is what viewers
#: judge lip sync by, and the rest of the mouth is many more points.
INNER_LIP_WEIGHT = 3.0
#: Weight of the inner-lip gap (lower minus upper lip centre) as one extra row, in points:
#: the gap is what face_measure.mouth_opening and viewers read lip sync from.
GAP_WEIGHT = 100.0
#: A point takes part in the expression fit when some channel moves it this far (face heights).
MIN_CHANNEL_MOTION = 0.003
#: The renderer's blink response as the face mesh reads it: (blink, eye openness over open
#: openness) for rendered blinks, averaged over four portraits (the mesh never sees a rendered
#: eye fully shut: ~0.45 at blink 1). Inverted to read blinks, so re-rendered blinks measure
#: like the original; ratios above the first row's (face-mesh jitter of an open eye) read 0.
BLINK_RESPONSE = ((0.0, 0.95), (0.125, 0.93), (0.25, 0.87), (0.375, 0.80), (0.5, 0.735),
                  (0.625, 0.665), (0.75, 0.61), (0.875, 0.53), (1.0, 0.45))
#: Gaze is not read while the eye is this closed (iris landmarks wander under the lid).
GAZE_BLINK_LIMIT = 0.5
#: Eyes turn at most ~45 degrees in the head; a reading beyond is a lost iris (the face mesh fails on
#: shut, shadowed or turned-away eyes: a few frames in a thousand read hundreds of degrees) and is
#: filled from the frames around it, like any lost frame.
GAZE_LIMIT_DEG = 45.0
#: Neutral reference: eyes at least this open (share of the clip's 80th percentile) and
#: the head within this many degrees of its median pose.
NEUTRAL_EYES = 0.85
NEUTRAL_POSE_DEG = 5.0


@dataclass
class VideoInfo:
    """What the video stream says about itself."""

    path: Path
    fps: float
    width: int
    height: int
    has_audio: bool


def open_video(path: str | Path) -> VideoInfo:
    """Validate a video file (exists, decodable, has a video stream) and describe it."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"video not found: {path}")
    if path.is_dir():
        raise InputError(f"video input {path} is a folder, not a file")
    check_regular_file(path, "video")   # a pipe or device would block or never end
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path} has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or 25
            return VideoInfo(path, float(rate), int(stream.codec_context.width),
                             int(stream.codec_context.height), bool(container.streams.audio))
    except FFMPEG_ERRORS as exc:
        raise InputError(f"cannot read video {path}: not a supported video file ({error_reason(exc)})") from None


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Decoded RGB frames (H, W, 3) uint8 of the first video stream; corrupt data raises InputError."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
    except FFMPEG_ERRORS as exc:
        reason = error_reason(exc)
        raise InputError(f"cannot decode video {path}: the file is corrupt or truncated ({reason})") from None


def track_landmarks(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Face-mesh landmarks of every frame: (T, 478, 3) float32 pixels (NaN where lost), found (T,) bool."""
    landmarks, found = track_frames(iter_video_frames(path), max_frames)
    if not len(found):
        raise InputError(f"{path} holds no video frames")
    return landmarks, found


def track_frames(frames: Iterable[np.ndarray], max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`track_landmarks` for RGB frames in memory (rendered output, for instance); empty arrays for no frames."""
    points: list[np.ndarray | None] = []
    with native_stderr_silenced(), FaceMeasurer() as measurer:  # mediapipe's C++ logs bypass Python
        for rgb in frames:
            points.append(measurer.landmarks(rgb))
            if max_frames is not None and len(points) >= max_frames:
                break
    found = np.array([p is not None for p in points])
    out = np.full((len(points), fr.NUM_LANDMARKS, 3), np.nan, np.float32)
    for i, p in enumerate(points):
        if p is not None:
            out[i] = p
    return out, found


def fill_lost(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Linear interpolation over time between found frames, held at the ends (any trailing shape)."""
    if found.all():
        return values
    index = np.flatnonzero(found)
    flat = values.reshape(len(values), -1)
    out = np.empty_like(flat)
    t = np.arange(len(values))
    for j in range(flat.shape[1]):
        out[:, j] = np.interp(t, index, flat[index, j])
    return out.reshape(values.shape)


# ----------------------------------------------------------------------------- head pose

def load_template() -> np.ndarray:
    """The shipped 478-point mean face (eye-distance units): the 3-D head model pose is fitted to."""
    return np.load(MEAN_FACE_PATH).astype(np.float64)


@dataclass
class RigidFit:
    """Per-frame similarity from template to frame: points ~ scale * R @ template + shift."""

    rotation: np.ndarray   # (T, 3, 3)
    scale: np.ndarray      # (T,)
    shift: np.ndarray      # (T, 3)

    def apply(self, template: np.ndarray) -> np.ndarray:
        """Template points (N, 3) placed in every frame -> (T, N, 3)."""
        return self.scale[:, None, None] * np.einsum("tij,nj->tni", self.rotation, template) + self.shift[:, None, :]


def fit_rigid(points: np.ndarray, template: np.ndarray, indices: tuple[int, ...] = RIGID_POINTS) -> RigidFit:
    """Least-squares similarity (Umeyama, no reflection) of template onto each frame's points, batched."""
    p = points[:, list(indices)].astype(np.float64)
    m = template[list(indices)]
    p_mean, m_mean = p.mean(1), m.mean(0)
    pc, mc = p - p_mean[:, None], m - m_mean
    cov = np.einsum("tni,nj->tij", pc, mc)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones((len(p), 3))
    d[:, 2] = np.sign(np.linalg.det(u @ vt))
    rotation = u @ (d[:, :, None] * vt)
    scale = (s * d).sum(1) / (mc ** 2).sum()
    shift = p_mean - scale[:, None] * np.einsum("tij,j->ti", rotation, m_mean)
    return RigidFit(rotation, scale, shift)


def rotation_angles(rotation: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations in image axes (x right, y down, z away) -> (..., 3) yaw, pitch, roll in degrees.

    Intrinsic yaw (about the vertical), then pitch, then roll, with motion.py's
    signs: yaw > 0 turns the nose to image right, pitch > 0 lifts it, roll > 0
    tilts the head counter-clockwise as seen.
    """
    r = rotation
    # R = Ry(a) Rx(b) Rz(c); a rotation by +a about y turns the nose (0, 0, -1) towards -x, etc.
    b = np.arcsin(np.clip(-r[..., 1, 2], -1.0, 1.0))
    a = np.arctan2(r[..., 0, 2], r[..., 2, 2])
    c = np.arctan2(r[..., 1, 0], r[..., 1, 1])
    return -np.degrees(np.stack([a, b, c], -1))


def angles_rotation(angles: np.ndarray) -> np.ndarray:
    """Inverse of `rotation_angles`: (..., 3) yaw, pitch, roll degrees -> (..., 3, 3)."""
    a, b, c = np.moveaxis(-np.radians(np.asarray(angles, dtype=np.float64)), -1, 0)
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    one, zero = np.ones_like(a), np.zeros_like(a)
    ry = np.stack([np.stack([ca, zero, sa], -1), np.stack([zero, one, zero], -1), np.stack([-sa, zero, ca], -1)], -2)
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cb, -sb], -1), np.stack([zero, sb, cb], -1)], -2)
    rz = np.stack([np.stack([cc, -sc, zero], -1), np.stack([sc, cc, zero], -1), np.stack([zero, zero, one], -1)], -2)
    return ry @ rx @ rz


# ----------------------------------------------------------------------------- expressions

class ExpressionFitter:
    """Bounded least squares of landmark displacements on the renderer's expression basis for one face.

    mouthClose only acts together with jawOpen in the renderer (it is clamped to
    jawOpen), so the fit uses jawOpen-without-close and a "closed jaw" channel
    (jawOpen + mouthClose together: the chin drops, the lips stay shut) and maps
    back, which keeps mouthClose <= jawOpen by construction.
    """

    def __init__(self, reference: np.ndarray) -> None:
        frame = FaceFrame.from_landmarks(reference.astype(np.float64))
        moves = landmark_displacements(reference.astype(np.float64), frame)
        basis = np.stack([frame.to_image(moves[name]) for name in FITTED_CHANNELS])  # (K, N, 2)
        self.names = FITTED_CHANNELS
        jaw, close = self.names.index("jawOpen"), self.names.index("mouthClose")
        self.basis = basis.copy()
        basis[close] = basis[jaw] + basis[close]
        self._jaw, self._close = jaw, close
        moved = np.abs(basis).max(axis=(0, 2)) > MIN_CHANNEL_MOTION * frame.height
        moved[list(_eye_region(reference, frame))] = False
        self.points = np.flatnonzero(moved)
        # Rows: x and y of every point, then the inner-lip gap along the face's down axis.
        self._v = frame.v
        gap = (basis[:, fr.LOWER_LIP_CENTER] - basis[:, fr.UPPER_LIP_CENTER]) @ frame.v
        a = np.vstack([basis[:, self.points].reshape(len(self.names), -1).T, gap[None]])  # (2n + 1, K)
        weight = np.repeat(np.where(np.isin(self.points, fr.LIPS_INNER), INNER_LIP_WEIGHT, 1.0), 2)
        weight = np.append(weight, GAP_WEIGHT)
        gram = a.T @ (a * weight[:, None])
        self._gram = gram + RIDGE * np.trace(gram) / len(gram) * np.eye(len(gram))
        self._a = a * weight[:, None]
        self._rows = [(row.tolist(), float(row[k])) for k, row in enumerate(self._gram)]
        self._reference = reference[:, :2].astype(np.float64)

    def fit(self, aligned: np.ndarray, start: np.ndarray | None = None, tolerance: float = 0.0) -> np.ndarray:
        """(T, 478, 2+) landmarks in the reference pose -> (T, K) coefficients in [0, 1] (FITTED_CHANNELS order).

        The problem is strictly convex (the ridge), so its solution is unique: the live camera starts from the
        previous frame's solution (`start`, as `fit` returns it) and stops once a sweep changes no coefficient by
        more than `tolerance`, a few sweeps instead of SOLVER_SWEEPS for the same answer.
        """
        moved = aligned[:, :, :2] - self._reference
        gap = (moved[:, fr.LOWER_LIP_CENTER] - moved[:, fr.UPPER_LIP_CENTER]) @ self._v
        d = np.hstack([moved[:, self.points].reshape(len(aligned), -1), gap[:, None]])
        rhs = d @ self._a
        gram = self._gram
        c = np.zeros_like(rhs)
        if start is not None:  # back from the renderer's (jawOpen, mouthClose) to the fitted channels
            c[:] = start
            c[:, self._jaw] = np.maximum(c[:, self._jaw] - c[:, self._close], 0.0)
        if len(c) == 1:  # the live camera's single frame: the same descent on Python floats (numpy's per-call
            c[0] = self._descend_one(rhs[0], c[0], tolerance)  # overhead on 22-element rows was 8 ms a frame)
        else:
            # Cyclic coordinate descent on the convex box-constrained QP, vectorised over frames.
            for _ in range(SOLVER_SWEEPS):
                before = c.copy() if tolerance > 0 else c
                for k in range(gram.shape[0]):
                    c[:, k] = np.clip(c[:, k] + (rhs[:, k] - c @ gram[k]) / gram[k, k], 0.0, 1.0)
                if tolerance > 0 and np.abs(c - before).max() < tolerance:
                    break
        # Back from (jaw without close, closed jaw) to the renderer's (jawOpen, mouthClose).
        c[:, self._jaw] = np.minimum(c[:, self._jaw] + c[:, self._close], 1.0)
        return c


    def _descend_one(self, rhs: np.ndarray, start: np.ndarray, tolerance: float) -> list[float]:
        """`fit`'s coordinate descent for one frame, in the same order, on Python floats."""
        rows = self._rows
        c = [float(v) for v in start]
        b = [float(v) for v in rhs]
        for _ in range(SOLVER_SWEEPS):
            largest = 0.0
            for k, (row, diagonal) in enumerate(rows):
                value = c[k] + (b[k] - sum(map(operator.mul, row, c))) / diagonal
                value = 0.0 if value < 0.0 else 1.0 if value > 1.0 else value
                largest = max(largest, abs(value - c[k]))
                c[k] = value
            if largest < tolerance:
                break
        return c

    def landmarks(self, coefficients: np.ndarray) -> np.ndarray:
        """Where the renderer puts the landmarks for (T, K) coefficients: (T, 478, 2) (a check on the fit)."""
        c = np.array(coefficients, dtype=np.float64)
        c[:, self._close] = np.minimum(c[:, self._close], c[:, self._jaw])  # the renderer's clamp
        return self._reference + np.einsum("tk,knj->tnj", c, self.basis)


def _eye_region(lm: np.ndarray, frame: FaceFrame) -> set[int]:
    """Landmarks that blinks move: each eye's box with the lid skin above and below it, and the irises."""
    uv = frame.local(lm[:, :2].astype(np.float64))
    out = set(fr.LEFT_IRIS + fr.RIGHT_IRIS)
    for contour, top, bottom in ((fr.LEFT_EYE, fr.LEFT_EYE_TOP, fr.LEFT_EYE_BOTTOM),
                                 (fr.RIGHT_EYE, fr.RIGHT_EYE_TOP, fr.RIGHT_EYE_BOTTOM)):
        eye = uv[list(contour)]
        opening = max(uv[bottom, 1] - uv[top, 1], 1e-3)
        width = eye[:, 0].max() - eye[:, 0].min()
        inside = ((uv[:, 0] > eye[:, 0].min() - 0.15 * width) & (uv[:, 0] < eye[:, 0].max() + 0.15 * width)
                  & (uv[:, 1] > eye[:, 1].min() - 1.0 * opening) & (uv[:, 1] < eye[:, 1].max() + 0.6 * opening))
        out.update(np.flatnonzero(inside).tolist())
        out.update(contour)
    return out


# ----------------------------------------------------------------------------- the whole clip

@dataclass
class Extraction:
    """Everything measured from one video, frame by frame (arrays of length T)."""

    fps: float
    found: np.ndarray            # (T,) bool: face-mesh found the face (others are filled)
    reference: int               # the frame that plays the portrait
    head: np.ndarray             # (T, 6) yaw, pitch, roll, x, y, distance relative to the reference
    head_camera: np.ndarray      # (T, 3) yaw, pitch, roll relative to the mean face (camera-facing)
    gaze: np.ndarray             # (T, 2) yaw, pitch (degrees, relative to the head and the reference)
    blink: np.ndarray            # (T, 2) subject's left, right
    expressions: np.ndarray      # (T, len(EXPRESSION_CHANNELS)) in EXPRESSION_CHANNELS order
    mouth_opening: np.ndarray    # (T,) face_measure.mouth_opening of the raw landmarks
    eye_openness: np.ndarray     # (T, 2) face_measure.eye_openness (left, right), pose removed
    aligned: np.ndarray          # (T, 478, 2) landmarks in the reference pose (reference pixels)
    face_height: float           # the reference face's height in pixels (to normalise `aligned`)
    visemes: np.ndarray = field(default_factory=lambda: np.zeros((0, len(VISEMES))))  # (T, 6); empty: no audio
    voice: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (T,); empty: no audio

    @property
    def lost(self) -> int:
        return int((~self.found).sum())

    def lip_shape(self) -> np.ndarray:
        """(T, 40, 2) outer+inner lip landmarks in the reference head pose, in face heights from the
        reference frame's mouth centre: the mouth alone, whatever the head does (lip-sync models' input)."""
        ref = self.aligned[self.reference]
        centre = (ref[fr.UPPER_LIP_CENTER] + ref[fr.LOWER_LIP_CENTER]) / 2
        return ((self.aligned[:, list(LIP_POINTS)] - centre) / self.face_height).astype(np.float32)

    def frames(self) -> list[MotionFrame]:
        """The motion representation, one frame per video frame."""
        return motion_frames(self.fps, self.head, self.gaze, self.blink, self.expressions, self.visemes, self.voice)


def motion_frames(fps: float, head: np.ndarray, gaze: np.ndarray, blink: np.ndarray, expressions: np.ndarray,
                  visemes: np.ndarray, voice: np.ndarray) -> list[MotionFrame]:
    """Extracted per-frame arrays (an `Extraction`'s, or a dataset clip's) as the motion representation, one frame
    per video frame; without a voice (`voice` empty) the visemes stay silent."""
    out = []
    for i in range(len(head)):
        named = {name: float(v) for name, v in zip(EXPRESSION_CHANNELS, expressions[i]) if v > 1e-4}
        frame = MotionFrame(t=i / fps, head=HeadPose(*map(float, head[i])), gaze=Gaze(*map(float, gaze[i])),
                            blink=Blink(*map(float, blink[i])), expressions=named)
        if len(voice):
            frame.visemes = {name: float(v) for name, v in zip(VISEMES, visemes[i])}
            frame.voice = float(voice[i])
        out.append(frame)
    return out


def extract(path: str | Path, reference: int | str = "neutral", max_frames: int | None = None) -> Extraction:
    """Extract the face's motion from a video file; raises InputError/NoFaceError for unusable input."""
    info = open_video(path)
    landmarks, found = track_landmarks(path, max_frames)
    if not found.any():
        raise NoFaceError(f"no face found in any of the {len(found)} frames of {info.path}")
    return extract_from_landmarks(landmarks, found, info.fps, reference)


def extract_from_landmarks(landmarks: np.ndarray, found: np.ndarray, fps: float,
                           reference: int | str = "neutral") -> Extraction:
    """The motion of a landmark track (T, 478, 3), NaN rows where `found` is False."""
    lm = fill_lost(landmarks.astype(np.float64), found)
    template = load_template()
    fit = fit_rigid(lm, template)
    camera = rotation_angles(fit.rotation)
    opening = np.array([mouth_opening(p) for p in lm])
    ref = pick_reference(reference, found, camera, lm, opening)
    face = ReferenceFace(lm[ref], template)
    m = face.measure(lm, fit)
    # Offline, a lid-covered or implausible iris reading is filled from the frames on both sides.
    gaze = m.gaze
    open_eye = m.blink.max(1) < GAZE_BLINK_LIMIT
    if open_eye.any() and not open_eye.all():
        gaze = fill_lost(gaze, open_eye)
    return Extraction(fps=fps, found=found, reference=ref, head=m.head, head_camera=camera, gaze=plausible_gaze(gaze),
                      blink=m.blink, expressions=m.expressions, mouth_opening=opening, eye_openness=m.eye_openness,
                      aligned=m.aligned.astype(np.float32), face_height=face.frame.height)


@dataclass
class Measurement:
    """Frames measured against a `ReferenceFace` (arrays of length T); gaze is raw: lid-covered and implausible
    readings are left in for the caller to fill (offline, from both sides) or hold (live, from the past)."""

    head: np.ndarray          # (T, 6)
    blink: np.ndarray         # (T, 2)
    expressions: np.ndarray   # (T, len(EXPRESSION_CHANNELS))
    gaze: np.ndarray          # (T, 2)
    eye_openness: np.ndarray  # (T, 2)
    aligned: np.ndarray       # (T, 478, 2)
    coefficients: np.ndarray  # (T, K) the expression fit in FITTED_CHANNELS order (a start for the next frame)


class ReferenceFace:
    """The frame that plays the portrait, prepared once: everything a frame is measured against.

    Offline extraction measures a whole clip against it; the live camera (`face.live`) measures one
    frame at a time against the same object, so both read a face the same way.
    """

    def __init__(self, landmarks: np.ndarray, template: np.ndarray | None = None) -> None:
        self.landmarks = np.asarray(landmarks, np.float64)
        self.template = load_template() if template is None else template
        self.fit = fit_rigid(self.landmarks[None], self.template)
        self.frame = FaceFrame.from_landmarks(self.landmarks)
        # expressions open the mouth from shut lips, as the renderer's portrait has them (`render.shut_lips`)
        shut = shut_mouth(self.landmarks)
        self.fitter = ExpressionFitter(self.landmarks if shut is None else shut.applied(self.landmarks))
        ref2 = self.landmarks[None, :, :2]
        self.openness = np.array([eye_openness(self.landmarks[:, :2], "left"),
                                  eye_openness(self.landmarks[:, :2], "right")])
        self._gaze_offset = _iris_offset(ref2, self.landmarks, self.frame)[0]

    def measure(self, lm: np.ndarray, fit: RigidFit | None = None, start: np.ndarray | None = None,
                tolerance: float = 0.0) -> Measurement:
        """(T, 478, 3) landmarks (no NaN) -> their motion relative to this face; `fit` if already fitted;
        `start` and `tolerance` as `ExpressionFitter.fit` takes them (`coefficients` returns them)."""
        lm = np.asarray(lm, np.float64)
        fit = fit_rigid(lm, self.template) if fit is None else fit
        rotation, scale, shift = self.fit.rotation[0], self.fit.scale[0], self.fit.shift[0]
        # Landmarks in the reference head pose: undo this frame's similarity, apply the reference's.
        to_ref = rotation @ np.transpose(fit.rotation, (0, 2, 1))             # (T, 3, 3)
        factor = scale / fit.scale
        aligned = factor[:, None, None] * np.einsum("tij,tnj->tni", to_ref, lm - fit.shift[:, None, :]) + shift
        aligned2 = aligned[:, :, :2]

        head = np.zeros((len(lm), 6))
        head[:, :3] = rotation_angles(np.transpose(to_ref, (0, 2, 1)))
        head[:, 3:5], head[:, 5] = self._placement(fit, head[:, 2]), scale / fit.scale

        openness = np.array([[eye_openness(p, "left"), eye_openness(p, "right")] for p in aligned2])
        ratio = openness / np.maximum(self.openness, 1e-6)
        blink = np.interp(-ratio, [-r for _, r in BLINK_RESPONSE], [b for b, _ in BLINK_RESPONSE])
        coefficients = self.fitter.fit(aligned2, start, tolerance)
        expressions = np.zeros((len(lm), len(EXPRESSION_CHANNELS)))
        for k, name in enumerate(self.fitter.names):
            expressions[:, EXPRESSION_CHANNELS.index(name)] = coefficients[:, k]
        for side, column in (("Left", 0), ("Right", 1)):
            wide = np.clip((ratio[:, column] - 1) / EYE_WIDE_LIFT, 0, 1)
            expressions[:, EXPRESSION_CHANNELS.index(f"eyeWide{side}")] = wide
        offset = _iris_offset(aligned2, self.landmarks, self.frame) - self._gaze_offset
        gaze = np.stack([offset[:, 0] / GAZE_SHIFT_X, -offset[:, 1] / GAZE_SHIFT_Y], -1) * GAZE_REF_DEG
        return Measurement(head=head, blink=blink, expressions=expressions, gaze=gaze, eye_openness=openness,
                           aligned=aligned2, coefficients=coefficients)

    def _placement(self, fit: RigidFit, roll: np.ndarray) -> np.ndarray:
        """Head x, y as the renderer applies them: the shift that, after rolling the reference face about
        its neck pivot, puts the face centre where this frame has it (portrait-frame fractions, y up)."""
        lm, frame = self.landmarks, self.frame
        rotation, scale, shift = self.fit.rotation[0], self.fit.scale[0], self.fit.shift[0]
        # The reference face centre carried rigidly into each frame (the jaw moving the oval must not count).
        ref_centre = lm[list(fr.FACE_OVAL)].mean(0)
        in_template = rotation.T @ (ref_centre - shift) / scale
        centre = (fit.scale[:, None] * np.einsum("tij,j->ti", fit.rotation, in_template) + fit.shift)[:, :2]
        pivot = lm[fr.CHIN, :2] + NECK_PIVOT_BELOW_CHIN * frame.height * frame.v
        angle = np.radians(roll)
        # Counter-clockwise as seen with y down: (dx, dy) -> (dx cos + dy sin, -dx sin + dy cos).
        dx, dy = ref_centre[:2] - pivot
        rolled = pivot + np.stack([dx * np.cos(angle) + dy * np.sin(angle),
                                   -dx * np.sin(angle) + dy * np.cos(angle)], -1)
        shift_px = (centre - rolled) / frame.height * FACE_LENGTH
        return np.stack([shift_px[:, 0], -shift_px[:, 1]], -1)


def pick_reference(reference: int | str, found: np.ndarray, camera: np.ndarray, lm: np.ndarray,
                    opening: np.ndarray) -> int:
    """The frame that plays the portrait: a given index (moved to the nearest found frame) or a neutral one."""
    found_index = np.flatnonzero(found)
    if reference != "neutral":
        if not isinstance(reference, (int, np.integer)) or not 0 <= reference < len(found):
            raise InputError(f"reference frame must be 'neutral' or a frame index 0..{len(found) - 1}, "
                             f"got {reference!r}")
        return int(found_index[np.argmin(np.abs(found_index - reference))])
    eyes = np.array([min(eye_openness(p, "left"), eye_openness(p, "right")) for p in lm])
    pose_off = np.abs(camera - np.median(camera[found], axis=0)).max(1)
    ok = found & (eyes >= NEUTRAL_EYES * np.percentile(eyes[found], 80)) & (pose_off <= NEUTRAL_POSE_DEG)
    candidates = np.flatnonzero(ok) if ok.any() else found_index
    return int(candidates[np.argmin(opening[candidates])])


def _iris_offset(aligned: np.ndarray, reference: np.ndarray, frame: FaceFrame) -> np.ndarray:
    """(T, 2) iris centres relative to the eye corners, both eyes averaged: across in eye widths, down in the
    reference's lid openings (GAZE_REF_DEG shifts the iris by GAZE_SHIFT_X widths / GAZE_SHIFT_Y openings)."""
    offsets = []
    eyes = ((fr.LEFT_IRIS[0], fr.LEFT_EYE_OUTER, fr.LEFT_EYE_INNER, fr.LEFT_EYE_TOP, fr.LEFT_EYE_BOTTOM),
            (fr.RIGHT_IRIS[0], fr.RIGHT_EYE_OUTER, fr.RIGHT_EYE_INNER, fr.RIGHT_EYE_TOP, fr.RIGHT_EYE_BOTTOM))
    for iris, outer, inner, top, bottom in eyes:
        uv = np.stack([frame.local(aligned[:, i]) for i in (iris, outer, inner)], 1)  # (T, 3, 2)
        width = np.abs(uv[:, 1, 0] - uv[:, 2, 0])
        ref_uv = frame.local(reference[[top, bottom], :2])
        opening = max(ref_uv[1, 1] - ref_uv[0, 1], 1e-3)
        mid = (uv[:, 1] + uv[:, 2]) / 2
        offsets.append(np.stack([(uv[:, 0, 0] - mid[:, 0]) / np.maximum(width, 1e-3),
                                 (uv[:, 0, 1] - mid[:, 1]) / opening], -1))
    return np.mean(offsets, axis=0)


def plausible_gaze(gaze: np.ndarray) -> np.ndarray:
    """(T, 2) gaze with readings beyond GAZE_LIMIT_DEG filled from the plausible frames around them
    (all zero when none is plausible)."""
    plausible = (np.abs(gaze) <= GAZE_LIMIT_DEG).all(1)
    if plausible.all():
        return gaze
    if not plausible.any():
        return np.zeros_like(gaze)
    return fill_lost(gaze, plausible)
