"""facecast for OBS Studio: a control panel (Tools -> Scripts) and a one-click avatar overlay.

Load this file in OBS under Tools -> Scripts. The panel runs `facecast live`
as a child process (Start/Stop), shows its health, sends emotion presets, and
adds the talking avatar to the current scene: a Browser Source on the
daemon's transparent overlay page, or, in an OBS built without the browser
plugin (Debian's), a Media Source reading the daemon's MJPEG stream.

Rules this file keeps, and why:

* Standard library only, Python 3.8-3.12: OBS loads it into its own Python,
  not facecast's environment (check with ``vermin -t=3.8- facecast_obs.py``).
* Never block OBS: the daemon, the microphone listing and every network call
  run as child processes or non-blocking sockets, advanced by a 100 ms timer.
* The daemon starts only when the user asks (Start button or hotkey), never
  merely because the script loaded; it stops on Stop, on script unload and on
  OBS exit, cleanly on every OS: a ``stop`` message on the daemon's ws /control
  first (Windows has no SIGTERM: ``terminate()`` kills there), then terminate,
  then kill. If OBS itself is killed, the daemon goes too: on Linux through the
  parent-death signal, on Windows through a job object that kills it when OBS's
  handle closes (macOS: not yet).
* Everything that does not need OBS (command line, status text, error
  extraction, the small HTTP and WebSocket clients) is plain functions and
  classes, tested without OBS in tests/test_obs_script.py.

Hotkeys (Settings -> Hotkeys, or obs-websocket ``TriggerHotkeyByName``):
``facecast.start``, ``facecast.stop``, ``facecast.add_overlay`` and
``facecast.emotion.<preset>`` run the same actions as the panel's buttons.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

try:  # only inside OBS; the rest of this file works (and is tested) without it
    import obspython as obs  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on where the file is loaded
    obs = None

# --------------------------------------------------------------------------------------------- constants

DEFAULT_PORT = 39650  # the daemon's default `--ws` port (bridges/ws_protocol.py)
HOST = "127.0.0.1"  # the daemon this script starts binds to loopback only
FPS_CHOICES = (30, 60)  # `facecast live` accepts only these
MIN_SIZE, MAX_SIZE, DEFAULT_SIZE = 256, 1024, 512
#: `facecast live --framing` (app/options.py FRAMING_CHOICES), with the panel's labels.
FRAMINGS = (("auto", "Auto: square around the head"), ("face", "Face: the head alone"),
            ("picture", "Picture: largest square"), ("full", "Full picture (its own shape)"))
#: `facecast live --latency` (app/options.py LATENCY_CHOICES), with the panel's labels.
LATENCIES = (("low", "Low: the avatar 0.2 s behind (calls, games)"),
             ("sync", "Lip sync: the mouth as in a render, the avatar 1.7 s behind (the microphone delayed to match)"))
#: The daemon's emotion presets (controls.py CONTROL_SCHEMA); repeated here because OBS's Python
#: cannot import facecast.
EMOTION_PRESETS = ("neutral", "happy", "sad", "angry", "surprised", "fear", "disgusted", "contempt")
#: The daemon's mouth-intensity range (controls.py MAX_MOUTH_INTENSITY): 0 still lips, 1 as generated, 2 twice as wide.
MAX_MOUTH_INTENSITY = 2.0
#: The daemon's head-intensity range (controls.py MAX_HEAD_INTENSITY): 0 the head held as pictured, 1 as generated.
MAX_HEAD_INTENSITY = 2.0
#: The intensity sliders a running facecast follows at once: control part -> (setting, flag, maximum, label).
INTENSITIES = {"mouth": ("mouth_intensity", "--mouth-intensity", MAX_MOUTH_INTENSITY, "mouth intensity"),
               "head": ("head_intensity", "--head-intensity", MAX_HEAD_INTENSITY, "head intensity")}
SOURCE_NAME = "facecast overlay"
BROWSER_SOURCE = "browser_source"
MEDIA_SOURCE = "ffmpeg_source"
TICK_MS = 100  # the timer that advances every non-blocking job
STATUS_EVERY_S = 1.0  # how often a running daemon's /status is asked
NETWORK_TIMEOUT_S = 2.0  # one /status or control exchange gives up after this
DEVICES_TIMEOUT_S = 20.0  # `facecast devices --json` (imports PortAudio) gives up after this
STOP_GRACE_S = 5.0  # the stop message (or SIGTERM), then terminate/kill after this
LOG_TAIL_CHARS = 16384  # the daemon log kept in memory for parsing
SCENE_FILL = 0.9  # the overlay is scaled down to at most this share of the canvas height
DEFAULT_MIC_SOURCE = "Mic/Aux"  # OBS's own microphone source (Settings -> Audio -> Mic/Auxiliary Audio)
#: The microphone's Sync Offset follows the avatar's delay only when it moved by this much: each change makes OBS
#: resynchronise the source's audio (a small click), and the delay itself wobbles by a few ms from frame to frame.
SYNC_STEP_MS = 10
#: The script setting that keeps, while facecast delays the microphone, which offset to give back. OBS writes a scene
#: collection's sources before it asks scripts to stop, so quitting OBS while facecast runs (or OBS crashing) saves
#: the delayed offset; the next start gives it back from here.
MIC_TO_RESTORE = "mic_offset_to_restore"

#: What the panel says while the daemon has not yet given its control token.
STILL_STARTING = "facecast is still starting; try again in a moment"
#: The panel's names for the command-line flags a running facecast keeps until it is started again.
RESTART_LABELS = (("", "facecast executable"), ("--fps", "Frames per second"), ("--size", "Avatar size"),
                  ("--framing", "Framing"), ("--latency", "Latency"), ("--device", "Microphone"),
                  ("--audio", "Audio file"), ("--camera", "Webcam"), ("--ws", "Overlay"), ("--cutout", "Overlay"),
                  ("--vcam", "Virtual webcam"), ("--vmc", "VMC"), ("--vrchat", "VRChat"),
                  ("--vts", "VTube Studio"))
#: Flags a running facecast follows without a restart (over its control connection), or that never change.
LIVE_FLAGS = ("--portrait", "--mouth-intensity", "--head-intensity", "--log-level")

_TOKEN_RE = re.compile(r"control token ([A-Za-z0-9_\-]+)")
_LOG_LINE_RE = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+): (.*)$")
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# --------------------------------------------------------------------------------------------- settings

def _named(what: str) -> str:
    """How the panel names "portrait" or an INTENSITIES part ("mouth" -> "mouth intensity")."""
    return INTENSITIES[what][3] if what in INTENSITIES else what


def default_settings() -> Dict[str, Any]:
    """Every panel setting with its default (OBS stores the user's values in the scene collection)."""
    return {
        "facecast_path": "", "portrait": "", "microphone": "", "audio_file": "", "camera": "",
        "fps": 30, "size": DEFAULT_SIZE, "framing": "auto", "latency": "low", "port": DEFAULT_PORT, "intensity": 0.6,
        "mouth_intensity": 1.0, "head_intensity": 1.0,
        # Lips and voice together: delay this OBS audio source by the avatar's delay behind the microphone.
        "sync_mic": True, "mic_source": DEFAULT_MIC_SOURCE,
        "out_overlay": True, "out_vcam": False, "out_vmc": False, "out_vrchat": False, "out_vts": False,
        # Two PCs: the daemon runs on another computer (`facecast live --ws --ws-host 0.0.0.0`); this OBS only
        # shows it, asks its /status and sends emotions, with the token that computer keeps.
        "remote_host": "", "token": "",
    }


def find_facecast(configured: str) -> Optional[str]:
    """The `facecast` executable: the configured path if given (a file, or a name looked up on PATH), else PATH's."""
    configured = configured.strip()
    if configured:
        if os.path.isfile(configured):
            return configured
        return shutil.which(configured)
    return shutil.which("facecast")


def build_command(executable: str, settings: Mapping[str, Any], browser_source: bool = True) -> List[str]:
    """The `facecast live` command line for the panel's settings; ValueError says what is missing.

    Values go as ``--flag=value`` so a file name starting with a dash cannot be read as a flag. The overlay
    cuts the person out of the picture's background only where that shows: in a Browser Source (a Media
    Source, which an OBS without the browser plugin gets, has no alpha: the person would sit on black) and
    with a framing that crops around the head (`full` keeps the whole picture, background included).
    """
    portrait = str(settings.get("portrait") or "").strip()
    if not portrait:
        raise ValueError("choose a portrait picture first")
    fps = int(settings.get("fps") or 30)
    if fps not in FPS_CHOICES:
        raise ValueError("fps must be 30 or 60")
    size = int(settings.get("size") or DEFAULT_SIZE)
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError("size must be %d-%d" % (MIN_SIZE, MAX_SIZE))
    framing = str(settings.get("framing") or "auto")
    if framing not in [value for value, _ in FRAMINGS]:
        raise ValueError("framing must be one of " + ", ".join(value for value, _ in FRAMINGS))
    latency = str(settings.get("latency") or "low")
    if latency not in [value for value, _ in LATENCIES]:
        raise ValueError("latency must be one of " + ", ".join(value for value, _ in LATENCIES))
    intensities = []
    for setting, flag, maximum, label in INTENSITIES.values():
        value = float(settings.get(setting, 1.0))
        if not 0.0 <= value <= maximum:
            raise ValueError("%s must be 0-%g" % (label, maximum))
        if value != 1.0:
            intensities.append("%s=%g" % (flag, round(value, 3)))
    command = [executable, "live", "--portrait=" + portrait, "--fps=%d" % fps, "--size=%d" % size,
               "--framing=" + framing, "--log-level=info"]
    if latency != "low":
        command.append("--latency=" + latency)
    command.extend(intensities)
    audio_file = str(settings.get("audio_file") or "").strip()
    microphone = str(settings.get("microphone") or "").strip()
    if audio_file:
        command.append("--audio=" + audio_file)
    elif microphone:
        command.append("--device=" + microphone)
    camera = str(settings.get("camera") or "").strip()
    if camera:  # the webcam drives head, eyes and expressions; the voice keeps the lips
        if latency != "low":
            raise ValueError("lip sync latency cannot follow a webcam (the head would move before the lips): "
                             "choose Low latency with a webcam")
        command.append("--camera=" + camera)
    if settings.get("out_overlay"):
        port = int(settings.get("port") or DEFAULT_PORT)
        if not 1 <= port <= 65535:
            raise ValueError("port must be 1-65535")
        command.append("--ws=%d" % port)
        if browser_source and framing != "full":
            command.append("--cutout")  # the overlay shows the person without the picture's background
    for key, flag in (("out_vcam", "--vcam"), ("out_vmc", "--vmc"), ("out_vrchat", "--vrchat"), ("out_vts", "--vts")):
        if settings.get(key):
            command.append(flag)
    return command


def command_flags(command: Sequence[str]) -> Dict[str, str]:
    """A `build_command` line as {flag: value} (bare flags: ""), the executable under ""."""
    flags = {"": command[0]} if command else {}
    for argument in command[2:]:
        flag, _, value = argument.partition("=")
        flags[flag] = value
    return flags


def needs_restart(running: Sequence[str], wanted: Sequence[str]) -> List[str]:
    """The panel's names of what differs between a running daemon's command line and the one the settings ask
    for now, beyond what a running daemon follows (`LIVE_FLAGS`): those need Stop, then Start."""
    have, want = command_flags(running), command_flags(wanted)
    changed = {flag for flag in set(have) | set(want) if flag not in LIVE_FLAGS and have.get(flag) != want.get(flag)}
    names = [name for flag, name in RESTART_LABELS if flag in changed]
    return sorted(set(names), key=names.index)


def control_port(command: Sequence[str]) -> Optional[int]:
    """The port of the daemon's ws /control in a `build_command` line (its ``--ws=PORT``), or None without one."""
    for argument in command:
        if argument.startswith("--ws="):
            try:
                return int(argument[len("--ws="):])
            except ValueError:
                return None
    return None


def base_url(port: int, host: str = HOST) -> str:
    """The daemon's HTTP base URL for a port (and a host: another computer's name or address)."""
    return "http://%s:%d" % ("[%s]" % host if ":" in host else host, port)


def with_token(url: str, token: Optional[str]) -> str:
    """`url` with ``?token=`` added: a daemon serving beyond loopback needs it on every endpoint."""
    if not token:
        return url
    return url + ("&" if "?" in url else "?") + "token=" + urllib.parse.quote(token, safe="")


def overlay_source(browser_available: bool, port: int, size: int, fps: int, host: str = HOST,
                   token: Optional[str] = None) -> Tuple[str, Dict[str, Any]]:
    """The OBS source kind and settings that show the avatar.

    A Browser Source on the overlay page keeps the avatar's alpha (OBS's default
    CSS makes the page transparent), sized to the avatar. Without the browser
    plugin, a Media Source reads the MJPEG stream (no alpha): network input,
    MJPEG over HTTP, no buffering (a live picture, not a video to smooth),
    reconnecting every second while the daemon is down. A daemon on another
    computer needs its `token` in the URL (OBS saves the URL with the scene).
    """
    if browser_available:
        return BROWSER_SOURCE, {
            "url": with_token(base_url(port, host) + "/overlay", token), "width": size, "height": size,
            "fps_custom": True, "fps": fps, "reroute_audio": False, "shutdown": False, "restart_when_active": False,
        }
    return MEDIA_SOURCE, {
        "is_local_file": False, "input": with_token(base_url(port, host) + "/video.mjpeg", token),
        "input_format": "mpjpeg",
        "buffering_mb": 0, "reconnect_delay_sec": 1, "restart_on_activate": False, "close_when_inactive": False,
        "clear_on_media_end": False, "hw_decode": False, "looping": False, "seekable": False,
    }


def overlay_placement(canvas_width: int, canvas_height: int, size: int, margin: int = 16) -> Tuple[float, float, float]:
    """Where the overlay goes: (x, y, scale) for the bottom-right corner, scaled down to fit small canvases."""
    scale = min(1.0, SCENE_FILL * canvas_height / float(size), SCENE_FILL * canvas_width / float(size))
    shown = size * scale
    return max(0.0, canvas_width - shown - margin), max(0.0, canvas_height - shown - margin), scale


# --------------------------------------------------------------------------------------------- parsing

def parse_devices(text: str) -> List[Tuple[str, str]]:
    """`facecast devices --json` -> [(value for --device, label)], microphones only; [] if unreadable."""
    try:
        listing = json.loads(text)
        inputs = listing["audio_inputs"]
    except (ValueError, KeyError, TypeError):
        return []
    out = []
    for device in inputs if isinstance(inputs, list) else []:
        if not isinstance(device, dict) or not device.get("name"):
            continue
        name = str(device["name"])
        details = ", ".join(str(part) for part in (
            "%s ch" % device["channels"] if device.get("channels") else None, device.get("host_api")) if part)
        label = name + (" (%s)" % details if details else "") + (" - default" if device.get("is_default") else "")
        out.append((name, label))
    return out


def parse_cameras(text: str) -> List[Tuple[str, str]]:
    """`facecast devices --json` -> [(value for --camera, label)]: cameras by index; [] if unreadable."""
    try:
        cameras = json.loads(text)["cameras"]
    except (ValueError, KeyError, TypeError):
        return []
    out = []
    for camera in cameras if isinstance(cameras, list) else []:
        if not isinstance(camera, dict) or not isinstance(camera.get("index"), int):
            continue
        name = str(camera.get("name") or "camera %d" % camera["index"])
        out.append((str(camera["index"]), name + (" (%s)" % camera["mode"] if camera.get("mode") else "")))
    return out


def parse_log_line(line: str) -> Optional[Tuple[str, str, str]]:
    """A daemon log line -> (level, logger, message), or None for other lines (tracebacks, final errors)."""
    match = _LOG_LINE_RE.match(line.strip())
    return (match.group(1), match.group(2), match.group(3)) if match else None


def extract_token(log_text: str) -> Optional[str]:
    """The control token the daemon logs at start (needed for ws /control)."""
    found = _TOKEN_RE.findall(log_text)
    return found[-1] if found else None


def extract_error(log_text: str) -> Optional[str]:
    """The daemon's one-line reason for stopping: its ``facecast: error:`` line, else the last error logged.

    facecast prints user errors (no face, port in use, bad file) as one line
    on stderr; a crash without one ends in a traceback whose last line is the
    exception.
    """
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("facecast: error: "):
            return line[len("facecast: error: "):]
        if line.startswith("facecast: internal error: "):
            return line[len("facecast: "):]
    for line in reversed(lines):
        parsed = parse_log_line(line)
        if parsed is not None and parsed[0] in ("ERROR", "CRITICAL"):
            return parsed[2]
    if lines and re.match(r"^[A-Za-z_][\w.]*(Error|Exception)(:|$)", lines[-1]):
        return lines[-1]  # the last line of a traceback
    return None


def microphone_problem(log_text: str) -> Optional[str]:
    """The daemon's latest warning about the microphone (it keeps running and retries), if any."""
    for line in reversed(log_text.splitlines()):
        parsed = parse_log_line(line)
        if parsed is None:
            continue
        level, _, message = parsed
        if "microphone" in message and " is back " in message:
            return None
        if level == "WARNING" and message.startswith("microphone "):
            return message.split("; sending silence")[0]
    return None


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def summarize_status(status: Mapping[str, Any]) -> str:
    """A /status JSON object -> the panel's one line: frame rate, mic-to-frame latency, audio input state."""
    parts = []
    fps = _number(status.get("fps"))
    parts.append("%.1f fps" % fps if fps is not None else "fps unknown")
    latency = status.get("latency_ms") if isinstance(status.get("latency_ms"), dict) else {}
    p50, p95 = _number(latency.get("p50")), _number(latency.get("p95"))
    if p50 is not None:
        parts.append("latency %.0f ms" % p50 + (" (p95 %.0f ms)" % p95 if p95 is not None else ""))
    else:
        parts.append("latency -")
    inputs = status.get("inputs") if isinstance(status.get("inputs"), dict) else {}
    audio = inputs.get("audio") if isinstance(inputs.get("audio"), dict) else {}
    if audio.get("state"):
        parts.append("audio %s" % audio["state"])
    delay = avatar_delay_ms(status)
    if delay is not None:
        parts.append("lips %d ms behind the voice" % delay)
    return ", ".join(parts)


def avatar_delay_ms(status: Optional[Mapping[str, Any]]) -> Optional[int]:
    """How many ms the avatar trails the microphone, from /status's ``av_delay_ms`` (None: not known yet)."""
    delay = status.get("av_delay_ms") if status is not None else None
    total = _number(delay.get("total")) if isinstance(delay, dict) else None
    return int(round(total)) if total is not None and total >= 0 else None


def sync_offset_change(applied_ms: Optional[int], wanted_ms: Optional[int], step_ms: int = SYNC_STEP_MS) -> bool:
    """Whether the microphone's Sync Offset should move from `applied_ms` (None: not set by us) to `wanted_ms`."""
    if wanted_ms is None:
        return False
    return applied_ms is None or abs(wanted_ms - applied_ms) >= step_ms


def saved_microphone_delay(text: str) -> Optional[Dict[str, Any]]:
    """The microphone delay a saved MIC_TO_RESTORE holds ({"source", "original" ns, "applied_ms"}), or None when it
    holds none or something unreadable (a hand-edited collection)."""
    try:
        saved = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(saved, dict) or not isinstance(saved.get("source"), str):
        return None
    if not all(isinstance(saved.get(key), int) and not isinstance(saved.get(key), bool)
               for key in ("original", "applied_ms")):
        return None
    return saved


def status_problem(status: Mapping[str, Any]) -> Optional[str]:
    """What is wrong in a running daemon's /status (no microphone, a failing output), or None."""
    inputs = status.get("inputs") if isinstance(status.get("inputs"), dict) else {}
    audio = inputs.get("audio") if isinstance(inputs.get("audio"), dict) else {}
    if audio.get("state") in ("lost", "reopening"):
        return "no microphone (%s)" % (audio.get("device") or "default input")
    camera = inputs.get("camera") if isinstance(inputs.get("camera"), dict) else {}
    if camera.get("state") == "lost":
        return "webcam %s lost: the voice drives the avatar until it is back" % (camera.get("device") or "")
    error = status.get("last_error")
    return str(error) if error else None


def format_status_line(state: str, status: Optional[Mapping[str, Any]] = None, error: Optional[str] = None,
                       problem: Optional[str] = None, overlay: bool = True) -> str:
    """The panel's status line for a daemon state ('stopped', 'starting', 'running', 'stopping', 'failed')."""
    if state == "failed":
        return "Error: " + (error or "facecast stopped unexpectedly")
    if state == "stopped":
        return "Stopped." + (" Last error: " + error if error else " Press Start.")
    if state == "stopping":
        return "Stopping..."
    if state == "starting":
        return "Starting facecast (analysing the portrait)..."
    line = "Running"
    if status is not None:
        line += ": " + summarize_status(status)
    elif not overlay:
        line += " (enable the Overlay output to see fps and latency)"
    if problem:
        line += ". Warning: " + problem
    return line


# --------------------------------------------------------------------------------------------- non-blocking network

class _Exchange:
    """One request/answer over a non-blocking TCP socket, advanced by `poll()` from OBS's timer.

    `poll()` never waits: it does what the socket allows right now and returns
    True once `result` or `error` is set. Subclasses say what to send and when
    the answer is complete.
    """

    def __init__(self, host: str, port: int, timeout: float = NETWORK_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.host, self.port = host, port
        self.result: Any = None
        self.error: Optional[str] = None
        self.done = False
        self._clock = clock
        self._deadline = clock() + timeout
        self._out = b""
        self._in = b""
        self._connected = False
        self._eof = False
        try:  # a name (another computer's) is looked up here; an address needs no lookup
            family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        except (OSError, UnicodeError) as exc:
            self._sock = None
            self._finish(error="cannot find %s: %s" % (host, getattr(exc, "strerror", None) or exc))
            return
        self._sock: Optional[socket.socket] = socket.socket(family, kind, proto)
        self._sock.setblocking(False)
        code = self._sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, getattr(errno, "WSAEWOULDBLOCK", -1)):
            self._finish(error=self._refused(code))

    def _refused(self, code: int) -> str:
        if code == errno.ECONNREFUSED or code == getattr(errno, "WSAECONNREFUSED", -1):
            return "nothing listens on %s:%d" % (self.host, self.port)
        return "cannot connect to %s:%d: %s" % (self.host, self.port, os.strerror(code) if code > 0 else code)

    def _finish(self, result: Any = None, error: Optional[str] = None) -> None:
        self.result, self.error, self.done = result, error, True
        self.close()

    def close(self) -> None:
        """Drop the connection (also when abandoning an exchange)."""
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def poll(self) -> bool:
        """Advance without blocking; True when finished (see `result` and `error`)."""
        if self.done:
            return True
        if self._clock() > self._deadline:
            self._finish(error="no answer from %s:%d" % (self.host, self.port))
            return True
        sock = self._sock
        assert sock is not None
        try:
            readable, writable, failed = select.select([sock], [sock] if (self._out or not self._connected) else [],
                                                       [sock], 0)
            if failed:
                self._finish(error=self._refused(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                                                 or errno.ECONNREFUSED))
                return True
            if not self._connected and (writable or readable):
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    self._finish(error=self._refused(code))
                    return True
                self._connected = True
                self._out += self.opening()
            if self._connected and self._out and (writable or select.select([], [sock], [], 0)[1]):
                sent = sock.send(self._out)
                self._out = self._out[sent:]
            if readable and self._connected:
                while True:
                    try:
                        chunk = sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    if not chunk:
                        self._eof = True
                        break
                    self._in += chunk
        except OSError as exc:
            self._finish(error="connection to %s:%d failed: %s" % (self.host, self.port, exc.strerror or exc))
            return True
        if self._connected:
            self.received(self._eof)
        if not self.done and self._eof:
            self._finish(error="%s:%d closed the connection early" % (self.host, self.port))
        return self.done

    def send(self, data: bytes) -> None:
        self._out += data

    def opening(self) -> bytes:
        """The bytes to send once connected."""
        raise NotImplementedError

    def received(self, eof: bool) -> None:
        """Look at `self._in`; call `_finish` when the answer is complete."""
        raise NotImplementedError


def parse_http_response(data: bytes, close_delimited: bool = False) -> Optional[Tuple[int, bytes]]:
    """(status code, body) once `data` holds a whole HTTP/1.1 answer; None while incomplete.

    `close_delimited`: the connection has closed, so a body without Content-Length is complete.
    """
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    try:
        code = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise ValueError("not an HTTP answer: %r" % lines[0][:80]) from None
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        return (code, body) if close_delimited else None
    if len(body) < length:
        return None
    return code, body[:length]


def _auth_header(token: Optional[str]) -> str:
    """The header that presents a daemon's token (needed on every endpoint when it serves beyond loopback)."""
    return "Authorization: Bearer %s\r\n" % token if token else ""


def _host_header(host: str, port: int) -> str:
    return "%s:%d" % ("[%s]" % host if ":" in host else host, port)


class HttpGet(_Exchange):
    """GET a path; `result` = (status code, body bytes). `token`: sent as a Bearer header."""

    def __init__(self, host: str, port: int, path: str, token: Optional[str] = None, **kwargs: Any) -> None:
        self.path = path
        self.token = token
        super().__init__(host, port, **kwargs)

    def opening(self) -> bytes:
        return ("GET %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n%sConnection: close\r\n\r\n"
                % (self.path, _host_header(self.host, self.port), _auth_header(self.token))).encode("ascii")

    def received(self, eof: bool) -> None:
        try:
            answer = parse_http_response(self._in)
        except ValueError as exc:
            self._finish(error=str(exc))
            return
        if answer is None and eof:  # no Content-Length: the body ends with the connection
            try:
                answer = parse_http_response(self._in, close_delimited=True)
            except ValueError as exc:
                self._finish(error=str(exc))
                return
        if answer is not None:
            self._finish(result=answer)


def websocket_accept(key: str) -> str:
    """The Sec-WebSocket-Accept value a server must answer to `key` (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + _WS_GUID).encode("ascii")).digest()).decode("ascii")


def encode_ws_frame(payload: bytes, opcode: int = 0x1, mask: Optional[bytes] = None) -> bytes:
    """One final, masked client frame (clients must mask, RFC 6455 section 5.3)."""
    mask = os.urandom(4) if mask is None else mask
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    elif length < 65536:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def decode_ws_frame(data: bytes) -> Optional[Tuple[int, bytes, int]]:
    """(opcode, payload, bytes used) for the first whole frame in `data`, or None while incomplete."""
    if len(data) < 2:
        return None
    opcode = data[0] & 0x0F
    masked = data[1] & 0x80
    length = data[1] & 0x7F
    offset = 2
    if length == 126:
        if len(data) < 4:
            return None
        length, offset = int.from_bytes(data[2:4], "big"), 4
    elif length == 127:
        if len(data) < 10:
            return None
        length, offset = int.from_bytes(data[2:10], "big"), 10
    key = b""
    if masked:
        if len(data) < offset + 4:
            return None
        key, offset = data[offset:offset + 4], offset + 4
    if len(data) < offset + length:
        return None
    payload = data[offset:offset + length]
    if masked:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return opcode, payload, offset + length


class ControlMessage(_Exchange):
    """Send one JSON command on ws /control and read its answer; `result` = the answer as a dict.

    A client that is not a web page sends no Origin header, which the daemon
    accepts; the command itself carries the run's token (and so does the
    connection, as a header, for a daemon on another computer: `token`).
    """

    def __init__(self, host: str, port: int, message: Mapping[str, Any], token: Optional[str] = None,
                 **kwargs: Any) -> None:
        self._message = json.dumps(dict(message)).encode("utf-8")
        self._key = base64.b64encode(os.urandom(16)).decode("ascii")
        self._upgraded = False
        self.token = token
        super().__init__(host, port, **kwargs)

    def opening(self) -> bytes:
        return ("GET /control HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
                % (_host_header(self.host, self.port), self._key, _auth_header(self.token))).encode("ascii")

    def received(self, eof: bool) -> None:
        if not self._upgraded:
            head, sep, rest = self._in.partition(b"\r\n\r\n")
            if not sep:
                return
            lines = head.decode("latin-1").split("\r\n")
            headers = {name.strip().lower(): value.strip()
                       for name, _, value in (line.partition(":") for line in lines[1:])}
            if " 101 " not in lines[0] + " ":
                body = rest.decode("utf-8", "replace").strip()
                self._finish(error="control refused: %s%s" % (lines[0], (" (%s)" % body) if body else ""))
                return
            if headers.get("sec-websocket-accept") != websocket_accept(self._key):
                self._finish(error="control refused: bad WebSocket handshake")
                return
            self._upgraded = True
            self._in = rest
            self.send(encode_ws_frame(self._message))
        while True:
            frame = decode_ws_frame(self._in)
            if frame is None:
                return
            opcode, payload, used = frame
            self._in = self._in[used:]
            if opcode == 0x1:
                try:
                    answer = json.loads(payload.decode("utf-8"))
                except ValueError:
                    self._finish(error="control: answer is not JSON")
                    return
                self._finish(result=answer)
                return
            if opcode == 0x8:
                self._finish(error="control: the daemon closed the connection")
                return
            # pings (0x9) and anything else: wait for the text answer


def control_outcome(exchange: _Exchange) -> Optional[str]:
    """None when the daemon acknowledged a control command, else the one-line reason it was not applied."""
    if exchange.error:
        return exchange.error
    answer = exchange.result if isinstance(exchange.result, dict) else {}
    if answer.get("type") in ("ack", "accepted"):
        return None
    return str(answer.get("message") or "unexpected answer %r" % (answer,))


# --------------------------------------------------------------------------------------------- child processes

def launch_prefix(platform: str = sys.platform, which: Callable[[str], Optional[str]] = shutil.which) -> List[str]:
    """On Linux, ``setpriv --pdeathsig TERM --``: the kernel stops the daemon if OBS dies without unloading
    scripts (killed, crashed; OBS 29 exits on SIGTERM without cleanup).

    setpriv (util-linux) sets the signal and execs facecast in the same
    process, so no Python code runs between fork and exec. The signal follows
    the thread that started the child, which is why the daemon is started
    only from OBS's UI thread or its long-lived timer thread. Elsewhere: none.
    """
    if platform.startswith("linux"):
        setpriv = which("setpriv")
        if setpriv:
            return [setpriv, "--pdeathsig", "TERM", "--"]
    return []


_JOB: Any = None  # Windows: the job object every daemon joins (kept open for as long as OBS runs)


def _windows_kill_on_close_job() -> Any:
    """Windows: a job object whose processes die when its last handle closes, i.e. when OBS exits or is killed.

    The Windows counterpart of Linux's parent-death signal (`launch_prefix`). Best effort: None when the
    job cannot be made (then a killed OBS leaves the daemon running, as before).
    """
    global _JOB
    if _JOB is not None:
        return _JOB
    try:
        import ctypes
        from ctypes import wintypes

        class IoCounters(ctypes.Structure):
            _fields_ = [(name, ctypes.c_uint64) for name in (
                "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
                "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]

        class BasicLimits(ctypes.Structure):
            _fields_ = [("PerProcessUserTimeLimit", ctypes.c_int64), ("PerJobUserTimeLimit", ctypes.c_int64),
                        ("LimitFlags", ctypes.c_uint32), ("MinimumWorkingSetSize", ctypes.c_size_t),
                        ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", ctypes.c_uint32),
                        ("Affinity", ctypes.c_size_t), ("PriorityClass", ctypes.c_uint32),
                        ("SchedulingClass", ctypes.c_uint32)]

        class ExtendedLimits(ctypes.Structure):
            _fields_ = [("BasicLimitInformation", BasicLimits), ("IoInfo", IoCounters),
                        ("ProcessMemoryLimit", ctypes.c_size_t), ("JobMemoryLimit", ctypes.c_size_t),
                        ("PeakProcessMemoryUsed", ctypes.c_size_t), ("PeakJobMemoryUsed", ctypes.c_size_t)]

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        kernel32.CreateJobObjectW.restype = wintypes.HANDLE
        kernel32.CreateJobObjectW.argtypes = [ctypes.c_void_p, wintypes.LPCWSTR]
        kernel32.SetInformationJobObject.restype = wintypes.BOOL
        kernel32.SetInformationJobObject.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD]
        kernel32.AssignProcessToJobObject.restype = wintypes.BOOL
        kernel32.AssignProcessToJobObject.argtypes = [wintypes.HANDLE, wintypes.HANDLE]
        job = kernel32.CreateJobObjectW(None, None)
        if not job:
            return None
        limits = ExtendedLimits()
        limits.BasicLimitInformation.LimitFlags = 0x2000  # JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        if not kernel32.SetInformationJobObject(job, 9, ctypes.byref(limits), ctypes.sizeof(limits)):
            kernel32.CloseHandle(job)  # 9: JobObjectExtendedLimitInformation
            return None
        _JOB = (kernel32, job)
    except Exception:  # pragma: no cover - Windows only
        return None
    return _JOB


def _join_kill_on_close_job(process: subprocess.Popen) -> None:
    """Windows: put the daemon in `_windows_kill_on_close_job`'s job; elsewhere nothing."""
    if sys.platform != "win32":
        return
    job = _windows_kill_on_close_job()
    if job is None:
        return
    kernel32, handle = job
    try:  # pragma: no cover - Windows only
        kernel32.AssignProcessToJobObject(handle, int(process._handle))  # type: ignore[attr-defined]
    except Exception:  # pragma: no cover
        pass


