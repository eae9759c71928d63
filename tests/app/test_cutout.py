"""`--cutout`: the person segmented once per portrait into the rig's alpha, its fallback, and every output."""

from __future__ import annotations

import json
import logging
import tomllib
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import tone_speech, write_audio
from facecast.app.cli import main
from facecast.app.cutout import cut_out
from facecast.app.options import default_config_text, resolve_settings
from facecast.app.render import RenderRequest, render
from facecast.face.cutout import FACE_OVAL_INSET, face_oval_mask, foreground_colour, person_alpha, with_alpha
from facecast.face.portrait import analyze_portrait
from facecast.media import read_video_rgba
from facecast.motion import Blink, HeadPose, MotionFrame
from facecast.render.renderer import Renderer
from facecast.render.warp_basis import WarpBasis, head_mask_image

SIZE = 256
CORNER = 12  # px: the top corners of a head-and-shoulders crop are background (the bottom ones may be shoulders)
PHOTO = "liveportrait_s1.jpg"  # a real photo in ../shared/data/portraits


def top_corners(alpha: np.ndarray) -> np.ndarray:
    return np.concatenate([alpha[:CORNER, :CORNER].ravel(), alpha[:CORNER, -CORNER:].ravel()])


def face_inside(rig_landmarks: np.ndarray, size: int) -> np.ndarray:
    return face_oval_mask(rig_landmarks, size, inset=FACE_OVAL_INSET) > 0.99


@pytest.fixture(scope="module")
def mona_rig(sample_portrait: Path):
    return analyze_portrait(sample_portrait, size=SIZE)


def line_drawing(path: Path) -> tuple[Path, Path]:
    """A cartoon face drawn in black lines on white (the segmentation model sees no person in it), and
    hand-placed face points for it (face mesh finds no face in it either)."""
    picture = np.full((400, 400, 3), 255, np.uint8)
    cv2.ellipse(picture, (200, 210), (110, 140), 0, 0, 360, (0, 0, 0), 4)
    for x in (160, 240):
        cv2.circle(picture, (x, 180), 14, (0, 0, 0), 4)
    cv2.ellipse(picture, (200, 280), (40, 14), 0, 0, 180, (0, 0, 0), 4)
    Image.fromarray(picture).save(path)
    points = {"left_eye_outer": [258, 180], "left_eye_inner": [222, 180], "right_eye_inner": [178, 180],
              "right_eye_outer": [142, 180], "nose_tip": [200, 230], "mouth_left": [240, 282],
              "mouth_right": [160, 282], "chin": [200, 345]}
    landmarks = path.with_suffix(".json")
    landmarks.write_text(json.dumps(points))
    return path, landmarks


def check_person_cut_out(rig, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="facecast.cutout"):
        cut = cut_out(rig)
    assert not caplog.records, "the person was found: no fallback line"
    assert cut.has_alpha and cut.image.shape == (rig.size, rig.size, 4)
    alpha = cut.image[..., 3]
    assert top_corners(alpha).max() == 0
    face = face_inside(rig.landmarks, rig.size)
    assert alpha[face].min() == 255
    # opaque pixels keep the picture's colour exactly; the edge is feathered, not a hard step
    opaque = alpha == 255
    assert np.array_equal(cut.image[..., :3][opaque], rig.image[..., :3][opaque])
    edge = (alpha > 0) & (alpha < 255)
    assert 0.002 < edge.mean() < 0.1
    # a clear split: mostly fully in or fully out
    assert 0.2 < opaque.mean() < 0.8


def test_cutout_on_a_painted_portrait(mona_rig, caplog):
    check_person_cut_out(mona_rig, caplog)


def test_cutout_on_a_photo(shared_data, caplog):
    check_person_cut_out(analyze_portrait(shared_data / "portraits" / PHOTO, size=SIZE), caplog)


