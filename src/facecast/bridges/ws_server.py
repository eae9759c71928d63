"""facecast's own local server, the transport: the OBS browser overlay, motion and frame streams, MJPEG,
health and control over one port (endpoints, access policy and messages: `facecast.bridges.ws_protocol`).

`WsServer` is an `Output`: the frame loop calls `WsServer.send` and never waits
for a client. Every client has a latest-frame-wins slot and its own sender
task, so a slow client only skips frames. Control answers go through a small
queue per connection, so a command's later answer (a portrait swap's
``swapped``) always follows its first (``accepted``). websockets answers plain HTTP with
one complete response, so ``/video.mjpeg`` is served by `_Connection`, which
takes over the TCP connection after the request was read (websockets'
``create_connection`` hook) and applies the opening-handshake timeout itself.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import inspect
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from email.utils import formatdate
from http import HTTPStatus
from importlib.resources import files
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from facecast.bridges.frame_codec import as_rgb_background, check_image, encode_frame, encode_jpeg, mjpeg_part
from facecast.bridges.ws_protocol import (
    CONTROL_BURST,
    CONTROL_PATH,
    CONTROL_RATE_PER_S,
    DEFAULT_HOST,
    DEFAULT_PORT,
    FRAMES_PATH,
    MAX_MESSAGE_BYTES,
    MJPEG_HEAD,
    MJPEG_PATH,
    MOTION_PATH,
    OVERLAY_PATHS,
    PAGE_HEADERS,
    SCRIPT_PATH,
    STATUS_PATH,
    WEBSOCKET_PATHS,
    RateLimiter,
    ack_message,
    error_message,
    frame_latency_ms,
    hello_message,
    is_loopback_host,
    motion_message,
    one_line,
    reply_message,
    request_refusal,
    status_body,
    status_report,
    token_refusal,
    validate_control,
)
from facecast.log_throttle import LogThrottle
from facecast.motion import MotionFrame

__all__ = ["ServerStartError", "WsServer"]

log = logging.getLogger("facecast.bridges.ws_server")

#: Time a client has to send its request (and finish the WebSocket handshake).
OPEN_TIMEOUT_S = 10.0
#: Stop must not wait long for clients that do not answer the closing handshake.
CLOSE_TIMEOUT_S = 1.0
#: An MJPEG client with this much unsent data skips frames until it catches up.
MJPEG_BACKLOG_BYTES = 256 * 1024
#: `start` gives up when the server thread has not bound its socket by then.
START_TIMEOUT_S = 10.0
#: Window over which `/status` and the hello measure the frame rate.
FPS_WINDOW_S = 2.0
#: Latencies kept for the `/status` percentiles (10 s at 30 fps).
LATENCY_SAMPLES = 300
#: Control answers a connection may have waiting; a client that stops reading them is not answered further.
REPLY_QUEUE = 64

#: What `on_control` gets: the checked command and `reply`, which sends a later answer (a dict with a
#: ``type``) on the same connection from any thread. It returns the first answer (None: ``ack``) or raises
#: ValueError to refuse the command with its message.
Reply = Callable[[dict[str, Any]], None]
ControlHandler = Callable[[dict[str, Any], Reply], "dict[str, Any] | None"]


class ServerStartError(OSError):
    """The server could not listen (port in use, address not available...); its str() is one line."""

    def __str__(self) -> str:
        return str(self.strerror)


def _with_reply(handler: Callable[..., Any] | None) -> ControlHandler | None:
    """`handler` as a `ControlHandler`: one that takes only the command (``list.append``) gets no ``reply``."""
    if handler is None:
        return None
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):  # no signature to read: assume the two-argument form
        return handler
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return handler
    return lambda command, reply: handler(command)


def _reply_text(message: dict[str, Any]) -> str:
    """A control answer from the daemon (a dict with a ``type``) as one line of JSON."""
    fields = dict(message)
    return reply_message(str(fields.pop("type", "ack")), **fields)


def _http_response(status: HTTPStatus, content_type: str, body: bytes,
                   extra: tuple[tuple[str, str], ...] = ()) -> Response:
    headers = Headers([
        ("Date", formatdate(usegmt=True)), ("Connection", "close"), ("Content-Length", str(len(body))),
        ("Content-Type", content_type), ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"), *extra,
    ])
    return Response(status.value, status.phrase, headers, body)


def _text_response(status: HTTPStatus, text: str) -> Response:
    return _http_response(status, "text/plain; charset=utf-8", f"{text}\n".encode())


class _Slot:
    """One client's mailbox: the producer overwrites the unsent message, the sender takes the newest."""

    def __init__(self) -> None:
        self._message: bytes | str | None = None
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, message: bytes | str) -> bool:
        """Make `message` the next one to send; True when it replaced one the client never got."""
        replaced = self._message is not None
        self._message = message
        self._ready.set()
        return replaced

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def take(self) -> bytes | str | None:
        """The newest message once there is one; None after `close`."""
        await self._ready.wait()
        self._ready.clear()
        if self._closed:
            return None
        message, self._message = self._message, None
        return message