def _spawn(command: Sequence[str], log_path: str) -> subprocess.Popen:
    """Start `command` with stdout and stderr appended to `log_path`, no console window, no stdin."""
    kwargs: Dict[str, Any] = {}
    if sys.platform == "win32":
        kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("PYTHONIOENCODING", "utf-8:replace")  # the log is read as UTF-8 (Windows' default: cp1252)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(launch_prefix() + list(command), stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, env=env, **kwargs)
    _join_kill_on_close_job(process)
    return process


class DaemonController:
    """Runs one `facecast live` child and follows its log; `poll()` (from the timer) never blocks.

    States: 'stopped' -> 'starting' (launched, portrait being analysed) ->
    'running' (the daemon logged its start or answered /status) ->
    'stopping' -> 'stopped'; 'failed' when it exits on its own, with
    `error` holding the daemon's one-line message.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.state = "stopped"
        self.error: Optional[str] = None
        self.token: Optional[str] = None
        self.log_path: Optional[str] = None
        self.log_tail = ""
        self.command: List[str] = []
        self.process: Optional[subprocess.Popen] = None
        self._clock = clock
        self._log_offset = 0
        self._stop_request: Optional[ControlMessage] = None  # the `stop` message on its way
        self._terminate_at: Optional[float] = None  # when asking has had its time: terminate
        self._kill_at: Optional[float] = None  # when terminating has had its time: kill
        self.stop_note: Optional[str] = None  # why the clean stop was not used, if it was not
        self._lock = threading.RLock()  # buttons (UI thread), hotkeys and the timer all call in

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, command: Sequence[str]) -> Optional[str]:
        """Launch the daemon; returns an error line (and sets state 'failed') if it cannot even start."""
        with self._lock:
            if self.alive:
                return None
            self._remove_log()
            handle, path = tempfile.mkstemp(prefix="facecast-obs-", suffix=".log")  # private: the log holds the token
            os.close(handle)
            self.log_path, self.log_tail, self._log_offset = path, "", 0
            self.token, self.error, self.command = None, None, list(command)
            if shutil.which(command[0]) is None:  # say so now, not as the launcher's exit code
                self.state = "failed"
                self.error = "cannot run %s: no such executable file" % command[0]
                return self.error
            try:
                self.process = _spawn(command, path)
            except OSError as exc:
                self.process = None
                self.state = "failed"
                self.error = "cannot run %s: %s" % (command[0], exc.strerror or exc)
                return self.error
            self.state = "starting"
            self._stop_request, self._terminate_at, self._kill_at, self.stop_note = None, None, None, None
            return None

    def stop(self, wait: float = 0.0) -> None:
        """Ask the daemon to stop, cleanly on every OS, escalating only if it does not.

        1. The ``stop`` control message on its ws /control when it serves one (``--ws``) and logged its
           token: the daemon closes its outputs and exits 0. (Windows has no SIGTERM: ``terminate()`` there
           is TerminateProcess, which kills outright.)
        2. ``terminate()`` (SIGTERM elsewhere, also a clean stop) at once when there is no control
           connection or it refused, else after `STOP_GRACE_S`.
        3. ``kill()`` `STOP_GRACE_S` after that.

        `wait` > 0 blocks up to that long (script unload, OBS exit): terminate after half of it, kill at the
        end. The wait happens outside the lock, so the timer is never held up by it.
        """
        with self._lock:
            process = self.process
            if process is None or process.poll() is not None:
                self._reap()
                return
            if self.state != "stopping":
                self.state = "stopping"
                port = control_port(self.command)
                if port is not None and self.token is not None:
                    self._stop_request = ControlMessage(HOST, port, {"type": "stop", "token": self.token},
                                                        clock=self._clock)
                    self._terminate_at = self._clock() + STOP_GRACE_S
                else:
                    self.stop_note = "no control connection (Overlay output off): terminated"
                    self._terminate(process)
        if wait <= 0:
            return
        started = time.monotonic()
        while process.poll() is None and time.monotonic() - started < wait:
            with self._lock:
                self._advance_stop(process)
                if time.monotonic() - started >= wait / 2.0:
                    self._terminate(process)
            time.sleep(0.02)
        if process.poll() is None:
            process.kill()
            try:
                process.wait(1.0)
            except subprocess.TimeoutExpired:
                pass
        with self._lock:
            if self.process is process:
                self._reap()

    def _terminate(self, process: subprocess.Popen) -> None:
        """Step 2 (once): terminate, and kill if that has not worked within `STOP_GRACE_S`."""
        if self._kill_at is not None:
            return
        try:
            process.terminate()
        except OSError:
            pass
        self._kill_at = self._clock() + STOP_GRACE_S

    def _advance_stop(self, process: subprocess.Popen) -> None:
        """Move a stop along: the control exchange, then terminate and kill when their times come."""
        request = self._stop_request
        if request is not None and request.poll():
            self._stop_request = None
            problem = control_outcome(request)
            if problem is not None:
                self.stop_note = "the stop message failed (%s): terminated" % problem
                self._terminate(process)
        now = self._clock()
        if self._kill_at is None and self._terminate_at is not None and now > self._terminate_at:
            self.stop_note = "facecast did not stop within %g s of the stop message: terminated" % STOP_GRACE_S
            self._terminate(process)
        if self._kill_at is not None and now > self._kill_at:
            process.kill()

    def poll(self) -> None:
        """Read new log lines and notice an exit; move a stop along (`stop`)."""
        with self._lock:
            self._read_log()
            process = self.process
            if process is None:
                return
            if process.poll() is not None:
                self._reap()
                return
            if self.state == "stopping":
                self._advance_stop(process)
            if self.state == "starting" and (self.token is not None or " facecast.live: live: " in self.log_tail):
                self.state = "running"

    def mark_running(self) -> None:
        """The daemon answered /status."""
        with self._lock:
            if self.state == "starting" and self.alive:
                self.state = "running"

    def _reap(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if self._stop_request is not None:
            self._stop_request.close()
            self._stop_request = None
        self._read_log()
        code = process.poll()
        if self.state == "stopping" or code == 0:
            self.state = "stopped"
        else:
            self.state = "failed"
            self.error = extract_error(self.log_tail) or "facecast exited with code %s" % code

    def _read_log(self) -> None:
        if not self.log_path:
            return
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(self._log_offset)
                data = handle.read(1 << 20)
        except OSError:
            return
        if not data:
            return
        self._log_offset += len(data)
        self.log_tail = (self.log_tail + data.decode("utf-8", "replace"))[-LOG_TAIL_CHARS:]
        token = extract_token(self.log_tail)
        if token:
            self.token = token

    def _remove_log(self) -> None:
        if self.log_path:
            try:
                os.remove(self.log_path)
            except OSError:
                pass
            self.log_path = None

    def shutdown(self) -> None:
        """Stop for good (script unload, OBS exit): wait briefly, kill if needed, delete the log."""
        self.stop(wait=3.0)
        with self._lock:
            self._remove_log()


class DeviceLister:
    """`facecast devices --json` in the background; `poll()` returns the microphones once it finished."""

    def __init__(self, executable: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._deadline = clock() + DEVICES_TIMEOUT_S
        handle, self._path = tempfile.mkstemp(prefix="facecast-obs-devices-", suffix=".json")
        os.close(handle)
        self.error: Optional[str] = None
        self.cameras: List[Tuple[str, str]] = []  # filled by `poll()` from the same listing
        self.process: Optional[subprocess.Popen] = None
        try:
            kwargs: Dict[str, Any] = {}
            if sys.platform == "win32":
                kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
            with open(self._path, "wb") as out:
                self.process = subprocess.Popen([executable, "devices", "--json"], stdin=subprocess.DEVNULL,
                                                stdout=out, stderr=subprocess.DEVNULL, **kwargs)
        except OSError as exc:
            self.error = "cannot run %s: %s" % (executable, exc.strerror or exc)
            self._cleanup()

    def poll(self) -> Optional[List[Tuple[str, str]]]:
        """None while running; then the microphones ([] with `error` set if the listing failed)."""
        process = self.process
        if process is None:
            return []
        if process.poll() is None:
            if self._clock() < self._deadline:
                return None
            process.kill()
            process.wait()
            self.error = "listing microphones timed out"
        try:
            with open(self._path, "r", encoding="utf-8") as handle:
                text = handle.read()
        except OSError:
            text = ""
        self.process = None
        self._cleanup()
        devices = parse_devices(text)
        self.cameras = parse_cameras(text)
        if not devices and not self.error and process.returncode != 0:
            self.error = "`facecast devices` failed (exit code %s)" % process.returncode
        return devices

    def cancel(self) -> None:
        """Kill the listing (script unload)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
        self._cleanup()

    def _cleanup(self) -> None:
        try:
            os.remove(self._path)
        except OSError:
            pass


