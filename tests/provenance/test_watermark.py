"""The provenance watermark: payload coding, embedding cost-free in quality, detection after real codecs."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import assert_one_line_error, run_facecast
from facecast.bridges.frame_codec import decode_frame, encode_frame
from facecast.bridges.vcam_compositor import VcamCompositor
from facecast.media import Mp4Writer
from facecast.provenance.stamp import Badge, Provenance
from facecast.provenance.verify import verify
from facecast.provenance.watermark import Payload, Watermarker, detect_frames

FPS = 25.0


@pytest.fixture(scope="module")
def talking_frames(sample_portrait, sample_speech) -> list[np.ndarray]:
    """Three seconds of real rendered frames (unmarked) of the sample portrait speaking."""
    from facecast.face.portrait import analyze_portrait
    from facecast.media import iter_mono_blocks
    from facecast.render.renderer import Renderer
    from facecast.speech.rule import generate_motion

    renderer = Renderer(analyze_portrait(sample_portrait, size=512))
    motion = generate_motion(iter_mono_blocks(sample_speech), fps=FPS)
    return [renderer.render(frame)[:, :, :3].copy() for frame in itertools.islice(motion, 75)]


def mark(frames: list[np.ndarray], payload: Payload) -> list[np.ndarray]:
    marker = Watermarker(payload)
    return [marker.embed(frame.copy(), i / FPS) for i, frame in enumerate(frames)]


def reencode(frames: list[np.ndarray], folder: Path, crf: int, height: int | None = None) -> Payload | None:
    """Re-encode like a platform would (x264 at `crf`, optionally rescaled), then run `facecast verify`'s reader."""
    if height:
        method = cv2.INTER_AREA if height < frames[0].shape[0] else cv2.INTER_CUBIC
        frames = [cv2.resize(f, (height, height), interpolation=method) for f in frames]
    path = folder / f"reencoded_{crf}_{height}.mp4"
    writer = Mp4Writer(path, frames[0].shape[0], FPS, crf=crf, preset="medium")
    for frame in frames:
        writer.write_frame(np.ascontiguousarray(frame))
    writer.close()
    return verify(path).detection.payload


def timed(frames: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
    return [(frame, i / FPS) for i, frame in enumerate(frames)]


def test_payload_round_trips_and_rejects_damage():
    payload = Payload(run_id=0xDEADBEEF, version=(1, 2))
    bits = payload.to_bits()
    assert bits.shape == (64,) and set(np.unique(bits)) == {-1.0, 1.0}
    assert Payload.from_bits(bits) == payload
    for flipped in (0, 12, 40, 63):                     # any single flipped bit fails the CRC
        damaged = bits.copy()
        damaged[flipped] *= -1
        assert Payload.from_bits(damaged) is None
    other_product = Payload(run_id=5, product=0x11).to_bits()
    assert Payload.from_bits(other_product) is None     # a valid CRC of another product is not ours
    assert Payload.for_this_run().run_id != Payload.for_this_run().run_id


def test_marking_is_invisible_and_leaves_alpha_alone(talking_frames):
    frame = talking_frames[10]
    marker = Watermarker(Payload(run_id=1))
    marked = marker.embed(frame.copy(), 0.4)
    mse = np.mean((marked.astype(np.float64) - frame) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) >= 40.0
    assert np.abs(marked.astype(int) - frame).max() <= 6
    rgba = np.dstack([frame, np.arange(512 * 512).reshape(512, 512) % 256]).astype(np.uint8)
    alpha = rgba[:, :, 3].copy()
    marker.embed(rgba, 0.4)
    np.testing.assert_array_equal(rgba[:, :, 3], alpha)
    np.testing.assert_array_equal(rgba[:, :, :3], marked)   # same mark on RGB and RGBA
    with pytest.raises(ValueError):
        marker.embed(frame.astype(np.float32), 0.0)


def test_one_marked_frame_is_enough_unmarked_frames_are_not(talking_frames):
    payload = Payload(run_id=0x0BADCAFE)
    marker = Watermarker(payload)
    for t in (0.0, 0.37, 1.1):                            # any moment of the slow modulation
        found = detect_frames([(marker.embed(talking_frames[5].copy(), t), t)])
        assert found.payload == payload and found.confidence > 0.95
    assert not detect_frames(timed(talking_frames)).detected
    assert not detect_frames([(talking_frames[0], 0.0)]).detected


@pytest.mark.parametrize("crf, height", [(28, None), (35, None), (28, 720), (28, 360)])
def test_mark_survives_h264_and_rescaling(tmp_path, talking_frames, crf, height):
    payload = Payload(run_id=0x1234ABCD)
    assert reencode(mark(talking_frames, payload), tmp_path, crf, height) == payload


def test_mark_survives_cropping_and_colour_changes(tmp_path, talking_frames):
    payload = Payload(run_id=0x00C0FFEE)
    marked = mark(talking_frames, payload)
    cut = round(0.05 * 512)
    cropped = [frame[cut:-cut, cut:-cut].copy() for frame in marked]
    assert reencode(cropped, tmp_path, 28) == payload
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** 0.9 + 0.5, 0, 255).astype(np.uint8)

    def screen_capture(frame: np.ndarray) -> np.ndarray:
        hsv = cv2.cvtColor(cv2.LUT(frame, lut), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[:, :, 1] = np.clip(hsv[:, :, 1] * 1.05, 0, 255)
        return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)

    assert reencode([screen_capture(f) for f in marked], tmp_path, 28) == payload


