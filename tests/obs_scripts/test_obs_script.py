"""obs_scripts/facecast_obs.py without OBS: its pure functions, its clients against the real server, its
process handling with stand-in `facecast` executables and the real one, and its panel.

The panel test uses a stand-in `obspython` because the real OBS test (tests/test_obs.py) cannot open
the Scripts dialog or click its buttons: obs-websocket has no request for that. The stand-in is strict
(an OBS function it does not define is an AttributeError), and tests/test_obs.py checks that every
`obs.` name the script uses exists in the real obspython module.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest
from PIL import Image

from facecast.bridges.ws_server import WsServer
from facecast.motion import MotionFrame

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "obs_scripts" / "facecast_obs.py"
FACECAST = Path(sys.executable).parent / "facecast"


def load_script(name: str = "facecast_obs_under_test") -> ModuleType:
    """A fresh copy of the script module (its panel state is module-global, as in OBS)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fo = load_script()


def run_until(condition: Callable[[], Any], tick: Callable[[], None] | None = None, timeout: float = 10.0) -> Any:
    """Call `tick` (the OBS timer's work) every 20 ms until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


# --------------------------------------------------------------------------------------------- pure functions

def test_script_is_python_3_8_and_standard_library_only() -> None:
    """OBS loads the script into its own Python (3.8-3.12 on Windows and macOS), not facecast's environment."""
    source = SCRIPT.read_text()
    ast.parse(source, feature_version=(3, 8))
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(str(node.module).split(".")[0])
    assert imported - {"obspython"} <= set(sys.stdlib_module_names), imported
    vermin = shutil.which("vermin", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if vermin is None:
        return  # `pip install vermin` for the thorough check (every library call's minimum version)
    out = subprocess.run([vermin, "-t=3.8-", "--no-tips", "--violations", str(SCRIPT)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_constants_match_the_daemon() -> None:
    """The script repeats a few of facecast's facts (OBS's Python cannot import facecast): they must agree."""
    from facecast.app.options import FRAMING_CHOICES, LATENCY_CHOICES, LIVE_FPS
    from facecast.bridges import ws_protocol
    from facecast.controls import CONTROL_SCHEMA, EMOTION_PRESETS, MAX_HEAD_INTENSITY, MAX_MOUTH_INTENSITY
    from facecast.speech.learned_stream import LATENCIES

    assert fo.EMOTION_PRESETS == tuple(EMOTION_PRESETS)
    assert tuple(value for value, _ in fo.FRAMINGS) == FRAMING_CHOICES
    assert tuple(value for value, _ in fo.LATENCIES) == LATENCY_CHOICES == LATENCIES
    assert fo.MAX_MOUTH_INTENSITY == MAX_MOUTH_INTENSITY and "mouth" in CONTROL_SCHEMA
    assert fo.MAX_HEAD_INTENSITY == MAX_HEAD_INTENSITY and "head" in CONTROL_SCHEMA
    assert fo.DEFAULT_PORT == ws_protocol.DEFAULT_PORT and fo.HOST == ws_protocol.DEFAULT_HOST
    assert fo.FPS_CHOICES == tuple(int(f) for f in LIVE_FPS)
    assert "stop" in CONTROL_SCHEMA and not CONTROL_SCHEMA["stop"]  # the script's clean stop: a bare message


def test_build_command_from_panel_settings() -> None:
    settings = {**fo.default_settings(), "portrait": "-odd name.png", "microphone": "USB Mic", "fps": 60,
                "size": 384, "framing": "full", "port": 40000, "out_vmc": True, "out_vts": True}
    command = fo.build_command("/opt/facecast", settings)
    # framing "full" keeps the whole picture, background included: no cut-out (the daemon refuses the two)
    assert command == ["/opt/facecast", "live", "--portrait=-odd name.png", "--fps=60", "--size=384",
                       "--framing=full", "--log-level=info", "--device=USB Mic", "--ws=40000", "--vmc", "--vts"]
    assert "--cutout" in fo.build_command("facecast", {**settings, "framing": "picture"})
    # an OBS without the Browser Source shows the MJPEG stream, which has no alpha: no cut-out onto black
    assert "--cutout" not in fo.build_command("facecast", {**settings, "framing": "picture"}, browser_source=False)
    # an audio file replaces the microphone; outputs off leave their flags out
    settings.update(audio_file="talk.flac", out_overlay=False, out_vmc=False, out_vts=False, out_vcam=True,
                    out_vrchat=True)
    command = fo.build_command("facecast", settings)
    assert "--audio=talk.flac" in command and not any(a.startswith("--device") for a in command)
    assert not any(a.startswith("--ws") for a in command) and command[-2:] == ["--vcam", "--vrchat"]
    assert "--cutout" not in command  # the cut-out comes with the overlay
    assert not any(a.startswith("--mouth-intensity") for a in command)   # 1, the default, is left out
    assert "--mouth-intensity=1.5" in fo.build_command("facecast", {**settings, "mouth_intensity": 1.5})
    assert not any(a.startswith("--head-intensity") for a in command)
    assert "--head-intensity=0.4" in fo.build_command("facecast", {**settings, "head_intensity": 0.4})
    assert not any(a.startswith("--latency") for a in command)      # low, the default, is left out
    assert "--latency=sync" in fo.build_command("facecast", {**settings, "latency": "sync"})
    assert not any(a.startswith("--camera") for a in command)       # no webcam unless one is picked
    assert "--camera=2" in fo.build_command("facecast", {**settings, "camera": "2"})


def test_build_command_parses_with_the_real_cli() -> None:
    """What the script builds is what `facecast live` accepts (the daemon's own parser and validation)."""
    from facecast.app.cli import build_parser
    from facecast.app.options import resolve_settings

    settings = {**fo.default_settings(), "portrait": "me.png", "microphone": "2", "out_vcam": True,
                "out_vmc": True, "out_vrchat": True, "out_vts": True, "port": 40001, "framing": "picture",
                "mouth_intensity": 0.25, "head_intensity": 0.5, "latency": "sync"}
    args = build_parser().parse_args(fo.build_command("facecast", settings)[1:])
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "handler", "debug")}
    resolved = resolve_settings(flags)
    assert resolved["portrait"] == "me.png" and resolved["device"] == "2" and resolved["ws"] == "40001"
    assert resolved["vmc"] == "" and resolved["vrchat"] == "" and resolved["vts"] and resolved["vcam"]
    assert resolved["fps"] == 30 and resolved["size"] == 512 and resolved["framing"] == "picture"
    assert resolved["cutout"] is True and resolved["mouth_intensity"] == 0.25 and resolved["latency"] == "sync"
    assert resolved["head_intensity"] == 0.5
    camera = build_parser().parse_args(fo.build_command("facecast", {**settings, "camera": "1", "latency": "low"})[1:])
    assert resolve_settings({k: v for k, v in vars(camera).items() if k not in ("command", "handler", "debug")}
                            )["camera"] == "1"
    default = build_parser().parse_args(fo.build_command("facecast", {**settings, "framing": ""})[1:])
    assert resolve_settings({k: v for k, v in vars(default).items() if k not in ("command", "handler", "debug")}
                            )["framing"] == "auto"


@pytest.mark.parametrize(("change", "message"), [
    ({"portrait": ""}, "choose a portrait"), ({"fps": 25}, "fps must be 30 or 60"), ({"size": 2048}, "size must be"),
    ({"port": 70000}, "port must be"), ({"framing": "zoomed"}, "framing must be one of auto, face, picture, full"),
    ({"mouth_intensity": 2.5}, "mouth intensity must be 0-2"),
    ({"head_intensity": -0.1}, "head intensity must be 0-2"),
    ({"latency": "fast"}, "latency must be one of low, sync"),
    ({"latency": "sync", "camera": "0"}, "lip sync latency cannot follow a webcam"),
])
def test_build_command_refuses_bad_settings(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fo.build_command("facecast", {**fo.default_settings(), "portrait": "me.png", **change})


def test_find_facecast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "facecast"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert fo.find_facecast("") == str(exe)  # default: PATH
    assert fo.find_facecast(str(exe)) == str(exe)  # a configured file
    assert fo.find_facecast(" facecast ") == str(exe)  # a configured name, looked up on PATH
    assert fo.find_facecast(str(tmp_path / "missing")) is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert fo.find_facecast("") is None


def test_overlay_source_and_placement() -> None:
    kind, settings = fo.overlay_source(True, 39650, 512, 30)
    assert kind == "browser_source" and settings["url"] == "http://127.0.0.1:39650/overlay"
    assert (settings["width"], settings["height"], settings["fps"]) == (512, 512, 30)
    assert "css" not in settings  # OBS's default CSS is what makes the page transparent
    kind, settings = fo.overlay_source(False, 40000, 512, 60)
    assert kind == "ffmpeg_source" and settings["input"] == "http://127.0.0.1:40000/video.mjpeg"
    assert settings["is_local_file"] is False and settings["input_format"] == "mpjpeg"
    assert fo.overlay_placement(1920, 1080, 512) == (1920 - 512 - 16, 1080 - 512 - 16, 1.0)
    x, y, scale = fo.overlay_placement(640, 360, 512)
    assert scale == pytest.approx(0.9 * 360 / 512) and x + 512 * scale <= 640 and y + 512 * scale <= 360


def test_launch_prefix_sets_the_parent_death_signal_on_linux_only() -> None:
    which = {"setpriv": "/usr/bin/setpriv"}.get
    assert fo.launch_prefix("linux", which) == ["/usr/bin/setpriv", "--pdeathsig", "TERM", "--"]
    assert fo.launch_prefix("linux", lambda name: None) == []
    assert fo.launch_prefix("win32", which) == [] and fo.launch_prefix("darwin", which) == []


def test_parse_devices() -> None:
    listing = {"audio_inputs": [
        {"index": 3, "name": "USB Microphone", "channels": 1, "default_sample_rate": 48000.0, "host_api": "ALSA",
         "is_default": True},
        {"index": 5, "name": "Webcam Mic", "channels": 2, "default_sample_rate": 44100.0, "host_api": "ALSA",
         "is_default": False}], "virtual_cameras": []}
    assert fo.parse_devices(json.dumps(listing)) == [
        ("USB Microphone", "USB Microphone (1 ch, ALSA) - default"), ("Webcam Mic", "Webcam Mic (2 ch, ALSA)")]
    assert fo.parse_devices('{"audio_inputs": [], "virtual_cameras": []}') == []
    assert fo.parse_devices("Traceback (most recent call last):") == []
    assert fo.parse_devices('{"audio_inputs": 3}') == []


def test_parse_cameras() -> None:
    listing = {"audio_inputs": [], "cameras": [
        {"index": 0, "name": "Integrated Camera", "path": "/dev/video0", "mode": "1280x720@30"},
        {"index": 2, "name": "Logitech BRIO", "path": "/dev/video2", "mode": None}, {"name": "no index"}]}
    assert fo.parse_cameras(json.dumps(listing)) == [("0", "Integrated Camera (1280x720@30)"),
                                                     ("2", "Logitech BRIO")]
    assert fo.parse_cameras('{"audio_inputs": []}') == [] and fo.parse_cameras("not json") == []


def test_parse_devices_reads_the_real_listing() -> None:
    out = subprocess.run([str(FACECAST), "devices", "--json"], capture_output=True, text=True, timeout=60, check=True)
    names = [device["name"] for device in json.loads(out.stdout)["audio_inputs"]]
    assert [value for value, _ in fo.parse_devices(out.stdout)] == names
    cameras = [str(camera["index"]) for camera in json.loads(out.stdout)["cameras"]]
    assert [value for value, _ in fo.parse_cameras(out.stdout)] == cameras


LOG = """\
2026-11-21 14:21:46,140 INFO websockets.server: server listening on 127.0.0.1:39779
2026-11-21 14:21:46,140 INFO facecast.live: overlay page http://127.0.0.1:39779/overlay (control token E4GY-7b8_r1H)
2026-11-21 14:21:46,140 INFO facecast.live: live: me.png at 30 fps from the microphone
2026-11-21 14:21:46,390 WARNING facecast.app.audio_input: microphone default input lost: cannot open it: \
Error querying device -1; sending silence and retrying every 1.5 s
2026-11-21 14:21:51,495 INFO facecast.live: status fps=25.03 p50_ms=36.0 p95_ms=86.2 frames=134 repeated=5 audio=lost
"""


def test_log_parsing() -> None:
    assert fo.extract_token(LOG) == "E4GY-7b8_r1H"
    assert fo.extract_token("nothing yet") is None
    assert fo.microphone_problem(LOG) == "microphone default input lost: cannot open it: Error querying device -1"
    back = LOG + ("2026-11-21 14:22:00,000 WARNING facecast.app.audio_input: "
                  "microphone default input is back after 9.0 s\n")
    assert fo.microphone_problem(back) is None
    assert fo.parse_log_line(LOG.splitlines()[2]) == ("INFO", "facecast.live",
                                                      "live: me.png at 30 fps from the microphone")


@pytest.mark.parametrize(("log", "error"), [
    ("facecast: error: no face found in me.png: try a clearer picture\n",
     "no face found in me.png: try a clearer picture"),
    (LOG + "facecast: error: port 39650 is already in use on 127.0.0.1; choose another port\n",
     "port 39650 is already in use on 127.0.0.1; choose another port"),
    ("facecast: internal error: OSError: boom (run with --debug for details)\n",
     "internal error: OSError: boom (run with --debug for details)"),
    ("2026-11-21 14:21:46,140 ERROR facecast.live: motion generation stopped: RuntimeError: x\n",
     "motion generation stopped: RuntimeError: x"),
    ('Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
     'ModuleNotFoundError: No module named "av"\n',
     'ModuleNotFoundError: No module named "av"'),
    (LOG, None),
])
def test_extract_error(log: str, error: str | None) -> None:
    assert fo.extract_error(log) == error


STATUS = {"fps": 29.84, "latency_ms": {"p50": 36.3, "p95": 41.0}, "frames": 900, "repeated": 0,
          "inputs": {"audio": {"device": "default input", "state": "running"}},
          "outputs": {"websocket": {"sent": 900, "errors": 0, "last_error": None}}, "clients": 1, "last_error": None}


def test_status_text() -> None:
    assert fo.summarize_status(STATUS) == "29.8 fps, latency 36 ms (p95 41 ms), audio running"
    assert fo.summarize_status({}) == "fps unknown, latency -"
    lost = {**STATUS, "inputs": {"audio": {"device": "USB Mic", "state": "lost"}}}
    assert fo.status_problem(lost) == "no microphone (USB Mic)"
    assert (fo.status_problem({**STATUS, "last_error": "ConnectionError: receiver gone"})
            == "ConnectionError: receiver gone")
    assert fo.status_problem(STATUS) is None
    webcam = {**STATUS, "inputs": {"audio": {"state": "running"}, "camera": {"device": "BRIO", "state": "lost"}}}
    assert fo.status_problem(webcam) == "webcam BRIO lost: the voice drives the avatar until it is back"
    assert fo.format_status_line("running", STATUS) == "Running: 29.8 fps, latency 36 ms (p95 41 ms), audio running"
    assert fo.format_status_line("running", STATUS, problem="no microphone (USB Mic)").endswith(
        ". Warning: no microphone (USB Mic)")
    assert "enable the Overlay output" in fo.format_status_line("running", None, overlay=False)
    assert fo.format_status_line("failed", error="no face found") == "Error: no face found"
    assert fo.format_status_line("stopped") == "Stopped. Press Start."
    assert fo.log_key("Running: 29.8 fps") == fo.log_key("Running: 30.0 fps") != fo.log_key("Stopped. Press Start.")
    assert fo.log_key("Error: a") != fo.log_key("Error: b")
    delayed = {**STATUS, "av_delay_ms": {"total": 143, "capture": 9, "lookahead": 80, "processing": 54}}
    assert fo.summarize_status(delayed).endswith(", lips 143 ms behind the voice")


def test_the_microphone_follows_the_avatars_delay_in_steps() -> None:
    """The Sync Offset to set: /status's total delay, moved only when it changed by SYNC_STEP_MS (each change makes
    OBS resynchronise the microphone's audio)."""
    assert fo.avatar_delay_ms({**STATUS, "av_delay_ms": {"total": 142.6}}) == 143
    assert fo.avatar_delay_ms(STATUS) is None and fo.avatar_delay_ms({"av_delay_ms": None}) is None
    assert fo.avatar_delay_ms(None) is None and fo.avatar_delay_ms({"av_delay_ms": {"total": "x"}}) is None
    assert fo.sync_offset_change(None, 143) and not fo.sync_offset_change(None, None)
    assert not fo.sync_offset_change(143, 143 + fo.SYNC_STEP_MS - 1)
    assert fo.sync_offset_change(143, 143 + fo.SYNC_STEP_MS) and fo.sync_offset_change(143, 100)


def test_a_saved_microphone_delay_is_read_back_only_when_whole() -> None:
    """What script_save keeps for the next start (the microphone's own offset while facecast delays it); the real
    round trip through an OBS exit and start is in tests/obs_scripts/test_obs.py."""
    kept = {"source": "Mic/Aux", "original": 20000000, "applied_ms": 143}
    assert fo.saved_microphone_delay(json.dumps(kept)) == kept
    for text in ("", "null", "{", "[]", json.dumps({**kept, "original": "20"}), json.dumps({**kept, "source": None}),
                 json.dumps({**kept, "applied_ms": True}), json.dumps({"source": "Mic/Aux"})):
        assert fo.saved_microphone_delay(text) is None, text


def test_websocket_framing() -> None:
    assert fo.websocket_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455's example
    for size in (0, 5, 125, 126, 65535, 65536, 70000):
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        frame = fo.encode_ws_frame(payload, mask=b"\x01\x02\x03\x04")
        assert frame[1] & 0x80  # client frames are masked
        assert fo.decode_ws_frame(frame) == (0x1, payload, len(frame))
        assert fo.decode_ws_frame(frame[:-1] if size else frame[:1]) is None
    unmasked = bytes([0x81, 2]) + b"ok" + b"next"
    assert fo.decode_ws_frame(unmasked) == (0x1, b"ok", 4)


def test_parse_http_response() -> None:
    assert fo.parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}") == (200, b"{}")
    assert fo.parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}") is None
    assert fo.parse_http_response(b"HTTP/1.1 403 Forbidden\r\n\r\nno", close_delimited=True) == (403, b"no")
    with pytest.raises(ValueError):
        fo.parse_http_response(b"garbage\r\n\r\n")


