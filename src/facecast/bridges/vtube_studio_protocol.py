"""VTube Studio's plugin API, the pure half: requests, responses, discovery and the parameter mapping.

No sockets, no clock: request envelopes (`envelope`, `token_request`,
`authentication_request`, `input_parameter_list_request`, `inject_request`),
the motion -> VTS default-parameter mapping (`parameter_values`) within the
ranges VTS reports (`parameter_ranges`), response parsing into data or typed
errors (`response_data`), and the discovery broadcast parser
(`parse_broadcast`). `facecast.bridges.vtube_studio` is the client that sends
and receives them.

API reference: github.com/DenchiSoft/VTubeStudio (README: authentication,
InjectParameterDataRequest, API server discovery).
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

from facecast.bridges.osc import clamp
from facecast.motion import GAZE_FULL_SCALE_DEG, MotionFrame

__all__ = [
    "APIError", "AccessDeniedError", "ApiState", "AuthenticationRequiredError", "DEFAULT_HOST", "DEFAULT_PORT",
    "DEFAULT_RANGES", "DISCOVERY_PORT", "PLUGIN_NAME", "ProtocolError", "RequestIds", "VTubeStudioError",
    "authentication_request", "envelope", "inject_request", "inject_values_request", "input_parameter_list_request",
    "parameter_ranges", "parameter_values", "parse_broadcast", "parse_message", "response_data", "token_request",
]

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

#: Error IDs (Files/ErrorID.cs) that change what the client does.
ERROR_REQUIRES_AUTHENTICATION = 8
ERROR_ACCESS_DENIED = 50
#: InjectDataParamNameNotFound: "Trying to send data for parameter that doesn't exist".
ERROR_PARAMETER_NOT_FOUND = 453
#: InjectDataParamControlledByOtherPlugin: "Only one plugin can send data for a parameter at a time".
ERROR_PARAMETER_CONTROLLED = 454
#: Errors that name no parameter but are caused by one: the client finds it by halving the request.
PARAMETER_ERRORS = frozenset({ERROR_PARAMETER_NOT_FOUND, ERROR_PARAMETER_CONTROLLED})

# VTS default input parameter ranges, used until (or when) VTS's InputParameterListRequest says otherwise.
FACE_ANGLE_LIMIT = 30.0      # FaceAngleX / FaceAngleY, degrees
FACE_ROLL_LIMIT = 90.0       # FaceAngleZ, degrees
FACE_POSITION_LIMIT = 15.0   # FacePositionX / FacePositionY
FACE_DISTANCE_LIMIT = 10.0   # FacePositionZ
#: FacePositionX/Y units per fraction of the frame: half a frame off centre reaches the limit.
POSITION_SCALE = 2.0 * FACE_POSITION_LIMIT
#: FacePositionZ units per relative distance change: 20 % closer reaches the limit.
DISTANCE_SCALE = FACE_DISTANCE_LIMIT / 0.2

Range = tuple[float, float]
#: The parameters facecast drives, with the ranges it assumes when VTS cannot tell it the real ones.
DEFAULT_RANGES: dict[str, Range] = {
    "FaceAngleX": (-FACE_ANGLE_LIMIT, FACE_ANGLE_LIMIT), "FaceAngleY": (-FACE_ANGLE_LIMIT, FACE_ANGLE_LIMIT),
    "FaceAngleZ": (-FACE_ROLL_LIMIT, FACE_ROLL_LIMIT),
    "FacePositionX": (-FACE_POSITION_LIMIT, FACE_POSITION_LIMIT),
    "FacePositionY": (-FACE_POSITION_LIMIT, FACE_POSITION_LIMIT),
    "FacePositionZ": (-FACE_DISTANCE_LIMIT, FACE_DISTANCE_LIMIT),
    "MouthOpen": (0.0, 1.0), "MouthSmile": (0.0, 1.0), "EyeOpenLeft": (0.0, 1.0), "EyeOpenRight": (0.0, 1.0),
    "EyeLeftX": (-1.0, 1.0), "EyeLeftY": (-1.0, 1.0), "EyeRightX": (-1.0, 1.0), "EyeRightY": (-1.0, 1.0),
    "Brows": (0.0, 1.0),
}


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


def input_parameter_list_request(request_id: str) -> dict[str, Any]:
    """Ask for the model's input parameters (default and custom) with their current ranges."""
    return envelope("InputParameterListRequest", {}, request_id)


