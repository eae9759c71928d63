"""Watermark benchmark: does the mark survive what platforms do to video, and does it ever fire on real video?

    python benchmarks/watermark.py              # the full run quoted in README (100 clips per condition)
    python benchmarks/watermark.py --clips 10 --fp-limit 50   # a quick look

One table from one run:
* detection rate over `--clips` clips of 3 s, each a different portrait / speech
  pairing (all portraits in ../shared/data/portraits and the sample; speech
  windows from GRID s1 and s4, the in-the-wild clips and ../shared/data/audio),
  rendered at 512², marked with a fresh per-run id, then transformed and
  re-encoded with x264 (`--preset`, default medium) and read back by the same
  code as `facecast verify`; "1 frame" checks the middle frame alone;
* false positives of `facecast verify` on every real clip and picture in
  ../shared/data (must be 0);
* PSNR of marked vs unmarked frames, and the embed cost per frame at 512² and
  1280x720 on this machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("GLOG_minloglevel", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from facecast.media import Mp4Writer  # noqa: E402
from facecast.provenance.verify import IMAGE_SUFFIXES, verify  # noqa: E402
from facecast.provenance.watermark import Payload, Watermarker, detect_frames  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
FPS = 25
SIZE = 512
CLIP_SECONDS = 3.0


def _gamma_saturation(frame: np.ndarray) -> np.ndarray:
    """A screen-capture-like colour change: gamma 0.9 and +5 % saturation."""
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** 0.9 + 0.5, 0, 255).astype(np.uint8)
    hsv = cv2.cvtColor(cv2.LUT(frame, lut), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * 1.05, 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def _rescale(height: int) -> Callable[[np.ndarray], np.ndarray]:
    def apply(frame: np.ndarray) -> np.ndarray:
        method = cv2.INTER_AREA if height < frame.shape[0] else cv2.INTER_CUBIC
        return cv2.resize(frame, (height, height), interpolation=method)
    return apply


def _crop(fraction: float) -> Callable[[np.ndarray], np.ndarray]:
    def apply(frame: np.ndarray) -> np.ndarray:
        cut = round(fraction * frame.shape[0])
        kept = frame[cut:frame.shape[0] - cut, cut:frame.shape[1] - cut]
        even = kept.shape[0] // 2 * 2                      # x264's 4:2:0 wants even sizes
        return np.ascontiguousarray(kept[:even, :even])
    return apply


def _identity(frame: np.ndarray) -> np.ndarray:
    return frame


@dataclass(frozen=True)
class Condition:
    name: str
    crf: int
    transform: Callable[[np.ndarray], np.ndarray]


CONDITIONS = (
    Condition("H.264 CRF 23", 23, _identity),
    Condition("H.264 CRF 28", 28, _identity),
    Condition("H.264 CRF 35", 35, _identity),
    Condition("rescale to 720 px + CRF 28", 28, _rescale(720)),
    Condition("rescale to 360 px + CRF 28", 28, _rescale(360)),
    Condition("crop 5 % each side + CRF 28", 28, _crop(0.05)),
    Condition("gamma 0.9, +5 % saturation + CRF 28", 28, _gamma_saturation),
)


def speech_sources() -> list[Path]:
    """Varied speech: GRID s1 and s4 clips, the in-the-wild clips and the shared audio files."""
    talking = SHARED / "talking"
    grid_s1 = sorted((talking / "grid_s1").glob("*.mp4"))[::25]
    return (grid_s1 + sorted((talking / "grid_s4").glob("*.mp4"))[::5]
            + sorted((talking / "wild").glob("*.mp4")) + sorted((SHARED / "audio").glob("*.flac")))


def portraits() -> list[Path]:
    return sorted(p for p in (SHARED / "portraits").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) + [
        REPO / "samples" / "mona_lisa.jpg"]


_RIGS: dict[Path, object] = {}


def render_clip(portrait: Path, speech: Path, seed: int) -> list[np.ndarray]:
    """3 s of unmarked 512² frames: a random 3 s window of `speech` on `portrait`."""
    from facecast.face.portrait import LEGACY_FRAMING, analyze_portrait
    from facecast.media import decode_mono
    from facecast.render.renderer import Renderer
    from facecast.speech.rule import RuleMotionGenerator, generate_motion

    if portrait not in _RIGS:
        _RIGS[portrait] = analyze_portrait(portrait, size=SIZE, framing=LEGACY_FRAMING)  # comparable runs
    rate = RuleMotionGenerator.SAMPLE_RATE
    audio = decode_mono(speech)
    window = int(CLIP_SECONDS * rate)
    start = np.random.default_rng(seed).integers(0, max(1, len(audio) - window))
    audio = np.resize(audio[start:start + window], window)
    renderer = Renderer(_RIGS[portrait], device="cpu")
    frames = [renderer.render(f) for f in generate_motion([audio], fps=FPS, seed=seed)]
    return [f[:, :, :3].copy() if f.shape[2] == 4 else f for f in frames[:int(CLIP_SECONDS * FPS)]]


def encode(frames: list[np.ndarray], path: Path, crf: int, preset: str) -> None:
    writer = Mp4Writer(path, frames[0].shape[0], FPS, crf=crf, preset=preset)
    for frame in frames:
        writer.write_frame(np.ascontiguousarray(frame))
    writer.close()


def run_clip(job: tuple[int, Path, Path, str]) -> dict:
    """Render one clip, then every condition: {condition: (detected 3 s, detected 1 frame, strength)}, PSNR."""
    index, portrait, speech, preset = job
    clean = render_clip(portrait, speech, seed=index)
    payload = Payload(run_id=int(np.random.default_rng(1000 + index).integers(0, 2 ** 32)))
    marker = Watermarker(payload)
    marked = [marker.embed(frame.copy(), i / FPS) for i, frame in enumerate(clean)]
    mse = float(np.mean([np.mean((m.astype(np.float32) - c) ** 2) for m, c in zip(marked, clean)]))
    out: dict = {"psnr": 10 * np.log10(255 ** 2 / mse) if mse > 0 else float("inf"), "conditions": {}}
    with tempfile.TemporaryDirectory() as folder:
        for condition in CONDITIONS:
            path = Path(folder) / "clip.mp4"
            encode([condition.transform(f) for f in marked], path, condition.crf, preset)
            whole = verify(path).detection
            middle = _middle_frame(path)
            one = detect_frames([middle])
            out["conditions"][condition.name] = (whole.payload == payload, one.payload == payload, whole.strength)
    return out


def _middle_frame(path: Path) -> tuple[np.ndarray, float]:
    import av

    with av.open(str(path)) as container:
        frames = [(f.to_ndarray(format="rgb24"), float(f.time)) for f in container.decode(video=0)]
    return frames[len(frames) // 2]


def real_files() -> list[Path]:
    """Every real video and picture in the shared data (nothing there was made by facecast)."""
    files = sorted(SHARED.glob("talking/**/*.mp4")) + sorted(SHARED.glob("motion_only/*.mp4"))
    return files + [p for p in sorted((SHARED / "portraits").iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]


def check_real(path: Path) -> tuple[str, bool, float]:
    detection = verify(path).detection
    return str(path.relative_to(SHARED)), detection.detected, detection.strength


def embed_cost(height: int, width: int, repeats: int = 300) -> float:
    """Median milliseconds for one `Watermarker.embed` on a frame of this size (pattern already prepared)."""
    marker = Watermarker(Payload(run_id=1))
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    marker.embed(frame, 0.0)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        marker.embed(frame, i / FPS)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=100, help="clips per condition (default 100)")
    parser.add_argument("--fp-limit", type=int, default=None,
                        help="check only this many real files for false positives")
    parser.add_argument("--preset", default="medium", help="x264 preset for the re-encodes (default medium)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"shared data not found at {SHARED}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    faces, voices = portraits(), speech_sources()
    jobs = [(i, faces[i % len(faces)], voices[(i * 7) % len(voices)], args.preset) for i in range(args.clips)]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_clip, jobs))
        reals = real_files()[: args.fp_limit] if args.fp_limit else real_files()
        checked = list(pool.map(check_real, reals, chunksize=8))
    false_positives = [r for r in checked if r[1]]
    clip_seconds = time.perf_counter() - started

    print(f"\nWatermark benchmark: {args.clips} clips x {CLIP_SECONDS:g} s at {SIZE}² {FPS} fps, "
          f"{len(faces)} portraits x {len(voices)} speech sources, x264 preset {args.preset}\n")
    print("| condition | detected (3 s) | detected (1 frame) | median strength |")
    print("|---|---|---|---|")
    for condition in CONDITIONS:
        rows = [r["conditions"][condition.name] for r in results]
        whole = sum(r[0] for r in rows)
        one = sum(r[1] for r in rows)
        strength = statistics.median(r[2] for r in rows)
        print(f"| {condition.name} | {whole}/{len(rows)} ({100 * whole / len(rows):.1f} %) | "
              f"{one}/{len(rows)} ({100 * one / len(rows):.1f} %) | {strength:.2f} |")
    print(f"| false positives on real files in shared/data | {len(false_positives)}/{len(reals)} | | |")
    psnr = [r["psnr"] for r in results]
    print(f"\nPSNR marked vs unmarked: min {min(psnr):.1f} dB, median {statistics.median(psnr):.1f} dB")
    print(f"embed cost per frame: {embed_cost(512, 512):.2f} ms at 512², {embed_cost(720, 1280):.2f} ms at 1280x720")
    print(f"real files: highest strength {max(r[2] for r in checked):.2f}, "
          f"median {statistics.median(r[2] for r in checked):.2f} "
          f"(a payload must also pass its CRC)")
    for name, _, strength in false_positives:
        print(f"FALSE POSITIVE: {name} (strength {strength:.2f})")
    print(f"total {clip_seconds / 60:.1f} min with {args.workers} workers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