# ------------------------------------------------------------------------------------------- clients vs the real server

@pytest.fixture
def server() -> Any:
    """facecast's real WebSocket/HTTP server on a free port, with a control handler that records commands."""
    received: list[dict[str, Any]] = []

    def on_control(command: dict[str, Any], reply: Any) -> None:
        if command.get("preset") == "contempt":
            raise ValueError("not today")
        received.append(command)

    srv = WsServer("127.0.0.1", 0, token="secret-token", on_control=on_control)
    srv.set_status_provider(lambda: {"inputs": {"audio": {"device": "x", "state": "running"}}})
    srv.start()
    srv.received = received
    srv.send(MotionFrame(t=0.0, capture_time=time.monotonic()))
    try:
        yield srv
    finally:
        srv.stop()


def finish(exchange: Any, timeout: float = 5.0) -> Any:
    run_until(exchange.poll, timeout=timeout)
    return exchange


def test_http_get_reads_status_without_blocking(server: Any) -> None:
    exchange = fo.HttpGet("127.0.0.1", server.port, "/status")
    first = time.perf_counter()
    exchange.poll()
    assert time.perf_counter() - first < 0.05  # one poll never waits for the network
    finish(exchange)
    assert exchange.error is None and exchange.result[0] == 200
    status = json.loads(exchange.result[1])
    assert status["inputs"]["audio"]["state"] == "running"


