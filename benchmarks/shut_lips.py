"""Portraits caught mid-word: are their lips shut at rest, and do they open as motion asks?

    python benchmarks/shut_lips.py                        # the held-out first frames whose lips are parted
    python benchmarks/shut_lips.py --sheet docs/shut_lips.png
    python benchmarks/shut_lips.py --portraits --sheet docs/shut_lips_portraits.png   # ../shared/data/portraits
    python benchmarks/shut_lips.py talking/wild/pcavs_Audio_Source_00015.mp4 portraits/liveportrait_d19.jpg \
        portraits/liveportrait_d9.jpg portraits/sadtalker_art_8.png --painting-sheet docs/shut_lips_painted.png

For each picture (512², the quality benchmark's framing): how far its own lips are parted (the face mesh's
inner-lip gap, face heights), and what the mesh reads on the render at rest and at jawOpen 0.1 / 0.3 (a shut
portrait reads about 0.002 / 0.023 / 0.039 there; the mesh cannot read a painting's or a cartoon's mouth as
well). `--sheet` writes mouth crops: the picture as given, then the
render at jawOpen 0, 0.1, 0.25 and 0.4. `--painting-sheet` writes, per picture, the picture as given, its lips
shut by the warp alone and shut with the interior the warp leaves painted over (`render.shut_lips`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from facecast import face_regions as fr  # noqa: E402
from facecast.dataset.cache import DEFAULT_DATA  # noqa: E402
from facecast.face.extraction import iter_video_frames  # noqa: E402
from facecast.face.measure import FaceMeasurer, mouth_opening  # noqa: E402
from facecast.face.portrait import LEGACY_FRAMING, analyze_portrait  # noqa: E402
from facecast.motion import MotionFrame  # noqa: E402
from facecast.render.renderer import Renderer  # noqa: E402
from facecast.render.shut_lips import shut_lips  # noqa: E402

CLIPS = ("talking/wild/pcavs_Audio_Source_00015.mp4", "talking/wild/pcavs_Pose_Source_741400163.mp4",
         "talking/wild/styletalk_feifeili_clip2_short.mp4", "talking/grid_s4/bbaf2a.mp4")
JAWS = (0.0, 0.1, 0.25, 0.4)
PICTURES = (".jpg", ".jpeg", ".png", ".webp")
CROP = (140, 160)  # rows, columns around the mouth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips", nargs="*", default=list(CLIPS),
                        help="videos (their first frame) or pictures, under --data")
    parser.add_argument("--portraits", action="store_true",
                        help="instead, every picture in --data's portraits/ whose lips the renderer shuts")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sheet", type=Path, default=None, help="write the mouth crops here (PNG)")
    parser.add_argument("--painting-sheet", type=Path, default=None,
                        help="write crops of the lips as given, shut by the warp alone and painted over (PNG)")
    args = parser.parse_args(argv)
    if args.portraits:
        args.clips = [str(p.relative_to(args.data)) for p in sorted((args.data / "portraits").iterdir())
                      if p.suffix.lower() in PICTURES]
    rows, painting_rows = [], []
    print("| picture | parted | at rest | jawOpen 0.1 | jawOpen 0.3 |\n|---|---|---|---|---|")
    with FaceMeasurer(static_images=True) as measurer:
        def read(image: np.ndarray) -> float:
            points = measurer.landmarks(image[..., :3])
            return float("nan") if points is None else mouth_opening(points)

        for rel in args.clips:
            path = args.data / rel
            picture = path if path.suffix.lower() in PICTURES else next(iter(iter_video_frames(path)))
            rig = analyze_portrait(picture, size=512, framing=LEGACY_FRAMING)
            renderer = Renderer(rig, device="cpu")
            if args.portraits and renderer.parted_lips == 0.0:
                continue
            frames = {jaw: renderer.render(MotionFrame(t=0.0, expressions={"jawOpen": jaw})) for jaw in (*JAWS, 0.3)}
            print(f"| {Path(rel).stem} | {read(rig.image):.3f} | {read(frames[0.0]):.3f} | {read(frames[0.1]):.3f} "
                  f"| {read(frames[0.3]):.3f} |", flush=True)
            centre = rig.landmarks[[fr.UPPER_LIP_CENTER, fr.LOWER_LIP_CENTER], :2].mean(0).astype(int)
            y0, x0 = max(centre[1] - CROP[0] // 2, 0), max(centre[0] - CROP[1] // 2, 0)
            tiles = [im[y0:y0 + CROP[0], x0:x0 + CROP[1], :3] for im in (rig.image, *(frames[j] for j in JAWS))]
            rows.append(_row(tiles))
            if args.painting_sheet is not None:
                shut = [shut_lips(np.ascontiguousarray(rig.image), rig.landmarks, paint_interior=paint)[0]
                        for paint in (False, True)]
                painting_rows.append(_row([im[y0:y0 + CROP[0], x0:x0 + CROP[1], :3] for im in (rig.image, *shut)]))
    for sheet, crops in ((args.sheet, rows), (args.painting_sheet, painting_rows)):
        if sheet is not None and crops:
            sheet.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.concatenate(crops, 0)).save(sheet)
            print(f"wrote {sheet}")
    return 0


def _row(tiles: list[np.ndarray]) -> np.ndarray:
    """Mouth crops side by side, each padded to CROP where the picture's edge cut it."""
    return np.concatenate([np.pad(t, ((0, CROP[0] - t.shape[0]), (0, CROP[1] - t.shape[1]), (0, 0))) for t in tiles], 1)


if __name__ == "__main__":
    raise SystemExit(main())