def test_no_person_falls_back_to_the_head_mask_with_one_line(tmp_path, caplog):
    picture, points = line_drawing(tmp_path / "drawing.png")
    rig = analyze_portrait(picture, size=SIZE, landmarks_json=points)
    assert person_alpha(rig.image, rig.landmarks) is None
    with caplog.at_level(logging.INFO, logger="facecast"):
        cut = cut_out(rig)
    lines = [r for r in caplog.records if r.name.startswith("facecast")]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "no person found" in lines[0].getMessage() and "head mask" in lines[0].getMessage()
    expected = np.rint(head_mask_image(rig.landmarks, SIZE) * 255)
    assert np.abs(cut.image[..., 3].astype(int) - expected).max() <= 1
    # a tight auto-framed drawing: the head mask's soft edge may just reach the corners (at most 3 % opaque)
    assert top_corners(cut.image[..., 3]).max() <= 8
    assert cut.image[..., 3][face_inside(rig.landmarks, SIZE)].min() >= 250


def test_head_mask_image_is_the_renderers_head_mask(mona_rig):
    """The fallback is the mask rigid head motion moves: sampled at the renderer's grid cells it is that mask."""
    basis = WarpBasis(mona_rig.image, mona_rig.landmarks)
    full = head_mask_image(mona_rig.landmarks, SIZE)
    cells = cv2.resize(full, (basis.grid.cells, basis.grid.cells), interpolation=cv2.INTER_AREA)
    assert np.abs(cells - basis.head_mask).max() < 0.02


