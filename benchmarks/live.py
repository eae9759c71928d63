"""Live benchmark: the real `facecast live` on an audio file in real time, bridges to loopback receivers.

    python benchmarks/live.py            # both generators at 30 and 60 fps, 512², ~1 min
    python benchmarks/live.py --generators learned --fps 30 --busy-core 0   # beside a game: one core kept busy
    python benchmarks/live.py --generators learned,learned-sync --fps 30     # the two latencies
    python benchmarks/live.py --generators learned --fps 30 --prefix "py-spy record -o live.svg --"   # profile
    python benchmarks/live.py --camera   # the webcam rows: a real talking clip played as the camera, with its
                                         # voice and without (the microphone absent: silence), ~1 min

The daemon runs as its own process (so its CPU and memory are its own) with
VMC, VRChat OSC, the WebSocket motion stream and the overlay's frame stream
enabled; this script runs the receivers: python-osc servers for VMC and VRChat
and two websockets clients (JSON motion, binary overlay frames). The virtual
webcam cannot run here (no v4l2loopback device). Latency is mic-to-frame: from
the capture time of the newest audio sample a frame used (for a file, when that
sample was fed in at real-time pace) to the moment the frame is handed to the
output transports; "scheduled" is the delay the daemon set at start for every
frame after its audio (audio block, the generator's measured compute, a margin).
"First frame" is the time from starting the command to the first VMC packet the
receiver gets (imports, model loading, portrait analysis, the first audio). "A/V
delay" is how far the avatar trails the voice (`/status`'s `av_delay_ms`).
`--busy-core N` runs a process that keeps core N busy (a game beside the daemon)
for the whole run.

Camera rows play a held-out talking clip (`--camera-file`, at its own 30 fps)
as the webcam: camera-to-output latency runs from the moment a camera frame was
"captured" (released at its real-time slot) to the hand-off of the first output
frame that shows it (tracking, the wait for the frame clock, render, send).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

from process_tree import TreeMemory
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer

REPO = Path(__file__).resolve().parents[1]
PORTRAIT = REPO / "samples" / "mona_lisa.jpg"
SPEECH = REPO / "samples" / "grid_s1_speech.flac"
#: The camera rows' clip: a held-out in-the-wild speaker (split.json: validation), 10 s at 30 fps, head turning.
CAMERA_CLIP = REPO.parent / "shared" / "data" / "talking" / "wild" / "styletalk_feifeili_clip1.mp4"


class OscCounter:
    """A loopback OSC receiver counting messages on one address."""

    def __init__(self, address: str) -> None:
        self.count = 0
        self.first: float | None = None   # time.monotonic() of the first message
        dispatcher = Dispatcher()
        dispatcher.map(address, self._hit)
        self.server = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _hit(self, *_: object) -> None:
        if self.first is None:
            self.first = time.monotonic()
        self.count += 1


#: A repeated pose: the head turned less than this (degrees) and ...
REPEAT_ANGLE_DEG = 0.01
#: ... every expression coefficient changed less than this since the frame before.
REPEAT_COEFFICIENT = 0.001


def pose_changes(frames: list[dict]) -> list[tuple[float, float]]:
    """(largest head rotation change in degrees, largest coefficient change) from each frame to the next."""
    changes = []
    for a, b in zip(frames, frames[1:]):
        angle = max(abs(b["head"][k] - a["head"][k]) for k in ("yaw", "pitch", "roll"))
        names = set(a["expressions"]) | set(b["expressions"])
        coefficient = max((abs(b["expressions"].get(n, 0.0) - a["expressions"].get(n, 0.0)) for n in names),
                          default=0.0)
        changes.append((angle, coefficient))
    return changes


def evenness(frames: list[dict]) -> dict:
    """Repeated poses while the motion is moving, and the coefficient of variation of the frame-to-frame change.

    A frame repeats its predecessor when the head turned < REPEAT_ANGLE_DEG and every coefficient moved
    < REPEAT_COEFFICIENT; it counts while the motion is moving: the pose changed over the two frame periods
    around it (a stall inside motion, not a face at rest). The change per frame is the largest coefficient change
    plus the head's largest rotation change in units of 10 degrees; its coefficient of variation (std / mean)
    over moving frames measures evenness: repeats (0) and the double steps after them make it larger."""
    changes = pose_changes(frames)
    still = [angle < REPEAT_ANGLE_DEG and coefficient < REPEAT_COEFFICIENT for angle, coefficient in changes]
    steps = [coefficient + angle / 10.0 for angle, coefficient in changes]
    repeated, moving = 0, []
    for i in range(1, len(changes) - 1):
        if still[i - 1] and still[i + 1]:    # at rest around this frame
            continue
        moving.append(steps[i])
        repeated += still[i]
    mean = sum(moving) / len(moving) if moving else 0.0
    spread = (sum((x - mean) ** 2 for x in moving) / len(moving)) ** 0.5 if moving else 0.0
    return {"repeated_poses": repeated, "moving_frames": len(moving), "change_cv": spread / mean if mean else 0.0}


def ws_reader(url: str, counts: dict, key: str, stop: threading.Event, keep: list | None = None) -> None:
    """Read a WebSocket stream until told to stop, counting messages (and keeping motion frames in `keep`)."""
    import websockets.exceptions
    import websockets.sync.client

    for _ in range(50):
        try:
            with websockets.sync.client.connect(url) as ws:
                while not stop.is_set():
                    try:
                        message = ws.recv(timeout=0.5)
                        counts[key] += 1
                        if keep is not None:
                            data = json.loads(message)
                            if data.get("type") == "motion":
                                keep.append(data["frame"])
                    except TimeoutError:
                        continue
                return
        except websockets.exceptions.ConnectionClosed:
            return                                    # the daemon ended the stream: it has finished
        except OSError:
            time.sleep(0.1)


#: Keeps one core busy, as a game would: a tight loop pinned to the core given on its command line.
BUSY_LOOP = "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True: pass"


def busy_core(core: int) -> subprocess.Popen:
    """A process that keeps `core` busy until it is killed."""
    return subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(core)])


def generator_flags(row: str) -> list[str]:
    """The `facecast live` flags of a row's generator: rule, learned, or learned-sync (`--latency sync`)."""
    name, _, latency = row.partition("-")
    return ["--generator", name, "--latency", latency or "low"]


