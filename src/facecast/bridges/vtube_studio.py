"""VTube Studio output: feed facecast motion into a Live2D model through VTube Studio's plugin API.

`VTubeStudioClient` is the transport for the messages of
`facecast.bridges.vtube_studio_protocol`: an asyncio WebSocket client that
discovers the API port, authenticates (asking the user once for a token,
stored in the user's config folder by `TokenStore`), then injects the latest
frame, at least every `RESEND_INTERVAL_S` so VTS never hands the parameters
back to its own tracker. It reconnects with capped exponential backoff and
re-authenticates after VTS restarts, requests a new token when the old one is
revoked, and never blocks whoever calls `VTubeStudioClient.send`.

At each connection it reads the model's parameter ranges
(``InputParameterListRequest``; the built-in defaults if that fails). When
VTS refuses a request because another plugin already controls a parameter
(error 454) or a parameter does not exist (453), the error does not say which
one: the client finds it by halving the request until single parameters
remain, drops just those (one log line), keeps driving the rest, and tries the
dropped ones again every `RECLAIM_INTERVAL_S`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import secrets
import socket
import tempfile
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from facecast.bridges.vtube_studio_protocol import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DISCOVERY_PORT,
    ERROR_PARAMETER_CONTROLLED,
    ERROR_PARAMETER_NOT_FOUND,
    PARAMETER_ERRORS,
    PLUGIN_NAME,
    AccessDeniedError,
    APIError,
    ApiState,
    AuthenticationRequiredError,
    ProtocolError,
    Range,
    RequestIds,
    VTubeStudioError,
    authentication_request,
    inject_values_request,
    input_parameter_list_request,
    parameter_ranges,
    parameter_values,
    parse_broadcast,
    parse_message,
    response_data,
    token_request,
)
from facecast.motion import MotionFrame
from facecast.user_dirs import user_config_dir

__all__ = ["TokenStore", "VTubeStudioClient", "default_token_path", "discover_api_state", "user_config_dir"]

log = logging.getLogger("facecast.bridges.vtube_studio")

#: Listen a little longer than one broadcast period before falling back to `DEFAULT_PORT`.
DISCOVERY_TIMEOUT_S = 2.5
#: The user has to notice VTS's popup and click "Allow".
TOKEN_TIMEOUT_S = 120.0
RESPONSE_TIMEOUT_S = 5.0
#: VTS gives a parameter back to its tracker after 1 s without data: re-send well within that.
RESEND_INTERVAL_S = 0.5
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 10.0
#: After the user clicked "Deny", ask again only after this long (each ask is a popup in VTS).
DENIED_RETRY_S = 60.0
#: Try again this often to drive parameters another plugin held (error 454) or VTS lacked (453).
RECLAIM_INTERVAL_S = 30.0


# --------------------------------------------------------------------------- token storage

def default_token_path() -> Path:
    """Where the VTube Studio token lives unless told otherwise."""
    return user_config_dir() / "vtube_studio_token.json"


class TokenStore:
    """The plugin token on disk (JSON, mode 0600): the user clicks "Allow" once, not at every start."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_token_path()

    def load(self) -> str | None:
        """The stored token, or None if there is none (or it is unreadable)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable VTube Studio token file %s: %s", self.path, exc)
            return None
        token = data.get("authenticationToken") if isinstance(data, dict) else None
        return token if isinstance(token, str) and token else None

    def save(self, token: str) -> None:
        """Store atomically, readable by the user only. A failure is logged: the token still works this run."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".token-", dir=self.path.parent)  # created with mode 0600
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump({"authenticationToken": token}, fh)
                os.replace(tmp, self.path)
            except BaseException:
                with suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            log.error("cannot save the VTube Studio token to %s (%s): VTS will ask again next time", self.path, exc)

    def delete(self) -> None:
        """Forget the token (it was revoked)."""
        with suppress(FileNotFoundError):
            self.path.unlink()


# --------------------------------------------------------------------------- transport

