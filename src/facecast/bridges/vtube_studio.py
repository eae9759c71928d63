"""VTube Studio output: feed facecast motion into a Live2D model through VTube Studio's plugin API.

Two layers, like websockets' own sans-I/O design:

* **Pure protocol** (no sockets, no clock): request envelopes
  (`envelope`, `token_request`, `authentication_request`, `inject_request`),
  the motion -> VTS default-parameter mapping (`parameter_values`), response
  parsing into data or typed errors (`response_data`), and the discovery
  broadcast parser (`parse_broadcast`).
* **Transport**: `VTubeStudioClient`, an asyncio WebSocket client that
  discovers the API port, authenticates (asking the user once for a token,
  stored in the user's config folder), then injects the latest frame, at
  least every `RESEND_INTERVAL_S` so VTS never hands the parameters back to
  its own tracker. It reconnects with capped exponential backoff and
  re-authenticates after VTS restarts, requests a new token when the old one
  is revoked, and never blocks whoever calls `VTubeStudioClient.submit`.

API reference: github.com/DenchiSoft/VTubeStudio (README: authentication,
InjectParameterDataRequest, API server discovery).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import secrets
import socket
import sys
import tempfile
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any, NamedTuple

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from facecast.bridges.osc import clamp
from facecast.motion import GAZE_FULL_SCALE_DEG, MotionFrame

__all__ = [
    "APIError", "AccessDeniedError", "ApiState", "AuthenticationRequiredError", "DEFAULT_PORT",
    "DISCOVERY_PORT", "ProtocolError", "RequestIds", "TokenStore", "VTubeStudioClient", "VTubeStudioError",
    "authentication_request", "default_token_path", "discover_api_state", "envelope", "inject_request",
    "parameter_values", "parse_broadcast", "parse_message", "response_data", "token_request",
    "user_config_dir",
]

log = logging.getLogger("facecast.bridges.vtube_studio")

API_NAME = "VTubeStudioPublicAPI"
API_VERSION = "1.0"
DEFAULT_HOST = "127.0.0.1"
#: The API's default WebSocket port (users can change it in VTS).
DEFAULT_PORT = 8001
#: VTS broadcasts its API state (incl. the port) on this UDP port every 2 s.
DISCOVERY_PORT = 47779
BROADCAST_TYPE = "VTubeStudioAPIStateBroadcast"
PLUGIN_NAME = "facecast"
PLUGIN_DEVELOPER = "facecast project"
MAX_REQUEST_ID = 64

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

#: Error IDs (Files/ErrorID.cs) that change what the client does.
ERROR_REQUIRES_AUTHENTICATION = 8
ERROR_ACCESS_DENIED = 50

# VTS default input parameter ranges.
FACE_ANGLE_LIMIT = 30.0      # FaceAngleX / FaceAngleY, degrees
FACE_ROLL_LIMIT = 90.0       # FaceAngleZ, degrees
FACE_POSITION_LIMIT = 15.0   # FacePositionX / FacePositionY
FACE_DISTANCE_LIMIT = 10.0   # FacePositionZ
#: FacePositionX/Y units per fraction of the frame: half a frame off centre reaches the limit.
POSITION_SCALE = 2.0 * FACE_POSITION_LIMIT
#: FacePositionZ units per relative distance change: 20 % closer reaches the limit.
DISTANCE_SCALE = FACE_DISTANCE_LIMIT / 0.2


# --------------------------------------------------------------------------- pure protocol

class VTubeStudioError(Exception):
    """Anything that went wrong talking to VTube Studio."""


class ProtocolError(VTubeStudioError):
    """VTS (or whatever listens on its port) sent something this client cannot use."""


class APIError(VTubeStudioError):
    """An ``APIError`` response: VTS refused a request."""

    def __init__(self, error_id: int, message: str, request_id: str | None = None) -> None:
        super().__init__(f"VTube Studio error {error_id}: {message}")
        self.error_id = error_id
        self.message = message
        self.request_id = request_id


class AccessDeniedError(APIError):
    """Error 50: the user denied (or revoked) facecast's access in VTS."""


class AuthenticationRequiredError(APIError):
    """Error 8: this session is not authenticated (any more)."""


_ERROR_TYPES: dict[int, type[APIError]] = {
    ERROR_ACCESS_DENIED: AccessDeniedError,
    ERROR_REQUIRES_AUTHENTICATION: AuthenticationRequiredError,
}


