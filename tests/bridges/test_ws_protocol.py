"""The WebSocket server's protocol without a server: who may connect, control messages in, messages out."""

from __future__ import annotations

import json
import math

import pytest
from websockets.datastructures import Headers

from facecast.bridges.ws_protocol import (
    MAX_JSON_DEPTH,
    MJPEG_HEAD,
    PROTOCOL_VERSION,
    RateLimiter,
    ack_message,
    error_message,
    frame_latency_ms,
    hello_message,
    is_loopback_host,
    json_too_deep,
    motion_message,
    reply_message,
    request_refusal,
    request_token,
    status_body,
    status_report,
    token_refusal,
    validate_control,
)
from facecast.motion import HeadPose, MotionFrame


@pytest.mark.parametrize(("host", "origin", "allowed"), [
    ("127.0.0.1:39650", None, True),
    ("localhost:39650", "http://localhost:39650", True),
    ("[::1]:39650", "http://[::1]:39650", True),
    ("127.0.0.2:39650", None, True),                         # any loopback address
    ("192.168.1.5:39650", None, False),                      # a loopback server is not reached by LAN addresses
    ("127.0.0.1:39650", "http://evil.example", False),
    ("127.0.0.1:39650", "null", False),
    ("127.0.0.1:39650", "http://localhost:39650", False),     # same host, other origin
    ("localhost:39650", "http://localhost:8080", False),      # another local web server's page
    ("evil.example:39650", None, False),                      # DNS rebinding
    ("evil.example:39650", "http://evil.example:39650", False),
    ("", None, False),
])
def test_request_refusal(host: str, origin: str | None, allowed: bool) -> None:
    headers = Headers([("Host", host)] + ([("Origin", origin)] if origin else []))
    assert (request_refusal(headers) is None) is allowed


def test_request_refusal_duplicate_host_and_bind_host() -> None:
    assert request_refusal(Headers([("Host", "127.0.0.1"), ("Host", "evil.example")])) is not None
    assert request_refusal(Headers([("Host", "studio.lan:39650")]), bind_host="studio.lan") is None


@pytest.mark.parametrize(("host", "allowed"), [
    ("192.168.1.5:39650", True), ("[fe80::1]:39650", True), ("gaming-pc:39650", True),
    ("gaming-pc.local:39650", True), ("studio.home.arpa", True), ("localhost", True),
    ("evil.example:39650", False), ("192.168.1.5.nip.io:39650", False),
])
def test_request_refusal_off_loopback_hosts(host: str, allowed: bool) -> None:
    """Bound beyond loopback (where the token protects every endpoint): LAN addresses and local names."""
    assert (request_refusal(Headers([("Host", host)]), bind_host="0.0.0.0") is None) is allowed


@pytest.mark.parametrize(("site", "allowed"), [
    (None, True), ("none", True), ("same-origin", True), ("Same-Origin", True), ("same-site", False),
    ("cross-site", False),
])
def test_request_refusal_sec_fetch_site(site: str | None, allowed: bool) -> None:
    headers = Headers([("Host", "127.0.0.1:39650")] + ([("Sec-Fetch-Site", site)] if site else []))
    assert (request_refusal(headers) is None) is allowed


