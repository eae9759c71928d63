"""VTube Studio's plugin API without a connection: requests, the parameter mapping, responses, discovery."""

from __future__ import annotations

import json

import pytest

from facecast.bridges.vtube_studio_protocol import (
    AccessDeniedError,
    APIError,
    AuthenticationRequiredError,
    ProtocolError,
    RequestIds,
    authentication_request,
    envelope,
    inject_request,
    parameter_ranges,
    parameter_values,
    parse_broadcast,
    parse_message,
    response_data,
    token_request,
)
from facecast.motion import Blink, Gaze, HeadPose, MotionFrame

RANGES = {
    "FaceAngleX": (-30, 30), "FaceAngleY": (-30, 30), "FaceAngleZ": (-90, 90),
    "FacePositionX": (-15, 15), "FacePositionY": (-15, 15), "FacePositionZ": (-10, 10),
    "MouthOpen": (0, 1), "MouthSmile": (0, 1), "EyeOpenLeft": (0, 1), "EyeOpenRight": (0, 1),
    "EyeLeftX": (-1, 1), "EyeLeftY": (-1, 1), "EyeRightX": (-1, 1), "EyeRightY": (-1, 1), "Brows": (0, 1),
}


def frame(i: int = 0) -> MotionFrame:
    return MotionFrame(t=i / 60, expressions={"jawOpen": (i % 100) / 100})


def test_envelopes_and_request_ids():
    ids = RequestIds()
    seen = {ids.next() for _ in range(1000)}
    assert len(seen) == 1000 and all(i.isascii() and len(i) <= 64 for i in seen)
    request = token_request("id-1")
    assert request == {"apiName": "VTubeStudioPublicAPI", "apiVersion": "1.0", "requestID": "id-1",
                       "messageType": "AuthenticationTokenRequest",
                       "data": {"pluginName": "facecast", "pluginDeveloper": "facecast project"}}
    inject = inject_request(frame(5), "id-2")
    assert inject["messageType"] == "InjectParameterDataRequest"
    assert inject["data"]["mode"] == "set" and inject["data"]["faceFound"] is True
    with pytest.raises(ValueError):
        token_request("x" * 65)


def test_authentication_and_inject_request_builders():
    auth = authentication_request("tok", "id-3")
    assert auth == {"apiName": "VTubeStudioPublicAPI", "apiVersion": "1.0", "requestID": "id-3",
                    "messageType": "AuthenticationRequest",
                    "data": {"pluginName": "facecast", "pluginDeveloper": "facecast project",
                             "authenticationToken": "tok"}}
    inject = inject_request(frame(50), "id-4")
    assert inject["data"]["parameterValues"] == parameter_values(frame(50))
    assert {p["id"] for p in inject["data"]["parameterValues"]} == set(RANGES)
    assert inject_request(frame(50), "id-4") == inject  # pure: the same frame, the same request
    assert envelope("StatisticsRequest", {}, "r")["data"] == {}
    for bad in ("", "x" * 65, "r\u00e9quest"):
        with pytest.raises(ValueError, match="requestID"):
            envelope("StatisticsRequest", {}, bad)


def test_parameter_values_stay_in_vts_ranges():
    extreme = MotionFrame(t=0.0, head=HeadPose(yaw=100, pitch=-100, roll=-200, x=2.0, y=-2.0, distance=0.1),
                          gaze=Gaze(yaw=90, pitch=float("nan")), blink=Blink(left=1.0, right=-3.0),
                          expressions={"jawOpen": 9.0, "mouthSmileLeft": 1.0, "mouthSmileRight": 1.0,
                                       "browDownLeft": 1.0, "browDownRight": 1.0})
    values = {p["id"]: p["value"] for p in parameter_values(extreme)}
    assert set(values) == set(RANGES)
    for name, (low, high) in RANGES.items():
        assert low <= values[name] <= high, name
    # roll -200 is clockwise for the viewer: Live2D's +Z (towards screen right), clamped.
    assert (values["FaceAngleX"], values["FaceAngleY"], values["FaceAngleZ"]) == (30, -30, 90)
    assert (values["FacePositionX"], values["FacePositionY"], values["FacePositionZ"]) == (15, -15, 10)
    assert values["EyeOpenLeft"] == 0.0 and values["EyeOpenRight"] == 1.0
    assert values["EyeLeftX"] == 1.0 and values["EyeLeftY"] == 0.0
    assert values["MouthSmile"] == 1.0 and values["Brows"] == 0.0
    neutral = {p["id"]: p["value"] for p in parameter_values(MotionFrame(t=0.0))}
    assert neutral["MouthSmile"] == neutral["Brows"] == 0.5 and neutral["FacePositionZ"] == 0.0