def run(fps: int, size: int, generator: str = "rule", prefix: tuple[str, ...] = (), camera: Path | None = None,
        audio: Path | None = SPEECH) -> dict:
    """One `facecast live` run (under `prefix`, e.g. a profiler); `camera` plays a clip as the webcam, `audio` None
    leaves the (absent) microphone."""
    vmc, vrchat = OscCounter("/VMC/Ext/OK"), OscCounter("/avatar/parameters/FT/v2/JawOpen")
    command = [*prefix, sys.executable, "-m", "facecast.app.cli", "live", "--portrait", str(PORTRAIT),
               "--once", "--fps", str(fps), "--size", str(size), "--vmc", str(vmc.port), "--vrchat", str(vrchat.port),
               "--ws", "0", "--log-level", "info", *generator_flags(generator)]
    command += ["--audio", str(audio)] if audio is not None else []
    command += ["--camera-file", str(camera)] if camera is not None else []
    started = time.monotonic()
    # no prepared-portrait cache: every run analyses the portrait, as a first start does
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "FACECAST_PORTRAIT_CACHE": ""})
    tree = TreeMemory(process.pid)
    counts = {"motion": 0, "frames": 0}  # messages read on ws /motion and ws /frames
    motion: list[dict] = []               # every motion frame the ws /motion stream delivered
    stop = threading.Event()
    readers = []
    summary, scheduled_ms = None, float("nan")
    degraded = []                         # the daemon's lines saying it gave up or took back picture size
    for line in process.stderr:
        if any(said in line for said in ("falling behind", "load gone", "load easing", "skipping audio")):
            degraded.append(line.split(": ", 1)[-1].strip())
        if "frames scheduled " in line:
            scheduled_ms = float(line.split("frames scheduled ")[1].split(" ms")[0])
        if "serving the overlay at" in line:
            base = line.split("serving the overlay at ")[1].split("/ ")[0].replace("http", "ws")
            for key in counts:
                keep = motion if key == "motion" else None
                reader = threading.Thread(target=ws_reader, args=(f"{base}/{key}", counts, key, stop, keep),
                                          daemon=True)
                reader.start()
                readers.append(reader)
        if " summary " in line:
            summary = json.loads(line.split(" summary ", 1)[1])
    stop.set()
    # this child's own usage: RUSAGE_CHILDREN's peak RSS is the largest of every child so far (an earlier run's)
    _, status, usage = os.wait4(process.pid, 0)
    tree_mib = tree.stop()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0 or summary is None:
        raise SystemExit(f"facecast live failed (exit {process.returncode})")
    cpu = usage.ru_utime + usage.ru_stime
    vmc.server.shutdown()
    vrchat.server.shutdown()
    # CPU while live (the daemon's own count), and the whole process's including start-up.
    return {**summary, "scheduled_ms": scheduled_ms, "cpu_cores": summary["cpu_s"] / summary["elapsed_s"],
            "process_cpu_s": cpu, "rss_mib": usage.ru_maxrss / 1024, "tree_rss_mib": tree_mib,
            "vmc": vmc.count, "vrchat": vrchat.count,
            "first_frame_s": vmc.first - started if vmc.first is not None else float("nan"), "quality_log": degraded,
            "ws_motion": counts["motion"], "ws_frames": counts["frames"], **evenness(motion)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--generators", default="rule,learned", help="comma-separated: rule, learned, learned-sync "
                        "(the learned generator with --latency sync)")
    parser.add_argument("--fps", default="30,60", help="comma-separated frame rates")
    parser.add_argument("--busy-core", type=int, default=None, metavar="N",
                        help="keep core N busy with another process during every run (a game beside the daemon)")
    parser.add_argument("--prefix", default="", help="run the daemon under this command, e.g. a profiler's "
                        "'py-spy record -o out.svg --'")
    parser.add_argument("--camera", action="store_true", help="the webcam rows instead (CAMERA_CLIP as the camera)")
    args = parser.parse_args()
    if args.camera:
        camera_rows(args.size, args.generators.split(","))
        return
    load = os.getloadavg()[0]
    busy = busy_core(args.busy_core) if args.busy_core is not None else None
    try:
        results = {(generator, fps): run(fps, args.size, generator, tuple(shlex.split(args.prefix)))
                   for generator in args.generators.split(",") for fps in map(int, args.fps.split(","))}
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    beside = f", core {args.busy_core} kept busy by another process" if args.busy_core is not None else ""
    print(f"\nfacecast live benchmark — {os.cpu_count()} CPU cores{beside}, {args.size}², 12 s of speech played in "
          f"real time, outputs: VMC, VRChat OSC, WebSocket motion + overlay frames (loopback receivers); load average "
          f"before the runs {load:.1f}\n")
    print("| generator | fps | achieved fps | latency p50 | latency p95 | scheduled | longest gap | repeated | "
          "repeated poses (moving) | change CV | CPU while live "
          "(cores) | whole process CPU | peak RSS (largest process / process tree) | first frame | A/V delay | "
          "quality changes / audio skipped | "
          "received: VMC / VRChat JawOpen (sent only when it changes) / ws motion / ws overlay frames |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (generator, fps), r in results.items():
        print(f"| {generator} | {fps} | {r['fps']:.1f} | {r['latency_p50_ms']:.0f} ms | {r['latency_p95_ms']:.0f} ms | "
              f"{r['scheduled_ms']:.0f} ms | {r['max_gap_ms']:.0f} ms | {r['repeated']} | "
              f"{r['repeated_poses']} of {r['moving_frames']} | {r['change_cv']:.2f} | "
              f"{r['cpu_cores']:.2f} | {r['process_cpu_s']:.1f} s | "
              f"{r['rss_mib']:.0f} / {r['tree_rss_mib']:.0f} MiB | {r['first_frame_s']:.2f} s | "
              f"{(r.get('av_delay_ms') or {}).get('total', float('nan')):.0f} ms | "
              f"{r.get('quality_changes', '-')} / {r.get('audio_skipped_s', '-')} s | "
              f"{r['vmc']} / {r['vrchat']} / {r['ws_motion']} / {r['ws_frames']} of {r['frames']} sent |")
    for (generator, fps), r in results.items():
        for line in r["quality_log"]:
            print(f"{generator} {fps} fps: {line}")


def camera_rows(size: int, generators: list[str]) -> None:
    """Camera + voice (the clip's own audio) and camera alone, at 30 fps, per generator."""
    rows = {(generator, voice): run(30, size, generator, camera=CAMERA_CLIP, audio=CAMERA_CLIP if voice else None)
            for generator in generators for voice in (True, False)}
    print(f"\nfacecast live camera benchmark — {os.cpu_count()} CPU cores, {size}², {CAMERA_CLIP.name} (10 s, "
          "30 fps) played as the webcam, outputs: VMC, VRChat OSC, WebSocket motion + overlay frames\n")
    print("| generator | voice | achieved fps | camera-to-output p50 | p95 | mic-to-frame p95 | camera frames tracked "
          "/ face found / dropped | CPU while live (cores) | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (generator, voice), r in rows.items():
        mic = f"{r['latency_p95_ms']:.0f} ms" if voice else "—"
        print(f"| {generator} | {'clip audio' if voice else 'none (no microphone)'} | {r['fps']:.1f} | "
              f"{r['camera_latency_p50_ms']:.0f} ms | {r['camera_latency_p95_ms']:.0f} ms | {mic} | "
              f"{r['camera_tracked']} / {r['camera_face_found']} / {r['camera_dropped']} of {r['camera_frames']} | "
              f"{r['cpu_cores']:.2f} | {r['rss_mib']:.0f} MiB |")


if __name__ == "__main__":
    main()