def test_control_message_with_token_is_acknowledged(server: Any) -> None:
    message = {"type": "emotion", "preset": "happy", "intensity": 0.6, "token": "secret-token"}
    exchange = finish(fo.ControlMessage("127.0.0.1", server.port, message))
    assert fo.control_outcome(exchange) is None
    assert server.received == [{"type": "emotion", "preset": "happy", "intensity": 0.6}]


def test_control_refusals_come_back_as_one_line(server: Any) -> None:
    wrong = finish(fo.ControlMessage("127.0.0.1", server.port, {"type": "emotion", "preset": "happy", "token": "x"}))
    assert fo.control_outcome(wrong) == "missing or wrong token"
    refused = finish(fo.ControlMessage("127.0.0.1", server.port,
                                       {"type": "emotion", "preset": "contempt", "token": "secret-token"}))
    assert fo.control_outcome(refused) == "not today"
    assert server.received == []


def test_overlay_source_for_a_daemon_on_another_computer() -> None:
    """Two PCs: the saved source URL names the gaming PC and carries its token (which persists there)."""
    kind, settings = fo.overlay_source(True, 39650, 512, 30, host="192.168.1.5", token="T0k/en")
    assert settings["url"] == "http://192.168.1.5:39650/overlay?token=T0k%2Fen"
    kind, settings = fo.overlay_source(False, 39650, 512, 30, host="gaming-pc.local", token="T")
    assert settings["input"] == "http://gaming-pc.local:39650/video.mjpeg?token=T"
    assert fo.base_url(39650, "fe80::1") == "http://[fe80::1]:39650"


