"""facecast's own local server, the pure half: endpoints, who may connect, and every message it sends.

No sockets, no threads, no asyncio: `facecast.bridges.ws_server` serves these.
One port (`DEFAULT_PORT`, bound to 127.0.0.1 unless configured) serves:

==================== =========================================================================
``GET /``, ``/overlay`` the overlay page (``overlay/overlay.html`` + ``overlay.js``): paints only
                     the avatar, on a transparent page, for OBS's Browser Source. Query
                     parameters ``x``, ``y``, ``width``, ``height`` (CSS px) place the avatar
                     box; by default it fills the window, aspect preserved.
``ws /frames``       binary frames: header + WebP with alpha (format in
                     `facecast.bridges.frame_codec`), encoded once per frame for all clients and
                     only while at least one client is connected.
``ws /motion``       JSON: first `hello_message` ``{"type": "hello", "version": 1, "fps", "size"}``
                     (``size``: ``[width, height]`` of the frames, null before the first image),
                     then per frame `motion_message` ``{"type": "motion", "version": 1,
                     "frame": MotionFrame.to_dict(), "latency_ms"}`` (mic-to-frame latency, null
                     without a capture time).
``GET /video.mjpeg`` ``multipart/x-mixed-replace`` JPEG stream (alpha over the background
                     colour) for OBS's Media Source, ffmpeg, VLC.
``GET /status``      one JSON health object (`status_report`).
``ws /control``      JSON commands that need the run's token (`validate_control`; the commands
                     are `facecast.controls.CONTROL_SCHEMA`); each gets ``{"type": "ack"}`` or
                     ``{"type": "error", "message": ...}``.
==================== =========================================================================

Security: a web page in the user's browser must not drive or read the daemon.
Every request whose ``Origin`` header is present but not this server's own
origin is refused (403), and so is every request whose ``Host`` is a DNS name
other than ``localhost`` or the configured bind host (DNS rebinding: an
attacker's name resolving to 127.0.0.1 keeps its own name in ``Host``); see
`request_refusal`. HTTP answers carry no ``Access-Control-*`` headers, and
control commands need the token, compared in constant time.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from facecast.bridges.frame_codec import MJPEG_BOUNDARY
from facecast.controls import ControlError, check_control
from facecast.motion import MotionFrame

__all__ = [
    "DEFAULT_HOST", "DEFAULT_PORT", "MAX_MESSAGE_BYTES", "PROTOCOL_VERSION", "ack_message", "error_message",
    "frame_latency_ms", "hello_message", "motion_message", "request_refusal", "status_body", "status_report",
    "validate_control",
]

DEFAULT_HOST = "127.0.0.1"
#: facecast's fixed default port (unassigned by IANA; VMC uses 39539/39540 nearby).
DEFAULT_PORT = 39650
PROTOCOL_VERSION = 1

OVERLAY_PATHS = ("/", "/overlay")
SCRIPT_PATH = "/overlay.js"
FRAMES_PATH = "/frames"
MOTION_PATH = "/motion"
CONTROL_PATH = "/control"
MJPEG_PATH = "/video.mjpeg"
STATUS_PATH = "/status"
WEBSOCKET_PATHS = frozenset({FRAMES_PATH, MOTION_PATH, CONTROL_PATH})

#: Largest message a client may send; control commands are tiny, nothing else is read.
MAX_MESSAGE_BYTES = 64 * 1024
_LOOPBACK_NAMES = frozenset({"localhost"})

#: The overlay may talk to this server only; no plugins, forms, or framing by other pages.
PAGE_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
                                "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
)
#: The head of the ``/video.mjpeg`` answer; `facecast.bridges.frame_codec.mjpeg_part` makes each part after it.
MJPEG_HEAD = (
    "HTTP/1.1 200 OK\r\n"
    f"Content-Type: multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}\r\n"
    "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"
).encode("ascii")


# --------------------------------------------------------------------------- who may connect

class HeaderLookup(Protocol):
    """Request headers with repeated names kept (websockets' ``Headers``)."""

    def get_all(self, key: str) -> list[str]: ...


def _host_name(host_header: str) -> str:
    """The name part of a ``Host`` header: ``[::1]:80`` -> ``::1``, ``localhost:1`` -> ``localhost``."""
    if host_header.startswith("["):
        return host_header[1:host_header.find("]")] if "]" in host_header else ""
    return host_header.rsplit(":", 1)[0] if ":" in host_header else host_header


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def request_refusal(headers: HeaderLookup, bind_host: str = DEFAULT_HOST) -> str | None:
    """Why a request must be refused (one line), or None when it may be served.

    ``Host`` must be an IP literal (a browser only sends one when it connected
    to that very address), ``localhost`` or `bind_host`; any other name means
    DNS rebinding. ``Origin``, when present, must be this server's own origin,
    ``http://<Host>``: the overlay page is served by the daemon itself, and
    non-browser clients send no ``Origin``.
    """
    hosts = headers.get_all("Host")
    if len(hosts) != 1:
        return "exactly one Host header required"
    name = _host_name(hosts[0].strip()).lower()
    if not name or not (name in _LOOPBACK_NAMES or name == bind_host.lower() or _is_ip_literal(name)):
        return f"host {hosts[0]!r} not allowed"
    origins = headers.get_all("Origin")
    if len(origins) > 1:
        return "more than one Origin header"
    if origins and origins[0].lower() != f"http://{hosts[0].strip().lower()}":
        return f"origin {origins[0]!r} not allowed"
    return None


# --------------------------------------------------------------------------- control messages in

def validate_control(raw: str | bytes, token: str) -> dict[str, Any]:
    """Parse and check one ``/control`` message; returns the command without its token, raises ControlError.

    The token is checked before anything else, so a client without it learns
    nothing about the commands.
    """
    if not isinstance(raw, str):
        raise ControlError("control messages are JSON text, not binary")
    try:
        message = json.loads(raw)
    except json.JSONDecodeError:
        raise ControlError("not valid JSON") from None
    if not isinstance(message, dict):
        raise ControlError("a control message must be a JSON object")
    given = message.pop("token", None)
    if not isinstance(given, str) or not secrets.compare_digest(given.encode(errors="surrogatepass"),
                                                                token.encode()):
        raise ControlError("missing or wrong token")
    return check_control(message)


def ack_message() -> str:
    """The answer to an accepted control command."""
    return json.dumps({"type": "ack"})


def error_message(reason: str) -> str:
    """The answer to a refused control command."""
    return json.dumps({"type": "error", "message": reason})


# --------------------------------------------------------------------------- motion and health out

def frame_latency_ms(frame: MotionFrame, now: float) -> float | None:
    """Mic-to-frame latency at `now` (the daemon's monotonic clock), or None without a capture time."""
    return None if frame.capture_time is None else round((now - frame.capture_time) * 1000.0, 1)


def hello_message(fps: float, size: Sequence[int] | None) -> str:
    """The first ``/motion`` message: the current frame rate and ``[width, height]`` of the frames (or None)."""
    return json.dumps({"type": "hello", "version": PROTOCOL_VERSION, "fps": fps,
                       "size": None if size is None else list(size)})


def motion_message(frame: MotionFrame, latency_ms: float | None) -> str:
    """One ``/motion`` message."""
    return json.dumps({"type": "motion", "version": PROTOCOL_VERSION, "frame": frame.to_dict(),
                       "latency_ms": latency_ms}, separators=(",", ":"))


def _percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def status_report(fps: float, latencies_ms: Sequence[float], frames: int, websocket: dict[str, Any],
                  last_error: str | None, provided: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``GET /status`` object.

    The server measures ``fps``, ``latency_ms`` and ``frames`` itself and
    reports its own counters (`websocket`, with per-kind ``clients``) under
    ``outputs``. The daemon's report (`provided`) replaces those keys, except
    ``outputs``, which is merged with the server's ``websocket`` entry.
    """
    status: dict[str, Any] = {
        "fps": fps,
        "latency_ms": {"p50": _percentile(latencies_ms, 50), "p95": _percentile(latencies_ms, 95)},
        "frames": frames, "repeated": 0, "inputs": {}, "outputs": {"websocket": websocket},
        "clients": sum(websocket["clients"].values()), "last_error": last_error,
    }
    if provided is not None:
        extra = dict(provided)
        outputs = {**status["outputs"], **extra.pop("outputs", {})}
        status.update(extra, outputs=outputs)
    return status


def status_body(status: dict[str, Any]) -> bytes:
    """`status_report` as the HTTP body; an odd value from the daemon's report must not fail the answer."""
    return json.dumps(status, separators=(",", ":"), default=str).encode()