def parameter_ranges(data: dict[str, Any]) -> dict[str, Range]:
    """``{name: (min, max)}`` of every parameter in an ``InputParameterListResponse``'s data.

    Entries without a usable name, min and max (min < max, finite numbers) are skipped.
    """
    out: dict[str, Range] = {}
    for group in ("defaultParameters", "customParameters"):
        entries = data.get(group)
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            name, low, high = entry.get("name"), entry.get("min"), entry.get("max")
            if isinstance(name, str) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                             and math.isfinite(v) for v in (low, high)) and low < high:
                out[name] = (float(low), float(high))
    return out


def parameter_values(frame: MotionFrame, ranges: dict[str, Range] | None = None) -> list[dict[str, Any]]:
    """The frame as VTS default input parameters, each clamped to its range.

    `ranges` are VTS's own (`parameter_ranges` of an InputParameterListResponse);
    parameters missing from them are left out (VTS would refuse the whole
    request with error 453). None uses `DEFAULT_RANGES`.

    Signs follow Live2D's standard parameters, which VTS's auto-setup maps
    these inputs onto (docs.live2d.com, standard parameter list: ParamAngleX
    and ParamAngleZ both "turn to the right of the screen when +"):
    FaceAngleX > 0 turns the face to image right (facecast yaw > 0);
    FaceAngleY > 0 up (pitch > 0); FaceAngleZ > 0 tilts the top of the head
    towards image right, i.e. *clockwise* for the viewer, so it is
    **−roll** (facecast's roll > 0 is counter-clockwise). EyeX > 0 looks to
    image right, FacePositionZ > 0 is closer to the camera.
    ``MouthSmile`` and ``Brows`` are 0..1 with 0.5 neutral (VTS maps them onto
    -1..1 model parameters), so a frown or lowered brows go below 0.5.
    ``EyeOpenLeft`` is the subject's left eye (Live2D's ParamEyeLOpen).
    """
    ranges = DEFAULT_RANGES if ranges is None else ranges
    head = frame.head
    eye_x = clamp(frame.gaze.yaw / GAZE_FULL_SCALE_DEG, -1.0, 1.0)
    eye_y = clamp(frame.gaze.pitch / GAZE_FULL_SCALE_DEG, -1.0, 1.0)
    smile = _mean(frame, "mouthSmileLeft", "mouthSmileRight") - _mean(frame, "mouthFrownLeft", "mouthFrownRight")
    brows = (frame.expression("browInnerUp") + _mean(frame, "browOuterUpLeft", "browOuterUpRight")) / 2.0 \
        - _mean(frame, "browDownLeft", "browDownRight")
    values = {
        "FaceAngleX": head.yaw,
        "FaceAngleY": head.pitch,
        "FaceAngleZ": -head.roll,
        "FacePositionX": head.x * POSITION_SCALE,
        "FacePositionY": head.y * POSITION_SCALE,
        "FacePositionZ": (1.0 - head.distance) * DISTANCE_SCALE,
        "MouthOpen": frame.expression("jawOpen"),
        "MouthSmile": 0.5 + 0.5 * smile,
        "EyeOpenLeft": 1.0 - frame.blink.left,
        "EyeOpenRight": 1.0 - frame.blink.right,
        "EyeLeftX": eye_x,
        "EyeLeftY": eye_y,
        "EyeRightX": eye_x,
        "EyeRightY": eye_y,
        "Brows": 0.5 + 0.5 * brows,
    }
    return [{"id": name, "value": round(clamp(value, *ranges[name]), 4)}
            for name, value in values.items() if name in ranges]


def inject_values_request(values: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    """Set ("set" mode: facecast owns these parameters) the given ``{id, value}`` entries; the face counts as found."""
    return envelope("InjectParameterDataRequest",
                    {"faceFound": True, "mode": "set", "parameterValues": values}, request_id)


def inject_request(frame: MotionFrame, request_id: str, ranges: dict[str, Range] | None = None) -> dict[str, Any]:
    """Inject the frame's parameter values (`parameter_values`)."""
    return inject_values_request(parameter_values(frame, ranges), request_id)


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