@pytest.fixture
def lan_server() -> Any:
    """The real server bound beyond loopback (every endpoint needs the token), as on the gaming PC."""
    received: list[dict[str, Any]] = []
    srv = WsServer("0.0.0.0", 0, token="lan-token-0123456789", on_control=lambda c, r: received.append(c))
    srv.set_status_provider(lambda: {"fps": 30.0, "latency_ms": {"p50": 40.0, "p95": 50.0},
                                     "inputs": {"audio": {"device": "x", "state": "running"}}})
    srv.start()
    srv.received = received
    try:
        yield srv
    finally:
        srv.stop()


def test_clients_pass_the_token_to_a_daemon_beyond_loopback(lan_server: Any) -> None:
    assert finish(fo.HttpGet("127.0.0.1", lan_server.port, "/status")).result[0] == 401
    answer = finish(fo.HttpGet("127.0.0.1", lan_server.port, "/status", token="lan-token-0123456789"))
    assert answer.result[0] == 200 and json.loads(answer.result[1])["fps"] == 30.0
    message = {"type": "emotion", "preset": "happy", "token": "lan-token-0123456789"}
    refused = finish(fo.ControlMessage("127.0.0.1", lan_server.port, message))
    assert "401" in fo.control_outcome(refused)
    exchange = finish(fo.ControlMessage("127.0.0.1", lan_server.port, message, token="lan-token-0123456789"))
    assert fo.control_outcome(exchange) is None and lan_server.received == [{"type": "emotion", "preset": "happy"}]


def test_panel_shows_and_controls_facecast_on_another_computer(lan_server: Any) -> None:
    panel = fo.Panel()
    panel.settings.update(remote_host="127.0.0.1", port=lan_server.port, token="wrong-token")
    assert panel.start().startswith("facecast runs on 127.0.0.1: start it there")
    assert panel.daemon.process is None  # nothing is launched on this PC
    run_until(lambda: panel.remote_error is not None, panel.tick)
    assert "answered 401" in panel.status_line() and panel.status_line().startswith("Connecting to facecast on")
    panel.settings["token"] = "lan-token-0123456789"
    run_until(lambda: panel.last_status is not None, panel.tick)
    assert panel.status_line().startswith("Running on 127.0.0.1: 30.0 fps, latency 40 ms (p95 50 ms)")
    assert panel.emotion("happy") == "emotion happy sent"
    run_until(lambda: lan_server.received, panel.tick)
    assert lan_server.received[0]["preset"] == "happy"
    panel.settings["mouth_intensity"] = 1.5
    assert panel.intensity("mouth") == "mouth intensity 1.5 sent"
    run_until(lambda: len(lan_server.received) == 2, panel.tick)
    assert lan_server.received[1] == {"type": "mouth", "intensity": 1.5}   # checked by the real control schema
    # the head slider moved: the computer facecast runs on is sent the new head intensity
    assert panel.apply_settings({**panel.settings, "head_intensity": 0.35}) == "head intensity 0.35 sent"
    run_until(lambda: len(lan_server.received) == 3, panel.tick)
    assert lan_server.received[2] == {"type": "head", "intensity": 0.35}
    panel.shutdown()