def test_live_outputs_keep_the_mark(talking_frames):
    """The virtual webcam's composite and the overlay's WebP frames both still carry the mark."""
    payload = Payload(run_id=77)
    marked = mark(talking_frames[:25], payload)
    compositor = VcamCompositor(1280, 720)
    assert detect_frames(timed([compositor.compose(frame) for frame in marked])).payload == payload
    overlay = []
    for i, frame in enumerate(marked[:10]):
        rgba = np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)])
        header, image = decode_frame(encode_frame(rgba, i, i / FPS))
        overlay.append((image, header.t))
    assert detect_frames(overlay).payload == payload


def test_badge_is_drawn_only_in_its_corner_and_shows_on_transparent_frames(talking_frames):
    frame = talking_frames[0]
    badged = Badge("AI-generated").draw(frame.copy())
    changed = np.argwhere(np.any(badged != frame, axis=2))
    assert len(changed) > 500
    assert changed[:, 0].min() > 0.85 * 512 and changed[:, 1].min() > 0.5 * 512
    clear = np.zeros((512, 512, 4), np.uint8)
    Badge().draw(clear)
    assert clear[:, :, 3].max() > 240 and clear[:256, :, 3].max() == 0
    stamped = Provenance("Made with facecast", Payload(run_id=9)).apply(frame.copy(), 0.0)
    assert detect_frames([(stamped, 0.0)]).payload == Payload(run_id=9)


def test_render_then_verify_end_to_end(tmp_path, sample_portrait, shared_data):
    """`facecast render` output is found (with the run id it printed), also as PNG frames; real videos are not."""
    speaker = shared_data / "talking" / "grid_s4"
    clip = speaker / sorted(p.name for p in speaker.glob("*.mp4"))[0]
    video = tmp_path / "talk.mp4"
    rendered = run_facecast("render", "-p", sample_portrait, "-a", clip, "-o", video, "--size", "256")
    assert rendered.returncode == 0, rendered.stderr
    run_id = re.search(r"watermark run id ([0-9a-f]{8})", rendered.stdout).group(1)
    checked = run_facecast("verify", video, "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    result = json.loads(checked.stdout)
    assert result["detected"] and result["payload"]["run_id"] == run_id and result["payload"]["product"] == "facecast"

    frames = tmp_path / "frames"
    assert run_facecast("render", "-p", sample_portrait, "-a", clip, "--frames", frames, "--badge").returncode == 0
    png = sorted(frames.glob("*.png"))[30]
    found = run_facecast("verify", png)
    assert found.returncode == 0 and "watermark detected" in found.stdout, found.stdout

    # pcavs_..741400104 once crashed the detector: a float32 box blur of squares came out below zero -> NaN
    for real in (clip, shared_data / "talking" / "wild" / "styletalk_Obama_clip1.mp4",
                 shared_data / "talking" / "wild" / "pcavs_Audio_Source_741400104.mp4",
                 shared_data / "portraits" / "liveportrait_s9.jpg"):
        missing = run_facecast("verify", real)
        assert missing.returncode == 1, missing.stdout + missing.stderr
        assert "no facecast watermark" in missing.stdout


@pytest.mark.parametrize("make, fragment", [
    (lambda d: d / "missing.mp4", "not found"),
    (lambda d: d, "is a folder"),
    (lambda d: (d / "junk.mp4").write_bytes(b"not a video") and d / "junk.mp4",
     "not a supported video or image file (Invalid data found when processing input)"),   # FFmpeg's reason
    (lambda d: (d / "junk.png").write_bytes(b"\x89PNG broken") and d / "junk.png", "not a picture"),
])
def test_verify_bad_input_is_exit_2_and_one_line(tmp_path, make, fragment):
    result = run_facecast("verify", make(tmp_path))
    assert result.returncode == 2
    assert_one_line_error(result, fragment)
