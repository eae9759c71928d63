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
                     are `facecast.controls.CONTROL_SCHEMA`). Each gets one one-line answer:
                     ``{"type": "ack"}`` or ``{"type": "error", "message": ...}``; a portrait
                     swap gets two, ``{"type": "accepted", "path"}`` at once, then
                     ``{"type": "swapped", "path"}`` or ``{"type": "error", "message", "path"}``
                     on the same connection. At most `CONTROL_RATE_PER_S` messages per second
                     per connection (burst `CONTROL_BURST`); more are answered with an error
                     without being read.
==================== =========================================================================

Security: a web page in the user's browser must not drive or read the daemon,
and nobody else on the network may either (`request_refusal`, `token_refusal`):

* ``Host`` must name this server: ``localhost``, the bind host or a loopback
  address (DNS rebinding: an attacker's name resolving to 127.0.0.1 keeps its
  own name in ``Host``). Bound beyond loopback, any IP address and local
  names (one label, ``.local``, ``.lan``, ``.home.arpa``, ``.internal``) also work.
* ``Origin``, when present, must be this server's own origin, and
  ``Sec-Fetch-Site``, when present, must be ``none`` (typed or bookmarked, as
  OBS's Browser Source opens the overlay) or ``same-origin`` (the overlay's
  own sockets): a foreign page can neither script the daemon nor embed
  ``/video.mjpeg`` or ``/status`` in an ``<img>``/``<script>``.
* Bound beyond loopback, every endpoint needs the token (`request_token`:
  ``?token=`` or an ``Authorization: Bearer`` / ``X-Facecast-Token`` header).
  Control commands always carry it. Tokens are compared in constant time; HTTP
  answers carry no ``Access-Control-*`` headers.

Input limits (`validate_control`): `MAX_MESSAGE_BYTES` before parsing (the
transport enforces it), nesting deeper than `MAX_JSON_DEPTH` rejected before
decoding, numbers longer than `MAX_NUMBER_CHARS` rejected while decoding, paths
checked by `facecast.controls`. Every refusal is one line.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import numpy as np

from facecast.bridges.frame_codec import MJPEG_BOUNDARY
from facecast.controls import ControlError, check_control
from facecast.motion import MotionFrame

