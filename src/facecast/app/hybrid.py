"""Camera + voice: which part of the face follows the webcam and which the voice, and the hand-over between them.

Why per group: a camera reads a head, eyes and brows far better than any voice
model guesses them, but a voice drives lips more robustly than a camera does
(a microphone in front of the mouth, low light, a face out of frame). Each of
`GROUPS` is driven by ``camera`` or ``voice``; the mouth may also ``blend``
(the default): the voice's lips and jaw, mixed with the camera's mouth while the
face is seen and the two agree on how far the jaw is open (they disagree when
the mouth is covered, or opens without a sound: then the voice wins). Visemes
and the voice level always come from the voice.

When the face is lost (turned away, covered, out of frame, the camera gone) the
camera's share eases to zero over `EASE_S`, so the avatar slides back to the
generator's idle motion instead of freezing or snapping, and eases in again
when the face returns; during any such hand-over (and after a recalibration)
the head turns at most `MAX_STEP_DEG` per output frame.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any, Callable

from facecast.errors import InputError
from facecast.motion import EXPRESSION_CHANNELS, MOUTH_CHANNELS, Blink, Gaze, HeadPose, MotionFrame

#: The groups a source can drive, and what each covers.
GROUPS: tuple[str, ...] = ("head", "eyes", "brows", "expressions", "mouth")
DRIVERS: tuple[str, ...] = ("camera", "voice", "blend")
#: Camera for everything it reads well; the mouth blended (voice first). `--drive` and the `drive` key override.
DEFAULT_DRIVE: dict[str, str] = {"head": "camera", "eyes": "camera", "brows": "camera", "expressions": "camera",
                                 "mouth": "blend"}
DRIVE_HELP = ("which source drives each part of the face with a camera on, GROUP=SOURCE,...: groups head, eyes "
              "(blinks, gaze, lids), brows, expressions (smiles, frowns, cheeks), mouth (lips and jaw); sources "
              "camera or voice, and blend for the mouth (the voice's lips mixed with the camera's while the face "
              "is seen and they agree); default " + ",".join(f"{k}={v}" for k, v in DEFAULT_DRIVE.items()))

_EYE_CHANNELS = frozenset(c for c in EXPRESSION_CHANNELS if c.startswith(("eyeWide", "eyeSquint")))
_BROW_CHANNELS = frozenset(c for c in EXPRESSION_CHANNELS if c.startswith("brow"))
_MOUTH_CHANNELS = frozenset(MOUTH_CHANNELS)

#: Seconds over which the camera's share goes from all to nothing (face lost) or back (face found).
EASE_S = 0.5
#: During a hand-over the head turns at most this many degrees from one output frame to the next.
MAX_STEP_DEG = 2.0
#: A tracked result older than this (seconds) counts as a lost face: the camera stalled or vanished.
STALE_S = 0.25
#: The camera's share of the blended mouth when it fully agrees with the voice.
MOUTH_CAMERA_WEIGHT = 0.5
#: jawOpen difference at which the camera's mouth stops counting (a covered mouth, a silent yawn).
MOUTH_AGREEMENT = 0.25


def parse_drive(text: str | None) -> dict[str, str]:
    """'head=camera,mouth=voice' (over `DEFAULT_DRIVE`) -> a full group -> source map; InputError otherwise."""
    drive = dict(DEFAULT_DRIVE)
    for part in (text or "").split(","):
        if not part.strip():
            continue
        group, _, source = (s.strip().lower() for s in part.partition("="))
        if group not in GROUPS:
            raise InputError(f"--drive: unknown group {group!r}: use {', '.join(GROUPS)}")
        allowed = DRIVERS if group == "mouth" else DRIVERS[:2]
        if source not in allowed:
            raise InputError(f"--drive {group}= takes {' or '.join(allowed)} (got {source!r})")
        drive[group] = source
    return drive


def _group(name: str) -> str:
    if name in _EYE_CHANNELS:
        return "eyes"
    if name in _BROW_CHANNELS:
        return "brows"
    if name in _MOUTH_CHANNELS:
        return "mouth"
    return "expressions"


def _ease(weight: float) -> float:
    """Smoothstep: the hand-over starts and ends without a kink."""
    return weight * weight * (3.0 - 2.0 * weight)


def _mix(a: float, b: float, share: float) -> float:
    return a + (b - a) * share


class Hybrid:
    """Lays the camera's newest face motion over the voice's frames, group by group (`drive`).

    `latest` returns the tracker's newest result (`camera_input.Tracked`) or None; `calibrations` how many
    neutral references the tracker has picked (a new one is a hand-over too). Called from the output thread only.
    """

    def __init__(self, latest: Callable[[], Any], drive: dict[str, str] | None = None,
                 calibrations: Callable[[], int] = lambda: 0, clock: Callable[[], float] = time.monotonic) -> None:
        self._latest = latest
        self.drive = dict(DEFAULT_DRIVE if drive is None else drive)
        self._calibrations = calibrations
        self._clock = clock
        self._weight = 0.0          # the camera's share before easing, 0..1
        self._last_time: float | None = None
        self._camera: MotionFrame | None = None   # the last face seen (held while easing out)
        self._handover_until = -math.inf
        self._catching_up = False
        self._seen_calibrations = 0
        self._target = 0.0
        self._previous: MotionFrame | None = None
        self.used_index = -1                      # the tracked frame the last output used
        self.capture_time: float | None = None    # its capture time, when the last output used a new one
        self.losses = 0
        self.recoveries = 0

    @property
    def share(self) -> float:
        """The camera's current share (0: the voice alone, 1: the camera wherever it drives)."""
        return _ease(self._weight)

    def combine(self, generated: MotionFrame, now: float | None = None) -> MotionFrame:
        """`generated` (the voice's frame) with the camera's groups laid over it at the current share."""
        now = self._clock() if now is None else now
        tracked = self._latest()
        fresh = tracked is not None and tracked.motion is not None and now - tracked.capture_time <= STALE_S
        self.capture_time = None
        if fresh:
            self._camera = tracked.motion
            if tracked.index != self.used_index:
                self.used_index = tracked.index
                self.capture_time = tracked.capture_time
        target = 1.0 if fresh else 0.0
        if target != self._target:
            self._target = target
            self._handover_until = now + EASE_S
            if target:
                self.recoveries += 1
            else:
                self.losses += 1
        calibrations = self._calibrations()
        if calibrations != self._seen_calibrations:
            if self._seen_calibrations:  # a new reference moves the neutral pose: ease over to it
                self._handover_until = now + EASE_S
            self._seen_calibrations = calibrations
        dt = 0.0 if self._last_time is None else max(0.0, now - self._last_time)
        self._last_time = now
        step = dt / EASE_S
        self._weight = min(self._weight + step, 1.0) if target else max(self._weight - step, 0.0)
        frame = generated if self._camera is None or self._weight == 0.0 else self._overlay(generated, self.share)
        if (now < self._handover_until or self._catching_up) and self._previous is not None:
            limited = _limit_turn(self._previous.head, frame.head, MAX_STEP_DEG)
            # a limited head lags its target: keep limiting past the hand-over until it has caught up, or the
            # first unlimited frame would jump the whole lag at once
            self._catching_up = limited != frame.head
            frame = replace(frame, head=limited)
        self._previous = frame
        return frame

    def _overlay(self, voice: MotionFrame, share: float) -> MotionFrame:
        camera = self._camera
        assert camera is not None
        drive = self.drive
        head = voice.head
        if drive["head"] == "camera":
            head = HeadPose(*(_mix(getattr(voice.head, f), getattr(camera.head, f), share)
                              for f in ("yaw", "pitch", "roll", "x", "y", "distance")))
        gaze, blink = voice.gaze, voice.blink
        if drive["eyes"] == "camera":
            gaze = Gaze(_mix(voice.gaze.yaw, camera.gaze.yaw, share), _mix(voice.gaze.pitch, camera.gaze.pitch, share))
            blink = Blink(_mix(voice.blink.left, camera.blink.left, share),
                          _mix(voice.blink.right, camera.blink.right, share))
        mouth_share = {"camera": share, "voice": 0.0}.get(drive["mouth"])
        if mouth_share is None:  # blend: the camera counts while it agrees with the voice on the jaw
            gap = abs(camera.expression("jawOpen") - voice.expression("jawOpen"))
            mouth_share = share * MOUTH_CAMERA_WEIGHT * max(0.0, 1.0 - gap / MOUTH_AGREEMENT)
        expressions = {}
        for name in set(voice.expressions) | set(camera.expressions):
            group = _group(name)
            part = mouth_share if group == "mouth" else share if drive[group] == "camera" else 0.0
            value = _mix(voice.expression(name), camera.expression(name), part)
            if value > 1e-5:
                expressions[name] = value
        return replace(voice, head=head, gaze=gaze, blink=blink, expressions=expressions)


def _limit_turn(previous: HeadPose, head: HeadPose, limit: float) -> HeadPose:
    """`head` with yaw, pitch and roll moved at most `limit` degrees from `previous`."""
    def clamp(before: float, after: float) -> float:
        return before + max(-limit, min(limit, after - before))
    return replace(head, yaw=clamp(previous.yaw, head.yaw), pitch=clamp(previous.pitch, head.pitch),
                   roll=clamp(previous.roll, head.roll))