class _Latest(NamedTuple):
    seq: int
    motion: str
    image: np.ndarray | None
    t: float
    capture_time: float | None


def _encode(latest: _Latest, webp: bool, jpeg: bool, background: tuple[int, int, int],
            jpeg_size: tuple[int, int] | None = None) -> tuple[bytes | None, bytes | None, float]:
    """The ``/frames`` message and/or the MJPEG part of one frame (at `jpeg_size`), and the seconds that took."""
    assert latest.image is not None
    begin = time.perf_counter()
    webp_bytes = encode_frame(latest.image, latest.seq, latest.t, latest.capture_time) if webp else None
    jpeg_bytes = mjpeg_part(encode_jpeg(latest.image, background, size=jpeg_size)) if jpeg else None
    return webp_bytes, jpeg_bytes, time.perf_counter() - begin


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Connection(ServerConnection):
    """A websockets connection that can also answer ``GET /video.mjpeg`` with an endless stream.

    websockets sends plain HTTP answers as one complete response and then
    half-closes, so the stream has to start before websockets answers: right
    after the request was read. The server runs with ``open_timeout=None``;
    this class applies `OPEN_TIMEOUT_S` to the real handshake instead, so a
    stream is not cut after 10 s.
    """

    def __init__(self, app: WsServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._app = app

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        stopping = self._app._stopping
        assert stopping is not None
        # Browsers open spare connections that may never carry a request: do not let them delay a stop.
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            await asyncio.wait([self.request_rcvd, self.connection_lost_waiter, stopping],
                               return_when=asyncio.FIRST_COMPLETED)
        request = self.request
        if request is None or stopping.done():
            return  # websockets drops a connection whose handshake did not complete
        if urlsplit(request.path).path == MJPEG_PATH and self._app._refusal(request, count=False) is None:
            await self._app._stream_mjpeg(self)
            return
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            await super().handshake(*args, **kwargs)


class WsServer:
    """The local WebSocket + HTTP server (endpoints: `facecast.bridges.ws_protocol`), an `Output`.

    Runs its own asyncio loop in a daemon thread (`start`). `send`, `set_status_provider`,
    `counters` and `stop` (`close`) may be called from any thread; `send` never blocks
    on the network. `on_control` (a `ControlHandler`; one taking only the command
    works too) and the status provider are called on the server's thread: keep them short and thread-safe (e.g. hand
    slow work to a worker that answers later through ``reply``). `on_control` may
    raise ValueError to refuse a command; its message goes back to the client.
    Any other exception becomes one ``internal error`` answer and one log line.

    Bound beyond loopback (`require_token`, by default whenever `host` is not a
    loopback address), every endpoint needs `token` and a warning is logged at start.
    """

    name = "websocket"
    needs_image = True

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: str | None = None,
                 on_control: ControlHandler | None = None,
                 background: tuple[int, int, int] = (0, 0, 0), require_token: bool | None = None,
                 control_rate: float = CONTROL_RATE_PER_S, control_burst: int = CONTROL_BURST) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0-65535, got {port}")
        if token is not None and not token:
            raise ValueError("the control token must not be empty")
        self.host = host
        self.port = port
        #: Control clients must send this (and, off loopback, every client); generated per run unless given.
        self.token = token or secrets.token_urlsafe(24)
        #: Every endpoint needs the token (default: when bound beyond loopback).
        self.require_token = (not is_loopback_host(host)) if require_token is None else bool(require_token)
        self.background = as_rgb_background(background)
        self._on_control = _with_reply(on_control)
        self._control_rate, self._control_burst = control_rate, control_burst
        self._status_provider: Callable[[], dict[str, Any]] | None = None
        overlay = files("facecast.bridges") / "overlay"
        html = (overlay / "overlay.html").read_bytes()
        if self.require_token:  # the page's script must present the token too
            html = html.replace(b'src="overlay.js"',
                                f'src="overlay.js?token={quote(self.token, safe="")}"'.encode("ascii"))
        page = ("text/html; charset=utf-8", html)
        self._pages = {**dict.fromkeys(OVERLAY_PATHS, page),
                       SCRIPT_PATH: ("text/javascript; charset=utf-8", (overlay / "overlay.js").read_bytes())}
        self._lock = threading.Lock()
        self._latest: _Latest | None = None
        #: (width, height) of the largest picture sent: the MJPEG stream keeps it (OBS's Media Source would resize
        #: the scene item with the stream), while the overlay page scales smaller pictures up itself.
        self._video_size: tuple[int, int] | None = None
        self._submitted = 0
        self._submit_times: deque[float] = deque()
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._counters = dict.fromkeys(("motion_sent", "frames_sent", "mjpeg_sent", "dropped", "encoded",
                                        "control_ok", "control_refused", "control_limited", "replies_dropped",
                                        "http_refused", "token_refused"), 0)
        self._encode_ms: float | None = None
        self._failures: dict[str, str] = {}  # what fails now -> its message
        #: refused control messages are a client's fault, logged but at most a line every few seconds
        self._refusals = LogThrottle(log)
        # Event-loop state; touched only on the server thread once it runs.
        self._motion_clients: set[_Slot] = set()
        self._frame_clients: set[_Slot] = set()
        self._mjpeg_clients: set[_Slot] = set()
        self._control_clients = 0
        self._published = 0
        self._webp: tuple[int, bytes] | None = None
        self._jpeg: tuple[int, bytes] | None = None
        self._encode_wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Future[None] | None = None
        self._stop_requested = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_error: OSError | None = None

    # ---- called from any thread

    @property
    def url(self) -> str:
        """The base HTTP URL, e.g. ``http://127.0.0.1:39650`` (the overlay page lives at ``/``)."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else "::1" if self.host == "::" else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def overlay_url(self) -> str:
        """The overlay page's URL for OBS's Browser Source, with the token when the server needs it."""
        return f"{self.url}/overlay" + (f"?token={quote(self.token, safe='')}" if self.require_token else "")

    @property
    def counters(self) -> dict[str, Any]:
        """Totals since start: frames submitted, messages sent and dropped, clients connected now."""
        return {
            "submitted": self._submitted, **self._counters, "encode_ms": self._encode_ms,
            "clients": {"motion": len(self._motion_clients), "frames": len(self._frame_clients),
                        "mjpeg": len(self._mjpeg_clients), "control": self._control_clients},
        }

    def set_status_provider(self, provider: Callable[[], dict[str, Any]] | None) -> None:
        """Let the daemon fill ``GET /status``.

        The server measures ``fps``, ``latency_ms`` (from `MotionFrame.capture_time`),
        ``frames`` and ``clients`` itself; the provider's keys replace those,
        except ``outputs``, which are merged entry by entry (the server's own
        ``websocket`` counters and the daemon's counters of it both show).
        """
        self._status_provider = provider

    @property
    def wants_image(self) -> bool:
        """Whether a picture would be read now: a client on ``/frames`` or ``/video.mjpeg`` (without one, the
        daemon need not render or watermark frames for this server; `/motion` and `/status` need none)."""
        return bool(self._frame_clients or self._mjpeg_clients)

    def send(self, frame: MotionFrame, image: np.ndarray | None = None) -> None:
        """Publish one frame (and its RGB/RGBA uint8 image) to every client; never blocks.

        The image is copied, so the caller may reuse its buffer at once; an
        image of another shape or type raises ValueError.
        """
        now = time.monotonic()
        latency = frame_latency_ms(frame, now)
        motion = motion_message(frame, latency)
        if image is not None:
            check_image(image)
            image = np.array(image, copy=True)
            if self._video_size is None or image.shape[1] * image.shape[0] > self._video_size[0] * self._video_size[1]:
                self._video_size = (image.shape[1], image.shape[0])
        with self._lock:
            self._submitted += 1
            self._latest = _Latest(self._submitted, motion, image, frame.t, frame.capture_time)
            self._submit_times.append(now)
            while now - self._submit_times[0] > FPS_WINDOW_S:
                self._submit_times.popleft()
            if latency is not None:
                self._latencies.append(latency)
        loop = self._loop
        if loop is not None:
            with suppress(RuntimeError):  # the loop closed after the check: the server is stopping
                loop.call_soon_threadsafe(self._publish)

    def start(self) -> None:
        """Listen and serve in a background thread; raises ServerStartError (an OSError) if it cannot listen."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the server is already running")
        self._stop_requested.clear()
        self._start_error = None
        started = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(started),),
                                        name="facecast-ws-server", daemon=True)
        self._thread.start()
        if not started.wait(START_TIMEOUT_S):
            self.stop()
            raise ServerStartError(errno.ETIMEDOUT, f"the server on {self.host}:{self.port} did not start")
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection and the port; waits up to `timeout` s for the server thread."""
        self._stop_requested.set()
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with suppress(RuntimeError):  # already closed
                loop.call_soon_threadsafe(_resolve, stopping)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._refusals.close()   # the refusals still held back, counted

    def close(self) -> None:
        """`stop`: close every connection and the port."""
        self.stop()

    # ---- the server thread

    async def _main(self, started: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = self._loop.create_future()
        self._encode_wake = asyncio.Event()
        try:
            server = await serve(
                self._handle, self.host, self.port, process_request=self._process_request,
                create_connection=functools.partial(_Connection, self), compression=None,
                max_size=MAX_MESSAGE_BYTES, open_timeout=None, close_timeout=CLOSE_TIMEOUT_S, server_header=None,
            )
        except OSError as exc:
            self._loop = None
            self._start_error = self._bind_error(exc)
            started.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facecast-ws-encode")
        encoder = asyncio.create_task(self._encode_loop(executor))
        log.info("serving the overlay at %s/ (motion, frames, control, video.mjpeg, status)", self.url)
        if not is_loopback_host(self.host):
            log.warning("listening on %s beyond this computer: anyone on the network can connect, so every "
                        "endpoint needs the token (?token=... or an Authorization: Bearer header)%s", self.host,
                        "" if self.require_token else " -- except that require_token is off: NOTHING is protected")
        started.set()
        try:
            if not self._stop_requested.is_set():
                await self._stopping
        finally:
            self._loop = None
            _resolve(self._stopping)
            for slot in self._mjpeg_clients:
                slot.close()
            server.close()
            await server.wait_closed()
            encoder.cancel()
            executor.shutdown(wait=False, cancel_futures=True)

    def _bind_error(self, exc: OSError) -> ServerStartError:
        where = f"{self.host}:{self.port}"
        if exc.errno == errno.EADDRINUSE:
            message = (f"port {self.port} is already in use on {self.host} (another facecast running?); "
                       "choose another port")
        elif exc.errno == errno.EADDRNOTAVAIL:
            message = f"cannot listen on {where}: the address is not on this machine"
        elif exc.errno == errno.EACCES:
            message = f"cannot listen on {where}: permission denied (ports below 1024 need privileges)"
        else:
            message = f"cannot listen on {where}: {exc.strerror or exc}"
        return ServerStartError(exc.errno, message)

    def _fail_once(self, key: str, message: str, *args: Any) -> None:
        """Log a failure once until `_recovered(key)`; it is ``/status``'s ``last_error`` meanwhile."""
        text = one_line(message % args)
        if key not in self._failures:
            log.warning("%s", text)
        self._failures[key] = text

    def _recovered(self, key: str) -> None:
        if self._failures.pop(key, None) is not None:
            log.info("%s works again", key)

    @property
    def _last_error(self) -> str | None:
        return next(reversed(self._failures.values()), None)

    def _publish(self) -> None:
        latest = self._latest
        if latest is None or latest.seq == self._published:
            return
        self._published = latest.seq
        for slot in self._motion_clients:
            self._counters["dropped"] += slot.put(latest.motion)
        if latest.image is not None and (self._frame_clients or self._mjpeg_clients):
            assert self._encode_wake is not None
            self._encode_wake.set()

    async def _encode_loop(self, executor: ThreadPoolExecutor) -> None:
        """Encode the newest image once for all clients, off the event loop; skips frames that came meanwhile."""
        assert self._encode_wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._encode_wake.wait()
            self._encode_wake.clear()
            latest = self._latest
            if latest is None or latest.image is None:
                continue
            webp = bool(self._frame_clients) and (self._webp is None or self._webp[0] != latest.seq)
            jpeg = bool(self._mjpeg_clients) and (self._jpeg is None or self._jpeg[0] != latest.seq)
            if not (webp or jpeg):
                continue
            try:
                webp_bytes, jpeg_bytes, seconds = await loop.run_in_executor(
                    executor, _encode, latest, webp, jpeg, self.background, self._video_size)
            except Exception as exc:  # an encoder bug must not end the streams
                self._fail_once("frame encoding", "cannot encode frames for the overlay: %s", exc)
                continue
            self._recovered("frame encoding")
            self._encode_ms = round(seconds * 1000.0, 2)
            self._counters["encoded"] += 1
            if webp_bytes is not None:
                self._webp = (latest.seq, webp_bytes)
                for slot in self._frame_clients:
                    self._counters["dropped"] += slot.put(webp_bytes)
            if jpeg_bytes is not None:
                self._jpeg = (latest.seq, jpeg_bytes)
                for slot in self._mjpeg_clients:
                    self._counters["dropped"] += slot.put(jpeg_bytes)

    def _offer_latest(self, slot: _Slot, cache: tuple[int, bytes] | None) -> None:
        """Give a new client the current frame at once: the cached encoding, or ask the encoder for one."""
        latest = self._latest
        if latest is None or latest.image is None:
            return
        if cache is not None and cache[0] == latest.seq:
            slot.put(cache[1])
        else:
            assert self._encode_wake is not None
            self._encode_wake.set()

    def _fps(self) -> float:
        """Frames submitted per second over the last `FPS_WINDOW_S` (0 when the frame loop stalls)."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._submit_times if now - t <= FPS_WINDOW_S]
        return round((len(recent) - 1) / (now - recent[0]), 1) if len(recent) >= 2 else 0.0

    def _status(self) -> dict[str, Any]:
        with self._lock:
            latencies = list(self._latencies)
            frames = self._submitted
        fps, websocket = self._fps(), {"url": self.url, **self.counters}
        provided = None
        provider = self._status_provider
        if provider is not None:
            try:
                provided = dict(provider())
            except Exception as exc:  # the health endpoint must answer anyway
                self._fail_once("status provider", "the status provider failed: %s", exc)
            else:
                self._recovered("status provider")
        return status_report(fps, latencies, frames, websocket, self._last_error, provided)

    def _refusal(self, request: Request, count: bool = True) -> Response | None:
        """The answer refusing this request (foreign origin, host or site; no token where one is needed), or None.

        `count`: record the refusal (False for a first look that `_process_request` repeats)."""
        refusal = request_refusal(request.headers, self.host)
        if refusal is not None:
            if count:
                self._counters["http_refused"] += 1
                log.debug("refused %s: %s", one_line(request.path, 80).split("?")[0], refusal)
            return _text_response(HTTPStatus.FORBIDDEN, refusal)
        if self.require_token:
            refusal = token_refusal(request.path, request.headers, self.token)
            if refusal is not None:
                if count:
                    self._counters["token_refused"] += 1
                    log.debug("refused %s: %s", one_line(request.path, 80).split("?")[0], refusal)
                return _text_response(HTTPStatus.UNAUTHORIZED, refusal)
        return None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse foreign origins, hosts and sites (and, off loopback, requests without the token); answer
        the plain HTTP endpoints; let WebSocket upgrades through. Never raises: a failure is one 500 line."""
        try:
            return self._answer(request)
        except Exception as exc:  # a bug must not become websockets' multi-line "opening handshake failed"
            log.error("cannot answer %s: %s", one_line(request.path, 80).split("?")[0],
                      one_line(f"{type(exc).__name__}: {exc}"))
            log.debug("details", exc_info=True)
            return _text_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    def _answer(self, request: Request) -> Response | None:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        path = urlsplit(request.path).path
        if path in WEBSOCKET_PATHS:
            return None
        if path in self._pages:
            content_type, body = self._pages[path]
            return _http_response(HTTPStatus.OK, content_type, body, PAGE_HEADERS)
        if path == STATUS_PATH:
            return _http_response(HTTPStatus.OK, "application/json", status_body(self._status()))
        return _text_response(HTTPStatus.NOT_FOUND, f"no such endpoint: {path}")

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # the handshake is done
        path = urlsplit(ws.request.path).path
        if path == CONTROL_PATH:
            await self._serve_control(ws)
        elif path == MOTION_PATH:
            await self._serve_motion(ws)
        elif path == FRAMES_PATH:
            await self._serve_stream(ws, self._frame_clients, "frames_sent",
                                     lambda slot: self._offer_latest(slot, self._webp))

    async def _serve_motion(self, ws: ServerConnection) -> None:
        latest = self._latest
        size = None if latest is None or latest.image is None else [latest.image.shape[1], latest.image.shape[0]]
        try:
            await ws.send(hello_message(self._fps(), size))
        except ConnectionClosed:
            return
        await self._serve_stream(ws, self._motion_clients, "motion_sent")

    async def _serve_stream(self, ws: ServerConnection, clients: set[_Slot], counter: str,
                            greet: Callable[[_Slot], None] | None = None) -> None:
        """Send a client the newest message whenever there is one; ignore what it sends until it leaves."""
        slot = _Slot()
        clients.add(slot)
        if greet is not None:
            greet(slot)
        sender = asyncio.create_task(self._send_loop(ws, slot, counter))
        try:
            async for _ in ws:  # reading keeps close frames and pings flowing
                pass
        except ConnectionClosed:
            pass
        finally:
            clients.discard(slot)
            sender.cancel()

    async def _send_loop(self, ws: ServerConnection, slot: _Slot, counter: str) -> None:
        try:
            while (message := await slot.take()) is not None:
                await ws.send(message)
                self._counters[counter] += 1
        except ConnectionClosed:
            pass

    async def _serve_control(self, ws: ServerConnection) -> None:
        """Answer each command once, in order (a portrait swap a second time, later); rate-limited per connection."""
        self._control_clients += 1
        loop = asyncio.get_running_loop()
        answers: asyncio.Queue[str] = asyncio.Queue(REPLY_QUEUE)
        sender = asyncio.create_task(self._send_answers(ws, answers))
        limiter = RateLimiter(self._control_rate, self._control_burst)
        open_ = [True]

        def queue_later(text: str) -> None:  # on the loop
            if not open_[0]:
                return
            try:
                answers.put_nowait(text)
            except asyncio.QueueFull:  # the client stopped reading its answers
                self._counters["replies_dropped"] += 1

        def reply(message: dict[str, Any]) -> None:  # from any thread
            text = _reply_text(message)
            with suppress(RuntimeError):  # the loop closed: the server stopped
                loop.call_soon_threadsafe(queue_later, text)

        try:
            async for raw in ws:
                if not limiter.allow(time.monotonic()):
                    self._counters["control_limited"] += 1
                    self._refusals.log(logging.WARNING, "rate", "control message refused: more than %g a "
                                       "second on one connection", self._control_rate)
                    await answers.put(error_message(f"too many control messages: at most {self._control_rate:g} "
                                                    "per second"))
                    continue
                await answers.put(self._control_answer(raw, reply))
        except ConnectionClosed as closed:
            # over MAX_MESSAGE_BYTES: the close frame names the limit to the client, the log says it once
            if closed.sent is not None and closed.sent.code == CloseCode.MESSAGE_TOO_BIG:
                self._counters["control_refused"] += 1
                self._refusals.log(logging.WARNING, "size", "control message refused: over %d bytes "
                                   "(connection closed)", MAX_MESSAGE_BYTES)
        finally:
            open_[0] = False
            self._control_clients -= 1
            sender.cancel()

    def _control_answer(self, raw: str | bytes, reply: Reply) -> str:
        """The first answer to one control message; never raises."""
        try:
            command = validate_control(raw, self.token)
            first = self._on_control(command, reply) if self._on_control is not None else None
            answer = ack_message() if first is None else _reply_text(first)
        except ValueError as exc:  # ControlError, or the daemon refusing the command
            self._counters["control_refused"] += 1
            self._refusals.log(logging.WARNING, "invalid", "control message refused: %s", one_line(str(exc), 200))
            return error_message(str(exc))
        except Exception as exc:  # a bug must not close the server, nor flood the log with tracebacks
            self._counters["control_refused"] += 1
            log.error("a control message failed: %s", one_line(f"{type(exc).__name__}: {exc}"))
            log.debug("details", exc_info=True)
            return error_message("internal error")
        self._counters["control_ok"] += 1
        return answer

    @staticmethod
    async def _send_answers(ws: ServerConnection, answers: asyncio.Queue[str]) -> None:
        try:
            while True:
                await ws.send(await answers.get())
        except ConnectionClosed:
            pass

    async def _stream_mjpeg(self, connection: _Connection) -> None:
        """Serve ``/video.mjpeg`` on a raw connection until the client or the server goes away."""
        transport = connection.transport
        transport.write(MJPEG_HEAD)
        slot = _Slot()
        connection.connection_lost_waiter.add_done_callback(lambda _: slot.close())
        self._mjpeg_clients.add(slot)
        self._offer_latest(slot, self._jpeg)
        try:
            while (part := await slot.take()) is not None:
                if transport.get_write_buffer_size() > MJPEG_BACKLOG_BYTES:
                    self._counters["dropped"] += 1
                    continue
                transport.write(part)
                self._counters["mjpeg_sent"] += 1
        finally:
            self._mjpeg_clients.discard(slot)