def test_loopback_hosts() -> None:
    assert all(is_loopback_host(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback_host(h) for h in ("0.0.0.0", "::", "192.168.1.5", "studio.lan", ""))


def test_request_token_and_refusal() -> None:
    assert request_token("/status?token=abc", Headers()) == "abc"
    assert request_token("/status", Headers([("Authorization", "Bearer abc")])) == "abc"
    assert request_token("/status", Headers([("X-Facecast-Token", "abc")])) == "abc"
    assert request_token("/status", Headers([("Authorization", "Basic abc")])) is None
    assert token_refusal("/frames?token=T", Headers(), "T") is None
    assert "needs its token" in token_refusal("/frames", Headers(), "T")
    assert token_refusal("/frames?token=X", Headers(), "T") == "wrong token"
    assert token_refusal("/frames?" + "&".join(f"a{i}=1" for i in range(50)), Headers(), "T") == "malformed query"


@pytest.mark.parametrize(("message", "error"), [
    ({"type": "mute", "muted": True}, "token"),
    ({"type": "mute", "muted": True, "token": "wrong"}, "token"),
    ({"type": "mute", "muted": True, "token": 5}, "token"),
    ({"type": "dance", "token": "T"}, "'type' must be one of"),
    ({"type": "mute", "muted": 1, "token": "T"}, "true or false"),
    ({"type": "mute", "token": "T"}, "needs 'muted'"),
    ({"type": "mute", "muted": False, "volume": 3, "token": "T"}, "unknown field"),
    ({"type": "gaze", "yaw": 90, "pitch": 0, "token": "T"}, "between"),
    ({"type": "gaze", "yaw": "left", "pitch": 0, "token": "T"}, "number"),
    ({"type": "gaze", "yaw": True, "pitch": 0, "token": "T"}, "number"),
    ({"type": "distance", "value": 0.1, "token": "T"}, "between"),
    ({"type": "emotion", "token": "T"}, "'preset' or 'offset'"),
    ({"type": "emotion", "preset": "smug", "token": "T"}, "one of"),
    ({"type": "emotion", "offset": {"eyeBlinkLeft": 0.5}, "token": "T"}, "eye expression"),
    ({"type": "emotion", "offset": {"mouthSmileLeft": 2}, "token": "T"}, "between"),
    ({"type": "portrait", "path": "", "token": "T"}, "file path"),
    ([1, 2], "JSON object"),
])
def test_validate_control_refusals(message: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        validate_control(json.dumps(message), "T")


@pytest.mark.parametrize(("raw", "error"), [
    ("[" * 20_000 + "]" * 20_000, "nested deeper than"),
    ('{"a": ' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1), "nested deeper than"),
    ('{"type": "gaze", "yaw": ' + "9" * 4001 + ', "pitch": 0, "token": "T"}', "at most 32 characters"),
    ('{"type": "gaze", "yaw": 0.' + "1" * 40 + ', "pitch": 0, "token": "T"}', "at most 32 characters"),
    ('{"type": "gaze", "yaw": NaN, "pitch": 0, "token": "T"}', "NaN is not a number"),
    ('{"type": "gaze", "yaw": -Infinity, "pitch": 0, "token": "T"}', "Infinity is not a number"),
    ('{"type": "portrait", "path": "' + "a" * 300 + '", "token": "T"}', "at most 255 bytes"),
    ('{"type": "portrait", "path": "x\\u0007.png", "token": "T"}', "control characters"),
])
def test_validate_control_limits(raw: str, error: str) -> None:
    with pytest.raises(ValueError, match=error) as refused:
        validate_control(raw, "T")
    assert "\n" not in str(refused.value)


def test_json_depth_scan_ignores_brackets_in_strings_and_is_linear() -> None:
    assert not json_too_deep('{"path": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}')
    assert not json_too_deep('["\\"[[[[[[[[[[[[[[[[[[[[[[[["]')  # an escaped quote does not end the string
    assert json_too_deep("[" * 9) and not json_too_deep("[" * 8)
    import time

    start = time.perf_counter()
    for text in ('"' + '\\"' * 32_000, '"' * 64_000, "\\" * 64_000):  # no input makes the scan restart
        json_too_deep(text)
    assert time.perf_counter() - start < 0.5


def test_rate_limiter() -> None:
    limiter = RateLimiter(rate=10, burst=3)
    assert [limiter.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow(0.1) and not limiter.allow(0.1)
    assert [limiter.allow(10.0) for _ in range(4)] == [True, True, True, False]  # refills to the burst only


def test_validate_control_accepts_every_command() -> None:
    ok = [
        {"type": "emotion", "preset": "happy", "intensity": 0.5},
        {"type": "emotion", "offset": {"mouthSmileLeft": -0.25}},
        {"type": "gaze", "yaw": -10, "pitch": 5.5},
        {"type": "distance", "value": 1.2},
        {"type": "mute", "muted": False},
        {"type": "portrait", "path": "/home/me/portrait.png"},
    ]
    for message in ok:
        assert validate_control(json.dumps({**message, "token": "T"}), "T") == message
    with pytest.raises(ValueError, match="JSON text"):
        validate_control(b'{"type": "mute"}', "T")
    with pytest.raises(ValueError, match="not valid JSON"):
        validate_control("{", "T")


def test_control_messages_out() -> None:
    assert json.loads(ack_message()) == {"type": "ack"}
    assert json.loads(error_message("cannot read /x.png")) == {"type": "error", "message": "cannot read /x.png"}
    assert json.loads(reply_message("swapped", path="/a.png")) == {"type": "swapped", "path": "/a.png"}
    two_lines = error_message("line one\nline two\r\x00" + "x" * 1000, path="/a\n.png")
    assert "\\n" not in two_lines and "\n" not in two_lines
    assert json.loads(two_lines)["message"].startswith("line one line two x") and len(two_lines) < 400


def test_hello_and_motion_messages() -> None:
    assert json.loads(hello_message(0.0, None)) == {"type": "hello", "version": 1, "fps": 0.0, "size": None}
    assert json.loads(hello_message(29.9, (128, 96))) == {"type": "hello", "version": 1, "fps": 29.9,
                                                          "size": [128, 96]}
    frame = MotionFrame(t=0.5, head=HeadPose(yaw=3.0), voice=0.25, expressions={"jawOpen": 0.5}, capture_time=10.0)
    assert frame_latency_ms(frame, now=10.0412) == 41.2
    assert frame_latency_ms(MotionFrame(t=0.5), now=10.0) is None
    text = motion_message(frame, 41.2)
    assert " " not in text  # compact: one small message per frame and client
    message = json.loads(text)
    assert message == {"type": "motion", "version": PROTOCOL_VERSION, "frame": frame.to_dict(), "latency_ms": 41.2}
    assert json.loads(motion_message(MotionFrame(t=0.0), None))["latency_ms"] is None


def test_status_report_merges_the_daemons_report() -> None:
    websocket = {"url": "http://127.0.0.1:1", "submitted": 10, "clients": {"motion": 1, "frames": 2}}
    own = status_report(30.0, [40.0, 50.0, 60.0], 10, websocket, None)
    assert own == {"fps": 30.0, "latency_ms": {"p50": 50.0, "p95": 59.0}, "frames": 10, "repeated": 0,
                   "inputs": {}, "outputs": {"websocket": websocket}, "clients": 3, "last_error": None}
    assert status_report(0.0, [], 0, websocket, "boom")["latency_ms"] == {"p50": None, "p95": None}
    merged = status_report(30.0, [40.0], 10, websocket, None,
                           {"repeated": 3, "inputs": {"mic": "ok"}, "outputs": {"vmc": {"sent": 9}}})
    assert merged["repeated"] == 3 and merged["inputs"] == {"mic": "ok"} and merged["frames"] == 10
    assert merged["outputs"] == {"websocket": websocket, "vmc": {"sent": 9}}
    # the daemon's counters of the server are merged with the server's own, not put in their place
    both = status_report(30.0, [40.0], 10, websocket, "encoder failing",
                         {"outputs": {"websocket": {"sent": 9, "errors": 0}}, "last_error": None})
    assert both["outputs"]["websocket"] == {**websocket, "sent": 9, "errors": 0}
    assert both["last_error"] == "encoder failing"
    body = status_body({**merged, "odd": math.inf, "path": object()})
    assert json.loads(body)["odd"] == math.inf and isinstance(json.loads(body)["path"], str)


def test_mjpeg_head() -> None:
    assert MJPEG_HEAD.startswith(b"HTTP/1.1 200 OK\r\n") and MJPEG_HEAD.endswith(b"\r\n\r\n")
    assert b"multipart/x-mixed-replace; boundary=facecastframe" in MJPEG_HEAD
    assert b"access-control" not in MJPEG_HEAD.lower()
