"""Camera + voice blending (`app.hybrid`): who drives what, the mouth's agreement, face loss and recovery."""

from __future__ import annotations

import pytest

from facecast.app.camera_input import Tracked
from facecast.app.hybrid import DEFAULT_DRIVE, EASE_S, MAX_STEP_DEG, Hybrid, parse_drive
from facecast.errors import InputError
from facecast.motion import Blink, Gaze, HeadPose, MotionFrame

FPS = 30.0


def voice_frame(t: float, jaw: float = 0.4) -> MotionFrame:
    """What the voice generator makes: a small idle head, open eyes, speech on the lips, a brow raise."""
    return MotionFrame(t=t, head=HeadPose(yaw=1.0, pitch=-0.5), gaze=Gaze(2.0, 0.0), blink=Blink(0.0, 0.0),
                       expressions={"jawOpen": jaw, "mouthFunnel": 0.2, "browInnerUp": 0.3, "mouthSmileLeft": 0.1})


def camera_frame(t: float, yaw: float = 25.0, jaw: float = 0.35) -> MotionFrame:
    """What the camera reads: the user turned to one side, one eye shut, smiling, brows down, mouth open."""
    return MotionFrame(t=t, head=HeadPose(yaw=yaw, pitch=8.0, roll=-4.0), gaze=Gaze(-10.0, 5.0),
                       blink=Blink(1.0, 0.0),
                       expressions={"jawOpen": jaw, "browDownLeft": 0.6, "mouthSmileLeft": 0.8, "eyeWideRight": 0.3})


class Feed:
    """The tracker's newest result as the output thread sees it, set by the test."""

    def __init__(self) -> None:
        self.tracked: Tracked | None = None
        self.index = 0

    def show(self, motion: MotionFrame | None, now: float) -> None:
        self.index += 1
        self.tracked = Tracked(motion, now - 0.02, now - 0.005, self.index)

    def __call__(self) -> Tracked | None:
        return self.tracked


def run(hybrid: Hybrid, feed: Feed, seconds: float, start: float, face: bool, yaw: float = 25.0,
        jaw: float = 0.35) -> list[MotionFrame]:
    out = []
    for k in range(round(seconds * FPS)):
        now = start + k / FPS
        feed.show(camera_frame(now, yaw, jaw) if face else None, now)
        out.append(hybrid.combine(voice_frame(now), now))
    return out


def test_drive_parsing_and_its_errors() -> None:
    assert parse_drive("") == DEFAULT_DRIVE and DEFAULT_DRIVE["mouth"] == "blend"
    assert parse_drive("head=voice, mouth=camera")["head"] == "voice"
    assert parse_drive("mouth=voice")["mouth"] == "voice"
    for bad, reason in (("nose=camera", "unknown group"), ("head=blend", "camera or voice"),
                        ("eyes", "camera or voice")):
        with pytest.raises(InputError, match=reason):
            parse_drive(bad)


def test_default_hybrid_takes_head_eyes_brows_and_expressions_from_the_camera() -> None:
    feed = Feed()
    hybrid = Hybrid(feed)
    frames = run(hybrid, feed, 1.0, 0.0, face=True)
    last = frames[-1]
    assert hybrid.share == 1.0
    assert (last.head.yaw, last.head.pitch, last.head.roll) == (25.0, 8.0, -4.0)
    assert (last.blink.left, last.blink.right, last.gaze.yaw) == (1.0, 0.0, -10.0)
    assert last.expression("browDownLeft") == 0.6 and last.expression("browInnerUp") == 0.0  # brows: camera
    assert last.expression("mouthSmileLeft") == 0.8 and last.expression("eyeWideRight") == 0.3
    # mouth: the voice's lips and jaw, the camera's mixed in while the two agree on the jaw
    assert last.expression("mouthFunnel") == pytest.approx(0.2 * (1 - 0.5 * 0.8))
    assert 0.35 < last.expression("jawOpen") < 0.4
    assert last.visemes == voice_frame(0).visemes and last.voice == voice_frame(0).voice


def test_a_mouth_that_disagrees_with_the_voice_is_left_to_the_voice() -> None:
    """A microphone in front of the mouth: the camera reads it shut while the voice speaks."""
    feed = Feed()
    hybrid = Hybrid(feed)
    last = run(hybrid, feed, 1.0, 0.0, face=True, jaw=0.0)[-1]
    assert last.expression("jawOpen") == pytest.approx(0.4)
    # and per group settings: mouth=camera takes the camera's jaw, head=voice leaves the head to the voice
    feed = Feed()
    hybrid = Hybrid(feed, parse_drive("mouth=camera,head=voice"))
    last = run(hybrid, feed, 1.0, 0.0, face=True, jaw=0.0)[-1]
    assert last.expression("jawOpen") == 0.0 and last.head.yaw == 1.0