# --------------------------------------------------------------------------------------------- the panel's state

class Panel:
    """Everything the OBS glue below does, kept apart from `obspython` so it is easy to follow and test.

    `settings` is a plain dict mirror of the OBS settings; `tick()` advances
    the daemon, the /status poll, control messages and the microphone listing.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings: Dict[str, Any] = default_settings()
        self.daemon = DaemonController(clock=clock)
        self.microphones: Optional[List[Tuple[str, str]]] = None  # None: not listed yet
        self.microphone_error: Optional[str] = None
        self.cameras: List[Tuple[str, str]] = []
        self.last_status: Optional[Dict[str, Any]] = None
        self.notice: Optional[str] = None  # the outcome of the last button (emotion refused, overlay added...)
        self._clock = clock
        self._lister: Optional[DeviceLister] = None
        self._status_request: Optional[HttpGet] = None
        self._next_status = 0.0
        self._controls: List[ControlMessage] = []
        self._port = DEFAULT_PORT  # the port the running daemon serves on (settings may change meanwhile)
        self.remote_error: Optional[str] = None  # why the daemon on another computer does not answer
        #: Whether this OBS has the Browser Source (the OBS glue asks OBS; a Media Source shows no alpha).
        self.browser_source = True
        #: The local daemon's command line, and what it was last given over its control connection: a new
        #: portrait and the mouth and head intensities are sent to it once it can take them (`_follow`), one at a time
        #: (`_following`, one of `_controls` while it is under way).
        self._command: List[str] = []
        self._applied: Dict[str, Any] = {}
        self._following: Optional[ControlMessage] = None
        self._lock = threading.RLock()

    # ---- actions

    def executable(self) -> Optional[str]:
        return find_facecast(str(self.settings.get("facecast_path") or ""))

    def remote(self) -> Optional[str]:
        """The other computer facecast runs on (two-PC streaming), or None: this script runs it here."""
        host = str(self.settings.get("remote_host") or "").strip()
        return host.strip("[]") or None

    def _target(self) -> Tuple[str, int, Optional[str]]:
        """(host, port, token) of the daemon to show, ask and control."""
        remote = self.remote()
        if remote is not None:
            return remote, int(self.settings.get("port") or DEFAULT_PORT), str(self.settings.get("token") or "").strip()
        return HOST, self._port, None

    def start(self) -> str:
        """Start the daemon with the current settings; returns the line to show."""
        with self._lock:
            remote = self.remote()
            if remote is not None:
                return ("facecast runs on %s: start it there (facecast live --ws --ws-host 0.0.0.0 ...); "
                        "this OBS shows it" % remote)
            if self.daemon.alive:
                return "facecast is already running"
            executable = self.executable()
            if executable is None:
                self.daemon.state, self.daemon.error = "failed", (
                    "facecast executable not found: set 'facecast executable' (e.g. the facecast file in your "
                    "virtual environment's bin or Scripts folder)")
                return self.daemon.error
            try:
                command = build_command(executable, self.settings, self.browser_source)
            except ValueError as exc:
                self.daemon.state, self.daemon.error = "failed", str(exc)
                return str(exc)
            self._port = int(self.settings.get("port") or DEFAULT_PORT)
            self.last_status = None
            self.notice = None
            self._command = command
            self._applied = {what: self._wanted(what) for what in ("portrait", *INTENSITIES)}
            self._following = None
            error = self.daemon.start(command)
            return error or "starting: " + " ".join(command[1:])

    def stop(self) -> str:
        with self._lock:
            self.daemon.stop()
            self._drop_requests()
            return "stopping facecast"

    def apply_settings(self, settings: Dict[str, Any]) -> Optional[str]:
        """The user changed the panel: a running facecast here gets a new portrait and mouth and head intensity
        at once (or as soon as it has started), and the line names what else needs Stop, then Start; a facecast
        on another computer gets the intensities. Returns the line to show, if any."""
        with self._lock:
            before, self.settings = self.settings, settings
            if self.remote() is not None:
                moved = [part for part, (setting, _, _, _) in INTENSITIES.items()
                         if settings.get(setting) != before.get(setting)]
                return "; ".join(self.intensity(part) for part in moved) or None
            if not self.daemon.alive:
                return None
            try:
                wanted = build_command(self.executable() or self._command[0], settings, self.browser_source)
            except ValueError as exc:
                self.notice = "not applied: " + str(exc)
                return self.notice
            restart = needs_restart(self._command, wanted)
            if restart:
                self.notice = "restart facecast (Stop, then Start) to apply: " + ", ".join(restart)
            elif self.notice is not None and self.notice.startswith(("restart facecast", "not applied")):
                self.notice = None
            sent = self._follow()
            behind = self._behind()
            if sent is None and self.daemon.token is None and behind:
                sent = self.notice = "%s: sent once facecast has started" % " and ".join(map(_named, behind))
            return sent or (self.notice if restart else None)

    def _wanted(self, what: str) -> Any:
        """The panel's portrait, or the "mouth" or "head" intensity, as the daemon is to be given it."""
        if what == "portrait":
            return str(self.settings.get("portrait") or "").strip()
        setting, _, maximum, _ = INTENSITIES[what]
        return round(min(maximum, max(0.0, float(self.settings.get(setting, 1.0)))), 3)

    def _behind(self) -> List[str]:
        """What the local daemon has not been given yet: "portrait" and the INTENSITIES parts, in that order."""
        behind = []
        if self._wanted("portrait") and self._wanted("portrait") != self._applied.get("portrait"):
            behind.append("portrait")
        behind.extend(part for part in INTENSITIES if self._wanted(part) != self._applied.get(part))
        return behind

    def _follow(self) -> Optional[str]:
        """Send the local daemon the portrait or an intensity it is behind on, one message at a time, once it
        serves its control connection; the line to show, or None (nothing sent)."""
        if (self.remote() is not None or not self._local_control() or self.daemon.token is None
                or self._following is not None):
            return None
        behind = self._behind()
        if not behind:
            return None
        if behind[0] == "portrait":
            portrait = self._wanted("portrait")
            message: Dict[str, Any] = {"type": "portrait", "path": portrait}
            self._applied["portrait"], line = portrait, "portrait %s sent" % portrait
        else:
            part, value = behind[0], self._wanted(behind[0])
            message = {"type": part, "intensity": value}
            self._applied[part], line = value, "%s %g sent" % (_named(part), value)
        self._following = ControlMessage(HOST, self._port, dict(message, token=self.daemon.token),
                                         clock=self._clock)
        self._controls.append(self._following)
        self.notice = line
        return line

    def _local_control(self) -> bool:
        """Whether the daemon started here serves its control connection (it was started with the Overlay on)."""
        return self.daemon.alive and control_port(self._command) is not None

    def emotion(self, preset: str) -> str:
        """Queue an emotion preset for the running daemon (sent over ws /control by the timer)."""
        with self._lock:
            if preset not in EMOTION_PRESETS:
                return "unknown emotion %r" % preset
            intensity = min(1.0, max(0.0, float(self.settings.get("intensity") or 0.0)))
            message = {"type": "emotion", "preset": preset, "intensity": round(intensity, 3)}
            return self._send(message, "emotions need", "emotion %s sent" % preset)

    def intensity(self, part: str) -> str:
        """Send the panel's "mouth" or "head" intensity to the running daemon (its slider moved); a daemon
        started later gets it on its command line."""
        with self._lock:
            value, label = self._wanted(part), INTENSITIES[part][3]
            return self._send({"type": part, "intensity": value}, "the %s needs" % label, "%s %g sent" % (label, value))

    def calibrate(self) -> str:
        """Ask the running daemon to take the webcam user's neutral pose and eye openness again."""
        with self._lock:
            return self._send({"type": "calibrate"}, "calibrating needs", "calibrating: look at the camera")

    def _send(self, message: Dict[str, Any], what: str, sent: str) -> str:
        """Queue a control message for the daemon shown (here or on another computer); the line to show."""
        host, port, remote_token = self._target()
        if self.remote() is None and not self._local_control():
            self.notice = "%s a running facecast with the Overlay output on" % what
            return self.notice
        token = remote_token if self.remote() is not None else self.daemon.token
        if not token:
            self.notice = ("set the token of facecast on %s first" % host if self.remote() is not None
                           else STILL_STARTING)
            return self.notice
        message = dict(message, token=token)
        self._controls.append(ControlMessage(host, port, message, token=remote_token or None, clock=self._clock))
        self.notice = sent
        return self.notice

    def list_microphones(self) -> None:
        """Start (again) listing microphones in the background."""
        with self._lock:
            executable = self.executable()
            if executable is None:
                self.microphones, self.microphone_error = [], "facecast executable not found"
                return
            if self._lister is None:
                self._lister = DeviceLister(executable, clock=self._clock)

    # ---- the timer

    def tick(self) -> None:
        """Advance every background job by what is possible now (called every `TICK_MS`)."""
        with self._lock:
            self.daemon.poll()
            if self._lister is not None:
                devices = self._lister.poll()
                if devices is not None:
                    self.microphones, self.microphone_error = devices, self._lister.error
                    self.cameras = self._lister.cameras
                    self._lister = None
            self._poll_status()
            if self.notice == STILL_STARTING and self.daemon.token is not None:
                self.notice = None   # it has started: the button works now
            for exchange in list(self._controls):
                if exchange.poll():
                    self._controls.remove(exchange)
                    problem = control_outcome(exchange)
                    if problem is not None:
                        self.notice = "control refused: " + problem
            if self._following not in self._controls:
                self._following = None
            self._follow()

    def _poll_status(self) -> None:
        remote = self.remote() is not None
        if not remote and not self._local_control():
            self._drop_requests(controls=False)
            if not self.daemon.alive:
                self.last_status = None
            return
        request = self._status_request
        if request is None:
            if self._clock() >= self._next_status:
                host, port, token = self._target()
                self._status_request = HttpGet(host, port, "/status", token=token or None, clock=self._clock)
                self._next_status = self._clock() + STATUS_EVERY_S
            return
        if not request.poll():
            return
        self._status_request = None
        if remote:
            self.remote_error = request.error or (
                None if request.result[0] == 200 else "%s answered %d: %s" % (
                    request.host, request.result[0], request.result[1].decode("utf-8", "replace").strip()[:200]))
            if self.remote_error is not None:
                self.last_status = None
        if request.error is None and request.result[0] == 200:
            try:
                status = json.loads(request.result[1].decode("utf-8"))
            except ValueError:
                return
            if isinstance(status, dict):
                self.last_status = status
                self.daemon.mark_running()

    def _drop_requests(self, controls: bool = True) -> None:
        if self._status_request is not None:
            self._status_request.close()
            self._status_request = None
        if controls:
            for exchange in self._controls:
                exchange.close()
            self._controls, self._following = [], None

    def status_line(self) -> str:
        """The text the panel shows now."""
        with self._lock:
            remote = self.remote()
            if remote is not None:
                if self.last_status is not None:
                    line = "Running on %s: %s" % (remote, summarize_status(self.last_status))
                    problem = status_problem(self.last_status)
                    line += ". Warning: " + problem if problem else ""
                else:
                    line = "Connecting to facecast on %s..." % remote + (
                        " (%s)" % self.remote_error if self.remote_error else "")
                return line + (" (" + self.notice + ")" if self.notice else "")
            daemon = self.daemon
            problem = None
            if daemon.state == "running":
                problem = microphone_problem(daemon.log_tail) or (
                    status_problem(self.last_status) if self.last_status is not None else None)
            line = format_status_line(daemon.state, self.last_status, daemon.error, problem,
                                      self._local_control() or not daemon.alive)
            if self.notice and daemon.state == "running":
                line += " (" + self.notice + ")"
            return line

    def shutdown(self) -> None:
        """Stop everything this panel started (script unload, OBS exit)."""
        with self._lock:
            self._drop_requests()
            lister, self._lister = self._lister, None
        self.daemon.shutdown()
        if lister is not None:
            lister.cancel()


