"""Daemon soak: the real `facecast live` for a long time, every loopback output on, clients that misbehave.

    python benchmarks/soak.py                          # 10 minutes, 30 fps, 512², the rule generator
    python benchmarks/soak.py --minutes 120 --generator learned --json soak.json
    python benchmarks/soak.py --swap-flood             # 6 swaps of a 9000x9000 JPEG at once (issue 21)

The daemon runs as its own process on a speech file as long as the run (the
sample sentence repeated, with pauses), with VMC, VRChat OSC and the WebSocket
server on. This script plays every client at once:

* a normal /motion reader (messages per second, the latency each message carries) and a normal
  /frames reader (the overlay);
* slow readers: a /frames client that reads one message every 2 s through a 4 KiB receive window,
  and a /video.mjpeg client reading 4 KiB a second;
* reconnecting clients: /motion connections that read three messages and leave (every other one
  without a closing handshake), all the time;
* /status once a second, an emotion change every 10 s, and a portrait swap every `--swap-every`
  seconds (every third one to a text file, which must be refused in one line);
* the VMC receiver killed for 15 s every `--udp-restart-every` seconds and started again on its port.

Every `--sample` seconds it records the daemon's RSS (/proc), its /status (frame rate and p95
latency over the last 5 s), the /motion messages per second the normal reader got, and the daemon's
log lines so far; it prints the samples as a table and the RSS slope (least squares over the samples
after the warm-up) in MiB per minute. At the end the daemon is stopped with SIGTERM and must print its
stop summary (its logging still works).

`--swap-flood` instead measures the probe's worst case: after a warm-up it sends six swaps to a
9000x9000 JPEG with a face (the sample portrait upscaled with Pillow, in a temporary folder) on six
connections at once, and reports the peak RSS of the daemon and its portrait-analysis children together
(`process_tree`) against the daemon's steady state, the /motion messages
in every whole second of the flood and the p95 latency of the frames sent meanwhile. Targets (issue 21):
peak <= steady + 500 MiB, >= 25 messages every second at 30 fps, p95 <= 100 ms.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import wave
from collections import Counter, deque
from pathlib import Path

import numpy as np
from process_tree import tree_rss_bytes

REPO = Path(__file__).resolve().parents[1]
PORTRAIT = REPO / "samples" / "mona_lisa.jpg"
SPEECH = REPO / "samples" / "grid_s1_speech.flac"
SHARED_PORTRAITS = REPO.parent / "shared" / "data" / "portraits"


# --------------------------------------------------------------------------- the daemon

def speech_file(folder: Path, seconds: float) -> Path:
    """The sample sentence repeated (1 s pauses) for `seconds`, as 16 kHz 16-bit WAV."""
    from facecast.media import decode_mono

    speech = decode_mono(SPEECH, 16000)
    pause = np.zeros(16000, np.float32)
    unit = np.concatenate([speech, pause])
    repeats = math.ceil(seconds * 16000 / len(unit))
    path = folder / "speech.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        pcm = (np.clip(unit, -1, 1) * 32767).astype("<i2").tobytes()
        for _ in range(repeats):
            out.writeframes(pcm)
    return path


class Daemon:
    """`facecast live` as a child process; its stderr is read by a thread (counted, kept, searched)."""

    def __init__(self, args: argparse.Namespace, audio: Path, vmc_port: int, vrchat_port: int) -> None:
        command = [sys.executable, "-m", "facecast.app.cli", "live", "--portrait", str(PORTRAIT), "--audio", str(audio),
                   "--fps", str(args.fps), "--size", str(args.size), "--vmc", str(vmc_port), "--vrchat",
                   str(vrchat_port), "--ws", "0", "--log-level", "info", "--generator", args.generator]
        # no prepared-portrait cache: every swap analyses its picture, as swaps to new pictures do
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, "FACECAST_PORTRAIT_CACHE": ""})
        self.lines = 0
        self.levels: Counter[str] = Counter()
        self.tracebacks = 0
        self.tail: deque[str] = deque(maxlen=200)
        self.status_lines: list[float] = []
        self.url = self.token = None
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(ready,), daemon=True)
        self._reader.start()
        if not ready.wait(300) or self.url is None:
            self.process.kill()
            raise SystemExit("the daemon did not start:\n" + "".join(self.tail))

    def _read(self, ready: threading.Event) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines += 1
            self.tail.append(line)
            parts = line.split()
            if len(parts) > 2 and parts[2] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
                self.levels[parts[2]] += 1
            self.tracebacks += "Traceback" in line
            if " status fps=" in line:
                self.status_lines.append(time.monotonic())
            if "overlay page " in line and self.url is None:
                self.url = line.split("overlay page ")[1].split("/overlay")[0]
                self.token = line.split("control token ")[1].split(")")[0]
                ready.set()
        ready.set()

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mib(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MiB."""
        values = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    values[line.split(":")[0]] = int(line.split()[1]) / 1024
        return values["VmRSS"], values["VmHWM"]

    def status(self) -> dict:
        with urllib.request.urlopen(self.url + "/status", timeout=5) as answer:
            return json.loads(answer.read())

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(10)
        return code, "".join(self.tail)


