"""Portrait-analysis benchmark: does the automatic path find the face, how, how fast.

Run: `python benchmarks/portraits.py [--set all|tuned|unseen] [--size 512] [--sheet /tmp/portrait_sheet.png]`

Sets (from shared/data/portraits):
  tuned   liveportrait_*   the pictures the framing and retries were tuned on
  unseen  sadtalker_art_*  not looked at while tuning
  hard    variants of every portrait made here: rotated 90 deg, tiny (96 px), dark
          (gamma 3), low contrast, greyscale, JPEG quality 10, and a tight crop of the
          face (it fills the frame: detection needs the padding retry or copes without).
For variants, "eye err" is how far (px) the iris centres land from where the original
picture puts them in the aligned crop: it tells a found face from a wrongly placed one.
A variant counts as a success when a face is found and eye err < 10% of the eye distance.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from facecast import face_regions as fr
from facecast.errors import NoFaceError
from facecast.face.portrait import LEGACY_FRAMING, analyze_portrait
from facecast.media import load_image

PORTRAITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "portraits"
IRISES = [fr.RIGHT_IRIS[0], fr.LEFT_IRIS[0]]


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _tight_crop(rig_image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    x0, y0 = np.floor(landmarks[:, :2].min(axis=0)).astype(int).clip(0)
    x1, y1 = np.ceil(landmarks[:, :2].max(axis=0)).astype(int)
    return np.ascontiguousarray(rig_image[y0:y1, x0:x1, :3])


def hard_variants(rgb: np.ndarray, rig_image: np.ndarray, rig_landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """The hard copies of one portrait (RGB)."""
    h, w = rgb.shape[:2]
    tiny = 96 / max(h, w)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return {
        "rot90": np.ascontiguousarray(np.rot90(rgb, k=-1)),
        "tiny96": cv2.resize(rgb, (max(1, round(w * tiny)), max(1, round(h * tiny))), interpolation=cv2.INTER_AREA),
        "dark": ((rgb / 255.0) ** 3 * 255).astype(np.uint8),
        "lowcontrast": (rgb * 0.25 + 96).astype(np.uint8),
        "grey": grey,
        "jpeg10": _jpeg(rgb, 10),
        "tightcrop": _tight_crop(rig_image, rig_landmarks),
    }


def _run(source, size: int):
    start = time.perf_counter()
    try:
        rig = analyze_portrait(source, size=size, framing=LEGACY_FRAMING)  # its checks measure the levelled crop
    except NoFaceError:
        return None, time.perf_counter() - start
    return rig, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--set", choices=("all", "tuned", "unseen"), default="all")
    parser.add_argument("--sheet", type=Path, help="write a contact sheet of the aligned crops here")
    args = parser.parse_args()
    if not PORTRAITS.is_dir():
        raise SystemExit(f"portraits folder missing: {PORTRAITS}")

    results: dict[str, list[bool]] = {"tuned": [], "unseen": [], "hard (tuned)": [], "hard (unseen)": []}
    times: list[float] = []
    sheet = []
    print(f"{'portrait':28} {'variant':12} {'ok':3} {'method':34} {'ms':>6} {'eye err':>8}")
    for path in sorted(PORTRAITS.iterdir()):
        group = "tuned" if path.name.startswith("liveportrait_") else "unseen"
        if args.set not in ("all", group):
            continue
        rig, seconds = _run(path, args.size)
        times.append(seconds)
        results[group].append(rig is not None)
        print(f"{path.name:28} {'original':12} {'yes' if rig else 'NO':3} "
              f"{rig.method if rig else '-':34} {seconds * 1000:6.0f}")
        if rig is None:
            continue
        sheet.append(rig.image[..., :3])
        iod = float(np.linalg.norm(rig.landmarks[IRISES[0], :2] - rig.landmarks[IRISES[1], :2]))
        for name, picture in hard_variants(load_image(path)[..., :3], rig.image, rig.landmarks).items():
            variant, seconds = _run(picture, args.size)
            error = (float(np.linalg.norm(variant.landmarks[IRISES, :2] - rig.landmarks[IRISES, :2], axis=1).mean())
                     if variant else float("nan"))
            ok = variant is not None and error < 0.1 * iod
            results[f"hard ({group})"].append(ok)
            print(f"{'':28} {name:12} {'yes' if ok else 'NO':3} {variant.method if variant else '-':34} "
                  f"{seconds * 1000:6.0f} {error:8.1f}")

    print()
    for group, outcomes in results.items():
        if not outcomes:
            continue
        print(f"{group:14} {sum(outcomes):3}/{len(outcomes):<3} found ({100 * np.mean(outcomes):.0f}%)")
    print(f"analysis time of the originals: median {1000 * np.median(times):.0f} ms, max {1000 * max(times):.0f} ms")
    if args.sheet and sheet:
        tile = 256
        tiles = [cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA) for image in sheet]
        tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 6)
        grid = np.vstack([np.hstack(tiles[i:i + 6]) for i in range(0, len(tiles), 6)])
        cv2.imwrite(str(args.sheet), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        print(f"contact sheet: {args.sheet}")


if __name__ == "__main__":
    main()