# ============================================================================================= OBS glue
# Everything below runs only inside OBS. Threads: button callbacks and script_properties run on OBS's
# UI thread, the timer on its graphics thread, hotkeys wherever OBS (or obs-websocket) triggers them.
# Hotkeys therefore only queue their action for the timer, which keeps child processes tied to one
# long-lived thread; the status text is written into the OBS settings only on the UI thread (obs_data
# has no lock, and the panel reads it there), right before the panel is drawn.

PANEL = Panel()
_obs_settings: Any = None  # the script's obs_data_t (owned by OBS); the panel's status field reads "status"
_hotkeys: Dict[str, int] = {}
_queued: List[Callable[[], Any]] = []
_queue_lock = threading.Lock()
_logged_key: Tuple[str, str] = ("", "")
_was_running = False
#: The microphone source whose Sync Offset this script set: {"source": name, "original": ns, "applied_ms": ms}.
_synced: Optional[Dict[str, Any]] = None
_missing_mic: Optional[str] = None  # a chosen microphone source not found (warned about once)
#: A microphone delay saved when OBS last closed (as in `_synced`), until its source is loaded and given back.
_left_delayed: Optional[Dict[str, Any]] = None


def _log(message: str, warning: bool = False) -> None:
    """One line in OBS's script log and OBS's log file (a warning also opens the Script Log window)."""
    if obs is not None:
        obs.script_log(obs.LOG_WARNING if warning else obs.LOG_INFO, message)
    else:
        print(message)