def test_cutout_keeps_the_pictures_own_transparency(mona_rig):
    """An RGBA picture's own alpha multiplies the matte: what the picture made transparent stays so."""
    own = np.full((SIZE, SIZE), 255, np.uint8)
    own[SIZE // 2 - 20:SIZE // 2 + 20, SIZE // 2 - 20:SIZE // 2 + 20] = 0   # a hole in the face
    own[:, :SIZE // 8] = 128
    rig = replace(mona_rig, image=np.dstack([mona_rig.image[..., :3], own]))
    cut = with_alpha(rig, person_alpha(rig.image, rig.landmarks))
    alpha = cut.image[..., 3].astype(int)
    assert alpha[SIZE // 2 - 20:SIZE // 2 + 20, SIZE // 2 - 20:SIZE // 2 + 20].max() == 0
    assert np.all(alpha <= own.astype(int) + 1)
    face = face_inside(rig.landmarks, SIZE) & (own == 255)
    assert alpha[face].min() == 255


def test_edge_colour_is_the_persons_not_the_old_background():
    """rgb = F a + B (1 - a) over a soft edge (8 px, as feathered hair): the estimate of F is near the person's
    colour, not the mix."""
    size = 128
    ramp = np.clip((np.arange(size, dtype=np.float32) - 48) / 8, 0, 1)
    alpha = np.tile(ramp, (size, 1))
    person, background = np.array([0.9, 0.2, 0.1], np.float32), np.array([0.1, 0.8, 0.2], np.float32)
    rgb = alpha[..., None] * person + (1 - alpha[..., None]) * background
    estimate = foreground_colour(rgb, alpha)
    band = (alpha > 0.1) & (alpha < 0.9)
    assert np.abs(estimate[band] - person).max() < 0.1
    assert np.abs(rgb[band] - person).mean() > 0.2  # the mix itself is far from it
    assert np.array_equal(estimate[alpha == 1], rgb[alpha == 1])


def test_the_alpha_does_not_flicker_on_a_still_head(mona_rig):
    """Mouth, eyes and brows moving with the head still: the alpha stays (the only source of change is the warp)."""
    renderer = Renderer(cut_out(mona_rig), device="cpu")
    previous, changes = None, []
    for i in range(30):
        t = i / 25
        open_ = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
        blink = float(i % 10 == 0)
        frame = MotionFrame(t=t, head=HeadPose(), blink=Blink(blink, blink),
                            expressions={"jawOpen": open_, "browInnerUp": 1 - open_, "mouthSmileLeft": open_,
                                         "mouthSmileRight": open_})
        alpha = renderer.render(frame)[..., 3].astype(np.int16)
        if previous is not None:
            changes.append(np.abs(alpha - previous).mean())
        previous = alpha
    assert np.mean(changes) < 2.0


# ---------------------------------------------------------------------------------------------- outputs

@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    return write_audio(tmp_path_factory.mktemp("speech") / "s.wav", tone_speech(1.0, 16000), 16000)


@pytest.mark.parametrize("suffix, video_codec, audio_codec", [(".webm", "vp9", "opus"),
                                                               (".mov", "prores", "pcm_s16le")])
def test_cutout_video_keeps_the_alpha(tmp_path, sample_portrait, speech, suffix, video_codec, audio_codec):
    out = tmp_path / f"avatar{suffix}"
    report = render(RenderRequest(portrait=sample_portrait, audio=speech, output=out, size=SIZE, progress=False,
                                  cutout=True, generator="rule"))
    assert report.frames == 25
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == video_codec
        assert container.streams.audio[0].codec_context.name == audio_codec
    frames = read_video_rgba(out)
    assert len(frames) == 25
    for frame in (frames[0], frames[-1]):
        assert top_corners(frame[..., 3]).max() <= 2      # codecs round: transparent is 0-2
        assert frame[SIZE // 2 - 8:SIZE // 2 + 8, SIZE // 2 - 8:SIZE // 2 + 8, 3].min() >= 253


def test_cutout_mp4_is_on_the_background_and_png_frames_keep_alpha(tmp_path, sample_portrait, speech):
    render(RenderRequest(portrait=sample_portrait, audio=speech, output=tmp_path / "a.mp4", size=SIZE,
                         progress=False, cutout=True, generator="rule", background=(255, 0, 255)))
    first = read_video_rgba(tmp_path / "a.mp4", max_frames=1)[0]
    assert np.abs(first[:CORNER, :CORNER, :3].astype(int) - (255, 0, 255)).max() <= 12   # H.264 4:2:0 rounding
    render(RenderRequest(portrait=sample_portrait, audio=speech, frames_dir=tmp_path / "frames", size=SIZE,
                         progress=False, cutout=True, generator="rule"))
    png = np.asarray(Image.open(tmp_path / "frames" / "frame_000000.png"))
    assert png.shape == (SIZE, SIZE, 4) and top_corners(png[..., 3]).max() == 0 and png[SIZE // 2, SIZE // 2, 3] == 255


def test_render_cli_cutout_flag_writes_a_transparent_webm(tmp_path, sample_portrait, speech, capsys):
    out = tmp_path / "cli.webm"
    code = main(["render", "-p", str(sample_portrait), "-a", str(speech), "-o", str(out), "--cutout",
                 "--size", str(SIZE), "--generator", "rule", "-q"])
    assert code == 0, capsys.readouterr().err
    assert top_corners(read_video_rgba(out, max_frames=1)[0][..., 3]).max() <= 2
    # without --cutout the Mona Lisa (an RGB picture) stays opaque
    code = main(["render", "-p", str(sample_portrait), "-a", str(speech), "-o", str(tmp_path / "plain.webm"),
                 "--size", str(SIZE), "--generator", "rule", "-q"])
    assert code == 0 and read_video_rgba(tmp_path / "plain.webm", max_frames=1)[0][..., 3].min() == 255


def test_unsupported_output_names_the_alpha_formats(tmp_path, sample_portrait, speech, capsys):
    assert main(["render", "-p", str(sample_portrait), "-a", str(speech), "-o", str(tmp_path / "a.avi")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and ".webm" in err and ".mov" in err


def test_live_cutout_setting_from_flag_and_config(tmp_path):
    assert resolve_settings({"portrait": "me.png"})["cutout"] is False
    assert resolve_settings({"portrait": "me.png", "cutout": True})["cutout"] is True
    config = tmp_path / "facecast.toml"
    config.write_text('portrait = "me.png"\ncutout = true\n')
    assert resolve_settings({"config": config})["cutout"] is True
    assert "# cutout = false" in default_config_text()
    assert tomllib.loads(default_config_text().replace("# cutout = false", "cutout = true"))["cutout"] is True
    from facecast.app.cli import build_parser

    args = build_parser().parse_args(["live", "--portrait", "me.png", "--cutout"])
    assert args.cutout is True
