"""Landmark benchmark: does facecast's face tracker give the landmarks mediapipe 0.10.21 gave?

    # once, with a Python that has mediapipe 0.10.21 (its legacy `solutions` API), e.g. an old checkout's venv:
    /path/to/old/.venv/bin/python benchmarks/landmarks.py --reference /tmp/landmarks_0.10.21.npz
    # then with facecast installed:
    python benchmarks/landmarks.py --compare /tmp/landmarks_0.10.21.npz

facecast measured faces with mediapipe 0.10.21's `solutions` API (FaceMesh, FaceDetection);
mediapipe 1.x dropped that API and has no wheel beside 0.10.21, so the reference is stored
in one run and compared in another. `face.tracker` runs the same model files through the
Tasks API (the landmark model patched to merge its heads, see `face/models/NOTICE.md`).

Inputs: every portrait in shared/data/portraits (EXIF-upright, transparency on grey as
portrait analysis does), and 500 frames spread evenly over the held-out talking clips of
`src/facecast/dataset/split.json` (250 over GRID s4, 250 over the in-the-wild validation
speakers). Rows (groups):

* portraits: image mode, up to 8 faces (as portrait analysis runs it);
* grid_s4 / wild, image: each sampled frame alone, one face;
* grid_s4 / wild, video: each clip tracked from its first frame (as extraction and the
  quality measures run it; the sampled frames are compared), one face;
* detector short / full: the face detector's boxes on the portraits and sampled frames.

Columns: items; faces found by 0.10.21 and by facecast (summed), items where the counts
differ; landmark difference (xy) as % of the inter-ocular distance (eye-corner centres of
the 0.10.21 face): mean over items of the item's mean, the largest item mean, the largest
single point; the mean z difference (% IOD). For detectors: box corner difference as % of
the box width (mean, max). Frames are checked by hash to be the same pictures in both runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from fnmatch import fnmatchcase
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SPLIT = ROOT / "src" / "facecast" / "dataset" / "split.json"
FRAMES_PER_GROUP = 250
PORTRAIT_FACES = 8                     # portrait analysis' MAX_FACES
GREY = 128                             # portrait analysis' background under transparency
RIGHT_EYE, LEFT_EYE = (33, 133), (362, 263)
MAX_BOXES = 8
#: The pictures of tests/face/test_tracker.py's stored 0.10.21 landmarks (`--test-reference`).
TEST_PORTRAITS = (ROOT / "samples" / "mona_lisa.jpg", DATA / "portraits" / "liveportrait_s1.jpg",
                  DATA / "portraits" / "liveportrait_s7.jpg", DATA / "portraits" / "sadtalker_art_10.png")


# ----------------------------------------------------------------------------- inputs (both runs)

def load_portrait(path: Path) -> np.ndarray:
    """RGB as portrait analysis detects on it (before resizing): EXIF-upright, alpha over grey."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
        image = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    if image.shape[2] == 4:
        alpha = image[..., 3:4].astype(np.float32) / 255.0
        image = (image[..., :3] * alpha + GREY * (1.0 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(image)


def validation_clips() -> dict[str, list[Path]]:
    """Held-out talking clips by group: grid_s4 and wild."""
    speakers = json.loads(SPLIT.read_text())["speakers"]
    patterns = [p for s in speakers if s["split"] == "validation" for p in s["clips"] if p.startswith("talking/")]
    clips = sorted({p for p in (DATA / "talking").rglob("*.mp4")
                    if any(fnmatchcase(p.relative_to(DATA).as_posix(), pattern) for pattern in patterns)})
    return {"grid_s4": [c for c in clips if c.parent.name == "grid_s4"],
            "wild": [c for c in clips if c.parent.name != "grid_s4"]}


def count_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size)


def sample_plan(clips: list[Path], count: int) -> list[tuple[Path, int]]:
    """(clip, frame index) of `count` frames spread evenly over the clips' frames laid end to end."""
    lengths = [count_frames(c) for c in clips]
    starts = np.cumsum([0] + lengths)
    picks = np.unique(np.linspace(0, starts[-1] - 1, count).round().astype(int))
    plan = []
    for g in picks:
        k = int(np.searchsorted(starts, g, side="right") - 1)
        plan.append((clips[k], int(g - starts[k])))
    return plan


def clip_frames(path: Path, last: int):
    """RGB frames 0..last of a clip."""
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i > last:
                return
            yield i, frame.to_ndarray(format="rgb24")


def digest(rgb: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).hexdigest()[:16]


def plans() -> dict[str, list[tuple[Path, int]]]:
    return {group: sample_plan(clips, FRAMES_PER_GROUP) for group, clips in validation_clips().items()}


# ----------------------------------------------------------------------------- the two trackers

class Legacy:
    """mediapipe 0.10.21's solutions API, as facecast called it."""

    def __init__(self) -> None:
        import mediapipe as mp  # 0.10.21 only

        self.mp = mp

    def mesh(self, static: bool, faces: int):
        mesh = self.mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=faces,
                                                    refine_landmarks=True, min_detection_confidence=0.5,
                                                    min_tracking_confidence=0.5)

        def run(rgb: np.ndarray) -> list[np.ndarray]:
            h, w = rgb.shape[:2]
            result = mesh.process(rgb)
            faces = result.multi_face_landmarks or []
            return [np.array([(p.x * w, p.y * h, p.z * w) for p in f.landmark]) for f in faces]
        return run, mesh.close

    def detector(self, model: str):
        detector = self.mp.solutions.face_detection.FaceDetection(model_selection=int(model == "full"),
                                                                  min_detection_confidence=0.4)

        def run(rgb: np.ndarray) -> list[tuple[float, ...]]:
            h, w = rgb.shape[:2]
            out = []
            for d in detector.process(rgb).detections or []:
                box = d.location_data.relative_bounding_box
                out.append((box.xmin * w, box.ymin * h, box.width * w, box.height * h))
            return out
        return run, detector.close


