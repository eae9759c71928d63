"""Render benchmark: speed of each stage and memory of whole renders, printed as one table.

    python benchmarks/render.py                 # the full run quoted in README (~10 min on 2 cores)
    python benchmarks/render.py --long-minutes 5   # a quicker constant-memory check
    python benchmarks/render.py --memory-only --memory-size 512 --memory-generators rule,learned   # memory alone
    python benchmarks/render.py --process-only    # only the whole-process rows (time, first frame, peak RSS)

Rows:
* generator: audio -> motion frames per second (60 s of speech);
* renderer: motion -> image frames per second at 256², 512², 1024²;
* end to end excluding encode: generator + renderer + RGBA flattening;
* end to end including encode: the same plus H.264 encoding into an MP4;
* `facecast render` wall time for 60 s of speech at 512², 25 fps (start-up,
  analysis, generation, rendering, encoding, muxing), and the peak RSS of the
  process for 1 minute and for `--long-minutes` of audio (constant memory).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from math import nan
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")

import av  # noqa: E402
import numpy as np  # noqa: E402
from process_tree import TreeMemory  # noqa: E402

from facecast.app.portrait_job import CACHE_ENV  # noqa: E402
from facecast.app.render import flatten_alpha  # noqa: E402
from facecast.face.portrait import LEGACY_FRAMING, analyze_portrait  # noqa: E402
from facecast.media import DEFAULT_CRF, Mp4Writer, decode_mono  # noqa: E402
from facecast.render.renderer import Renderer  # noqa: E402
from facecast.speech.rule import RuleMotionGenerator, generate_motion  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PORTRAIT = REPO / "samples" / "mona_lisa.jpg"
SAMPLE_SPEECH = REPO / "samples" / "grid_s1_speech.flac"
SHARED_SPEECH = REPO.parent / "shared" / "data" / "audio" / "musetalk_eng.flac"
FPS = 25
WHITE = np.array([255, 255, 255], np.float32)


def one_minute_of_speech() -> np.ndarray:
    """60 s of real English speech at 16 kHz (the shared 60 s clip, else the bundled sample looped)."""
    source = SHARED_SPEECH if SHARED_SPEECH.exists() else SAMPLE_SPEECH
    speech = decode_mono(source)
    return np.resize(speech, 60 * RuleMotionGenerator.SAMPLE_RATE)


def write_flac(path: Path, speech: np.ndarray, repeats: int) -> Path:
    """`speech` repeated `repeats` times, encoded block by block (never all in memory)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=RuleMotionGenerator.SAMPLE_RATE)
        stream.layout = "mono"
        pcm = (np.clip(speech, -1, 1) * 32767).astype(np.int16)[None, :]
        for _ in range(repeats):
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate = RuleMotionGenerator.SAMPLE_RATE
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def bench_generator(speech: np.ndarray) -> tuple[float, list]:
    started = time.perf_counter()
    frames = list(generate_motion(np.array_split(speech, len(speech) // 1024), fps=FPS))
    return rate(len(frames), time.perf_counter() - started), frames


def bench_size(size: int, speech: np.ndarray, motion: list, frames: int, workdir: Path) -> dict[str, float]:
    rig = analyze_portrait(PORTRAIT, size=size, framing=LEGACY_FRAMING)  # timings comparable across runs
    renderer = Renderer(rig, device="cpu")
    for frame in motion[:10]:
        renderer.render(frame)  # warm-up

    started = time.perf_counter()
    for frame in motion[:frames]:
        renderer.render(frame)
    render_fps = rate(frames, time.perf_counter() - started)

    seconds = frames / FPS
    chunk = speech[: int(seconds * RuleMotionGenerator.SAMPLE_RATE)]
    started = time.perf_counter()
    for frame in generate_motion(np.array_split(chunk, max(1, len(chunk) // 1024)), fps=FPS):
        flatten_alpha(renderer.render(frame), WHITE)
    e2e_fps = rate(frames, time.perf_counter() - started)

    writer = Mp4Writer(workdir / f"bench{size}.mp4", size, FPS)
    started = time.perf_counter()
    for frame in generate_motion(np.array_split(chunk, max(1, len(chunk) // 1024)), fps=FPS):
        writer.write_frame(flatten_alpha(renderer.render(frame), WHITE))
    writer.close()
    encode_fps = rate(frames, time.perf_counter() - started)
    return {"render": render_fps, "e2e": e2e_fps, "e2e_encode": encode_fps}


def reference_frames(size: int, count: int) -> list[np.ndarray]:
    """`count` rendered, flattened frames of real speech (kept in memory: encoders are timed alone)."""
    renderer = Renderer(analyze_portrait(PORTRAIT, size=size), device="cpu")
    speech = one_minute_of_speech()[: int((count / FPS + 1) * RuleMotionGenerator.SAMPLE_RATE)]
    motion = generate_motion(np.array_split(speech, max(1, len(speech) // 1024)), fps=FPS)
    return [flatten_alpha(renderer.render(frame), WHITE) for frame, _ in zip(motion, range(count))]


def encode(frames: list[np.ndarray], path: Path, **options: object) -> tuple[float, float]:
    """Wall and CPU seconds (this process, x264's threads included) to encode `frames` into `path`."""
    wall, cpu = time.perf_counter(), time.process_time()
    writer = Mp4Writer(path, frames[0].shape[0], FPS, **options)
    for image in frames:
        writer.write_frame(image)
    writer.close()
    return time.perf_counter() - wall, time.process_time() - cpu


def lossless(frames: list[np.ndarray], path: Path) -> list[np.ndarray]:
    """The frames as a lossless H.264 (QP 0, the same yuv420p) decodes them: what each preset is compared with."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width = stream.height = frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return decoded_planes(path)


def decoded_planes(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="yuv420p") for frame in container.decode(video=0)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two grey images (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5)."""
    import cv2

    a, b = a.astype(np.float64), b.astype(np.float64)
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ratio = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(np.mean(ratio))


def bench_presets(size: int, count: int, presets: list[str], threads: list[int], crf: int) -> list[dict]:
    """Each x264 preset x thread count at `crf` on the same frames: speed, CPU, size, PSNR (Y, U, V planes)
    and SSIM (Y) against a lossless encode of those frames."""
    frames = reference_frames(size, count)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        reference = lossless(frames, Path(tmp) / "lossless.mp4")
        for preset in presets:
            for thread_count in threads:
                path = Path(tmp) / f"{preset}-{thread_count}.mp4"
                runs = [encode(frames, path, crf=crf, preset=preset, threads=thread_count) for _ in range(3)]
                wall, cpu = sorted(runs)[1]
                decoded = decoded_planes(path)
                rows.append({"preset": preset, "threads": thread_count, "fps": count / wall,
                             "cpu_ms": 1000 * cpu / count, "kib": path.stat().st_size / 1024,
                             "psnr": float(np.mean([psnr(a, b) for a, b in zip(decoded, reference)])),
                             "ssim": float(np.mean([ssim(a[:size], b[:size]) for a, b in zip(decoded, reference)]))})
    return rows


def print_presets(rows: list[dict], size: int, count: int, crf: int) -> None:
    print(f"\nx264 presets — {os.cpu_count()} CPU cores, {count} frames at {size}², CRF {crf}, "
          "median of 3 encodes; quality against a lossless (QP 0) encode of the same frames\n")
    print("| preset | x264 threads | encode fps | CPU per frame | size | PSNR (yuv420p) | SSIM (Y) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        threads = "auto" if r["threads"] == 0 else r["threads"]
        print(f"| {r['preset']} | {threads} | {r['fps']:.0f} | {r['cpu_ms']:.1f} ms | {r['kib']:.0f} KiB | "
              f"{r['psnr']:.2f} dB | {r['ssim']:.4f} |")


def run_cli_render(audio: Path, out: Path, size: int, generator: str = "learned",
                   portrait_cache: Path | None = None) -> tuple[float, float, float, float]:
    """Wall seconds, peak RSS (MiB) of the largest process, seconds to the first encoded frame, and the peak summed
    RSS (MiB) of the process tree (the render and its portrait-analysis child) of one `facecast render`.
    portrait_cache: the prepared-portrait cache folder to use (a warm start); None: none (every render analyses)."""
    command = [sys.executable, "-m", "facecast.app.cli", "render", "--portrait", str(PORTRAIT), "--audio",
               str(audio), "-o", str(out), "--size", str(size), "--overwrite", "--generator", generator]
    environ = {**os.environ, CACHE_ENV: str(portrait_cache) if portrait_cache is not None else ""}
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ)
    tree = TreeMemory(process.pid)
    errors: list[str] = []
    drain = threading.Thread(target=lambda: errors.append(process.stderr.read()), daemon=True)
    drain.start()
    stdout = process.stdout.read()
    # this render's own usage (the largest of it and its portrait-analysis child): RUSAGE_CHILDREN's peak would
    # be the largest of every render so far
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    tree_peak = tree.stop()
    drain.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"render failed: {''.join(errors).strip()}")
    lines = stdout.strip().splitlines()
    first = float(lines[-1].split("first frame encoded ")[1].split(" s")[0]) if "first frame" in lines[-1] else nan
    return wall, usage.ru_maxrss / 1024, first, tree_peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=500, help="frames per size for the stage timings")
    parser.add_argument("--long-minutes", type=int, default=60, help="length of the long render for the memory check")
    parser.add_argument("--memory-size", type=int, default=256,
                        help="frame size for the 1-minute vs long memory comparison (default 256 keeps it quick)")
    parser.add_argument("--memory-generators", default="learned",
                        help="comma-separated generators for the 1-minute vs long memory comparison")
    parser.add_argument("--memory-only", action="store_true", help="only the 1-minute vs long memory comparison")
    parser.add_argument("--process-only", action="store_true",
                        help="only the whole-process rows (wall time, first frame, peak RSS of 60 s at 512²)")
    parser.add_argument("--presets", nargs="?", const="ultrafast,superfast,veryfast,faster", default=None,
                        metavar="P1,P2,...", help="only compare x264 presets and thread counts (speed, size, quality)")
    parser.add_argument("--threads", default="1,2,0", help="x264 thread counts for --presets (0: x264's default)")
    parser.add_argument("--crf", type=int, default=DEFAULT_CRF, help="CRF for --presets")
    args = parser.parse_args()

    if args.presets:
        size, count = 512, args.frames // 2
        rows = bench_presets(size, count, args.presets.split(","), [int(t) for t in args.threads.split(",")], args.crf)
        print_presets(rows, size, count, args.crf)
        return
    speech = one_minute_of_speech()
    if args.memory_only:
        with tempfile.TemporaryDirectory() as tmp:
            print_memory(memory_rows(speech, Path(tmp), args), args)
        return
    generator_fps, motion, rows = (None, None, []) if args.process_only else (*bench_generator(speech), [])
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for size in () if args.process_only else (256, 512, 1024):
            frames = args.frames if size < 1024 else max(100, args.frames // 3)
            rows.append((size, bench_size(size, speech, motion, frames, workdir)))
        cli = whole_process_rows(speech, workdir)
        memory = [] if args.process_only else memory_rows(speech, workdir, args)

    print(f"\nfacecast render benchmark — {os.cpu_count()} CPU cores, torch threads {_torch_threads()}\n")
    if rows:
        print("| stage | 256² | 512² | 1024² |")
        print("|---|---|---|---|")
        print(f"| generator (audio → motion), fps | {generator_fps:,.0f} | (size-independent) | |")
        for key, label in (("render", "renderer (motion → frame), fps"),
                           ("e2e", "end to end excluding encode, fps"),
                           ("e2e_encode", "end to end including H.264 encode, fps")):
            print(f"| {label} | " + " | ".join(f"{stats[key]:,.0f}" for _, stats in rows) + " |")
        print()
    print("| whole `facecast render` process | value |")
    print("|---|---|")
    for generator, (wall, walls, first, rss, tree) in cli.items():
        print(f"| 60 s of speech at 512², 25 fps, {generator}: wall time, median of 3 | {wall:.1f} s "
              f"(real-time factor {wall / 60:.2f}; runs {', '.join(f'{w:.1f}' for w in walls)} s) |")
        print(f"| ... first frame encoded after (from the command's start, median) | {first:.1f} s |")
        print(f"| ... peak RSS, largest process / whole process tree (the most of 3) | {rss:.0f} / {tree:.0f} MiB |")
    print_memory(memory, args)


def whole_process_rows(speech: np.ndarray, workdir: Path) -> dict[str, tuple]:
    """Three whole `facecast render` processes of 60 s at 512² per case: the default (learned) and the rule
    generator analysing the portrait, and the learned one with the portrait cached by an earlier run:
    case -> (median wall s, the walls, median first-frame s, largest process peak MiB, process tree peak MiB)."""
    minute = write_flac(workdir / "minute.flac", speech, 1)
    cli = {}
    # this shared 2-core host is noisy: time the whole process three times and report the median
    for generator, cache in (("learned", None), ("rule", None), ("learned", workdir / "portraits")):
        if cache is not None:  # warm: the portrait prepared by an earlier run
            run_cli_render(minute, workdir / "minute512.mp4", 512, generator, cache)
        runs = sorted(run_cli_render(minute, workdir / "minute512.mp4", 512, generator, cache) for _ in range(3))
        label = f"{generator}, portrait {'cached' if cache is not None else 'analysed'}"
        cli[label] = (runs[1][0], [r[0] for r in runs], sorted(r[2] for r in runs)[1],
                      max(r[1] for r in runs), max(r[3] for r in runs))
    return cli


def memory_rows(speech: np.ndarray, workdir: Path, args: argparse.Namespace) -> list[tuple[str, float, float, float]]:
    """(generator, peak RSS for 1 minute, for `--long-minutes`, wall seconds of the long render) per generator;
    each peak the larger of the largest process's and the process tree's summed one."""
    minute = write_flac(workdir / "minute.flac", speech, 1)
    long_audio = write_flac(workdir / "long.flac", speech, args.long_minutes)
    rows = []
    for generator in args.memory_generators.split(","):
        _, largest, _, tree = run_cli_render(minute, workdir / "minute.mp4", args.memory_size, generator)
        rss_minute = max(largest, tree)
        long_wall, largest, _, tree = run_cli_render(long_audio, workdir / "long.mp4", args.memory_size, generator)
        rss_long = max(largest, tree)
        rows.append((generator, rss_minute, rss_long, long_wall))
        print(f"({generator}: {rss_minute:.0f} / {rss_long:.0f} MiB)", flush=True)   # a long run: each as it ends
    return rows


def print_memory(rows: list[tuple[str, float, float, float]], args: argparse.Namespace) -> None:
    for generator, rss_minute, rss_long, long_wall in rows:
        print(f"| peak RSS, {generator} generator, 1 min of audio at {args.memory_size}² | {rss_minute:.0f} MiB |")
        print(f"| peak RSS, {generator} generator, {args.long_minutes} min of audio at {args.memory_size}² | "
              f"{rss_long:.0f} MiB ({(rss_long / rss_minute - 1) * 100:+.1f} %; rendered in {long_wall:.0f} s) |")


def _torch_threads() -> str:
    import torch

    return str(torch.get_num_threads())


if __name__ == "__main__":
    main()