def test_clients_report_a_missing_or_silent_daemon() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    exchange = finish(fo.HttpGet("127.0.0.1", closed_port, "/status"))
    assert exchange.error == f"nothing listens on 127.0.0.1:{closed_port}"
    with socket.socket() as silent:  # accepts (the kernel does) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        exchange = fo.HttpGet("127.0.0.1", silent.getsockname()[1], "/status", timeout=0.3)
        finish(exchange)
        assert exchange.error.startswith("no answer from")


# --------------------------------------------------------------------------------------------- processes

FAKE_FACECAST = """\
#!{python}
# A stand-in `facecast`: `devices --json` lists one microphone; `live` behaves as its portrait's name says.
import json, os, signal, sys, time
args = sys.argv[1:]
if args[:1] == ["devices"]:
    print(json.dumps({{"audio_inputs": [{{"index": 1, "name": "Fake Mic", "channels": 1, "host_api": "ALSA",
                                         "is_default": True}}], "virtual_cameras": []}}))
    sys.exit(0)
portrait = next(a.split("=", 1)[1] for a in args if a.startswith("--portrait="))
if "noface" in portrait:
    print("facecast: error: no face found in " + portrait, file=sys.stderr)
    sys.exit(1)
if "stubborn" in portrait:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("2026-01-01 00:00:00,000 INFO facecast.live: overlay page http://127.0.0.1:1/overlay (control token tok123)",
      file=sys.stderr, flush=True)
print("2026-01-01 00:00:00,000 INFO facecast.live: live: " + portrait, file=sys.stderr, flush=True)
with open(os.environ["FAKE_PID_FILE"], "w") as f:
    f.write(str(os.getpid()))
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def fake_facecast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in `facecast` first on PATH; FAKE_PID_FILE receives the live process's pid."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "facecast"
    exe.write_text(FAKE_FACECAST.format(python=sys.executable))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PID_FILE", str(tmp_path / "pid"))
    return exe


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is as good as gone
        return stat.read().split(") ")[1][0] != "Z"


def test_daemon_controller_start_token_stop(fake_facecast: Path) -> None:
    daemon = fo.DaemonController()
    assert daemon.start([str(fake_facecast), "live", "--portrait=me.png"]) is None
    assert daemon.state == "starting"
    run_until(lambda: daemon.state == "running", daemon.poll)
    assert daemon.token == "tok123" and daemon.alive
    log_path = daemon.log_path
    assert log_path is not None and oct(os.stat(log_path).st_mode)[-3:] == "600"  # the token stays private
    daemon.stop()
    assert daemon.state == "stopping"
    run_until(lambda: daemon.state == "stopped", daemon.poll)
    assert daemon.error is None
    daemon.shutdown()
    assert not os.path.exists(log_path)


def test_daemon_controller_reports_the_daemons_error(fake_facecast: Path) -> None:
    daemon = fo.DaemonController()
    daemon.start([str(fake_facecast), "live", "--portrait=noface.png"])
    run_until(lambda: daemon.state == "failed", daemon.poll)
    assert daemon.error == "no face found in noface.png"
    missing = fo.DaemonController()
    assert missing.start(["/nonexistent/facecast", "live"]).startswith("cannot run /nonexistent/facecast")
    assert missing.state == "failed"


def test_daemon_controller_kills_a_daemon_that_ignores_sigterm(fake_facecast: Path, tmp_path: Path) -> None:
    now = [0.0]
    daemon = fo.DaemonController(clock=lambda: now[0])
    daemon.start([str(fake_facecast), "live", "--portrait=stubborn.png"])
    run_until(lambda: daemon.state == "running", daemon.poll)
    daemon.stop()
    time.sleep(0.3)
    daemon.poll()
    assert daemon.alive  # SIGTERM ignored
    now[0] += fo.STOP_GRACE_S + 1
    run_until(lambda: daemon.state == "stopped", daemon.poll)


def test_control_port_comes_from_the_command() -> None:
    settings = {**fo.default_settings(), "portrait": "me.png", "port": 40002}
    assert fo.control_port(fo.build_command("facecast", settings)) == 40002
    assert fo.control_port(fo.build_command("facecast", {**settings, "out_overlay": False})) is None


def test_daemon_controller_stops_with_the_control_message_first(fake_facecast: Path) -> None:
    """Stop sends {"type": "stop"} on ws /control (on Windows terminate() kills outright); the daemon is
    terminated only when it has not gone `STOP_GRACE_S` later."""
    received: list[dict[str, Any]] = []
    server = WsServer("127.0.0.1", 0, token="tok123", on_control=received.append)  # the fake logs token tok123
    server.start()
    now = [0.0]
    try:
        daemon = fo.DaemonController(clock=lambda: now[0])
        daemon.start([str(fake_facecast), "live", "--portrait=me.png", "--ws=%d" % server.port])
        run_until(lambda: daemon.state == "running", daemon.poll)
        daemon.stop()
        run_until(lambda: received, daemon.poll)
        assert received == [{"type": "stop"}]
        time.sleep(0.3)
        daemon.poll()
        assert daemon.alive and daemon.state == "stopping"  # the stand-in ignores the message: no SIGTERM yet
        now[0] += fo.STOP_GRACE_S + 1
        run_until(lambda: daemon.state == "stopped", daemon.poll)  # terminated (its SIGTERM handler exits 0)
        assert daemon.stop_note == "facecast did not stop within 5 s of the stop message: terminated"
    finally:
        server.stop()


def test_daemon_controller_terminates_when_the_stop_message_is_refused(fake_facecast: Path, server: Any) -> None:
    daemon = fo.DaemonController()  # the fake's token tok123 is not the server's: the message is refused
    daemon.start([str(fake_facecast), "live", "--portrait=me.png", "--ws=%d" % server.port])
    run_until(lambda: daemon.state == "running", daemon.poll)
    daemon.stop()
    run_until(lambda: daemon.state == "stopped", daemon.poll)
    assert daemon.stop_note == "the stop message failed (missing or wrong token): terminated"
    assert server.received == []


def test_daemon_controller_shutdown_kills_a_stubborn_daemon_within_its_wait(fake_facecast: Path) -> None:
    daemon = fo.DaemonController()
    daemon.start([str(fake_facecast), "live", "--portrait=stubborn.png"])
    run_until(lambda: daemon.state == "running", daemon.poll)
    started = time.monotonic()
    daemon.stop(wait=1.0)
    assert daemon.state == "stopped" and not daemon.alive and time.monotonic() - started < 3.0


@pytest.mark.skipif(not sys.platform.startswith("linux") or not fo.launch_prefix(), reason="Linux with setpriv only")
def test_daemon_stops_when_obs_is_killed(fake_facecast: Path, tmp_path: Path) -> None:
    """OBS 29 dies on SIGTERM without unloading scripts: the parent-death signal still stops the daemon."""
    host = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import importlib.util, sys, time
        spec = importlib.util.spec_from_file_location("fo", {str(SCRIPT)!r})
        fo = importlib.util.module_from_spec(spec); spec.loader.exec_module(fo)
        daemon = fo.DaemonController()
        daemon.start([{str(fake_facecast)!r}, "live", "--portrait=me.png"])
        time.sleep(60)
    """)])
    pid_file = tmp_path / "pid"
    try:
        run_until(lambda: pid_file.exists() and pid_file.read_text(), timeout=20)
        pid = int(run_until(lambda: pid_file.exists() and pid_file.read_text().strip(), None))
        assert alive(pid)
        host.kill()  # like `kill -9 obs`
        host.wait()
        run_until(lambda: not alive(pid), timeout=10)
    finally:
        host.kill()
        host.wait()