class Facecast:
    """facecast's face.tracker."""

    def __init__(self) -> None:
        from facecast.face import tracker

        self.tracker = tracker

    def mesh(self, static: bool, faces: int):
        landmarker = self.tracker.FaceLandmarker(video=not static, max_faces=faces)
        return landmarker.faces, landmarker.close

    def detector(self, model: str):
        detector = self.tracker.FaceDetector(model)
        return detector.boxes, detector.close


def padded(faces: list, shape: tuple[int, ...]) -> np.ndarray:
    out = np.full(shape, np.nan, np.float32)
    for i, f in enumerate(faces[:shape[0]]):
        out[i] = f
    return out


def run_all(backend, log=print) -> dict[str, np.ndarray]:
    """Every measurement of the benchmark with one backend, as arrays (NaN where no face)."""
    out: dict[str, np.ndarray] = {}
    portraits = sorted(p for p in (DATA / "portraits").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    images = {p.name: load_portrait(p) for p in portraits}
    frames: dict[str, list[tuple[str, np.ndarray]]] = {}
    planned = plans()
    for group, plan in planned.items():
        frames[group] = []
        for clip in sorted({c for c, _ in plan}):
            wanted = {i for c, i in plan if c == clip}
            for i, rgb in clip_frames(clip, max(wanted)):
                if i in wanted:
                    frames[group].append((f"{clip.parent.name}/{clip.stem}#{i}", rgb))
    out["portraits_names"] = np.array(list(images))
    out["portraits_hash"] = np.array([digest(v) for v in images.values()])
    for group, items in frames.items():
        out[f"{group}_names"] = np.array([n for n, _ in items])
        out[f"{group}_hash"] = np.array([digest(v) for _, v in items])

    started = time.perf_counter()
    run, close = backend.mesh(static=True, faces=PORTRAIT_FACES)
    out["portraits"] = np.stack([padded(run(rgb), (PORTRAIT_FACES, 478, 3)) for rgb in images.values()])
    for group, items in frames.items():
        out[f"{group}_image"] = np.stack([padded(run(rgb)[:1], (1, 478, 3)) for _, rgb in items])
    close()
    log(f"image mode: {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    for group, plan in planned.items():
        tracked = []
        for clip in sorted({c for c, _ in plan}):
            wanted = {i for c, i in plan if c == clip}
            run, close = backend.mesh(static=False, faces=1)
            for i, rgb in clip_frames(clip, max(wanted)):
                faces = run(rgb)
                if i in wanted:
                    tracked.append(padded(faces[:1], (1, 478, 3)))
            close()
        out[f"{group}_video"] = np.stack(tracked)
    log(f"video mode: {time.perf_counter() - started:.1f} s")

    every = list(images.values()) + [rgb for items in frames.values() for _, rgb in items]
    for model in ("short", "full"):
        run, close = backend.detector(model)
        out[f"detector_{model}"] = np.stack([padded([b for b in run(rgb)], (MAX_BOXES, 4)) for rgb in every])
        close()
    return out


# ----------------------------------------------------------------------------- comparison

def iod(face: np.ndarray) -> float:
    return float(np.linalg.norm(face[list(RIGHT_EYE), :2].mean(0) - face[list(LEFT_EYE), :2].mean(0)))


def match(ref: np.ndarray, new: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs of (reference face, facecast face) by nearest eye midpoint."""
    pairs = []
    new_faces = [f for f in new if not np.isnan(f).any()]
    for face in ref:
        if np.isnan(face).any() or not new_faces:
            continue
        centre = face[list(RIGHT_EYE + LEFT_EYE), :2].mean(0)
        k = int(np.argmin([np.linalg.norm(f[list(RIGHT_EYE + LEFT_EYE), :2].mean(0) - centre) for f in new_faces]))
        pairs.append((face, new_faces.pop(k)))
    return pairs


def landmark_row(ref: np.ndarray, new: np.ndarray) -> dict[str, float]:
    """ref, new: (items, faces, 478, 3) with NaN faces."""
    found_ref = (~np.isnan(ref[:, :, 0, 0])).sum(1)
    found_new = (~np.isnan(new[:, :, 0, 0])).sum(1)
    item_means, points, z = [], [], []
    for r, n in zip(ref, new):
        for a, b in match(r, n):
            d = np.linalg.norm(a[:, :2] - b[:, :2], axis=1) / iod(a) * 100
            item_means.append(d.mean())
            points.append(d.max())
            z.append(np.abs(a[:, 2] - b[:, 2]).mean() / iod(a) * 100)
    return {"items": len(ref), "found_ref": int(found_ref.sum()), "found_new": int(found_new.sum()),
            "differ": int((found_ref != found_new).sum()), "mean": float(np.mean(item_means)),
            "max_item": float(np.max(item_means)), "max_point": float(np.max(points)), "z": float(np.mean(z))}


def box_row(ref: np.ndarray, new: np.ndarray) -> dict[str, float]:
    """ref, new: (items, boxes, 4) with NaN boxes; difference of the two corners over the box width."""
    found_ref = (~np.isnan(ref[:, :, 0])).sum(1)
    found_new = (~np.isnan(new[:, :, 0])).sum(1)
    diffs = []
    for r, n in zip(ref, new):
        remaining = [b for b in n if not np.isnan(b).any()]
        for box in r:
            if np.isnan(box).any() or not remaining:
                continue
            k = int(np.argmin([np.abs(b - box).sum() for b in remaining]))
            b = remaining.pop(k)
            corners = np.abs(np.r_[b[:2] - box[:2], (b[:2] + b[2:]) - (box[:2] + box[2:])])
            diffs.append(corners.max() / box[2] * 100)
    return {"items": len(ref), "found_ref": int(found_ref.sum()), "found_new": int(found_new.sum()),
            "differ": int((found_ref != found_new).sum()), "mean": float(np.mean(diffs)),
            "max_item": float(np.max(diffs))}


def compare(reference: dict[str, np.ndarray], current: dict[str, np.ndarray]) -> None:
    for key in [k for k in reference if k.endswith("_hash")]:
        if not np.array_equal(reference[key], current[key]):
            sys.exit(f"{key}: the reference was made on other pictures (decoder or data changed); make it again")
    print("\nLandmarks: facecast's tracker against mediapipe 0.10.21 (differences in % of the inter-ocular distance)\n")
    print("| group | mode | items | faces 0.10.21 | faces facecast | items differing | mean % IOD | max item % IOD "
          "| max point % IOD | mean z % IOD |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = [("portraits", "image", "portraits")]
    rows += [(g, m, f"{g}_{m}") for m in ("image", "video") for g in ("grid_s4", "wild")]
    means = []
    for group, mode, key in rows:
        r = landmark_row(reference[key], current[key])
        means.append(r["mean"])
        print(f"| {group} | {mode} | {r['items']} | {r['found_ref']} | {r['found_new']} | {r['differ']} | "
              f"{r['mean']:.3f} | {r['max_item']:.3f} | {r['max_point']:.3f} | {r['z']:.3f} |")
    print("\n| face detector | items | faces 0.10.21 | faces facecast | items differing | mean box diff % width "
          "| max box diff % width |")
    print("|---|---|---|---|---|---|---|")
    for model in ("short", "full"):
        r = box_row(reference[f"detector_{model}"], current[f"detector_{model}"])
        print(f"| {model} range | {r['items']} | {r['found_ref']} | {r['found_new']} | {r['differ']} | "
              f"{r['mean']:.2f} | {r['max_item']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--reference", type=Path, metavar="NPZ",
                        help="measure with mediapipe 0.10.21's solutions API and store the results here")
    action.add_argument("--compare", type=Path, metavar="NPZ", help="measure with facecast's tracker and compare")
    action.add_argument("--test-reference", type=Path, metavar="NPZ",
                        help="store 0.10.21's image-mode landmarks of the test portraits (small, for the tests)")
    parser.add_argument("--save", type=Path, default=None, help="also store facecast's results (with --compare)")
    args = parser.parse_args()
    if args.test_reference:
        run, close = Legacy().mesh(static=True, faces=1)
        faces = [run(load_portrait(p))[0] for p in TEST_PORTRAITS]
        close()
        np.savez_compressed(args.test_reference, names=np.array([p.name for p in TEST_PORTRAITS]),
                            landmarks=np.stack(faces).astype(np.float32))
        print(f"wrote {args.test_reference}")
        return
    if args.reference:
        results = run_all(Legacy())
        import mediapipe
        results["mediapipe"] = np.array(mediapipe.__version__)
        np.savez_compressed(args.reference, **results)
        print(f"wrote {args.reference} (mediapipe {mediapipe.__version__})")
        return
    with np.load(args.compare) as npz:
        reference = dict(npz)
    from facecast.face.portrait import native_stderr_silenced

    with native_stderr_silenced():
        current = run_all(Facecast())
    if args.save:
        np.savez_compressed(args.save, **current)
    compare(reference, current)


if __name__ == "__main__":
    main()