def _read_settings(settings: Any) -> Dict[str, Any]:
    """The OBS settings object -> a plain dict of this script's settings."""
    values: Dict[str, Any] = {}
    for key, default in default_settings().items():
        if isinstance(default, bool):
            values[key] = obs.obs_data_get_bool(settings, key)
        elif isinstance(default, int):
            values[key] = obs.obs_data_get_int(settings, key)
        elif isinstance(default, float):
            values[key] = obs.obs_data_get_double(settings, key)
        else:
            values[key] = obs.obs_data_get_string(settings, key)
    return values


def log_key(line: str) -> Tuple[str, str]:
    """What makes a status line worth a log line: its state word and any warning (not every fps change)."""
    word = re.split(r"[ :.(]", line, maxsplit=1)[0]
    return (word, line) if word == "Error" else (word, line.partition(". Warning: ")[2])


def _log_status() -> None:
    """Log the status line when its state or warning changed (the script log is the panel's history)."""
    global _logged_key
    line = PANEL.status_line()
    key = log_key(line)
    if key != _logged_key:
        _logged_key = key
        _log("facecast: " + line, warning=key[0] == "Error")


def _write_status() -> None:
    """Put the current status line where the panel shows it. UI thread only."""
    if _obs_settings is not None:
        obs.obs_data_set_string(_obs_settings, "status", PANEL.status_line())


