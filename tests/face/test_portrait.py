"""Portrait analysis on real portraits and on hard variants made here (no mocks)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from facecast import face_regions as fr
from facecast.errors import InputError, NoFaceError
from facecast.face.portrait import LEGACY_FRAMING, MANUAL_POINTS, MEAN_FACE_PATH
from facecast.face.portrait import analyze_portrait as analyze_framed
from facecast.face.tracker import FaceLandmarker
from facecast.media import load_image

PORTRAITS = Path(__file__).resolve().parents[3] / "shared" / "data" / "portraits"
PHOTO = PORTRAITS / "liveportrait_s1.jpg"          # a real, frontal photo
SECOND_PHOTO = PORTRAITS / "liveportrait_d19.jpg"

needs_portraits = pytest.mark.skipif(not PORTRAITS.is_dir(),
                                     reason=f"shared portraits not found at {PORTRAITS} (clone beside shared/)")


def analyze_portrait(*args, **kwargs):
    """Detection in the legacy framing: it levels the eyes and fixes the face's size, so `assert_aligned`
    can judge where detection put every landmark (the framing modes have their own tests, test_framing.py)."""
    return analyze_framed(*args, framing=LEGACY_FRAMING, **kwargs)


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    right = landmarks[[fr.RIGHT_EYE_OUTER, fr.RIGHT_EYE_INNER], :2].mean(axis=0)
    left = landmarks[[fr.LEFT_EYE_OUTER, fr.LEFT_EYE_INNER], :2].mean(axis=0)
    return right, left


def assert_aligned(rig, size: int = 512) -> None:
    """Common rig contract: shapes, dtypes, level eyes, framing with room for hair and shoulders."""
    assert rig.image.shape[:2] == (size, size) and rig.image.dtype == np.uint8
    assert rig.landmarks.shape == (fr.NUM_LANDMARKS, 3) and rig.landmarks.dtype == np.float32
    right, left = eye_centres(rig.landmarks)
    assert right[0] < left[0], "subject's left eye must be on image right"
    assert abs(right[1] - left[1]) < 0.01 * size, "eyes not level"
    assert 0.37 * size < (right[1] + left[1]) / 2 < 0.47 * size
    assert 0.3 * size < (right[0] + left[0]) / 2 < 0.7 * size
    face_length = np.linalg.norm(rig.landmarks[fr.FOREHEAD_TOP] - rig.landmarks[fr.CHIN])
    assert 0.36 * size < face_length < 0.46 * size


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    if not PORTRAITS.is_dir():
        pytest.skip(f"shared portraits not found at {PORTRAITS}")
    return load_image(PHOTO)


@pytest.fixture(scope="module")
def photo_rig(photo):
    return analyze_portrait(PHOTO)


# ----------------------------------------------------------------------------- real portraits

@needs_portraits
@pytest.mark.parametrize("name", ["liveportrait_s1.jpg", "liveportrait_s9.jpg", "liveportrait_s6.jpg",
                                  "liveportrait_s7.jpg", "sadtalker_art_10.png"])
def test_real_portraits(name):
    """A photo, a painting (Mona Lisa), a statue, a 3D cartoon and an RGBA digital painting."""
    rig = analyze_portrait(PORTRAITS / name)
    assert_aligned(rig)
    assert rig.face_count == 1 and rig.method.startswith("face_mesh")
    assert rig.source.endswith(name)
    assert rig.has_alpha == (name.endswith(".png") and Image.open(PORTRAITS / name).mode == "RGBA")


def test_landmarks_match_face_mesh_on_output(photo_rig):
    """The renderer's contract: landmarks are exactly where face mesh sees them in the aligned crop."""
    with FaceLandmarker() as mesh:
        faces = mesh.faces(photo_rig.image)
    assert faces
    again = faces[0][:, :2] - 0.5
    assert np.linalg.norm(again - photo_rig.landmarks[:, :2], axis=1).mean() < 3.0
    depth_range = np.ptp(photo_rig.landmarks[:, 2])
    assert 0.1 * 512 < depth_range < 0.5 * 512, "z must be in output pixels"


@pytest.mark.parametrize("size", [256, 1024])
def test_output_sizes(photo, size):
    assert_aligned(analyze_portrait(photo, size=size), size)


@pytest.mark.parametrize("size", [100, 2048])
def test_bad_size(photo, size):
    with pytest.raises(InputError, match="between 256 and 1024"):
        analyze_portrait(photo, size=size)


def test_analysis_is_fast(photo):
    analyze_portrait(photo)
    start = time.perf_counter()
    analyze_portrait(photo)
    assert time.perf_counter() - start < 1.0


# ----------------------------------------------------------------------------- synthetic variants

def test_exif_orientation_applied(photo, tmp_path):
    path = tmp_path / "sideways.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6                                  # "rotate 90 clockwise to display"
    Image.fromarray(np.ascontiguousarray(np.rot90(photo, k=1))).save(path, quality=95, exif=exif)
    loaded = load_image(path)
    assert loaded.shape == photo.shape
    assert np.abs(loaded.astype(int) - photo).mean() < 8
    assert analyze_portrait(path).method == "face_mesh"