# --------------------------------------------------------------------------- receivers and clients

class UdpReceiver:
    """A loopback UDP receiver counting datagrams; `kill` closes its port, `restart` binds it again."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.up = True
        self._lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._lock:
                sock = self.sock if self.up else None
            if sock is None:
                time.sleep(0.05)
                continue
            sock.settimeout(0.2)
            try:
                sock.recv(65536)
                self.count += 1
            except (TimeoutError, OSError):
                continue

    def kill(self) -> None:
        with self._lock:
            self.up = False
            self.sock.close()

    def restart(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(50):
            try:
                sock.bind(("127.0.0.1", self.port))
                break
            except OSError:
                time.sleep(0.1)
        with self._lock:
            self.sock, self.up = sock, True


class Clients:
    """Every client the soak runs, in threads; counters for the samples."""

    def __init__(self, daemon: Daemon, stop: threading.Event) -> None:
        self.daemon, self.stop = daemon, stop
        self.ws = daemon.url.replace("http", "ws")
        self.motion_times: deque[tuple[float, float | None]] = deque()  # (arrival, latency_ms)
        self.motion_total = 0
        self.frames = 0
        self.slow_frames = 0
        self.mjpeg_bytes = 0
        self.reconnects = 0
        self.errors: Counter[str] = Counter()
        self.swaps: Counter[str] = Counter()
        self.swap_answers: list[list[dict]] = []
        self._lock = threading.Lock()

    def start(self, swap_every: float, swap_paths: list[Path], bad_path: Path) -> None:
        targets = [self.motion_reader, self.frames_reader, self.slow_frames_reader, self.slow_mjpeg_reader,
                   self.reconnecting, self.emotions]
        if swap_every > 0:
            targets.append(lambda: self.swapping(swap_every, swap_paths, bad_path))
        for target in targets:
            threading.Thread(target=self._guard, args=(target,), daemon=True).start()

    def _guard(self, target) -> None:
        while not self.stop.is_set():
            try:
                target()
            except Exception as exc:  # a client hiccup is counted and the client starts over
                self.errors[type(exc).__name__] += 1
                time.sleep(0.5)

    def motion_reader(self) -> None:
        import websockets.sync.client

        with websockets.sync.client.connect(self.ws + "/motion", max_size=None) as ws:
            ws.recv(timeout=10)  # hello
            while not self.stop.is_set():
                message = json.loads(ws.recv(timeout=10))
                with self._lock:
                    self.motion_times.append((time.monotonic(), message.get("latency_ms")))
                    self.motion_total += 1

    def frames_reader(self) -> None:
        import websockets.sync.client

        with websockets.sync.client.connect(self.ws + "/frames", max_size=None) as ws:
            while not self.stop.is_set():
                ws.recv(timeout=10)
                self.frames += 1

    def slow_frames_reader(self) -> None:
        import websockets.sync.client

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(self.daemon.url.rsplit(":", 1)[1])))
        with websockets.sync.client.connect(self.ws + "/frames", sock=sock, max_size=None,
                                            ping_interval=None) as ws:
            while not self.stop.is_set():
                ws.recv(timeout=10)
                self.slow_frames += 1
                self.stop.wait(2.0)

    def slow_mjpeg_reader(self) -> None:
        port = int(self.daemon.url.rsplit(":", 1)[1])
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.sendall(f"GET /video.mjpeg HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            sock.settimeout(10)
            while not self.stop.is_set():
                data = sock.recv(4096)
                if not data:
                    return
                self.mjpeg_bytes += len(data)
                self.stop.wait(1.0)

    def reconnecting(self) -> None:
        import websockets.sync.client

        while not self.stop.is_set():
            with websockets.sync.client.connect(self.ws + "/motion", max_size=None) as ws:
                for _ in range(4):
                    ws.recv(timeout=10)
                if not self.reconnects % 2:  # leave without a closing handshake
                    ws.socket.close()
            self.reconnects += 1
            self.stop.wait(0.2)

    def _control(self, message: dict, answers: int) -> list[dict]:
        import websockets.sync.client

        with websockets.sync.client.connect(self.ws + "/control") as ws:
            ws.send(json.dumps({**message, "token": self.daemon.token}))
            out = [json.loads(ws.recv(timeout=120))]
            if out[0]["type"] == "accepted" and answers > 1:
                out.append(json.loads(ws.recv(timeout=120)))
            return out

    def emotions(self) -> None:
        presets = ["happy", "sad", "neutral", "surprised"]
        i = 0
        while not self.stop.wait(10.0):
            self._control({"type": "emotion", "preset": presets[i % len(presets)], "intensity": 0.5}, 1)
            i += 1

    def swapping(self, every: float, paths: list[Path], bad: Path) -> None:
        i = 0
        while not self.stop.wait(every):
            path = bad if i % 3 == 2 else paths[i % len(paths)]
            answers = self._control({"type": "portrait", "path": str(path)}, 2)
            self.swap_answers.append(answers)
            self.swaps[answers[-1]["type"] + ("(bad file)" if path == bad else "")] += 1
            i += 1

    def motion_since(self, since: float) -> list[tuple[float, float | None]]:
        with self._lock:
            while self.motion_times and self.motion_times[0][0] < time.monotonic() - 600:
                self.motion_times.popleft()
            return [item for item in self.motion_times if item[0] >= since]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def portraits() -> list[Path]:
    """Pictures to swap between: the sample and two shared photos when present."""
    extra = [SHARED_PORTRAITS / name for name in ("liveportrait_s1.jpg", "liveportrait_d19.jpg")]
    return [PORTRAIT, *[p for p in extra if p.is_file()]]


# --------------------------------------------------------------------------- the soak

def soak(args: argparse.Namespace) -> dict:
    seconds = args.minutes * 60.0
    with tempfile.TemporaryDirectory(prefix="facecast-soak-") as folder:
        audio = speech_file(Path(folder), seconds + 120)
        bad = Path(folder) / "notes.txt"
        bad.write_text("not a picture\n")
        vmc, vrchat = UdpReceiver(), UdpReceiver()
        daemon = Daemon(args, audio, vmc.port, vrchat.port)
        stop = threading.Event()
        clients = Clients(daemon, stop)
        clients.start(args.swap_every, portraits(), bad)
        outages: list[tuple[float, float]] = []

        def kill_and_restart() -> None:
            while not stop.wait(args.udp_restart_every):
                begin = time.monotonic()
                vmc.kill()
                stop.wait(15.0)
                vmc.restart()
                outages.append((begin, time.monotonic()))

        threading.Thread(target=kill_and_restart, daemon=True).start()
        start = time.monotonic()
        samples: list[dict] = []
        previous_t, previous_total, previous_vmc = start, 0, 0
        vmc_errors_seen = 0
        next_sample = start + args.sample
        print(f"soak: {args.minutes:g} min, {args.generator} generator, {args.fps} fps, {args.size}², "
              f"daemon pid {daemon.pid}", flush=True)
        while time.monotonic() < start + seconds and daemon.process.poll() is None:
            time.sleep(1.0)
            try:
                status = daemon.status()  # the once-a-second /status client
            except OSError as exc:
                clients.errors["status " + type(exc).__name__] += 1
                continue
            vmc_entry = status["outputs"].get("vmc", {})
            vmc_errors_seen += vmc_entry.get("error") is not None
            now = time.monotonic()
            if now < next_sample:
                continue
            next_sample += args.sample
            rss, hwm = daemon.rss_mib()
            total = clients.motion_total
            sample = {
                "minute": round((now - start) / 60.0, 2), "rss_mib": round(rss, 1), "hwm_mib": round(hwm, 1),
                "fps": status["fps"], "slowest_second": status.get("slowest_second_frames"),
                "p95_ms": status["latency_ms"]["p95"], "run_fps": status.get("run", {}).get("fps"),
                "motion_per_s": round((total - previous_total) / (now - previous_t), 1),
                "log_lines": daemon.lines, "warnings": daemon.levels["WARNING"] + daemon.levels["ERROR"],
                "reconnects": clients.reconnects, "swaps": sum(clients.swaps.values()),
                "vmc_datagrams": vmc.count - previous_vmc, "vmc_up": vmc.up, "vmc_error": vmc_entry.get("error"),
                "clients": status.get("clients"),
            }
            previous_t, previous_total, previous_vmc = now, total, vmc.count
            samples.append(sample)
            print(" ".join(f"{k}={v}" for k, v in sample.items() if k != "vmc_error"), flush=True)
        stop.set()
        code, tail = daemon.stop()
    warmup = min(args.warmup, 0.2 * args.minutes)
    steady = [s for s in samples if s["minute"] >= warmup]
    slope = None
    if len(steady) >= 3:
        slope = float(np.polyfit([s["minute"] for s in steady], [s["rss_mib"] for s in steady], 1)[0])
    result = {
        "minutes": args.minutes, "generator": args.generator, "fps": args.fps, "size": args.size,
        "samples": samples, "rss_slope_mib_per_min": None if slope is None else round(slope, 4),
        "warmup_min": warmup, "exit_code": code, "stop_summary_logged": "stopped after" in tail and "summary {" in tail,
        "tracebacks": daemon.tracebacks, "log_levels": dict(daemon.levels), "status_lines": len(daemon.status_lines),
        "longest_silence_s": round(max(np.diff(daemon.status_lines), default=0.0), 1),
        "client_errors": dict(clients.errors), "swaps": dict(clients.swaps), "reconnects": clients.reconnects,
        "udp_outages": len(outages), "vmc_error_seen_in_status_s": vmc_errors_seen,
        "slow_frames": clients.slow_frames, "mjpeg_bytes": clients.mjpeg_bytes, "frames": clients.frames,
    }
    print_soak(result)
    return result


def print_soak(result: dict) -> None:
    print()
    print("| minute | RSS MiB | fps (5 s) | slowest second | p95 ms | /motion msg/s | log lines | swaps "
          "| VMC receiver |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in result["samples"]:
        vmc = "up" if s["vmc_up"] else "killed" + (" (status: error)" if s["vmc_error"] else "")
        print(f"| {s['minute']:.1f} | {s['rss_mib']:.1f} | {s['fps']} | {s['slowest_second']} | {s['p95_ms']} | "
              f"{s['motion_per_s']} | {s['log_lines']} | {s['swaps']} | {vmc} |")
    steady = [s for s in result["samples"] if s["minute"] >= result["warmup_min"]]
    if steady:
        print(f"\nafter {result['warmup_min']:g} min of warm-up: RSS {steady[0]['rss_mib']} -> "
              f"{steady[-1]['rss_mib']} MiB, "
              f"slope {result['rss_slope_mib_per_min']} MiB/min; fps {min(s['fps'] for s in steady)}-"
              f"{max(s['fps'] for s in steady)}, p95 {min(s['p95_ms'] or 0 for s in steady)}-"
              f"{max(s['p95_ms'] or 0 for s in steady)} ms")
    print(f"log: {result['log_levels']}, {result['status_lines']} status lines, longest gap between them "
          f"{result['longest_silence_s']} s, {result['tracebacks']} tracebacks; stop summary logged: "
          f"{result['stop_summary_logged']} (exit {result['exit_code']})")
    print(f"clients: {result['reconnects']} reconnects, swaps {result['swaps']}, {result['udp_outages']} VMC "
          f"receiver outages (VMC error shown in /status for {result['vmc_error_seen_in_status_s']} s), "
          f"client hiccups {result['client_errors']}")


# --------------------------------------------------------------------------- the swap flood

def swap_flood(args: argparse.Namespace) -> dict:
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="facecast-flood-") as folder:
        big = Path(folder) / f"portrait_{args.flood_side}.jpg"
        with Image.open(PORTRAIT) as source:
            source.convert("RGB").resize((args.flood_side, args.flood_side), Image.Resampling.BICUBIC).save(
                big, quality=90)
        audio = speech_file(Path(folder), args.warmup_s + 180)
        vmc, vrchat = UdpReceiver(), UdpReceiver()
        daemon = Daemon(args, audio, vmc.port, vrchat.port)
        stop = threading.Event()
        clients = Clients(daemon, stop)
        for target in (clients.motion_reader, clients.frames_reader):
            threading.Thread(target=clients._guard, args=(target,), daemon=True).start()
        time.sleep(args.warmup_s)
        rss: list[tuple[float, float]] = []
        sampling = threading.Event()

        def sample_rss() -> None:
            while not sampling.is_set():  # the daemon and its portrait-analysis children together
                rss.append((time.monotonic(), tree_rss_bytes(daemon.pid) / 2**20))
                time.sleep(0.05)

        threading.Thread(target=sample_rss, daemon=True).start()
        time.sleep(5.0)
        begin = time.monotonic()
        steady = statistics.median(value for t, value in rss if t < begin)
        barrier = threading.Barrier(args.flood_count)
        answers: list[list[dict]] = [[] for _ in range(args.flood_count)]

        def swap(i: int) -> None:
            barrier.wait()
            answers[i] = clients._control({"type": "portrait", "path": str(big)}, 2)

        threads = [threading.Thread(target=swap, args=(i,)) for i in range(args.flood_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        done = time.monotonic()
        time.sleep(5.0)
        sampling.set()
        end = time.monotonic()
        status = daemon.status()
        stop.set()
        code, tail = daemon.stop()
    flood = [(t, ms) for t, ms in clients.motion_since(begin) if t <= done + 1.0]
    seconds = int(done + 1.0 - begin)
    per_second = [sum(1 for t, _ in flood if begin + k <= t < begin + k + 1) for k in range(seconds)]
    latencies = [ms for _, ms in flood if ms is not None]
    peak = max(value for t, value in rss if begin <= t <= end)
    result = {
        "side": args.flood_side, "count": args.flood_count, "generator": args.generator, "fps": args.fps,
        "steady_rss_mib": round(steady, 1), "peak_rss_mib": round(peak, 1),
        "peak_over_steady_mib": round(peak - steady, 1),
        "swap_seconds": round(done - begin, 1), "motion_per_second": per_second,
        "min_motion_per_second": min(per_second) if per_second else None,
        "p95_ms": round(float(np.percentile(latencies, 95)), 1) if latencies else None,
        "answers": [[a["type"] + (": " + a["message"] if a["type"] == "error" else "") for a in pair]
                    for pair in answers],
        "status_after": {"last_error": status.get("last_error"), "portrait": status.get("portrait")},
        "exit_code": code, "stop_summary_logged": "stopped after" in tail,
    }
    print(json.dumps(result, indent=1))
    print(f"\nswap flood: {args.flood_count} x {args.flood_side}x{args.flood_side} JPEG at once; steady "
          f"{result['steady_rss_mib']} MiB, peak {result['peak_rss_mib']} MiB (+{result['peak_over_steady_mib']} MiB); "
          f"/motion {result['min_motion_per_second']}-{max(per_second) if per_second else None} msgs every second "
          f"for {result['swap_seconds']} s; p95 {result['p95_ms']} ms")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="soak length (default 10)")
    parser.add_argument("--generator", default="rule", choices=("rule", "learned"))
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples (default 30)")
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes left out of the RSS slope (default 2)")
    parser.add_argument("--swap-every", type=float, default=60.0, help="seconds between portrait swaps (0: none)")
    parser.add_argument("--udp-restart-every", type=float, default=120.0,
                        help="seconds between killing the VMC receiver (for 15 s)")
    parser.add_argument("--swap-flood", action="store_true", help="measure 6 swaps of a huge JPEG at once instead")
    parser.add_argument("--flood-side", type=int, default=9000)
    parser.add_argument("--flood-count", type=int, default=6)
    parser.add_argument("--warmup-s", type=float, default=30.0, help="swap flood: seconds before the flood")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", str(REPO / "src"))
    result = swap_flood(args) if args.swap_flood else soak(args)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