def test_device_lister(fake_facecast: Path) -> None:
    lister = fo.DeviceLister(str(fake_facecast))
    devices = run_until(lister.poll)
    assert devices == [("Fake Mic", "Fake Mic (1 ch, ALSA) - default")] and lister.error is None
    broken = fo.DeviceLister("/nonexistent/facecast")
    assert broken.poll() == [] and broken.error.startswith("cannot run")


def test_panel_runs_the_real_daemon_and_surfaces_no_face(tmp_path: Path) -> None:
    """The real `facecast live`: a picture without a face ends with its one-line message in the panel."""
    picture = tmp_path / "wall.png"
    Image.new("RGB", (320, 320), (120, 140, 160)).save(picture)
    panel = fo.Panel()
    panel.settings.update(facecast_path=str(FACECAST), portrait=str(picture),
                          audio_file=str(REPO / "samples" / "grid_s1_speech.flac"), size=256)
    assert panel.start().startswith("starting: live --portrait=")
    run_until(lambda: panel.daemon.state == "failed", panel.tick, timeout=60)
    assert panel.status_line().startswith("Error: no face found in wall.png")


def test_panel_with_the_real_daemon_status_emotion_and_no_microphone(shared_data: Path) -> None:
    """The real `facecast live` with a microphone that does not exist: it keeps running (and retrying), the
    panel shows fps and latency from /status plus the daemon's warning, and an emotion button is applied."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    panel = fo.Panel()
    panel.settings.update(facecast_path=str(FACECAST), portrait=str(REPO / "samples" / "mona_lisa.jpg"),
                          microphone="no-such-mic-xyz", size=256, port=port)
    try:
        panel.start()
        # the slider moved while facecast analyses the portrait: it follows once started (it was lost)
        assert panel.apply_settings({**panel.settings, "mouth_intensity": 0.3}) == (
            "mouth intensity: sent once facecast has started")
        run_until(lambda: panel.last_status is not None, panel.tick, timeout=90)
        run_until(lambda: "control mouth applied" in panel.daemon.log_tail, panel.tick)
        line = run_until(lambda: "Warning" in panel.status_line() and panel.status_line(), panel.tick, timeout=10)
        assert line.startswith("Running: ") and " fps, latency " in line, line
        assert line.endswith("Warning: microphone no-such-mic-xyz lost: cannot open it: "
                             "No input device matching 'no-such-mic-xyz' (mouth intensity 0.3 sent)"), line
        assert panel.emotion("surprised") == "emotion surprised sent"
        run_until(lambda: "control emotion applied" in panel.daemon.log_tail, panel.tick)
        assert panel.notice == "emotion surprised sent"  # no "control refused"
        assert panel.calibrate() == "calibrating: look at the camera"   # without a webcam, refused in one line
        run_until(lambda: (panel.notice or "").startswith("control refused: no camera is on"), panel.tick)
        # changes while running: a new portrait is swapped in; what needs a restart is said (both did nothing)
        other = str(shared_data / "portraits" / "liveportrait_s1.jpg")
        assert panel.apply_settings({**panel.settings, "portrait": other}) == "portrait %s sent" % other
        run_until(lambda: "portrait swapped to" in panel.daemon.log_tail, panel.tick, timeout=60)
        line = panel.apply_settings({**panel.settings, "framing": "face", "size": 384})
        assert line == "restart facecast (Stop, then Start) to apply: Avatar size, Framing", line
        assert panel.status_line().endswith("(restart facecast (Stop, then Start) to apply: Avatar size, Framing)")
        assert panel.apply_settings({**panel.settings, "framing": "auto", "size": 256}) is None   # put back
        assert "restart" not in panel.status_line()
        # the Overlay unticked: the running facecast keeps its server (status, emotions) until restarted
        assert panel.apply_settings({**panel.settings, "out_overlay": False}).endswith("to apply: Overlay")
        assert panel.emotion("happy") == "emotion happy sent"
        run_until(lambda: "control emotion applied" in panel.daemon.log_tail.split("control emotion applied", 1)[1],
                  panel.tick)
        assert panel.status_line().startswith("Running: ")
        panel.stop()  # the clean stop on every OS: the `stop` control message, not a signal
        run_until(lambda: panel.daemon.state == "stopped", panel.tick, timeout=15)
        assert "stopping: asked on the control connection" in panel.daemon.log_tail
        assert " stopped after " in panel.daemon.log_tail and panel.daemon.stop_note is None
    finally:
        panel.stop()
        run_until(lambda: panel.daemon.state == "stopped", panel.tick, timeout=15)
        panel.shutdown()


def test_panel_refuses_to_start_without_what_it_needs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    panel = fo.Panel()
    monkeypatch.setenv("PATH", str(tmp_path))
    assert panel.start().startswith("facecast executable not found")
    assert panel.status_line().startswith("Error: facecast executable not found")
    panel.settings["facecast_path"] = str(FACECAST)
    assert panel.start() == "choose a portrait picture first"
    assert panel.emotion("happy") == "emotions need a running facecast with the Overlay output on"
    assert panel.intensity("mouth") == "the mouth intensity needs a running facecast with the Overlay output on"
    assert panel.intensity("head") == "the head intensity needs a running facecast with the Overlay output on"
    assert panel.calibrate() == "calibrating needs a running facecast with the Overlay output on"


# ------------------------------------------------------------------------------------------ the panel in a stand-in OBS

class StandInData:
    """obs_data_t: a dict with defaults."""

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        self.values = dict(values or {})
        self.defaults: dict[str, Any] = {}

    def get(self, key: str, fallback: Any) -> Any:
        return self.values.get(key, self.defaults.get(key, fallback))


class StandInObs(ModuleType):
    """The obspython functions the panel, hotkeys and timer use, recording what the script does.

    Only what is defined here exists: a misspelt or unknown OBS function fails the test.
    """

    LOG_INFO, LOG_WARNING = 300, 200
    OBS_TEXT_DEFAULT, OBS_TEXT_PASSWORD, OBS_TEXT_INFO = 0, 1, 3
    OBS_PATH_FILE, OBS_COMBO_TYPE_LIST, OBS_COMBO_FORMAT_INT, OBS_COMBO_FORMAT_STRING = 0, 2, 1, 3
    OBS_COMBO_TYPE_EDITABLE, OBS_SOURCE_AUDIO = 1, 2
    OBS_FRONTEND_EVENT_EXIT, OBS_FRONTEND_EVENT_SCRIPTING_SHUTDOWN = 17, 36

    def __init__(self) -> None:
        super().__init__("obspython")
        self.log: list[tuple[int, str]] = []
        self.hotkeys: dict[str, Callable[[bool], None]] = {}
        self.timers: list[Callable[[], None]] = []
        self.events: list[Callable[[int], None]] = []
        self.browser = True

    # data
    def obs_data_set_default_bool(self, d: StandInData, k: str, v: bool) -> None: d.defaults[k] = v
    def obs_data_set_default_int(self, d: StandInData, k: str, v: int) -> None: d.defaults[k] = v
    def obs_data_set_default_double(self, d: StandInData, k: str, v: float) -> None: d.defaults[k] = v
    def obs_data_set_default_string(self, d: StandInData, k: str, v: str) -> None: d.defaults[k] = v
    def obs_data_get_bool(self, d: StandInData, k: str) -> bool: return bool(d.get(k, False))
    def obs_data_get_int(self, d: StandInData, k: str) -> int: return int(d.get(k, 0))
    def obs_data_get_double(self, d: StandInData, k: str) -> float: return float(d.get(k, 0.0))
    def obs_data_get_string(self, d: StandInData, k: str) -> str: return str(d.get(k, ""))
    def obs_data_set_string(self, d: StandInData, k: str, v: str) -> None: d.values[k] = v
    def obs_data_get_array(self, d: StandInData, k: str) -> Any: return d.values.get(k)
    def obs_data_set_array(self, d: StandInData, k: str, v: Any) -> None: d.values[k] = v
    def obs_data_array_release(self, array: Any) -> None: pass

    # hotkeys, timers, events, log
    def obs_hotkey_register_frontend(self, name: str, description: str, callback: Callable[[bool], None]) -> int:
        self.hotkeys[name] = callback
        return len(self.hotkeys)

    def obs_hotkey_load(self, hotkey: int, array: Any) -> None: pass
    def obs_hotkey_save(self, hotkey: int) -> list[Any]: return []
    def timer_add(self, callback: Callable[[], None], ms: int) -> None: self.timers.append(callback)
    def timer_remove(self, callback: Callable[[], None]) -> None: self.timers.remove(callback)
    def obs_frontend_add_event_callback(self, callback: Callable[[int], None]) -> None: self.events.append(callback)
    def obs_get_source_by_name(self, name: str) -> None: return None  # no facecast source in this scene
    def obs_source_get_display_name(self, kind: str) -> str | None:   # Debian's OBS has no browser plugin
        return "Browser" if kind == "browser_source" and self.browser else None
    def obs_enum_sources(self) -> list[Any]: return []  # nor any audio source
    def source_list_release(self, sources: list[Any]) -> None: pass
    def script_log(self, level: int, message: str) -> None: self.log.append((level, message))

    # properties
    def obs_properties_create(self) -> dict[str, dict[str, Any]]: return {}

    def _add(self, props: dict[str, dict[str, Any]], name: str, kind: str, label: str, **extra: Any) -> dict[str, Any]:
        assert name not in props, f"property {name} added twice"
        props[name] = {"kind": kind, "label": label, "items": [], **extra}
        return props[name]

    def obs_properties_add_text(self, p: Any, name: str, label: str, kind: int) -> Any:
        return self._add(p, name, "text", label, text_kind=kind)

    def obs_properties_add_button(self, p: Any, name: str, label: str, callback: Callable[[Any, Any], bool]) -> Any:
        return self._add(p, name, "button", label, callback=callback)

    def obs_properties_add_path(self, p: Any, name: str, label: str, kind: int, filter: str, default: Any) -> Any:
        return self._add(p, name, "path", label)

    def obs_properties_add_list(self, p: Any, name: str, label: str, kind: int, fmt: int) -> Any:
        return self._add(p, name, "list", label)

    def obs_properties_add_int(self, p: Any, name: str, label: str, low: int, high: int, step: int) -> Any:
        return self._add(p, name, "int", label, range=(low, high))

    def obs_properties_add_bool(self, p: Any, name: str, label: str) -> Any: return self._add(p, name, "bool", label)

    def obs_properties_add_float_slider(self, p: Any, name: str, label: str, low: float, high: float,
                                        step: float) -> Any:
        return self._add(p, name, "float", label, range=(low, high))

    def obs_property_list_add_string(self, prop: Any, label: str, value: str) -> None:
        prop["items"].append((label, value))
    def obs_property_list_add_int(self, prop: Any, label: str, value: int) -> None: prop["items"].append((label, value))
    def obs_property_set_long_description(self, prop: Any, text: str) -> None: prop["tooltip"] = text
    def obs_property_set_enabled(self, prop: Any, enabled: bool) -> None: prop["enabled"] = enabled


@pytest.fixture
def in_obs(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The script loaded as OBS loads it, with the stand-in obspython; unloaded afterwards."""
    stand_in = StandInObs()
    monkeypatch.setitem(sys.modules, "obspython", stand_in)
    script = load_script("facecast_obs_in_stand_in")
    assert script.obs is stand_in
    script.stand_in = stand_in
    yield script
    script.PANEL.shutdown()