def _tick() -> None:
    """Every TICK_MS on OBS's graphics thread: queued hotkey actions, then every non-blocking job."""
    global _was_running
    with _queue_lock:
        actions = list(_queued)
        del _queued[:]
    for action in actions:
        action()
    PANEL.tick()
    running = PANEL.daemon.state == "running"
    if running and not _was_running:
        _reopen_media_source()
    _was_running = running
    _restore_microphone_left_delayed()
    _sync_microphone()
    _log_status()


def _sync_microphone() -> None:
    """Keep the chosen microphone source's Sync Offset at the avatar's delay behind the voice while facecast
    runs (viewers then hear each word when the lips say it); put back the offset it had once facecast stops,
    the option is turned off or another source is chosen."""
    global _synced, _missing_mic
    settings = PANEL.settings
    name = str(settings.get("mic_source") or "").strip()
    wanted = avatar_delay_ms(PANEL.last_status) if settings.get("sync_mic") and name else None
    if _synced is not None and (wanted is None or _synced["source"] != name):
        _restore_microphone()
    if not sync_offset_change(_synced["applied_ms"] if _synced is not None else None, wanted):
        return
    source = obs.obs_get_source_by_name(name)
    if source is None:
        if _missing_mic != name:
            _missing_mic = name
            _log("facecast: no audio source named %r to delay by the avatar's %d ms: choose your microphone "
                 "under 'Delay this microphone'" % (name, wanted), warning=True)
        return
    _missing_mic = None
    original = _synced["original"] if _synced is not None else obs.obs_source_get_sync_offset(source)
    obs.obs_source_set_sync_offset(source, int(wanted) * 1000000)  # OBS takes nanoseconds
    obs.obs_source_release(source)
    _synced = {"source": name, "original": original, "applied_ms": wanted}
    _log("facecast: %r delayed by %d ms (its Sync Offset): the avatar's lips trail the voice by that much"
         % (name, wanted))