class RequestIds:
    """Unique ASCII request IDs (``<prefix>-<n>``) so responses can be matched to requests."""

    def __init__(self, prefix: str = PLUGIN_NAME) -> None:
        if not prefix.isascii() or not prefix or len(prefix) > MAX_REQUEST_ID - 21:
            raise ValueError(f"request ID prefix must be 1-{MAX_REQUEST_ID - 21} ASCII characters")
        self._prefix = prefix
        self._next = 0

    def next(self) -> str:
        """A request ID never returned before by this generator."""
        self._next += 1
        return f"{self._prefix}-{self._next}"


def envelope(message_type: str, data: dict[str, Any], request_id: str) -> dict[str, Any]:
    """A complete API request."""
    if not (request_id.isascii() and 1 <= len(request_id) <= MAX_REQUEST_ID):
        raise ValueError(f"requestID must be 1-{MAX_REQUEST_ID} ASCII characters, got {request_id!r}")
    return {"apiName": API_NAME, "apiVersion": API_VERSION, "requestID": request_id,
            "messageType": message_type, "data": data}


def token_request(request_id: str, plugin_name: str = PLUGIN_NAME,
                  plugin_developer: str = PLUGIN_DEVELOPER) -> dict[str, Any]:
    """Ask the user (a popup in VTS) to allow this plugin; the answer carries a reusable token."""
    return envelope("AuthenticationTokenRequest",
                    {"pluginName": plugin_name, "pluginDeveloper": plugin_developer}, request_id)


def authentication_request(token: str, request_id: str, plugin_name: str = PLUGIN_NAME,
                           plugin_developer: str = PLUGIN_DEVELOPER) -> dict[str, Any]:
    """Authenticate this session with a stored token (needed after every (re)connect)."""
    return envelope("AuthenticationRequest", {"pluginName": plugin_name, "pluginDeveloper": plugin_developer,
                                              "authenticationToken": token}, request_id)


def _mean(frame: MotionFrame, left: str, right: str) -> float:
    return (frame.expression(left) + frame.expression(right)) / 2.0


def parameter_values(frame: MotionFrame) -> list[dict[str, Any]]:
    """The frame as VTS default input parameters, each within its default range.

    Signs follow the viewer's view, as Live2D's standard parameters do:
    FaceAngleX > 0 turns the face to image right (facecast yaw), FaceAngleY > 0
    up, FaceAngleZ > 0 tilts counter-clockwise (facecast roll), EyeX > 0
    looks to image right, FacePositionZ > 0 is closer to the camera.
    ``MouthSmile`` and ``Brows`` are 0..1 with 0.5 neutral (VTS maps them onto
    -1..1 model parameters), so a frown or lowered brows go below 0.5.
    ``EyeOpenLeft`` is the subject's left eye (Live2D's ParamEyeLOpen).
    """
    head = frame.head
    eye_x = clamp(frame.gaze.yaw / GAZE_FULL_SCALE_DEG, -1.0, 1.0)
    eye_y = clamp(frame.gaze.pitch / GAZE_FULL_SCALE_DEG, -1.0, 1.0)
    smile = _mean(frame, "mouthSmileLeft", "mouthSmileRight") - _mean(frame, "mouthFrownLeft", "mouthFrownRight")
    brows = (frame.expression("browInnerUp") + _mean(frame, "browOuterUpLeft", "browOuterUpRight")) / 2.0 \
        - _mean(frame, "browDownLeft", "browDownRight")
    values = {
        "FaceAngleX": clamp(head.yaw, -FACE_ANGLE_LIMIT, FACE_ANGLE_LIMIT),
        "FaceAngleY": clamp(head.pitch, -FACE_ANGLE_LIMIT, FACE_ANGLE_LIMIT),
        "FaceAngleZ": clamp(head.roll, -FACE_ROLL_LIMIT, FACE_ROLL_LIMIT),
        "FacePositionX": clamp(head.x * POSITION_SCALE, -FACE_POSITION_LIMIT, FACE_POSITION_LIMIT),
        "FacePositionY": clamp(head.y * POSITION_SCALE, -FACE_POSITION_LIMIT, FACE_POSITION_LIMIT),
        "FacePositionZ": clamp((1.0 - head.distance) * DISTANCE_SCALE, -FACE_DISTANCE_LIMIT, FACE_DISTANCE_LIMIT),
        "MouthOpen": clamp(frame.expression("jawOpen"), 0.0, 1.0),
        "MouthSmile": clamp(0.5 + 0.5 * smile, 0.0, 1.0),
        "EyeOpenLeft": clamp(1.0 - frame.blink.left, 0.0, 1.0),
        "EyeOpenRight": clamp(1.0 - frame.blink.right, 0.0, 1.0),
        "EyeLeftX": eye_x,
        "EyeLeftY": eye_y,
        "EyeRightX": eye_x,
        "EyeRightY": eye_y,
        "Brows": clamp(0.5 + 0.5 * brows, 0.0, 1.0),
    }
    return [{"id": name, "value": round(value, 4)} for name, value in values.items()]


