"""obs_scripts/facecast_obs.py inside a real OBS Studio (Debian's obs-studio 29 under Xvfb, Mesa llvmpipe).

The test prepares a throw-away OBS configuration (tests/obs_fixtures/): a
profile with a 640x360 canvas, a scene collection whose "Scene" holds a
coloured backdrop and which loads the facecast script with a portrait, the
sample speech as audio file and free ports, and obs-websocket v5 enabled
without authentication on a free port (passed with ``--websocket_port``).

It then drives OBS only the way a user or a stream deck would: the script's
hotkeys (the same actions as its Start/Stop/Add overlay/emotion buttons),
triggered over obs-websocket with ``TriggerHotkeyByName``. The panel buttons
themselves cannot be clicked from obs-websocket. OBS's program output is read
back with ``GetSourceScreenshot``. OBS is closed as its window's close button
closes it (the WM_DELETE_WINDOW message a window manager sends).

Debian's OBS has no Browser Source, so the script adds a Media Source on the
daemon's MJPEG stream here; the overlay page itself is tested in headless
Chromium (tests/test_overlay_browser.py).

Skips when OBS or Xvfb is missing, except on CI (``CI=true``), where that fails.
Set FACECAST_OBS_SCREENSHOT=path.png to keep the program-output screenshot.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from websockets.sync.client import ClientConnection, connect
from Xlib import X
from Xlib.display import Display
from Xlib.protocol.event import ClientMessage

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "obs_fixtures"
SCRIPT = REPO / "obs_scripts" / "facecast_obs.py"
OBS = shutil.which("obs")
XVFB = shutil.which("Xvfb")
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CANVAS = (640, 360)
AVATAR = 256
#: The daemon analyses the portrait before it serves; on a loaded 2-core machine that took up to 20 s.
DAEMON_START_S = 60.0
OBS_START_S = 60.0
#: How often OBS is started before a crash during its own start-up fails the tests (see `obs_run`).
OBS_START_ATTEMPTS = 2
SOURCE_NAME = "facecast overlay"
#: The audio source the script delays to match the lips (a Media Source playing a voice stands in for the microphone:
#: this machine has no sound card), with the Sync Offset it starts with (ms), which it must get back.
VOICE_SOURCE = "voice"
VOICE_OFFSET_MS = 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll `condition()` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if isinstance(value, np.ndarray) or value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def daemon_status(port: int) -> dict[str, Any] | None:
    """The daemon's /status, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as answer:
            return json.loads(answer.read())
    except (OSError, ValueError):
        return None


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def daemon_pids(port: int) -> list[int]:
    """`facecast live` processes serving `port` (from /proc: the script passes --ws=PORT)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if b"live" in argv and f"--ws={port}".encode() in argv:
                    pids.append(int(entry.name))
    return pids


class ObsWebSocket:
    """The few obs-websocket v5 requests the test needs (Hello -> Identify -> Request/Response)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._next = 0
        hello = json.loads(ws.recv(timeout=10))
        assert hello["op"] == 0 and "authentication" not in hello["d"], hello
        ws.send(json.dumps({"op": 1, "d": {"rpcVersion": 1, "eventSubscriptions": 0}}))
        identified = json.loads(ws.recv(timeout=10))
        assert identified["op"] == 2, identified

    def call(self, request: str, **data: Any) -> dict[str, Any]:
        self._next += 1
        request_id = str(self._next)
        self.ws.send(json.dumps({"op": 6, "d": {"requestType": request, "requestId": request_id, "requestData": data}}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message["op"] == 7 and message["d"]["requestId"] == request_id:
                status = message["d"]["requestStatus"]
                if not status["result"]:
                    raise RuntimeError(f"{request} failed: {status}")
                return message["d"].get("responseData") or {}

    def hotkey(self, name: str) -> None:
        self.call("TriggerHotkeyByName", hotkeyName=name)

    def screenshot(self, source: str) -> np.ndarray:
        """The source rendered by OBS at canvas size, as an RGB array."""
        data = self.call("GetSourceScreenshot", sourceName=source, imageFormat="png",
                         imageWidth=CANVAS[0], imageHeight=CANVAS[1])["imageData"]
        png = base64.b64decode(data.split(",", 1)[1])
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@dataclass
class ObsRun:
    obs: subprocess.Popen
    ws: ObsWebSocket
    config: Path
    facecast_port: int
    daemon_tmp: Path
    launch: ObsLaunch
    log_lines_seen: int = 0

    def obs_log(self) -> str:
        """OBS's own log file (script log lines are in it, prefixed with the script's file name)."""
        logs = sorted((self.config / "obs-studio" / "logs").glob("*.txt"))
        return logs[-1].read_text(errors="replace") if logs else ""

    def wait_log(self, text: str, timeout: float) -> str:
        """Wait for a new OBS log line containing `text` (lines seen by earlier waits do not count)."""
        def find() -> str | None:
            lines = self.obs_log().splitlines()
            for index in range(self.log_lines_seen, len(lines)):
                if text in lines[index]:
                    self.log_lines_seen = index + 1
                    return lines[index]
            return None
        return wait_until(find, timeout, f"OBS log line containing {text!r}")

    def daemon_log(self) -> str:
        """The daemon log the script writes (OBS runs with TMPDIR pointing here)."""
        return "\n".join(path.read_text(errors="replace")
                         for path in sorted(self.daemon_tmp.glob("facecast-obs-*.log")))


def _prepare_config(root: Path, facecast_port: int) -> Path:
    """A fresh OBS configuration tree (XDG_CONFIG_HOME) from tests/obs_fixtures."""
    config = root / "config"
    obs_dir = config / "obs-studio"
    (obs_dir / "basic" / "profiles" / "facecast-test").mkdir(parents=True)
    (obs_dir / "basic" / "scenes").mkdir(parents=True)
    shutil.copy(FIXTURES / "global.ini", obs_dir / "global.ini")
    shutil.copy(FIXTURES / "basic.ini", obs_dir / "basic" / "profiles" / "facecast-test" / "basic.ini")
    scenes = json.loads((FIXTURES / "scenes.json").read_text())
    scenes["sources"].append({
        "id": "ffmpeg_source", "versioned_id": "ffmpeg_source", "name": VOICE_SOURCE, "sync": VOICE_OFFSET_MS * 1000000,
        "settings": {"is_local_file": True, "local_file": str(REPO / "samples" / "grid_s1_speech.flac"),
                     "looping": True}})
    scene = next(source for source in scenes["sources"] if source["name"] == "Scene")   # OBS drops unused sources
    scene["settings"]["items"].append({**scene["settings"]["items"][0], "name": VOICE_SOURCE, "id": 2})
    scene["settings"]["id_counter"] = 2
    scenes["modules"]["scripts-tool"] = [{"path": str(SCRIPT), "settings": {
        "portrait": str(REPO / "samples" / "mona_lisa.jpg"),
        "audio_file": str(REPO / "samples" / "grid_s1_speech.flac"),
        "fps": 30, "size": AVATAR, "port": facecast_port, "out_overlay": True, "intensity": 0.8,
        "mic_source": VOICE_SOURCE,  # "sync_mic" stays at its default: on
    }}]
    (obs_dir / "basic" / "scenes" / "facecast-test.json").write_text(json.dumps(scenes, indent=1))
    return config


def _start_xvfb() -> tuple[subprocess.Popen, str]:
    """Xvfb on a free display (it prints the number it took on the -displayfd pipe)."""
    read_end, write_end = os.pipe()
    xvfb = subprocess.Popen([XVFB, "-displayfd", str(write_end), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        number = pipe.readline().strip()
    if not number:
        xvfb.kill()
        pytest.fail("Xvfb did not start")
    return xvfb, ":" + number


def _stop(process: subprocess.Popen | None, ask: Callable[[], None] | None = None, timeout: float = 10.0) -> None:
    """Ask `process` to quit (SIGTERM, unless `ask` says how), then kill it if it is still there after `timeout`."""
    if process is None or process.poll() is not None:
        return
    try:
        (ask or process.terminate)()
    except Exception as exc:  # noqa: BLE001 - whatever failed, the process is killed below
        print(f"could not ask {process.args[0]} to quit: {exc!r}")
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def require(*needs: tuple[str, object]) -> None:
    """Skip when something OBS needs is missing, except on CI, where the OBS tests must run."""
    missing = [name for name, found in needs if not found]
    if missing:
        message = f"{', '.join(missing)} not installed (scripts/test.sh installs them)"
        if ON_CI:
            pytest.fail(message + ": required on CI")
        pytest.skip(message)


def obs_python_binding() -> tuple[Path, list[Path]] | None:
    """OBS's obspython.py and the libobs-scripting library that adds the callback functions at run time."""
    for binding in sorted(Path("/usr").glob("lib*/**/obs-scripting/obspython.py")):
        libraries = sorted(binding.parent.parent.glob("libobs-scripting.so*"))
        if libraries:
            return binding, libraries
    return None


@dataclass
class ObsLaunch:
    """How the test starts OBS: its environment, working folder, obs-websocket port and where its output goes."""
    env: dict[str, str]
    root: Path
    websocket_port: int

    def start(self) -> subprocess.Popen:
        """OBS started and listening on obs-websocket (an OBS that crashes during its own start-up is retried)."""
        for attempt in range(OBS_START_ATTEMPTS):
            with (self.root / "obs-stdout.txt").open("ab") as output:
                process = subprocess.Popen(
                    ["nice", "-n", "5", OBS, "--multi", "--minimize-to-tray", "--disable-missing-files-check",
                     "--collection", "facecast-test", "--profile", "facecast-test", "--websocket_port",
                     str(self.websocket_port)],
                    env=self.env, cwd=self.root, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            wait_until(lambda started=process: started.poll() is not None or port_open(self.websocket_port),
                       OBS_START_S, "obs-websocket to listen")
            if process.poll() is None:
                return process
            output_text = self.output()
            # OBS itself under Xvfb has died by a signal while starting up, before loading any script ("stack
            # smashing detected" after its system info, once on a fresh-clone CI run); that start is retried,
            # anything else fails the tests
            if process.returncode >= 0 or "obs-scripting" in output_text or attempt == OBS_START_ATTEMPTS - 1:
                pytest.fail(f"OBS exited with {process.returncode}: {output_text[-3000:]}")
        raise AssertionError("unreachable")

    def connect(self) -> ClientConnection:
        return connect(f"ws://127.0.0.1:{self.websocket_port}", subprotocols=["obswebsocket.json"], open_timeout=10,
                       max_size=None)

    def output(self) -> str:
        """What OBS printed (its log lines and FFmpeg's) in every start so far."""
        return (self.root / "obs-stdout.txt").read_text(errors="replace")


def close_obs(run: ObsRun) -> None:
    """Close OBS's main window the way a window manager does when the user clicks its close button (the
    WM_DELETE_WINDOW message), so OBS quits as after File -> Exit. SIGINT is not used: OBS 29.0 closes its window
    from inside the signal handler, which deadlocks when the signal lands while Qt's main thread holds its event
    queue's lock (seen under load: OBS's threads stuck in QCoreApplication's posted-event lock)."""
    x = Display(run.launch.env["DISPLAY"])
    try:
        windows = [window for window in x.screen().root.query_tree().children
                   if (window.get_wm_name() or "").startswith("OBS ")]
        assert len(windows) == 1, f"expected one OBS main window, found {len(windows)}"
        protocols, delete = x.intern_atom("WM_PROTOCOLS"), x.intern_atom("WM_DELETE_WINDOW")
        windows[0].send_event(ClientMessage(window=windows[0], client_type=protocols,
                                            data=(32, [delete, X.CurrentTime, 0, 0, 0])))
        x.sync()  # a round trip, so the server has passed the message on before this connection closes
    finally:
        x.close()


def wait_for_exit(run: ObsRun, timeout: float) -> None:
    """Wait for OBS to exit; if it does not, fail with how far it got and, where gdb is installed, its threads."""
    try:
        run.obs.wait(timeout)
    except subprocess.TimeoutExpired:
        threads = ""
        if shutil.which("gdb"):
            threads = subprocess.run(["gdb", "-p", str(run.obs.pid), "-batch", "-ex", "thread apply all bt"],
                                     capture_output=True, text=True, timeout=120).stdout
        pytest.fail(f"OBS did not exit within {timeout:.0f} s; its log ends:\n{run.obs_log()[-4000:]}\n{threads}")


@pytest.fixture(scope="module")
def obs_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObsRun]:
    require(("obs (Debian: obs-studio)", OBS), ("Xvfb (Debian: xvfb)", XVFB))
    root = tmp_path_factory.mktemp("obs")
    facecast_port = free_port()
    websocket_port = wait_until(lambda: (port := free_port()) != facecast_port and port, 5, "a second free port")
    config = _prepare_config(root, facecast_port)
    daemon_tmp = root / "tmp"
    daemon_tmp.mkdir()
    (root / "pulse-client.conf").write_text("autospawn = no\n")
    xvfb, display = _start_xvfb()
    env = {
        **os.environ, "HOME": str(root), "XDG_CONFIG_HOME": str(config), "DISPLAY": display, "TMPDIR": str(daemon_tmp),
        "LIBGL_ALWAYS_SOFTWARE": "1", "QT_QPA_PLATFORM": "xcb", "PULSE_CLIENTCONFIG": str(root / "pulse-client.conf"),
        # The script finds `facecast` on PATH (its default): the one in this test's environment.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("WAYLAND_DISPLAY", None)
    # importing cv2 (opencv-python's Qt build) points Qt at its own plugins; OBS must use the system's
    for variable in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_PLUGIN_PATH", "QT_QPA_FONTDIR"):
        env.pop(variable, None)
    launch = ObsLaunch(env, root, websocket_port)
    run = None
    try:
        process = launch.start()
        with launch.connect() as ws:
            run = ObsRun(process, ObsWebSocket(ws), config, facecast_port, daemon_tmp, launch)
            yield run
    finally:
        if run is not None:  # a test may have started OBS again
            _stop(run.obs, lambda: close_obs(run), timeout=20)
        _stop(xvfb)
        for pid in daemon_pids(facecast_port):  # only if the script failed to stop its daemon
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_script_uses_only_functions_obspython_has() -> None:
    """Every `obs.NAME` in the script exists in this OBS's Python binding (the panel code the real OBS test
    cannot reach, and the stand-in of tests/test_obs_script.py, are held to the real names)."""
    found = obs_python_binding() if OBS else None
    require(("obs (Debian: obs-studio)", OBS), ("OBS's obspython.py", found))
    assert found is not None
    binding, libraries = found
    defined = set(re.findall(r"^(?:def |class )?([A-Za-z_]\w*)(?: = |\()", binding.read_text(), re.M))
    for library in libraries:  # timer_add, script_log, obs_hotkey_register_frontend... are added by OBS
        defined |= {name.decode() for name in re.findall(rb"[A-Za-z_][A-Za-z0-9_]{3,}", library.read_bytes())}
    tree = ast.parse(SCRIPT.read_text())
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "obs"}
    assert len(used) > 40
    assert sorted(used - defined) == []


def test_script_loads_registers_hotkeys_and_does_not_start(obs_run: ObsRun) -> None:
    version = obs_run.ws.call("GetVersion")
    assert version["obsVersion"].split(".")[0] >= "29"
    assert "[obs-scripting]: Loaded python script: facecast_obs.py" in obs_run.obs_log()
    hotkeys = obs_run.ws.call("GetHotkeyList")["hotkeys"]
    for name in ("facecast.start", "facecast.stop", "facecast.add_overlay", "facecast.emotion.happy"):
        assert name in hotkeys
    time.sleep(1.0)  # give a wrong script time to start the daemon anyway
    assert not port_open(obs_run.facecast_port) and not daemon_pids(obs_run.facecast_port), \
        "loading the script must not start facecast"


def test_port_in_use_surfaces_the_daemons_message(obs_run: ObsRun) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", obs_run.facecast_port))
        squatter.listen()
        obs_run.ws.hotkey("facecast.start")
        line = obs_run.wait_log("facecast: Error:", DAEMON_START_S)
    assert f"port {obs_run.facecast_port} is already in use" in line, line
    assert not daemon_pids(obs_run.facecast_port)


def test_start_overlay_screenshot_emotion_stop(obs_run: ObsRun) -> None:
    ws, port = obs_run.ws, obs_run.facecast_port
    program = ws.call("GetCurrentProgramScene")["currentProgramSceneName"]
    blank = ws.screenshot(program)

    # The overlay first, so the Media Source is connected when the daemon's first frames (and the speech) come.
    ws.hotkey("facecast.add_overlay")
    inputs = wait_until(lambda: [i for i in ws.call("GetInputList")["inputs"] if i["inputName"] == SOURCE_NAME],
                        10, "the facecast source")
    kind = inputs[0]["inputKind"]
    settings = ws.call("GetInputSettings", inputName=SOURCE_NAME)["inputSettings"]
    if kind == "browser_source":  # an OBS with the browser plugin: the transparent overlay page
        assert settings["url"] == f"http://127.0.0.1:{port}/overlay"
        assert (settings["width"], settings["height"]) == (AVATAR, AVATAR)
    else:  # Debian's OBS: no browser plugin, so the MJPEG stream in a Media Source
        assert kind == "ffmpeg_source"
        assert settings["input"] == f"http://127.0.0.1:{port}/video.mjpeg" and settings["is_local_file"] is False
    items = ws.call("GetSceneItemList", sceneName=program)["sceneItems"]
    item = next(i for i in items if i["sourceName"] == SOURCE_NAME)
    transform = item["sceneItemTransform"]

    ws.hotkey("facecast.start")
    # /status answers as soon as the server listens; its inputs come with the daemon's first report
    status = wait_until(lambda: (status := daemon_status(port)) and status["inputs"] and status, DAEMON_START_S,
                        "the daemon's /status with its inputs")
    assert status["inputs"]["audio"]["device"].endswith("grid_s1_speech.flac")
    obs_run.wait_log("facecast: Running", 10)

    # The avatar box in the program output: where the script placed the item, at its scale.
    x, y = int(round(transform["positionX"])), int(round(transform["positionY"]))
    side = int(round(AVATAR * transform["scaleX"]))
    assert x + side <= CANVAS[0] and y + side <= CANVAS[1]
    box = (slice(y + 2, y + side - 2), slice(x + 2, x + side - 2))

    def avatar_shown() -> np.ndarray | None:
        shot = ws.screenshot(program)
        region, empty = shot[box].astype(np.float32), blank[box].astype(np.float32)
        return shot if np.abs(region - empty).mean() > 25 and region.std() > 20 else None

    first = wait_until(avatar_shown, 45, "the avatar in OBS's program output", interval=0.5)
    outside = np.ones(first.shape[:2], bool)
    outside[y:y + side, x:x + side] = False
    assert np.abs(first[outside].astype(int) - blank[outside].astype(int)).mean() < 3, (
        "the scene around the overlay changed")
    shots = [first]
    for _ in range(6):  # the face moves: talking (or idling once the 12 s clip has played)
        time.sleep(0.3)
        shots.append(ws.screenshot(program))
    changes = [np.abs(a[box].astype(int) - b[box].astype(int)).mean() for a, b in zip(shots, shots[1:])]
    assert max(changes) > 0.5, f"the avatar does not move in OBS: {changes}"
    keep = os.environ.get("FACECAST_OBS_SCREENSHOT")
    if keep:
        Image.fromarray(shots[len(shots) // 2]).save(keep, optimize=True)

    # lips and voice together: the voice source's Sync Offset is the avatar's delay that /status reports
    obs_run.wait_log(f"facecast: '{VOICE_SOURCE}' delayed by ", 20)

    def offset_following_the_delay() -> tuple[int, dict[str, int]] | None:
        """The source's Sync Offset and /status's delay, once the offset is the last one the script logged and
        within 30 ms of the delay. Under load the delay moves by tens of ms between the script's reads of
        /status and the test's, and the script follows it in 10 ms steps, so this waits for the two to meet."""
        offset = ws.call("GetInputAudioSyncOffset", inputName=VOICE_SOURCE)["inputAudioSyncOffset"]
        logged = re.findall(rf"facecast: '{VOICE_SOURCE}' delayed by (\d+) ms", obs_run.obs_log())
        delay = daemon_status(port)["av_delay_ms"]
        following = logged and int(logged[-1]) == offset and abs(offset - delay["total"]) < 30
        return (offset, delay) if following else None

    offset, delay = wait_until(offset_following_the_delay, 20, "the voice's Sync Offset to follow the avatar's delay")
    assert 50 <= offset <= 1000, (offset, delay)
    assert delay["lookahead"] >= 80                       # the generator hears at least 80 ms past each frame

    ws.hotkey("facecast.emotion.happy")
    obs_run.wait_log("facecast: emotion happy sent", 10)
    wait_until(lambda: "control emotion applied" in obs_run.daemon_log(), 10, "the daemon to apply the emotion")
    assert "control refused" not in obs_run.obs_log()

    ws.hotkey("facecast.stop")
    wait_until(lambda: not port_open(port) and not daemon_pids(port), 15, "the daemon to stop")
    obs_run.wait_log(f"facecast: '{VOICE_SOURCE}' Sync Offset back to {VOICE_OFFSET_MS} ms", 5)
    assert ws.call("GetInputAudioSyncOffset", inputName=VOICE_SOURCE)["inputAudioSyncOffset"] == VOICE_OFFSET_MS
    obs_run.wait_log("facecast: Stopped", 5)


def test_obs_exit_stops_the_daemon_and_keeps_the_settings(obs_run: ObsRun) -> None:
    port = obs_run.facecast_port
    obs_run.ws.hotkey("facecast.start")
    wait_until(lambda: daemon_status(port), DAEMON_START_S, "the daemon's /status")
    assert daemon_pids(port)
    delayed = obs_run.wait_log(f"facecast: '{VOICE_SOURCE}' delayed by ", 20)
    delayed_ms = int(re.search(r"delayed by (\d+) ms", delayed).group(1))
    obs_run.ws.ws.close()
    # the user closes OBS: the scene collection is saved, then scripts unload
    close_obs(obs_run)
    wait_for_exit(obs_run, 120)  # a loaded 2-core CI machine took over 30 s to shut OBS down
    wait_until(lambda: not port_open(port) and not daemon_pids(port), 10, "the daemon to stop with OBS")

    saved = json.loads((obs_run.config / "obs-studio" / "basic" / "scenes" / "facecast-test.json").read_text())
    script = saved["modules"]["scripts-tool"][0]
    assert script["path"] == str(SCRIPT)
    assert script["settings"]["portrait"].endswith("mona_lisa.jpg") and script["settings"]["size"] == AVATAR
    assert "hotkey_facecast.start" in script["settings"]
    assert any(source["name"] == SOURCE_NAME for source in saved["sources"])
    # OBS writes its sources before scripts stop, so the voice is saved delayed (by the last delay the script set)
    # and the script keeps the offset it had
    voice = next(source for source in saved["sources"] if source["name"] == VOICE_SOURCE)
    to_restore = json.loads(script["settings"]["mic_offset_to_restore"])
    assert to_restore["source"] == VOICE_SOURCE and to_restore["original"] == VOICE_OFFSET_MS * 1000000
    assert voice["sync"] == to_restore["applied_ms"] * 1000000 and abs(to_restore["applied_ms"] - delayed_ms) < 200

    # started again, OBS gives the voice its own offset back, and facecast stays stopped until asked
    obs_run.obs, obs_run.log_lines_seen = obs_run.launch.start(), 0
    with obs_run.launch.connect() as ws:
        obs_run.ws = ObsWebSocket(ws)
        obs_run.wait_log(f"facecast: '{VOICE_SOURCE}' Sync Offset back to {VOICE_OFFSET_MS} ms (OBS last closed", 20)
        assert obs_run.ws.call("GetInputAudioSyncOffset", inputName=VOICE_SOURCE)["inputAudioSyncOffset"] == \
            VOICE_OFFSET_MS
        assert not port_open(port) and not daemon_pids(port)