def _restore_microphone() -> None:
    """Give the microphone source back the Sync Offset it had before this script changed it."""
    global _synced
    synced, _synced = _synced, None
    if synced is None:
        return
    source = obs.obs_get_source_by_name(synced["source"])
    if source is None:
        return
    obs.obs_source_set_sync_offset(source, synced["original"])
    obs.obs_source_release(source)
    _log("facecast: %r Sync Offset back to %d ms" % (synced["source"], synced["original"] // 1000000))


def _restore_microphone_left_delayed() -> None:
    """Give the microphone back the offset it had if OBS last closed while facecast delayed it, unless someone has
    changed the offset since (then theirs stays). Scripts load before the collection's sources, so the timer tries
    until the source is there."""
    global _left_delayed
    saved = _left_delayed
    if saved is None:
        return
    source = obs.obs_get_source_by_name(saved["source"])
    if source is None:
        return
    _left_delayed = None
    if obs.obs_source_get_sync_offset(source) == saved["applied_ms"] * 1000000:
        obs.obs_source_set_sync_offset(source, saved["original"])
        _log("facecast: %r Sync Offset back to %d ms (OBS last closed while facecast delayed it)"
             % (saved["source"], saved["original"] // 1000000))
    obs.obs_source_release(source)


def audio_source_names() -> List[str]:
    """The names of OBS's sources that have audio (the microphone to delay is one of them), sorted."""
    names = []
    sources = obs.obs_enum_sources()
    for source in sources or []:
        if obs.obs_source_get_output_flags(source) & obs.OBS_SOURCE_AUDIO and \
                obs.obs_source_get_name(source) != SOURCE_NAME:
            names.append(obs.obs_source_get_name(source))
    obs.source_list_release(sources)
    return sorted(set(names))


def _reopen_media_source() -> None:
    """Make the Media Source connect now that the daemon serves its stream.

    OBS 29's Media Source retries a network input every few seconds, but when
    the connection is refused at once its retry can stop for good (the failure
    is reported before the source records that it opened the input). Updating
    the source reopens it, as pressing OK in its properties would.
    """
    source = obs.obs_get_source_by_name(SOURCE_NAME)
    if source is None:
        return
    if obs.obs_source_get_unversioned_id(source) == MEDIA_SOURCE:
        nothing_new = obs.obs_data_create()
        obs.obs_source_update(source, nothing_new)
        obs.obs_data_release(nothing_new)
    obs.obs_source_release(source)


def _queue(action: Callable[[], Any]) -> Callable[[bool], None]:
    """A hotkey callback that leaves `action` to the timer."""
    def on_hotkey(pressed: bool) -> None:
        if pressed:
            with _queue_lock:
                _queued.append(action)
    return on_hotkey


def _do_start() -> None:
    _log("facecast: " + PANEL.start())
    _log_status()


def _do_stop() -> None:
    _log("facecast: " + PANEL.stop())
    _log_status()


def add_overlay() -> str:
    """Create (or update) the facecast source and put it in the current scene, sized to the avatar."""
    settings = PANEL.settings
    if not settings.get("out_overlay"):
        return "turn the Overlay output on first (the source reads the daemon's local server)"
    port = int(settings.get("port") or DEFAULT_PORT)
    size, fps = int(settings.get("size") or DEFAULT_SIZE), int(settings.get("fps") or 30)
    browser = obs.obs_source_get_display_name(BROWSER_SOURCE) is not None
    remote = PANEL.remote()
    token = (str(settings.get("token") or "").strip() or None) if remote else None
    kind, values = overlay_source(browser, port, size, fps, host=remote or HOST, token=token)
    source = obs.obs_get_source_by_name(SOURCE_NAME)
    if source is not None and obs.obs_source_get_unversioned_id(source) != kind:
        obs.obs_source_release(source)
        return "a source named %r of another kind exists: rename or remove it" % SOURCE_NAME
    data = obs.obs_data_create_from_json(json.dumps(values))
    if source is None:
        source = obs.obs_source_create(kind, SOURCE_NAME, data, None)
    else:
        current = obs.obs_source_get_settings(source)
        address = "url" if kind == BROWSER_SOURCE else "input"
        if obs.obs_data_get_string(current, address) != values[address]:  # the port, host or token changed
            obs.obs_source_update(source, data)
        obs.obs_data_release(current)
    obs.obs_data_release(data)
    scene_source = obs.obs_frontend_get_current_scene()
    scene = obs.obs_scene_from_source(scene_source)
    if obs.obs_scene_find_source(scene, SOURCE_NAME) is None:
        item = obs.obs_scene_add(scene, source)
        video = obs.obs_video_info()
        obs.obs_get_video_info(video)
        x, y, scale = overlay_placement(video.base_width, video.base_height, size)
        position, factor = obs.vec2(), obs.vec2()
        position.x, position.y = x, y
        factor.x = factor.y = scale
        obs.obs_sceneitem_set_pos(item, position)
        obs.obs_sceneitem_set_scale(item, factor)
    obs.obs_source_release(scene_source)
    obs.obs_source_release(source)
    how = "Browser Source (transparent)" if kind == BROWSER_SOURCE else "Media Source (this OBS has no Browser Source)"
    return "added %r as a %s" % (SOURCE_NAME, how)


def _do_add_overlay() -> None:
    PANEL.notice = add_overlay()
    _log("facecast: " + PANEL.notice)


def _do_calibrate() -> None:
    _log("facecast: " + PANEL.calibrate())


def _do_emotion(preset: str) -> Callable[[], None]:
    def action() -> None:
        _log("facecast: " + PANEL.emotion(preset))
    return action


# ---- script API (called by OBS)

def script_description() -> str:
    return ("<b>facecast</b>: your portrait talks with your voice.<br>"
            "Pick a portrait and a microphone, press <b>Start</b>, then <b>Add facecast overlay</b>. "
            "Start/Stop, the overlay and emotions also have hotkeys (Settings &rarr; Hotkeys).")


def script_defaults(settings: Any) -> None:
    for key, value in default_settings().items():
        if isinstance(value, bool):
            obs.obs_data_set_default_bool(settings, key, value)
        elif isinstance(value, int):
            obs.obs_data_set_default_int(settings, key, value)
        elif isinstance(value, float):
            obs.obs_data_set_default_double(settings, key, value)
        else:
            obs.obs_data_set_default_string(settings, key, value)


def _button(callback: Callable[[], Any]) -> Callable[[Any, Any], bool]:
    """A properties-button callback: run `callback`, then redraw the panel (returning True) with fresh status."""
    def pressed(props: Any, prop: Any) -> bool:
        callback()
        _write_status()
        return True
    return pressed


def script_properties() -> Any:
    """The panel, built each time OBS shows it; microphones come from a cached background listing."""
    if PANEL.microphones is None:
        PANEL.list_microphones()
    _write_status()
    props = obs.obs_properties_create()
    info = getattr(obs, "OBS_TEXT_INFO", None)  # OBS 28+; older ones show a read-only text field
    status = obs.obs_properties_add_text(props, "status", "Status", obs.OBS_TEXT_DEFAULT if info is None else info)
    if info is None:
        obs.obs_property_set_enabled(status, False)
    obs.obs_properties_add_button(props, "start", "Start", _button(_do_start))
    obs.obs_properties_add_button(props, "stop", "Stop", _button(_do_stop))
    obs.obs_properties_add_button(props, "refresh_status", "Refresh status", _button(lambda: None))
    obs.obs_properties_add_button(props, "add_overlay", "Add facecast overlay to the current scene",
                                  _button(_do_add_overlay))

    obs.obs_properties_add_path(props, "portrait", "Portrait", obs.OBS_PATH_FILE,
                                "Pictures (*.png *.jpg *.jpeg *.webp *.bmp);;All files (*.*)", None)
    mics = obs.obs_properties_add_list(props, "microphone", "Microphone", obs.OBS_COMBO_TYPE_LIST,
                                       obs.OBS_COMBO_FORMAT_STRING)
    obs.obs_property_list_add_string(mics, "Default microphone", "")
    listed = PANEL.microphones or []
    for value, label in listed:
        obs.obs_property_list_add_string(mics, label, value)
    current = PANEL.settings.get("microphone") or ""
    if current and current not in [value for value, _ in listed]:
        obs.obs_property_list_add_string(mics, current + " (not found now)", current)
    if PANEL.microphones is None:
        obs.obs_property_set_long_description(mics, "Listing microphones... press Refresh microphones.")
    elif not listed:
        obs.obs_property_set_long_description(mics, "No microphone found" + (
            ": " + PANEL.microphone_error if PANEL.microphone_error else "") + ".")
    obs.obs_properties_add_button(props, "refresh_mics", "Refresh microphones and webcams",
                                  _button(PANEL.list_microphones))
    obs.obs_properties_add_path(props, "audio_file", "Audio file instead of the microphone (optional)",
                                obs.OBS_PATH_FILE, "Audio (*.wav *.flac *.mp3 *.ogg *.opus *.m4a);;All files (*.*)",
                                None)
    cameras = obs.obs_properties_add_list(props, "camera", "Webcam (head, eyes and expressions)",
                                          obs.OBS_COMBO_TYPE_LIST, obs.OBS_COMBO_FORMAT_STRING)
    obs.obs_property_list_add_string(cameras, "No webcam (the voice drives everything)", "")
    for value, label in PANEL.cameras:
        obs.obs_property_list_add_string(cameras, label, value)
    chosen = PANEL.settings.get("camera") or ""
    if chosen and chosen not in [value for value, _ in PANEL.cameras]:
        obs.obs_property_list_add_string(cameras, "camera " + chosen + " (not found now)", chosen)
    obs.obs_properties_add_button(props, "calibrate", "Calibrate webcam (look at it, eyes open)",
                                  _button(_do_calibrate))
    fps = obs.obs_properties_add_list(props, "fps", "Frames per second", obs.OBS_COMBO_TYPE_LIST,
                                      obs.OBS_COMBO_FORMAT_INT)
    for choice in FPS_CHOICES:
        obs.obs_property_list_add_int(fps, str(choice), choice)
    obs.obs_properties_add_int(props, "size", "Avatar size (pixels)", MIN_SIZE, MAX_SIZE, 32)
    framing = obs.obs_properties_add_list(props, "framing", "Framing", obs.OBS_COMBO_TYPE_LIST,
                                          obs.OBS_COMBO_FORMAT_STRING)
    for value, label in FRAMINGS:
        obs.obs_property_list_add_string(framing, label, value)
    latency = obs.obs_properties_add_list(props, "latency", "Latency", obs.OBS_COMBO_TYPE_LIST,
                                          obs.OBS_COMBO_FORMAT_STRING)
    for value, label in LATENCIES:
        obs.obs_property_list_add_string(latency, label, value)
    obs.obs_property_set_long_description(latency, "Lip sync hears ahead as a render does, so the lips follow "
                                                   "any voice much more closely; keep the microphone delay below on "
                                                   "so viewers hear the voice with them.")

    obs.obs_properties_add_bool(props, "sync_mic", "Delay the microphone to match the lips (sets its Sync Offset)")
    mic_sources = obs.obs_properties_add_list(props, "mic_source", "Delay this microphone", obs.OBS_COMBO_TYPE_EDITABLE,
                                              obs.OBS_COMBO_FORMAT_STRING)
    for name in [DEFAULT_MIC_SOURCE] + [n for n in audio_source_names() if n != DEFAULT_MIC_SOURCE]:
        obs.obs_property_list_add_string(mic_sources, name, name)
    obs.obs_property_set_long_description(mic_sources, "The OBS audio source of your voice: while facecast runs its "
                                                       "Sync Offset is the avatar's delay (shown in the status), "
                                                       "and goes back when facecast stops.")

    obs.obs_properties_add_bool(props, "out_overlay", "Overlay in OBS, background cut out (local server; also "
                                "status, emotions and changes while running)")
    obs.obs_properties_add_int(props, "port", "Overlay server port", 1024, 65535, 1)
    remote = obs.obs_properties_add_text(props, "remote_host", "facecast on another computer (address; empty: here)",
                                         obs.OBS_TEXT_DEFAULT)
    obs.obs_property_set_long_description(remote, "Two PCs: run `facecast live --ws --ws-host 0.0.0.0` on the gaming "
                                                  "PC and give its address and token here.")
    obs.obs_properties_add_text(props, "token", "Token of facecast on the other computer", obs.OBS_TEXT_PASSWORD)
    obs.obs_properties_add_bool(props, "out_vcam", "Virtual webcam")
    obs.obs_properties_add_bool(props, "out_vmc", "VMC protocol (VSeeFace, VNyan...)")
    obs.obs_properties_add_bool(props, "out_vrchat", "VRChat OSC")
    obs.obs_properties_add_bool(props, "out_vts", "VTube Studio")

    obs.obs_properties_add_float_slider(props, "mouth_intensity", "Mouth intensity (calm 0 - 1 - 2 lively)", 0.0,
                                        MAX_MOUTH_INTENSITY, 0.05)
    obs.obs_properties_add_float_slider(props, "head_intensity", "Head motion (still 0 - 1 - 2 lively)", 0.0,
                                        MAX_HEAD_INTENSITY, 0.05)
    obs.obs_properties_add_float_slider(props, "intensity", "Emotion intensity", 0.0, 1.0, 0.05)
    for preset in EMOTION_PRESETS:
        obs.obs_properties_add_button(props, "emotion_" + preset, "Emotion: " + preset, _button(_do_emotion(preset)))
    obs.obs_properties_add_path(props, "facecast_path", "facecast executable (empty: found on PATH)",
                                obs.OBS_PATH_FILE, "", None)
    return props


def script_update(settings: Any) -> None:
    global _obs_settings
    _obs_settings = settings
    # a running facecast follows a new portrait and the mouth and head sliders at once; the panel says what needs a
    # restart
    line = PANEL.apply_settings(_read_settings(settings))
    if line:
        _log("facecast: " + line)


def script_load(settings: Any) -> None:
    """Register the timer and hotkeys and list microphones; the daemon is NOT started here."""
    global _obs_settings, _left_delayed
    _obs_settings = settings
    _left_delayed = saved_microphone_delay(obs.obs_data_get_string(settings, MIC_TO_RESTORE))
    PANEL.settings = _read_settings(settings)
    PANEL.browser_source = obs.obs_source_get_display_name(BROWSER_SOURCE) is not None
    _write_status()
    actions = [("facecast.start", "facecast: Start", _do_start), ("facecast.stop", "facecast: Stop", _do_stop),
               ("facecast.add_overlay", "facecast: Add overlay to the current scene", _do_add_overlay)]
    actions += [("facecast.emotion." + p, "facecast: Emotion " + p, _do_emotion(p)) for p in EMOTION_PRESETS]
    for name, description, action in actions:
        hotkey = obs.obs_hotkey_register_frontend(name, description, _queue(action))
        _hotkeys[name] = hotkey
        saved = obs.obs_data_get_array(settings, "hotkey_" + name)
        obs.obs_hotkey_load(hotkey, saved)
        obs.obs_data_array_release(saved)
    obs.obs_frontend_add_event_callback(_on_event)
    obs.timer_add(_tick, TICK_MS)
    PANEL.list_microphones()


def script_save(settings: Any) -> None:
    """Persist the hotkey bindings with the script's other settings, and the microphone's own offset while facecast
    delays it (OBS has already written the delayed one with the source)."""
    delayed = _synced if _synced is not None else _left_delayed
    obs.obs_data_set_string(settings, MIC_TO_RESTORE, json.dumps(delayed) if delayed is not None else "")
    for name, hotkey in _hotkeys.items():
        saved = obs.obs_hotkey_save(hotkey)
        obs.obs_data_set_array(settings, "hotkey_" + name, saved)
        obs.obs_data_array_release(saved)


def _on_event(event: int) -> None:
    """OBS is closing (or unloading scripts): stop the daemon before OBS goes away."""
    if event in (getattr(obs, "OBS_FRONTEND_EVENT_EXIT", -1),
                 getattr(obs, "OBS_FRONTEND_EVENT_SCRIPTING_SHUTDOWN", -1)):
        PANEL.shutdown()
        _restore_microphone()


def script_unload() -> None:
    """Stop the daemon; OBS itself drops this script's timer, hotkeys and event callback."""
    obs.timer_remove(_tick)
    PANEL.shutdown()
    _restore_microphone()
    _hotkeys.clear()