def test_panel_in_obs(in_obs: Any, fake_facecast: Path, tmp_path: Path) -> None:
    obs, settings = in_obs.stand_in, StandInData({"portrait": str(tmp_path / "me.png"), "port": 40123})
    in_obs.script_defaults(settings)
    in_obs.script_load(settings)
    in_obs.script_update(settings)
    tick = obs.timers[0]
    pid_file = tmp_path / "pid"
    time.sleep(0.3)
    tick()
    assert not pid_file.exists() and in_obs.PANEL.daemon.process is None, "loading must not start the daemon"
    assert settings.values["status"] == "Stopped. Press Start."
    assert {"facecast.start", "facecast.stop", "facecast.add_overlay", "facecast.emotion.happy"} <= set(obs.hotkeys)

    run_until(lambda: in_obs.PANEL.microphones is not None, tick)  # listed in the background
    props = in_obs.script_properties()
    assert props["status"]["text_kind"] == obs.OBS_TEXT_INFO
    assert props["microphone"]["items"] == [("Default microphone", ""), ("Fake Mic (1 ch, ALSA) - default", "Fake Mic")]
    assert props["fps"]["items"] == [("30", 30), ("60", 60)] and props["size"]["range"] == (256, 1024)
    assert [value for _, value in props["framing"]["items"]] == ["auto", "face", "picture", "full"]
    assert settings.defaults["framing"] == "auto"
    for name in ("portrait", "audio_file", "facecast_path", "out_overlay", "out_vcam", "out_vmc", "out_vrchat",
                 "out_vts", "port", "intensity", "mouth_intensity", "head_intensity", "start", "stop", "add_overlay",
                 "refresh_status",
                 "refresh_mics", "emotion_happy", "emotion_contempt", "sync_mic", "mic_source"):
        assert name in props, name
    assert settings.defaults["sync_mic"] is True and settings.defaults["mic_source"] == "Mic/Aux"
    assert props["mic_source"]["items"] == [("Mic/Aux", "Mic/Aux")]     # OBS's own microphone, even before it exists
    assert settings.defaults["port"] == 39650 and settings.defaults["out_overlay"] is True
    assert props["mouth_intensity"]["range"] == (0.0, 2.0) and settings.defaults["mouth_intensity"] == 1.0
    assert props["head_intensity"]["range"] == (0.0, 2.0) and settings.defaults["head_intensity"] == 1.0

    assert props["start"]["callback"](props, props["start"]) is True  # the button redraws the panel
    assert settings.values["status"].startswith("Starting")
    run_until(lambda: in_obs.PANEL.daemon.state == "running", tick)
    pid = int(run_until(lambda: pid_file.exists() and pid_file.read_text().strip(), None))
    props["refresh_status"]["callback"](props, None)
    assert settings.values["status"].startswith("Running")
    assert any("--ws=40123" in message for _, message in obs.log)
    settings.values["mouth_intensity"] = 0.5          # the slider moved while facecast runs: it is sent at once
    in_obs.script_update(settings)
    assert obs.log[-1][1] == "facecast: mouth intensity 0.5 sent"
    in_obs.script_update(settings)                     # no change, nothing sent
    assert obs.log[-1][1] == "facecast: mouth intensity 0.5 sent" and len(in_obs.PANEL._controls) <= 1
    settings.values["head_intensity"] = 0.25          # so is the head slider, once the mouth's message is answered
    in_obs.script_update(settings)
    run_until(lambda: in_obs.PANEL.notice == "head intensity 0.25 sent", tick)

    props["stop"]["callback"](props, None)
    run_until(lambda: not alive(pid), tick)
    run_until(lambda: in_obs.PANEL.daemon.state == "stopped", tick)

    obs.hotkeys["facecast.start"](True)  # a hotkey only queues: the timer starts the daemon
    assert in_obs.PANEL.daemon.process is None
    run_until(lambda: in_obs.PANEL.daemon.state == "running", tick)
    pid = int(run_until(lambda: pid_file.exists() and pid_file.read_text().strip(), None))
    in_obs.script_unload()
    assert not alive(pid) and not obs.timers