def test_signs_follow_live2d_standard_parameters():
    """Live2D: ParamAngleX and ParamAngleZ "turn to the right of the screen when +"; Y up when +.

    facecast's yaw > 0 turns the nose to image right (X +). Its roll > 0 is
    counter-clockwise for the viewer (the top of the head moves to image left),
    so a clockwise tilt (roll < 0), the top moving to screen right, is Z +.
    """
    values = {p["id"]: p["value"] for p in parameter_values(
        MotionFrame(t=0.0, head=HeadPose(yaw=10.0, pitch=5.0, roll=20.0), gaze=Gaze(yaw=15.0, pitch=-15.0)))}
    assert values["FaceAngleX"] == 10.0 and values["FaceAngleY"] == 5.0
    assert values["FaceAngleZ"] == -20.0
    assert values["EyeLeftX"] == values["EyeRightX"] == 0.5 and values["EyeLeftY"] == -0.5


def test_ranges_from_the_parameter_list_clamp_and_select():
    data = {"defaultParameters": [
        {"name": "FaceAngleX", "addedBy": "VTube Studio", "value": 0, "min": -10, "max": 10, "defaultValue": 0},
        {"name": "MouthOpen", "addedBy": "VTube Studio", "value": 0, "min": 0, "max": 1, "defaultValue": 0},
        {"name": "Broken", "min": 1, "max": 1}, {"name": "AlsoBroken", "min": "a", "max": 2}, "junk"],
        "customParameters": [{"name": "Mine", "min": -1, "max": True}]}
    ranges = parameter_ranges(data)
    assert ranges == {"FaceAngleX": (-10.0, 10.0), "MouthOpen": (0.0, 1.0)}
    values = parameter_values(MotionFrame(t=0.0, head=HeadPose(yaw=-25.0), expressions={"jawOpen": 0.4}), ranges)
    assert values == [{"id": "FaceAngleX", "value": -10.0}, {"id": "MouthOpen", "value": 0.4}]


def test_response_parsing_gives_typed_errors():
    def message(kind: str, data: dict) -> dict:
        return parse_message(json.dumps({"apiName": "VTubeStudioPublicAPI", "apiVersion": "1.0",
                                         "requestID": "r", "messageType": kind, "data": data}))

    assert response_data(message("AuthenticationResponse", {"authenticated": True}),
                         "AuthenticationResponse") == {"authenticated": True}
    with pytest.raises(AccessDeniedError) as denied:
        response_data(message("APIError", {"errorID": 50, "message": "denied"}), "AuthenticationTokenResponse")
    assert denied.value.error_id == 50 and denied.value.request_id == "r"
    with pytest.raises(AuthenticationRequiredError):
        response_data(message("APIError", {"errorID": 8, "message": "auth"}), "InjectParameterDataResponse")
    with pytest.raises(APIError) as other:
        response_data(message("APIError", {"errorID": 453, "message": "busy"}), "InjectParameterDataResponse")
    assert type(other.value) is APIError and other.value.error_id == 453
    with pytest.raises(ProtocolError):
        response_data(message("StatisticsResponse", {}), "AuthenticationResponse")
    for bad in ("not json", "[]", '{"apiName": "other", "messageType": "x"}'):
        with pytest.raises(ProtocolError):
            parse_message(bad)


def test_broadcast_parsing():
    good = {"apiName": "VTubeStudioPublicAPI", "apiVersion": "1.0", "timestamp": 1, "requestID": "x",
            "messageType": "VTubeStudioAPIStateBroadcast",
            "data": {"active": True, "port": 8002, "instanceID": "abc", "windowTitle": "VTube Studio"}}
    assert parse_broadcast(json.dumps(good).encode()) == (8002, True)
    assert parse_broadcast(b"\xff\x00") is None
    assert parse_broadcast(json.dumps({**good, "data": {"port": "8001"}}).encode()) is None
    assert parse_broadcast(json.dumps({**good, "messageType": "APIStateResponse"}).encode()) is None