__all__ = [
    "CONTROL_BURST", "CONTROL_RATE_PER_S", "DEFAULT_HOST", "DEFAULT_PORT", "MAX_JSON_DEPTH", "MAX_MESSAGE_BYTES",
    "MAX_NUMBER_CHARS", "PROTOCOL_VERSION", "RateLimiter", "ack_message", "error_message", "frame_latency_ms",
    "hello_message", "is_loopback_host", "motion_message", "one_line", "reply_message", "request_refusal",
    "request_token", "status_body", "status_report", "token_refusal", "validate_control",
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
#: Deepest JSON nesting a control message may have (the deepest command, an emotion offset, has 2).
MAX_JSON_DEPTH = 8
#: Longest number a control message may spell (digits, sign, point, exponent).
MAX_NUMBER_CHARS = 32
#: Control messages each connection may send per second, and how many may come at once.
CONTROL_RATE_PER_S = 20.0
CONTROL_BURST = 40
#: Longest reason an error answer carries.
MAX_REASON_CHARS = 300
_LOOPBACK_NAMES = frozenset({"localhost"})
#: Names a LAN machine may have that no attacker's public DNS can answer for (DNS rebinding needs one).
_LOCAL_SUFFIXES = (".local", ".lan", ".home.arpa", ".internal", ".localhost")
#: ``Sec-Fetch-Site`` values allowed: typed or bookmarked (OBS's Browser Source), or the overlay's own requests.
ALLOWED_FETCH_SITES = frozenset({"none", "same-origin"})

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


def is_loopback_host(host: str) -> bool:
    """Whether a bind address stays on this computer: ``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _allowed_host(name: str, bind_host: str, off_loopback: bool) -> bool:
    if name in _LOOPBACK_NAMES or name == bind_host.lower() or is_loopback_host(name):
        return True
    if not off_loopback:
        return False
    return _is_ip_literal(name) or "." not in name or name.endswith(_LOCAL_SUFFIXES)


def request_refusal(headers: HeaderLookup, bind_host: str = DEFAULT_HOST) -> str | None:
    """Why a request must be refused (one line), or None when it may be served.

    ``Host`` must be ``localhost``, `bind_host` or a loopback address; when the
    server is bound beyond loopback, also any IP address or a local name (see the
    module's Security notes); any other name means DNS rebinding. ``Origin``,
    when present, must be this server's own origin, ``http://<Host>``: the
    overlay page is served by the daemon itself, and non-browser clients send no
    ``Origin``. ``Sec-Fetch-Site``, when present, must be ``none`` or
    ``same-origin``: a foreign page embedding ``/video.mjpeg`` or ``/status``
    sends ``cross-site`` (or ``same-site``) and no ``Origin``.
    """
    hosts = headers.get_all("Host")
    if len(hosts) != 1:
        return "exactly one Host header required"
    name = _host_name(hosts[0].strip()).lower()
    if not name or not _allowed_host(name, bind_host, not is_loopback_host(bind_host)):
        return f"host {one_line(hosts[0], 80)!r} not allowed"
    origins = headers.get_all("Origin")
    if len(origins) > 1:
        return "more than one Origin header"
    if origins and origins[0].lower() != f"http://{hosts[0].strip().lower()}":
        return f"origin {one_line(origins[0], 80)!r} not allowed"
    sites = headers.get_all("Sec-Fetch-Site")
    if len(sites) > 1:
        return "more than one Sec-Fetch-Site header"
    if sites and sites[0].strip().lower() not in ALLOWED_FETCH_SITES:
        return f"cross-site request refused (Sec-Fetch-Site: {one_line(sites[0], 40)})"
    return None


def request_token(target: str, headers: HeaderLookup) -> str | None:
    """The token a request presents: ``?token=`` in its target, else an ``Authorization: Bearer`` or
    ``X-Facecast-Token`` header; None without one."""
    query = parse_qs(urlsplit(target).query, max_num_fields=20)
    if query.get("token"):
        return query["token"][0]
    for value in headers.get_all("Authorization"):
        scheme, _, credentials = value.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    given = headers.get_all("X-Facecast-Token")
    return given[0].strip() if given else None


def _same_token(given: object, token: str) -> bool:
    return isinstance(given, str) and secrets.compare_digest(given.encode(errors="surrogatepass"), token.encode())


def token_refusal(target: str, headers: HeaderLookup, token: str) -> str | None:
    """Why a request without the right token must be refused (servers bound beyond loopback), or None."""
    try:
        given = request_token(target, headers)
    except ValueError:  # more query fields than any real client sends
        return "malformed query"
    if given is None:
        return "this server needs its token: add ?token=... to the URL (see the daemon's log)"
    if not _same_token(given, token):
        return "wrong token"
    return None


# --------------------------------------------------------------------------- control messages in

#: A JSON string (to the end of the text if unterminated, so no input makes the scan restart) or a bracket.
_JSON_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.?)*"?|[\[\]{}]')


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text nests arrays/objects deeper than `limit` (brackets inside strings do not count).

    Runs before decoding, so a message nested 20,000 deep costs one scan, not a RecursionError.
    """
    depth = 0
    for match in _JSON_STRUCTURE.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return True
        elif token in "]}":
            depth -= 1
    return False


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise ControlError(f"numbers may have at most {MAX_NUMBER_CHARS} characters")
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise ControlError(f"numbers may have at most {MAX_NUMBER_CHARS} characters")
    return float(text)


def _no_constant(text: str) -> float:
    raise ControlError(f"{text} is not a number JSON allows")


def parse_json_limited(raw: str) -> Any:
    """`json.loads` with facecast's limits: nesting (checked first), number length and no NaN/Infinity;
    ControlError (one line) for anything it refuses or cannot parse."""
    if json_too_deep(raw):
        raise ControlError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw, parse_int=_bounded_int, parse_float=_bounded_float, parse_constant=_no_constant)
    except ControlError:
        raise
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise ControlError("not valid JSON") from None


def validate_control(raw: str | bytes, token: str) -> dict[str, Any]:
    """Parse and check one ``/control`` message; returns the command without its token, raises ControlError.

    The size limit applies before this (the transport's); nesting and number
    length are limited before and while decoding; the token is checked before
    anything else in the message, so a client without it learns nothing about
    the commands.
    """
    if not isinstance(raw, str):
        raise ControlError("control messages are JSON text, not binary")
    message = parse_json_limited(raw)
    if not isinstance(message, dict):
        raise ControlError("a control message must be a JSON object")
    if not _same_token(message.pop("token", None), token):
        raise ControlError("missing or wrong token")
    return check_control(message)


class RateLimiter:
    """A token bucket: `allow()` is True for at most `rate` calls per second on average, `burst` at once."""

    def __init__(self, rate: float = CONTROL_RATE_PER_S, burst: int = CONTROL_BURST) -> None:
        self.rate, self.burst = float(rate), float(burst)
        self._tokens = self.burst
        self._last: float | None = None

    def allow(self, now: float) -> bool:
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def one_line(text: object, limit: int = MAX_REASON_CHARS) -> str:
    """`text` as one printable line of at most `limit` characters (control characters become spaces)."""
    line = "".join(" " if (ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF) else c for c in str(text))
    line = " ".join(line.split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def reply_message(kind: str, **fields: Any) -> str:
    """One control answer: ``{"type": kind, ...}``, text fields made one line."""
    clean = {name: one_line(value) if isinstance(value, str) else value for name, value in fields.items()}
    return json.dumps({"type": kind, **clean})


def ack_message() -> str:
    """The answer to an accepted control command."""
    return reply_message("ack")


def error_message(reason: str, **fields: Any) -> str:
    """The answer to a refused control command (one line, whatever the reason held)."""
    return reply_message("error", message=reason, **fields)


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
                  last_error: str | None, provided: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``GET /status`` object.

    The server measures ``fps`` and ``latency_ms`` over its recent frames,
    counts ``frames`` itself, and reports its own counters (`websocket`, with
    per-kind ``clients``) under ``outputs``. The daemon's report (`provided`)
    replaces the top-level keys it has; ``outputs`` are merged output by output,
    so an output's own counters and the daemon's counters of it both show.
    """
    status: dict[str, Any] = {
        "fps": fps,
        "latency_ms": {"p50": _percentile(latencies_ms, 50), "p95": _percentile(latencies_ms, 95)},
        "frames": frames, "repeated": 0, "inputs": {}, "outputs": {"websocket": dict(websocket)},
        "clients": sum(websocket["clients"].values()), "last_error": last_error,
    }
    if provided is not None:
        extra = dict(provided)
        outputs: dict[str, Any] = dict(status["outputs"])
        given = extra.pop("outputs", None)
        for name, entry in (given.items() if isinstance(given, Mapping) else ()):
            mine = outputs.get(name)
            outputs[name] = {**mine, **entry} if isinstance(mine, dict) and isinstance(entry, Mapping) else entry
        if extra.get("last_error") is None and last_error is not None:
            extra["last_error"] = last_error  # the server's own current trouble, when the daemon has none
        status.update(extra, outputs=outputs)
    return status


def status_body(status: dict[str, Any]) -> bytes:
    """`status_report` as the HTTP body; an odd value from the daemon's report must not fail the answer."""
    return json.dumps(status, separators=(",", ":"), default=str).encode()