@needs_portraits
@pytest.mark.parametrize("name", ["liveportrait_s1.jpg", "liveportrait_s11.jpg"])
def test_sideways_picture_without_exif(name):
    """Face mesh misreads some sideways faces (s11); rotated retries must still place the eyes right."""
    upright = analyze_portrait(PORTRAITS / name)
    sideways = analyze_portrait(np.ascontiguousarray(np.rot90(load_image(PORTRAITS / name), k=-1)))
    assert_aligned(sideways)
    irises = [fr.RIGHT_IRIS[0], fr.LEFT_IRIS[0]]
    iod = np.linalg.norm(np.subtract(*upright.landmarks[irises, :2]))
    assert np.linalg.norm(sideways.landmarks[irises, :2] - upright.landmarks[irises, :2], axis=1).max() < 0.1 * iod


def test_greyscale_file(photo, tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(photo).convert("L").save(path)
    image = load_image(path)
    assert image.shape == photo.shape and image.dtype == np.uint8
    assert_aligned(analyze_portrait(path))


def test_rgba_keeps_alpha_and_fills_outside_transparent(photo, tmp_path):
    h, w = photo.shape[:2]
    cutout = photo[h // 5:h * 4 // 5, w // 5:w * 4 // 5]       # tighter than the framing wants
    border = w // 4
    rgba = np.zeros((cutout.shape[0] + 2 * border, cutout.shape[1] + 2 * border, 4), np.uint8)
    rgba[border:-border, border:-border, :3] = cutout
    rgba[border:-border, border:-border, 3] = 255
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba).save(path)
    rig = analyze_portrait(path)
    assert_aligned(rig)
    assert rig.has_alpha
    alpha = rig.image[..., 3]
    right, left = eye_centres(rig.landmarks)
    eye = ((right + left) / 2).astype(int)
    assert alpha[eye[1], eye[0]] == 255
    assert alpha.min() == 0                            # the transparent border is still transparent


def test_rgb_outside_fill_is_soft(photo):
    """A crop that leaves the picture gets a blurred edge, not black and not a mirrored copy."""
    small = cv2.resize(photo, (400, 400), interpolation=cv2.INTER_AREA)[40:340, 60:340]
    rig = analyze_portrait(small)
    image = rig.image.astype(np.float32)
    assert image[:8].mean() > 20 and image[-8:].mean() > 20
    edge_detail = np.abs(np.diff(image[-40:], axis=1)).mean()
    assert edge_detail < 4.0


def test_tiny_image(photo):
    tiny = cv2.resize(photo, (64, 64), interpolation=cv2.INTER_AREA)
    assert_aligned(analyze_portrait(tiny))


def test_huge_image(photo):
    huge = cv2.resize(photo, (5000, 5000), interpolation=cv2.INTER_LINEAR)
    start = time.perf_counter()
    rig = analyze_portrait(huge)
    assert_aligned(rig)
    assert time.perf_counter() - start < 3.0


@needs_portraits
def test_two_faces_largest_first_and_face_index(photo):
    other = load_image(SECOND_PHOTO)
    small = cv2.resize(other, (other.shape[1] * 6 // 10, other.shape[0] * 6 // 10), interpolation=cv2.INTER_AREA)
    canvas = np.full((photo.shape[0], photo.shape[1] + small.shape[1], 3), 200, np.uint8)
    canvas[:, :photo.shape[1]] = photo
    top = (photo.shape[0] - small.shape[0]) // 2
    canvas[top:top + small.shape[0], photo.shape[1]:] = small

    largest = analyze_portrait(canvas)
    second = analyze_portrait(canvas, face_index=1)
    assert largest.face_count == second.face_count == 2
    reference = {name: analyze_portrait(image, size=256).image.astype(np.float32)
                 for name, image in (("photo", photo), ("other", other))}

    def closest(rig) -> str:
        crop = cv2.resize(rig.image, (256, 256), interpolation=cv2.INTER_AREA)[64:192, 64:192]
        return min(reference, key=lambda name: np.abs(reference[name][64:192, 64:192] - crop).mean())

    assert closest(largest) == "photo" and closest(second) == "other"
    with pytest.raises(InputError, match="found 2 faces"):
        analyze_portrait(canvas, face_index=2)


@needs_portraits
def test_the_second_face_is_found_where_only_a_retry_confirms_it(shared_data, tmp_path):
    """Two photos side by side (liveportrait_s1 and s2, 512 px tall, saved as a JPEG): `analyze` counted 2
    faces, then `--face-index 1` said there was only 1 (a turned retry, which finds one face, ended the search)."""
    from PIL import Image

    pictures = [Image.open(shared_data / "portraits" / name).convert("RGB")
                for name in ("liveportrait_s1.jpg", "liveportrait_s2.jpg")]
    pictures = [np.asarray(p.resize((p.width * 512 // p.height, 512))) for p in pictures]
    Image.fromarray(np.concatenate(pictures, axis=1)).save(tmp_path / "two.jpg")
    canvas = tmp_path / "two.jpg"
    assert analyze_portrait(canvas).face_count == 2
    second = analyze_portrait(canvas, face_index=1)
    assert second.face_count == 2
    # the chosen face is the right-hand photo's: its landmarks map back into the right half of the canvas
    centre = np.linalg.inv(second.transform)[:2] @ np.append(second.landmarks[:, :2].mean(0), 1.0)
    assert centre[0] > pictures[0].shape[1]


def test_a_picture_too_small_to_hold_a_face_is_refused(photo):
    """At 16x16 face mesh 'found' a face after turning the picture, its landmarks strewn over the whole
    picture; now one line."""
    tiny = cv2.resize(photo, (16, 16), interpolation=cv2.INTER_AREA)
    with pytest.raises(InputError, match="is 16x16 px: too small to animate"):
        analyze_portrait(tiny)


def test_blank_image_has_no_face():
    with pytest.raises(NoFaceError, match="--landmarks"):
        analyze_portrait(np.full((480, 480, 3), 180, np.uint8))


# ----------------------------------------------------------------------------- file errors and formats

def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "nobody.jpg")


def test_unsupported_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a picture")
    with pytest.raises(InputError, match="notes.txt"):
        analyze_portrait(path)


def test_corrupt_file(photo, tmp_path):
    path = tmp_path / "broken.jpg"
    Image.fromarray(photo).save(path, quality=90)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(InputError, match="broken.jpg"):
        load_image(path)


def test_other_pixel_formats(photo, tmp_path):
    grey16 = (cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257)
    Image.fromarray(grey16).save(tmp_path / "deep.png")
    deep = load_image(tmp_path / "deep.png")
    assert deep.dtype == np.uint8 and deep.shape == photo.shape and 40 < deep.mean() < 220

    Image.fromarray(photo).convert("CMYK").save(tmp_path / "print.jpg")
    assert load_image(tmp_path / "print.jpg").shape == photo.shape

    palette = Image.fromarray(photo).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "palette.png", transparency=0)
    assert load_image(tmp_path / "palette.png").shape == (*photo.shape[:2], 4)


def test_bad_array_input():
    with pytest.raises(InputError, match="uint8"):
        analyze_portrait(np.zeros((64, 64, 3), np.float32))


# ----------------------------------------------------------------------------- hand-placed landmarks

def test_mean_face_template():
    mean_face = np.load(MEAN_FACE_PATH)
    assert mean_face.shape == (fr.NUM_LANDMARKS, 3) and mean_face.dtype == np.float32
    right, left = eye_centres(mean_face)
    assert np.allclose((right + left) / 2, 0, atol=1e-4)
    assert np.linalg.norm(left - right) == pytest.approx(1.0, abs=1e-4)
    assert MEAN_FACE_PATH.stat().st_size < 10_000


def manual_points(landmarks: np.ndarray) -> dict[str, list[float]]:
    return {key: [float(v) for v in landmarks[index, :2]] for key, index in MANUAL_POINTS.items()}


def test_manual_landmarks(photo_rig, tmp_path):
    path = tmp_path / "points.json"
    path.write_text(json.dumps(manual_points(photo_rig.landmarks)))
    blank_with_points = np.full((512, 512, 3), 180, np.uint8)   # detection would fail here
    rig = analyze_portrait(blank_with_points, landmarks_json=path)
    assert rig.method == "manual" and rig.face_count == 1
    assert_aligned(rig)
    # The same picture with real detection and with hand points gives nearly the same crop.
    manual = analyze_portrait(photo_rig.image, landmarks_json=path)
    auto = analyze_portrait(photo_rig.image)
    keys = list(MANUAL_POINTS.values())
    iod = np.linalg.norm(np.subtract(*eye_centres(auto.landmarks)))
    assert np.linalg.norm(manual.landmarks[keys, :2] - auto.landmarks[keys, :2], axis=1).mean() < 0.15 * iod


@pytest.mark.parametrize("case, message", [
    ("not json", "not valid JSON"),
    ("list", "JSON object"),
    ("missing", "missing chin"),
    ("string", "nose_tip must be"),
    ("outside", "outside the 512x512"),
    ("same point", "eyes are"),
    ("mirrored", "left eye on the image right"),
])
def test_bad_manual_landmarks(photo_rig, tmp_path, case, message):
    points = manual_points(photo_rig.landmarks)
    if case == "missing":
        del points["chin"]
    elif case == "string":
        points["nose_tip"] = ["10", 20]
    elif case == "outside":
        points["chin"] = [100, 900]
    elif case == "same point":
        points = {key: [200, 200] for key in points}
    elif case == "mirrored":
        points = {key: [511 - x, y] for key, (x, y) in points.items()}
    text = {"not json": "{chin: [1, 2]", "list": json.dumps(list(points.values()))}.get(case, json.dumps(points))
    path = tmp_path / "points.json"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        analyze_portrait(photo_rig.image, landmarks_json=path)


def test_missing_manual_landmarks_file(photo_rig, tmp_path):
    with pytest.raises(InputError, match="landmarks file not found"):
        analyze_portrait(photo_rig.image, landmarks_json=tmp_path / "nope.json")