def inject_request(frame: MotionFrame, request_id: str) -> dict[str, Any]:
    """Set ("set" mode: facecast owns these parameters) the frame's parameter values; the face counts as found."""
    return envelope("InjectParameterDataRequest",
                    {"faceFound": True, "mode": "set", "parameterValues": parameter_values(frame)}, request_id)


def parse_message(raw: str | bytes) -> dict[str, Any]:
    """One API message as a dict; ProtocolError if it is not a VTS API envelope."""
    try:
        message = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(message, dict) or message.get("apiName") != API_NAME \
            or not isinstance(message.get("messageType"), str):
        raise ProtocolError("not a VTube Studio API message")
    if not isinstance(message.get("data", {}), dict):
        raise ProtocolError(f"{message['messageType']}: 'data' is not an object")
    return message


def response_data(message: dict[str, Any], expected_type: str) -> dict[str, Any]:
    """The data of a response of `expected_type`; APIError (typed by errorID) for error responses."""
    data = message.get("data") or {}
    if message["messageType"] == "APIError":
        error_id = data.get("errorID")
        error_id = error_id if isinstance(error_id, int) else -1
        error_type = _ERROR_TYPES.get(error_id, APIError)
        raise error_type(error_id, str(data.get("message", "")), message.get("requestID"))
    if message["messageType"] != expected_type:
        raise ProtocolError(f"expected {expected_type}, got {message['messageType']}")
    return data


class ApiState(NamedTuple):
    """What a discovery broadcast says: the API port, and whether plugins are allowed."""

    port: int
    active: bool


def parse_broadcast(datagram: bytes) -> ApiState | None:
    """The API state from one UDP discovery datagram, or None if it is not a VTS broadcast."""
    try:
        message = parse_message(datagram)
    except ProtocolError:
        return None
    data = message.get("data") or {}
    port = data.get("port")
    if message["messageType"] != BROADCAST_TYPE or isinstance(port, bool) or not isinstance(port, int) \
            or not 1 <= port <= 65535:
        return None
    return ApiState(port, bool(data.get("active", True)))


# --------------------------------------------------------------------------- token storage

def user_config_dir() -> Path:
    """facecast's per-user config folder: $XDG_CONFIG_HOME/facecast when set, else the platform's usual place."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg and os.path.isabs(xdg):
        base = Path(xdg)
    elif sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path.home() / ".config"
    return base / "facecast"


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

    Call `submit` from the frame loop (any thread; it only stores the frame),
    and either await `run` in an event loop or call `start` for a background
    thread; `stop` ends either. `port=None` discovers the port (UDP broadcast
    on `discovery_port`) at every connection attempt, falling back to `DEFAULT_PORT`.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int | None = None, *,
                 token_path: str | Path | None = None,
                 discovery_port: int = DISCOVERY_PORT,
                 discovery_timeout: float = DISCOVERY_TIMEOUT_S,
                 backoff_min: float = BACKOFF_MIN_S,
                 backoff_max: float = BACKOFF_MAX_S,
                 token_timeout: float = TOKEN_TIMEOUT_S,
                 response_timeout: float = RESPONSE_TIMEOUT_S,
                 resend_interval: float = RESEND_INTERVAL_S,
                 denied_retry: float = DENIED_RETRY_S) -> None:
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
        #: True while a session is authenticated and injecting.
        self.live = False
        #: Injections VTS acknowledged.
        self.injected = 0

    # ---- called from any thread

    def submit(self, frame: MotionFrame) -> None:
        """Make `frame` the one to send next (latest frame wins); never blocks."""
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

    async def _inject(self, ws: ClientConnection, frame: MotionFrame) -> None:
        try:
            await self._request(ws, inject_request(frame, self._ids.next()), self._response_timeout)
        except AccessDeniedError:
            log.warning("VTube Studio revoked facecast's access; will ask the user again")
            self.tokens.delete()
            self._token = None
            raise
        except AuthenticationRequiredError:
            raise
        except APIError as exc:  # e.g. another plugin owns a parameter: keep trying, say it once
            if exc.error_id not in self._inject_errors:
                self._inject_errors.add(exc.error_id)
                log.warning("VTube Studio refused facecast's parameters: %s", exc)
            return
        self.injected += 1
        if self._inject_errors:
            self._inject_errors.clear()
            log.info("VTube Studio accepts facecast's parameters again")
