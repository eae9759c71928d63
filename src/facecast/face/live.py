"""The face's motion from a live camera, one frame at a time, read the way `facecast extract` reads a video.

Why a streaming twin of `face.extraction`: offline extraction sees the whole
clip, so it picks its neutral reference frame from all of it and fills lost
frames from both sides. A camera only has the past. `LiveFace` therefore

* calibrates: it gathers the first `CALIBRATION_S` seconds of found faces and
  picks the neutral reference among them with extraction's own rule (eyes open,
  head near its median, mouth most closed), so a user sitting off-centre or with
  narrow eyes gets a centred, open-eyed avatar; `calibrate()` starts again (the
  ``calibrate`` control message);
* measures every later frame against that reference with extraction's own
  `ReferenceFace` (head pose, per-eye blink, eyeWide, gaze, the fitted
  expression channels), so live and offline motion mean the same thing;
* replaces extraction's two-sided fills by their causal halves: a gaze read under
  a closing lid or beyond `GAZE_LIMIT_DEG` holds the last good reading, and a
  lost face is reported (None) for the caller to ease away from (`app.camera`).

Extraction applies no other smoothing, so neither does this: what the face mesh
reads is what the avatar does, one frame later at most.
"""

from __future__ import annotations

import numpy as np

from facecast.face.extraction import (
    GAZE_BLINK_LIMIT,
    GAZE_LIMIT_DEG,
    ReferenceFace,
    fit_rigid,
    load_template,
    pick_reference,
    rotation_angles,
)
from facecast.face.measure import mouth_opening
from facecast.motion import EXPRESSION_CHANNELS, Blink, Gaze, HeadPose, MotionFrame

#: Seconds of found faces gathered before the neutral reference is picked: long enough to include open eyes
#: between blinks (a blink lasts 0.1-0.4 s) and a closed mouth between words, short enough to start quickly.
CALIBRATION_S = 1.0
#: The expression fit stops once a sweep moves no coefficient more than this (started from the previous frame:
#: a few sweeps instead of extraction's 60, measured within 0.01 of its answer; `tests/face/test_live_face.py`).
FIT_TOLERANCE = 1e-4
#: A camera's blink readings above LID_KNEE are stretched so that LID_SHUT and beyond become a shut lid (1).
#: Why: a 30 fps camera often catches a blink part-way (the face mesh reads 0.7-0.85 closed at its deepest
#: frame), and the renderer paints the closed lid only from blink 0.6 to 0.95 (`render.closed_lids`), so such
#: blinks rendered as a half-shut eye that viewers (and the face mesh) missed. Readings below the knee (squints,
#: looking down) are left as they are. Extraction for training keeps the plain reading.
LID_KNEE, LID_SHUT = 0.6, 0.85


class LiveFace:
    """Face-mesh landmarks of consecutive camera frames -> `MotionFrame`s (head, gaze, blinks, expressions).

    Not thread-safe: one tracking thread owns it; `calibrate()` only sets a flag, safe from any thread.
    """

    def __init__(self, fps: float, calibration_s: float = CALIBRATION_S) -> None:
        self.fps = float(fps)
        self.calibration_frames = max(1, round(calibration_s * self.fps))
        self.template = load_template()
        self.reference: ReferenceFace | None = None
        self.calibrations = 0          # how many references were picked (a new one may shift the pose)
        self._gathered: list[np.ndarray] = []
        self._recalibrate = False
        self._gaze = np.zeros(2)
        self._coefficients: np.ndarray | None = None

    @property
    def calibrating(self) -> bool:
        """True while the neutral pose is being gathered (no reference yet, or a new one asked for)."""
        return self.reference is None or self._recalibrate

    def calibrate(self) -> None:
        """Pick a new neutral reference from the next `CALIBRATION_S` seconds (the old one serves meanwhile)."""
        self._recalibrate = True

    def update(self, landmarks: np.ndarray | None, t: float) -> MotionFrame | None:
        """The motion of one frame's (478, 3) landmarks (None: no face), or None while there is nothing to show
        (no face, or the first calibration still gathering)."""
        if landmarks is None:
            return None
        landmarks = np.asarray(landmarks, np.float64)
        if self.calibrating:
            self._gathered.append(landmarks)
            if len(self._gathered) >= self.calibration_frames:
                self._pick()
        if self.reference is None:
            return None
        return self._frame(landmarks, t)

    def _pick(self) -> None:
        lm = np.stack(self._gathered)
        self._gathered = []
        self._recalibrate = False
        found = np.ones(len(lm), bool)
        camera = rotation_angles(fit_rigid(lm, self.template).rotation)
        opening = np.array([mouth_opening(p) for p in lm])
        ref = pick_reference("neutral", found, camera, lm, opening)
        self.reference = ReferenceFace(lm[ref], self.template)
        self.calibrations += 1
        self._gaze = np.zeros(2)
        self._coefficients = None

    def _frame(self, landmarks: np.ndarray, t: float) -> MotionFrame:
        assert self.reference is not None
        m = self.reference.measure(landmarks[None], start=self._coefficients, tolerance=FIT_TOLERANCE)
        self._coefficients = m.coefficients
        blink = decisive_lids(m.blink[0])
        gaze = m.gaze[0]
        # Extraction fills these from both sides; live, the last good reading is held (its causal half).
        if blink.max() < GAZE_BLINK_LIMIT and np.all(np.abs(gaze) <= GAZE_LIMIT_DEG):
            self._gaze = gaze
        expressions = {name: float(v) for name, v in zip(EXPRESSION_CHANNELS, m.expressions[0]) if v > 1e-4}
        return MotionFrame(t=t, head=HeadPose(*map(float, m.head[0])), gaze=Gaze(*map(float, self._gaze)),
                           blink=Blink(*map(float, blink)), expressions=expressions)


def decisive_lids(blink: np.ndarray) -> np.ndarray:
    """Blink readings (any shape, 0 open .. 1 shut) with the part above LID_KNEE stretched to reach 1 at LID_SHUT."""
    blink = np.asarray(blink, np.float64)
    stretched = LID_KNEE + (blink - LID_KNEE) * (1.0 - LID_KNEE) / (LID_SHUT - LID_KNEE)
    return np.where(blink > LID_KNEE, np.minimum(stretched, 1.0), blink)
