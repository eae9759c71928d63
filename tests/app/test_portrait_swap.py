"""Live portrait swaps: one at a time, latest wins, two answers each; failures in one line; logging untouched.

These cover findings 1, 2 and 4 of the hostile-input probe (issue 21): unbounded concurrent swaps, fd 2
left on /dev/null by concurrent swaps, and failed swaps acknowledged as if they had worked.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import websockets.sync.client
from PIL import Image

from facecast.app.daemon import LiveDaemon
from facecast.bridges.ws_server import WsServer
from facecast.errors import InputError
from facecast.face.portrait import analyze_portrait
from facecast.media import load_image
from facecast.motion import MotionFrame

REPO = Path(__file__).resolve().parents[2]
MAX_PICTURE_PIXELS, MAX_PICTURE_SIDE = 100_000_000, 4096  # facecast.media's limits (the numbers)
#: pyproject asks for mediapipe >= 1.2.3; with an older one left in an environment, the face tracker's detector
#: raises on pictures without a face, which a swap must still answer in one line.
OLD_MEDIAPIPE = tuple(int(p) for p in importlib.metadata.version("mediapipe").split(".")[:2]) < (1, 2)
PHOTO = REPO.parent / "shared" / "data" / "portraits" / "liveportrait_s1.jpg"


class Idle:
    """An audio source that never delivers (the daemon is not run in most of these tests)."""

    status = {"state": "idle"}
    finished = False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def read(self, timeout: float = 0.1):
        time.sleep(timeout)
        return None


class Picture:
    """An output that wants the rendered picture, so the portrait can be swapped."""

    name = "picture"
    needs_image = True

    def send(self, frame: MotionFrame, image: np.ndarray | None) -> None:
        pass

    def close(self) -> None:
        pass


def daemon_with(load_renderer) -> LiveDaemon:
    return LiveDaemon(Idle(), None, [Picture()], 30, render=lambda frame: "old", load_renderer=load_renderer)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims `width` x `height` but holds almost no data: only the header can be read."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


# --------------------------------------------------------------------------- finding 1: bounded swaps

def slow_loader(seconds: float = 0.3):
    """A stand-in analysis that takes `seconds`; records how many run at once and which paths it loaded."""
    state = {"running": 0, "peak": 0, "loaded": []}
    lock = threading.Lock()

    def load(path: Path):
        with lock:
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
        time.sleep(seconds)
        with lock:
            state["running"] -= 1
        state["loaded"].append(path.name)
        return lambda frame, name=path.name: name

    return load, state


def six_swaps(daemon: LiveDaemon, state: dict, folder: Path, replies: dict[str, list[dict]] | None = None) -> list:
    """Six portrait commands in a row; the other five arrive while the first is being analysed."""
    firsts = []
    for i in range(6):
        name = f"p{i}.png"
        (folder / name).write_bytes(b"stand-in: the loader decides what it shows")
        command = {"type": "portrait", "path": str(folder / name)}
        if replies is None:
            firsts.append(daemon.on_control(command))
        else:
            firsts.append(daemon.on_control(command, replies[name].append))
        deadline = time.monotonic() + 5
        while i == 0 and state["running"] == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
    return firsts


def test_one_swap_at_a_time_and_the_latest_wins(tmp_path: Path) -> None:
    """Six swaps at once: one analysis at a time (it used to be six threads at once), the waiting ones
    superseded, the newest shown."""
    load, state = slow_loader()
    daemon = daemon_with(load)
    six_swaps(daemon, state, tmp_path)
    deadline = time.monotonic() + 10
    while (state["running"] or len(state["loaded"]) < 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.4)
    assert state["peak"] == 1
    assert state["loaded"] == ["p0.png", "p5.png"]  # the first was already running; p1-p4 were replaced waiting
    assert daemon._render(None) == "p5.png"


def test_every_swap_is_answered_twice(tmp_path: Path) -> None:
    """accepted at once, then swapped, or an error line (here: superseded by a newer request)."""
    load, state = slow_loader()
    daemon = daemon_with(load)
    replies: dict[str, list[dict]] = {f"p{i}.png": [] for i in range(6)}
    firsts = six_swaps(daemon, state, tmp_path, replies)
    paths = {name: str(tmp_path / name) for name in replies}
    assert firsts == [{"type": "accepted", "path": paths[name]} for name in replies]
    assert daemon.swapper.wait_idle(10)
    assert replies["p0.png"] == [{"type": "swapped", "path": paths["p0.png"]}]
    assert replies["p5.png"] == [{"type": "swapped", "path": paths["p5.png"]}]
    for name in ("p1.png", "p2.png", "p3.png", "p4.png"):
        assert replies[name] == [{"type": "error", "message": "superseded by a newer portrait swap",
                                  "path": paths[name]}]
    assert daemon.status()["portrait"] == {"swapping": False, "swapped": 2, "failed": 0, "superseded": 4}


def test_picture_size_is_checked_from_the_header_before_decoding(tmp_path: Path) -> None:
    """Over 100 megapixels: one 'too large' line at once, nothing decoded (the same for render and live)."""
    big = png_header_only(tmp_path / "huge.png", 12_000, 9_000)  # 108 MP, under Pillow's own bomb limit
    start = time.monotonic()
    with pytest.raises(InputError, match="too large: 12000x9000 = 108 megapixels") as error:
        load_image(big)
    assert "\n" not in str(error.value) and time.monotonic() - start < 1.0
    assert 12_000 * 9_000 > MAX_PICTURE_PIXELS >= 10_000 * 10_000
    with pytest.raises(InputError, match="too large: 400 megapixels"):   # its own size, not Pillow's limit
        load_image(png_header_only(tmp_path / "bomb.png", 20_000, 20_000))  # Pillow's bomb error, mapped


def test_a_9000_pixel_jpeg_is_reduced_while_decoding(tmp_path: Path) -> None:
    """A 9000x9000 JPEG (81 MP) loads reduced to MAX_PICTURE_SIDE with a small peak: it used to decode to
    243 MB and peak 1.4 GiB above the start."""
    source = Image.open(PHOTO if PHOTO.is_file() else REPO / "samples" / "mona_lisa.jpg").convert("RGB")
    path = tmp_path / "big.jpg"
    source.resize((9000, 9000), Image.Resampling.BILINEAR).save(path, quality=85)
    del source
    probe = ("import resource, sys\n"
             "from facecast.media import load_image\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "image = load_image(sys.argv[1])\n"
             "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
             "print(image.shape[0], image.shape[1], grown // 1024)\n")
    result = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    height, width, grown_mib = map(int, result.stdout.split())
    assert (height, width) == (MAX_PICTURE_SIDE, MAX_PICTURE_SIDE)
    assert grown_mib < 400, f"peak grew {grown_mib} MiB"


# --------------------------------------------------------------------------- finding 4: honest answers

@pytest.fixture
def swap_server():
    """A daemon with the real portrait analysis behind a real WebSocket server."""
    daemon = daemon_with(lambda path: analyze_portrait(path, size=256))
    server = WsServer(port=0, on_control=daemon.on_control)
    server.set_status_provider(daemon.status)
    server.start()
    yield daemon, server
    server.stop()
    daemon.swapper.close()


def swap(ws, token: str, path: str | Path) -> list[dict]:
    """Ask for one swap; its two answers."""
    ws.send(json.dumps({"type": "portrait", "path": str(path), "token": token}))
    return [json.loads(ws.recv(timeout=60)) for _ in range(2)]


def test_failed_swaps_are_answered_with_their_reason_and_a_success_clears_last_error(
        swap_server, tmp_path: Path, sample_portrait: Path) -> None:
    daemon, server = swap_server
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (480, 480), (180, 180, 180)).save(blank)
    cases = [
        (tmp_path / "missing.png", "not found"),
        (text, "is not a picture"),
        (tmp_path, "is not a file but a folder"),
        ("/dev/zero", "is not a file but a device"),
        (png_header_only(tmp_path / "huge.png", 12_000, 9_000), "too large"),
        (blank, "no face found"),
    ]
    url = server.url.replace("http", "ws") + "/control"
    with websockets.sync.client.connect(url) as ws:
        for path, reason in cases:
            accepted, outcome = swap(ws, server.token, path)
            assert accepted == {"type": "accepted", "path": str(path)}
            assert outcome["type"] == "error" and outcome["path"] == str(path), outcome
            assert "\n" not in outcome["message"], outcome
            if reason == "no face found" and OLD_MEDIAPIPE:  # its face detector fails on the full-range model
                reason = "internal error: RuntimeError"
            assert reason in outcome["message"], outcome
            assert reason in daemon.status()["last_error"]
        status = json.loads(_get(server, "/status"))
        assert status["last_error"].startswith("portrait swap: ") and status["portrait"]["failed"] == len(cases)
        assert swap(ws, server.token, sample_portrait) == [{"type": "accepted", "path": str(sample_portrait)},
                                                            {"type": "swapped", "path": str(sample_portrait)}]
    assert json.loads(_get(server, "/status"))["last_error"] is None


def _get(server: WsServer, path: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(server.url + path, timeout=10) as answer:
        return answer.read()


# --------------------------------------------------------------------------- finding 2: logging never silenced

def test_portrait_analysis_never_touches_the_stderr_descriptor(monkeypatch, sample_portrait: Path) -> None:
    """Concurrent analyses must not redirect fd 2 (they used to dup2 /dev/null over it and race restoring it)."""
    calls: list[tuple] = []
    real_dup2 = os.dup2
    monkeypatch.setattr(os, "dup2", lambda *args, **kw: (calls.append(args), real_dup2(*args, **kw))[1])
    before = os.fstat(2)
    threads = [threading.Thread(target=analyze_portrait, args=(sample_portrait,), kwargs={"size": 256})
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = os.fstat(2)
    assert [c for c in calls if len(c) > 1 and c[1] == 2] == []
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


def test_concurrent_swaps_leave_the_daemons_logging_intact(sample_portrait: Path, sample_speech: Path,
                                                             tmp_path: Path) -> None:
    """`facecast live` with four swaps of an ordinary photo at once: the daemon's status lines keep coming
    during and after the swaps, and the stop summary is printed; mediapipe's own lines stay off stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "facecast.app.cli", "live", "--portrait", str(sample_portrait), "--audio",
         str(sample_speech), "--size", "256", "--ws", "0", "--generator", "rule", "--log-level", "info"],
        stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), line) for line in process.stderr),
                              daemon=True)
    try:
        url = token = None
        for line in process.stderr:
            lines.append((time.monotonic(), line))
            if "overlay page" in line:
                url = line.split("overlay page ")[1].split("/overlay")[0].replace("http", "ws")
                token = line.split("control token ")[1].split(")")[0]
                break
        assert url and token, "".join(text for _, text in lines)
        reader.start()
        time.sleep(1.0)
        with contextlib.ExitStack() as stack:
            connections = [stack.enter_context(websockets.sync.client.connect(url + "/control")) for _ in range(4)]
            for ws in connections:
                ws.send(json.dumps({"type": "portrait", "path": str(sample_portrait), "token": token}))
            outcomes = []
            for ws in connections:
                first = json.loads(ws.recv(timeout=60))
                outcomes.append([first, json.loads(ws.recv(timeout=120)) if first["type"] == "accepted" else first])
        done = time.monotonic()
        time.sleep(6.0)  # a status line comes every 5 s
        process.terminate()
        assert process.wait(timeout=30) == 0
        reader.join(timeout=10)
    finally:
        process.kill()
    text = "".join(line for _, line in lines)
    status_after = [t for t, line in lines if " status fps=" in line and t > done]
    assert status_after, f"no status line after the swaps:\n{text}"
    assert "portrait swapped to" in text and "stopped after" in text and "summary {" in text, text
    assert "Traceback" not in text and "inference_feedback_manager" not in text and "XNNPACK" not in text
    assert all(first["type"] == "accepted" for first, _ in outcomes), outcomes
    assert [last["type"] for _, last in outcomes].count("swapped") >= 1, outcomes
    assert all(last["type"] == "swapped" or "superseded" in last["message"] for _, last in outcomes), outcomes