async def discover_api_state(timeout: float = DISCOVERY_TIMEOUT_S,
                             discovery_port: int = DISCOVERY_PORT) -> ApiState | None:
    """The first VTS state broadcast heard on UDP `discovery_port` within `timeout` s, or None."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # Other plugins may listen too: share the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("", discovery_port))
        sock.setblocking(False)
        async with asyncio.timeout(timeout):
            while True:
                datagram, _ = await loop.sock_recvfrom(sock, 65535)
                state = parse_broadcast(datagram)
                if state is not None:
                    return state
    except TimeoutError:
        log.debug("no VTube Studio broadcast on UDP %d within %g s", discovery_port, timeout)
    except OSError as exc:
        log.debug("cannot listen for VTube Studio broadcasts on UDP %d: %s", discovery_port, exc)
    finally:
        sock.close()
    return None


class VTubeStudioClient:
    """Keeps VTube Studio fed with facecast's latest frame, surviving VTS restarts and network hiccups.

    Call `send` from the frame loop (any thread; it only stores the frame),
    and either await `run` in an event loop or call `start` for a background
    thread; `stop` (or `close`) ends either. `port=None` discovers the port (UDP
    broadcast on `discovery_port`) at every connection attempt, falling back to `DEFAULT_PORT`.
    """

    name = "vtube_studio"
    needs_image = False

    def __init__(self, host: str = DEFAULT_HOST, port: int | None = None, *,
                 token_path: str | Path | None = None,
                 discovery_port: int = DISCOVERY_PORT,
                 discovery_timeout: float = DISCOVERY_TIMEOUT_S,
                 backoff_min: float = BACKOFF_MIN_S,
                 backoff_max: float = BACKOFF_MAX_S,
                 token_timeout: float = TOKEN_TIMEOUT_S,
                 response_timeout: float = RESPONSE_TIMEOUT_S,
                 resend_interval: float = RESEND_INTERVAL_S,
                 denied_retry: float = DENIED_RETRY_S,
                 reclaim_interval: float = RECLAIM_INTERVAL_S) -> None:
        if not 0 < backoff_min <= backoff_max:
            raise ValueError("need 0 < backoff_min <= backoff_max")
        self.host, self.port = host, port
        self.tokens = TokenStore(token_path)
        self._discovery = {"timeout": discovery_timeout, "discovery_port": discovery_port}
        self._backoff = (backoff_min, backoff_max)
        self._token_timeout = token_timeout
        self._response_timeout = response_timeout
        self._resend_interval = resend_interval
        self._denied_retry = denied_retry
        self._reclaim_interval = reclaim_interval
        # A per-client tag keeps IDs unique across runs too, so VTS's logs tell sessions apart.
        self._ids = RequestIds(f"{PLUGIN_NAME}-{secrets.token_hex(4)}")
        self._token: str | None = None
        self._latest: tuple[int, MotionFrame | None] = (0, None)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._stop_requested = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stop_event: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._outage = False
        self._target = f"ws://{host}:{port if port is not None else '(discovered port)'}"
        self._inject_errors: set[int] = set()
        #: The model's parameter ranges as VTS reported them this session (None: the built-in defaults).
        self.ranges: dict[str, Range] | None = None
        #: Parameters VTS refused this session (id -> error ID), left out of injections.
        self.refused: dict[str, int] = {}
        self._reclaim_at = math.inf
        #: True while a session is authenticated and injecting.
        self.live = False
        #: Injections VTS acknowledged.
        self.injected = 0

    # ---- called from any thread

    def send(self, frame: MotionFrame, image: np.ndarray | None = None) -> None:
        """Make `frame` the one to send next (latest frame wins; the image is not used); never blocks."""
        self._latest = (self._latest[0] + 1, frame)
        loop, wake = self._loop, self._wake
        # A set wake-up is still pending: the loop reads `_latest` after clearing it, so skip the call.
        if loop is not None and wake is not None and not wake.is_set():
            with suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(wake.set)

    def start(self) -> threading.Thread:
        """Run the client in a background daemon thread with its own event loop."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the VTube Studio client is already running")
        self._stop_requested.clear()
        self._thread = threading.Thread(target=asyncio.run, args=(self.run(),), name="facecast-vtube-studio",
                                        daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        """End `run` (closing the connection) and wait up to `timeout` s for the `start` thread."""
        self._stop_requested.set()
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None:
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def close(self) -> None:
        """`stop`: end the session and its thread."""
        self.stop()

    # ---- the event loop side

    async def run(self) -> None:
        """Connect, authenticate and inject until `stop`; failures only lead to a retry."""
        self._wake, self._stop_event = asyncio.Event(), asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stop_requested.is_set():
            return
        stopper = asyncio.create_task(self._stop_event.wait())
        delay = self._backoff[0]  # the wait after the next failure
        try:
            while True:
                session = asyncio.create_task(self._session())
                await asyncio.wait({session, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if stopper.done():
                    session.cancel()
                    await asyncio.gather(session, return_exceptions=True)
                    return
                was_live, self.live = self.live, False
                exc = session.exception()
                if isinstance(exc, AccessDeniedError) and not was_live:
                    log.error("VTube Studio: the user denied facecast access to the plugin API. To allow it, "
                              "click 'Allow' in VTS's popup; asking again in %g s", self._denied_retry)
                    wait = self._denied_retry
                else:
                    self._report_outage(exc, was_live)
                    wait = self._backoff[0] if was_live else delay
                    delay = min(2.0 * wait, self._backoff[1])
                await asyncio.wait({stopper}, timeout=wait)
                if stopper.done():
                    return
        finally:
            stopper.cancel()
            self._loop = None
            self.live = False

    def _report_outage(self, exc: BaseException | None, was_live: bool) -> None:
        """Log a failed or lost session once per outage (the next success logs the recovery)."""
        if self._outage:
            return
        self._outage = True
        expected = (OSError, TimeoutError, WebSocketException, VTubeStudioError)
        log.warning("%s VTube Studio at %s (%s); retrying with backoff up to %g s",
                    "lost connection to" if was_live else "cannot use", self._target,
                    exc if str(exc) else type(exc).__name__, self._backoff[1],
                    exc_info=None if isinstance(exc, expected) else exc)

    async def _api_port(self) -> int:
        """The configured port, else the broadcast one, else `DEFAULT_PORT`."""
        if self.port is not None:
            return self.port
        state = await discover_api_state(**self._discovery)
        if state is None:
            return DEFAULT_PORT
        if not state.active:
            raise VTubeStudioError("its plugin API is off: enable 'Start API (allow plugins)' in VTS's settings")
        return state.port

    async def _session(self) -> None:
        port = await self._api_port()
        uri = self._target = f"ws://{self.host}:{port}"
        # No proxy (VTS is local), no compression (tiny messages), no pings (every
        # request times out on its own, and injections flow at least every 0.5 s).
        async with connect(uri, proxy=None, compression=None, ping_interval=None,
                           open_timeout=self._response_timeout, close_timeout=1.0) as ws:
            reader = asyncio.create_task(self._read(ws))
            try:
                await self._authenticate(ws)
                self.ranges = await self._read_ranges(ws)
                self.refused.clear()
                self._reclaim_at = math.inf
                self.live = True
                self._inject_errors.clear()
                if self._outage:
                    log.info("reconnected to VTube Studio at %s", uri)
                    self._outage = False
                else:
                    log.info("connected to VTube Studio at %s", uri)
                await self._inject_loop(ws, reader)
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                await ws.close()  # a normal close (1000), also when retrying after a refusal

    async def _read(self, ws: ClientConnection) -> None:
        """Route every response to the request with its requestID."""
        assert self._wake is not None
        try:
            async for raw in ws:
                try:
                    message = parse_message(raw)
                except ProtocolError as exc:
                    log.debug("ignoring a message from VTube Studio: %s", exc)
                    continue
                future = self._pending.pop(message.get("requestID"), None)
                if future is not None and not future.done():
                    future.set_result(message)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("VTube Studio closed the connection"))
            self._pending.clear()
            self._wake.set()

    async def _request(self, ws: ClientConnection, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and return its response's data (APIError for an error response)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        request_id = request["requestID"]
        self._pending[request_id] = future
        try:
            await ws.send(json.dumps(request))
            async with asyncio.timeout(timeout):
                message = await future
        finally:
            self._pending.pop(request_id, None)
        return response_data(message, request["messageType"].removesuffix("Request") + "Response")

    async def _token_accepted(self, ws: ClientConnection, token: str) -> bool:
        try:
            data = await self._request(ws, authentication_request(token, self._ids.next()), self._response_timeout)
        except AccessDeniedError:
            return False
        return data.get("authenticated") is True

    async def _authenticate(self, ws: ClientConnection) -> None:
        token = self._token or self.tokens.load()
        if token is not None:
            if await self._token_accepted(ws, token):
                self._token = token
                return
            log.warning("VTube Studio rejected facecast's token (access revoked?); asking for a new one")
            self.tokens.delete()
            self._token = None
        log.warning("VTube Studio: click 'Allow' in the popup in VTube Studio to let facecast move the model")
        try:
            data = await self._request(ws, token_request(self._ids.next()), self._token_timeout)
        except TimeoutError:
            raise VTubeStudioError(f"nobody answered VTS's access popup within {self._token_timeout:g} s") from None
        token = data.get("authenticationToken")
        if not isinstance(token, str) or not token:
            raise ProtocolError("AuthenticationTokenResponse without a token")
        self.tokens.save(token)
        self._token = token
        if not await self._token_accepted(ws, token):
            raise ProtocolError("VTube Studio rejected the token it just issued")

    async def _inject_loop(self, ws: ClientConnection, reader: asyncio.Task[None]) -> None:
        """Send each new frame once VTS acknowledged the previous one; re-send the last one when idle."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        sent_seq, sent_at = -1, -math.inf
        while not reader.done():
            seq, frame = self._latest
            if frame is not None and (seq != sent_seq or loop.time() - sent_at >= self._resend_interval):
                sent_seq, sent_at = seq, loop.time()
                await self._inject(ws, frame)
                continue
            self._wake.clear()
            if self._latest[0] != seq or reader.done():
                continue
            timeout = None if frame is None else max(0.0, sent_at + self._resend_interval - loop.time())
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow stop()'s cancellation
            # when the wake-up lands at the same moment.
            with suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
        raise ConnectionError("VTube Studio closed the connection")

    async def _read_ranges(self, ws: ClientConnection) -> dict[str, Range] | None:
        """The model's parameter ranges from VTS, or None (use the defaults) if it will not say."""
        try:
            data = await self._request(ws, input_parameter_list_request(self._ids.next()), self._response_timeout)
        except (APIError, ProtocolError, TimeoutError) as exc:
            if isinstance(exc, AuthenticationRequiredError):
                raise
            log.info("VTube Studio did not list its parameters (%s); using the default ranges", exc or "timeout")
            return None
        ranges = parameter_ranges(data)
        if not ranges:
            log.info("VTube Studio listed no parameters; using the default ranges")
            return None
        log.debug("VTube Studio parameter ranges: %s", ranges)
        return ranges

    async def _send_values(self, ws: ClientConnection, values: list[dict[str, Any]]) -> None:
        await self._request(ws, inject_values_request(values, self._ids.next()), self._response_timeout)

    async def _refused_ids(self, ws: ClientConnection, values: list[dict[str, Any]],
                           error_id: int) -> dict[str, int]:
        """Which of `values` (refused as a whole with `error_id`) VTS refuses, found by halving the request."""
        if len(values) == 1:
            return {values[0]["id"]: error_id}
        middle = len(values) // 2
        refused: dict[str, int] = {}
        for half in (values[:middle], values[middle:]):
            try:
                await self._send_values(ws, half)
            except APIError as exc:
                if exc.error_id not in PARAMETER_ERRORS:
                    raise
                refused.update(await self._refused_ids(ws, half, exc.error_id))
        return refused

    def _drop(self, refused: dict[str, int], driven: int) -> None:
        self.refused.update(refused)
        self._reclaim_at = min(self._reclaim_at, asyncio.get_running_loop().time() + self._reclaim_interval)
        for error_id in sorted(set(refused.values())):
            ids = ", ".join(sorted(i for i, e in refused.items() if e == error_id))
            reason = ("another plugin controls" if error_id == ERROR_PARAMETER_CONTROLLED
                      else "the model has no" if error_id == ERROR_PARAMETER_NOT_FOUND else "VTS refused")
            log.warning("VTube Studio: %s %s (error %d); facecast keeps driving the other %d parameters and "
                        "tries again every %g s", reason, ids, error_id, driven, self._reclaim_interval)

    async def _reclaim(self, ws: ClientConnection, frame: MotionFrame) -> None:
        """Try the refused parameters again; those VTS now accepts are driven from here on."""
        values = [v for v in parameter_values(frame, self.ranges) if v["id"] in self.refused]
        still: dict[str, int] = {}
        if values:
            try:
                await self._send_values(ws, values)
            except APIError as exc:
                if exc.error_id not in PARAMETER_ERRORS:
                    raise
                still = await self._refused_ids(ws, values, exc.error_id)
        back = sorted(set(self.refused) - set(still))
        self.refused = {i: e for i, e in self.refused.items() if i in still}
        self._reclaim_at = asyncio.get_running_loop().time() + self._reclaim_interval if self.refused else math.inf
        if back:
            log.info("VTube Studio: facecast drives %s again", ", ".join(back))

    async def _inject(self, ws: ClientConnection, frame: MotionFrame) -> None:
        values = [v for v in parameter_values(frame, self.ranges) if v["id"] not in self.refused]
        try:
            if values:
                await self._send_values(ws, values)
            if self.refused and asyncio.get_running_loop().time() >= self._reclaim_at:
                await self._reclaim(ws, frame)
        except AccessDeniedError:
            log.warning("VTube Studio revoked facecast's access; will ask the user again")
            self.tokens.delete()
            self._token = None
            raise
        except AuthenticationRequiredError:
            raise
        except APIError as exc:
            if exc.error_id in PARAMETER_ERRORS and values:
                try:
                    refused = await self._refused_ids(ws, values, exc.error_id)
                except APIError as again:
                    exc, refused = again, {}
                if refused:
                    self._drop(refused, len(values) - len(refused))
                    return
            if exc.error_id not in self._inject_errors:  # not tied to a parameter: keep trying, say it once
                self._inject_errors.add(exc.error_id)
                log.warning("VTube Studio refused facecast's parameters: %s", exc)
            return
        self.injected += 1
        if self._inject_errors:
            self._inject_errors.clear()
            log.info("VTube Studio accepts facecast's parameters again")