def test_an_obs_without_the_browser_source_gets_the_framed_picture(in_obs: Any, fake_facecast: Path) -> None:
    """Debian's OBS has no Browser Source: the overlay is the MJPEG stream, which has no alpha, so the person is
    not cut out (it was, onto black)."""
    obs, settings = in_obs.stand_in, StandInData({"portrait": "me.png"})
    obs.browser = False
    in_obs.script_defaults(settings)
    in_obs.script_load(settings)
    started = in_obs.PANEL.start()
    assert started.startswith("starting: live --portrait=me.png") and "--ws=" in started, started
    assert "--cutout" not in started
    in_obs.PANEL.stop()


def test_obs_exit_event_stops_the_daemon(in_obs: Any, fake_facecast: Path, tmp_path: Path) -> None:
    obs, settings = in_obs.stand_in, StandInData({"portrait": "me.png"})
    in_obs.script_defaults(settings)
    in_obs.script_load(settings)
    assert in_obs.PANEL.start().startswith("starting")
    run_until(lambda: in_obs.PANEL.daemon.state == "running", obs.timers[0])
    pid_file = tmp_path / "pid"   # "running" can come before the stand-in daemon has written its pid
    pid = int(run_until(lambda: pid_file.exists() and pid_file.read_text().strip(), None))
    for callback in obs.events:
        callback(obs.OBS_FRONTEND_EVENT_SCRIPTING_SHUTDOWN)
    assert not alive(pid)


def test_script_without_obs_does_not_touch_obs() -> None:
    """Outside OBS the module imports cleanly and starts nothing (it is also a plain library)."""
    assert fo.obs is None and fo.PANEL.daemon.process is None
    # threads the script itself started (other tests in this process may leave facecast's own daemon threads)
    started = [thread for thread in threading.enumerate()
               if getattr(getattr(thread, "_target", None), "__module__", "") == fo.__name__]
    assert not started