def test_face_lost_eases_to_the_voice_within_half_a_second_without_jumps() -> None:
    feed = Feed()
    hybrid = Hybrid(feed)
    tracked = run(hybrid, feed, 1.0, 0.0, face=True, yaw=25.0)
    lost = run(hybrid, feed, 1.0, 1.0, face=False)
    back = run(hybrid, feed, 1.0, 2.0, face=True, yaw=25.0)
    frames = tracked + lost + back
    yaws = [f.head.yaw for f in frames]
    steps = [max(abs(getattr(b.head, a) - getattr(a_.head, a)) for a in ("yaw", "pitch", "roll"))
             for a_, b in zip(frames, frames[1:])]
    assert max(steps[25:]) <= MAX_STEP_DEG + 1e-9          # no jump on loss or recovery
    # idle (the voice's own head) within ~0.5 s of the loss: the turn limit may add a few frames
    settled = next(k for k, f in enumerate(lost) if abs(f.head.yaw - 1.0) < 1e-6)
    assert settled / FPS <= EASE_S + 0.15
    assert lost[-1].blink.left == 0.0 and lost[-1].expression("browInnerUp") == 0.3
    # and back on the camera, smoothly, within the same time
    resumed = next(k for k, f in enumerate(back) if abs(f.head.yaw - 25.0) < 1e-6)
    assert resumed / FPS <= EASE_S + 0.15
    assert hybrid.losses == 1 and hybrid.recoveries == 2 and yaws[-1] == 25.0


def test_a_stale_camera_counts_as_lost() -> None:
    """The camera stopped delivering (unplugged): its last face is not held forever."""
    feed = Feed()
    hybrid = Hybrid(feed)
    run(hybrid, feed, 1.0, 0.0, face=True)
    frames = [hybrid.combine(voice_frame(1.0 + k / FPS), 1.0 + k / FPS) for k in range(30)]  # no new results
    assert frames[-1].head.yaw == 1.0 and hybrid.losses == 1


def test_a_new_calibration_is_eased_over() -> None:
    feed = Feed()
    calibrations = [1]
    hybrid = Hybrid(feed, calibrations=lambda: calibrations[0])
    run(hybrid, feed, 1.0, 0.0, face=True, yaw=25.0)
    calibrations[0] = 2     # the new neutral pose: the same head now reads 20 degrees less
    after = run(hybrid, feed, 0.5, 1.0, face=True, yaw=5.0)
    steps = [abs(b.head.yaw - a.head.yaw) for a, b in zip(after, after[1:])]
    assert abs(after[0].head.yaw - 25.0) <= MAX_STEP_DEG and max(steps) <= MAX_STEP_DEG
    assert after[-1].head.yaw == 5.0


def test_camera_motion_reaches_the_vrchat_and_vmc_names() -> None:
    """Every output reads the motion contract: the camera's one shut eye, gaze and lowered brow arrive as
    VRCFaceTracking v2 parameters (lids, eye look, brows) and as VMC blendshapes."""
    from facecast.bridges.vmc import arkit_blendshapes, vrm0_blendshapes
    from facecast.bridges.vrchat import unified_expressions

    feed = Feed()
    hybrid = Hybrid(feed)
    frame = run(hybrid, feed, 1.0, 0.0, face=True)[-1]
    v2 = unified_expressions(frame)
    assert v2["EyeLidLeft"] == 0.0 and v2["EyeLidRight"] > 0.7         # the subject's left eye shut
    assert v2["EyeLeftX"] > 0 and v2["EyeY"] > 0   # looking to image left (the subject's right) and up
    assert v2["BrowDownLeft"] == 0.6 and v2["BrowExpressionLeft"] < 0
    assert v2["MouthSmileLeft"] == 0.8 and v2["JawOpen"] > 0.3
    assert arkit_blendshapes(frame)["EyeBlinkLeft"] == 1.0 and vrm0_blendshapes(frame)["Blink_L"] == 1.0
    assert vrm0_blendshapes(frame)["Angry"] == 0.3 and vrm0_blendshapes(frame)["LookRight"] > 0
