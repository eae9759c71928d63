"""VRChat OSC bridge against a real OSC receiver on loopback (python-osc asyncio server, no mocks)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import socket

import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_packet import OscPacket
from pythonosc.osc_server import AsyncIOOSCUDPServer
from pythonosc.parsing.osc_types import get_string

from facecast.bridges.osc import MAX_DATAGRAM
from facecast.bridges.osc_udp import VrchatSender
from facecast.bridges.vrchat import (
    FLOAT_NAMES,
    SIGNED,
    TEMPLATE_BINARY,
    AvatarParameters,
    VrchatEncoder,
    binary_bits,
    parse_binary_spec,
    unified_expressions,
)
from facecast.bridges.vrchat_avatar import AvatarConfigSource, newest_avatar_config
from facecast.motion import Blink, Gaze, MotionFrame

ROOT = "/avatar/parameters/FT/v2/"
REQUIRED = {"JawOpen", "MouthClosed", "LipFunnel", "LipPucker", "MouthUpperUp", "MouthLowerDown",
            "MouthUpperUpLeft", "MouthUpperUpRight", "MouthLowerDownLeft", "MouthLowerDownRight",
            "MouthStretchLeft", "MouthStretchRight", "MouthSmileLeft", "MouthSmileRight", "MouthOpen",
            "SmileFrownLeft", "SmileFrownRight", "BrowExpressionLeft", "BrowExpressionRight", "MouthX",
            "EyeLid", "EyeLidLeft", "EyeLidRight", "EyeLeftX", "EyeLeftY", "EyeRightX", "EyeRightY",
            "BrowInnerUp", "BrowDownLeft", "BrowDownRight", "CheekPuffSuck", "CheekPuffSuckLeft"}


class _Recorder(Dispatcher):
    """Records every message (latest args per address) with its OSC type tags, and the datagram sizes."""

    def __init__(self) -> None:
        super().__init__(strict_timing=False)
        self.args: dict[str, list] = {}
        self.tags: dict[str, str] = {}
        self.sizes: list[int] = []
        self.datagrams: list[list[str]] = []  # the addresses of each datagram
        self.set_default_handler(lambda *_: None)

    def call_handlers_for_packet(self, data: bytes, client_address):
        self.sizes.append(len(data))
        addresses = []
        for timed in OscPacket(data).messages:
            message = timed.message
            _, index = get_string(message.dgram, 0)
            self.tags[message.address] = get_string(message.dgram, index)[0]
            self.args[message.address] = list(message.params)
            addresses.append(message.address)
        self.datagrams.append(addresses)
        return super().call_handlers_for_packet(data, client_address)

    def params(self, root: str = ROOT) -> dict[str, object]:
        return {a[len(root):]: args[0] for a, args in self.args.items() if a.startswith(root)}


async def _receive(frames: list[MotionFrame], close: bool = True, **options) -> tuple[_Recorder, VrchatSender]:
    recorder = _Recorder()
    server = AsyncIOOSCUDPServer(("127.0.0.1", 0), recorder, asyncio.get_running_loop())
    transport, _ = await server.create_serve_endpoint()
    port = transport.get_extra_info("sockname")[1]
    sender = VrchatSender("127.0.0.1", port, **options)
    try:
        for frame in frames:
            sender.send(frame)
        if close:
            sender.close()
        for _ in range(400):
            await asyncio.sleep(0.005)
            if len(recorder.sizes) >= sender.transport.sent:
                break
    finally:
        if not close:
            sender.close()
        transport.close()
    return recorder, sender


def receive(frames: list[MotionFrame], **options) -> _Recorder:
    """Send `frames` to a VRChat stand-in listening on an ephemeral loopback port."""
    return asyncio.run(_receive(frames, **options))[0]


def decode(bits: list[bool], negative: bool) -> float:
    """VRCFaceTracking-template style decode: ±(Σ bit_i·2^i) / (2^N − 1) (its docs: maps 0..2^N−1 to 0..1)."""
    k = sum(1 << i for i, bit in enumerate(bits) if bit)
    return (-1.0 if negative else 1.0) * k / ((1 << len(bits)) - 1)


# --------------------------------------------------------------------------- floats

def test_unified_expression_parameters_are_floats_in_range():
    frame = MotionFrame(t=0.0, expressions={"jawOpen": 0.7, "mouthSmileLeft": 0.3, "cheekPuff": 0.5,
                                            "mouthUpperUpLeft": 0.2, "mouthUpperUpRight": 0.4,
                                            "mouthLowerDownLeft": 0.6, "mouthLowerDownRight": 0.6,
                                            "mouthFrownRight": 0.8, "browDownLeft": 0.5, "browInnerUp": 0.4,
                                            "browOuterUpRight": 0.6, "mouthRight": 0.3})
    recorder = receive([frame])
    values = {name: v for name, v in recorder.params().items() if recorder.tags[ROOT + name] == ",f"}
    assert REQUIRED <= set(values) and set(values) == set(FLOAT_NAMES)
    for name, value in values.items():
        low = -1.0 if name in SIGNED else 0.0
        assert low <= value <= 1.0, name
    assert values["JawOpen"] == pytest.approx(0.7)
    assert values["MouthSmileLeft"] == pytest.approx(0.3) and values["MouthSmileRight"] == 0.0
    assert values["MouthUpperUpLeft"] == pytest.approx(0.2) and values["MouthUpperUpRight"] == pytest.approx(0.4)
    assert values["MouthUpperUp"] == pytest.approx(0.3)
    assert values["MouthLowerDown"] == pytest.approx(0.6)
    assert values["MouthOpen"] == pytest.approx(0.45)
    assert values["CheekPuffSuck"] == values["CheekPuffSuckLeft"] == pytest.approx(0.5)
    # VRCFaceTracking's formulas: SmileFrown = smile - frown; BrowExpression = min(1, (inner+outer)/2) - down.
    assert values["SmileFrownLeft"] == pytest.approx(0.3) and values["SmileFrownRight"] == pytest.approx(-0.8)
    assert values["BrowExpressionLeft"] == pytest.approx(0.2 - 0.5)
    assert values["BrowExpressionRight"] == pytest.approx(0.5)
    assert values["MouthX"] == pytest.approx(0.3)
    assert all(size <= MAX_DATAGRAM for size in recorder.sizes)


def test_eyelids_are_additive_and_gaze_is_tan_of_the_angle():
    frame = MotionFrame(t=0.0, blink=Blink(left=1.0, right=0.0), gaze=Gaze(yaw=45.0, pitch=-22.5),
                        expressions={"eyeWideRight": 1.0})
    values = receive([frame]).params()
    assert values["EyeLidLeft"] == 0.0        # closed
    assert values["EyeLidRight"] == 1.0       # open (0.75) and wide (+0.25)
    assert values["EyeLid"] == pytest.approx(0.5)
    # Looking towards image right is the avatar's left: negative X, tan(45°) = 1. Down is negative Y.
    assert values["EyeLeftX"] == values["EyeRightX"] == pytest.approx(-1.0)
    assert values["EyeLeftY"] == values["EyeRightY"] == pytest.approx(math.tan(math.radians(-22.5)), abs=1e-6)

    relaxed = receive([MotionFrame(t=0.0)]).params()
    assert relaxed["EyeLidLeft"] == relaxed["EyeLidRight"] == pytest.approx(0.75)
    assert relaxed["EyeLeftX"] == relaxed["EyeLeftY"] == 0.0
    half_closed_wide = unified_expressions(MotionFrame(t=0.0, blink=Blink(left=0.5),
                                                       expressions={"eyeWideLeft": 0.4}))
    assert half_closed_wide["EyeLidLeft"] == pytest.approx(0.75 * 0.5 + 0.25 * 0.4)


def test_out_of_range_and_nan_inputs_are_clamped():
    frame = MotionFrame(t=0.0, gaze=Gaze(yaw=-400.0, pitch=float("nan")),
                        expressions={"jawOpen": 3.0, "mouthClose": -1.0, "browInnerUp": float("nan")})
    recorder = receive([frame])
    values = recorder.params()
    assert values["JawOpen"] == 1.0 and values["MouthClosed"] == 0.0 and values["BrowInnerUp"] == 0.0
    assert values["EyeLeftX"] == 1.0 and values["EyeLeftY"] == 0.0
    assert all(math.isfinite(v) for args in recorder.args.values() for v in args if isinstance(v, float))


def test_custom_prefix():
    values = receive([MotionFrame(t=0.0, expressions={"jawOpen": 0.5})], prefix="v2/").params("/avatar/parameters/v2/")
    assert values["JawOpen"] == pytest.approx(0.5)
    assert values["JawX1"] is False and values["JawXNegative"] is False


@pytest.mark.parametrize("prefix", ["/FT/v2/", "FT v2/", "FT//v2/", "FT/*/"])
def test_invalid_prefix_is_rejected(prefix):
    with pytest.raises(ValueError, match="invalid VRChat parameter prefix"):
        VrchatEncoder(prefix)


# --------------------------------------------------------------------------- native eye tracking

def test_native_eye_tracking_for_every_avatar():
    """/tracking/eye/*: degrees, + pitch = down, + yaw = the user's right (image left); one eyelid value."""
    frame = MotionFrame(t=0.0, blink=Blink(left=1.0, right=0.5), gaze=Gaze(yaw=20.0, pitch=15.0))
    recorder = receive([frame])
    assert recorder.tags["/tracking/eye/EyesClosedAmount"] == ",f"
    assert recorder.tags["/tracking/eye/LeftRightPitchYaw"] == ",ffff"
    assert recorder.args["/tracking/eye/EyesClosedAmount"] == [pytest.approx(0.75)]
    # facecast: looking up and towards image right = the subject's left -> VRChat pitch < 0, yaw < 0.
    assert recorder.args["/tracking/eye/LeftRightPitchYaw"] == pytest.approx([-15.0, -20.0, -15.0, -20.0])
    assert "/tracking/eye/CenterPitchYaw" not in recorder.args  # only one eye-look address

    off = receive([frame], native_eyes=False)
    assert not any(a.startswith("/tracking/") for a in off.args)


# --------------------------------------------------------------------------- binary parameters

def test_binary_rule_is_vrcfacetrackings_current_one():
    """BinaryBaseParameter (PR #286): k = floor(|v|·2^N), all bits when |v| > 0.99999; Negative = v < 0."""
    table = [(0.0, 0, False), (0.25, 2, False), (0.5, 4, False), (0.75, 6, False), (0.9, 7, False),
             (-0.3, 2, True), (-1.0, 7, True), (1.0, 7, False), (0.999995, 7, False), (2.0, 7, False)]
    for value, k, negative in table:
        bits, neg = binary_bits(value, 3)
        assert (sum(1 << i for i, b in enumerate(bits) if b), neg) == (k, negative), value
    assert binary_bits(-0.0, 3) == ((False, False, False), False)
    assert binary_bits(-0.6, 3, negative=False) == ((False, False, False), True)  # no Negative param: cut
    assert binary_bits(float("nan"), 4) == ((False,) * 4, False)
    with pytest.raises(ValueError):
        binary_bits(0.5, 0)


def test_remote_view_decodes_every_binary_parameter_within_its_resolution():
    """What other players see: each template binary parameter rebuilt from the bits on the wire."""
    rng = random.Random(7)
    names = [n for n in TEMPLATE_BINARY]
    for _ in range(25):
        expressions = {n: rng.random() for n in ("jawRight", "jawLeft", "mouthSmileLeft", "mouthFrownLeft",
                                                 "mouthSmileRight", "mouthFrownRight", "browInnerUp",
                                                 "browOuterUpLeft", "browDownLeft", "browDownRight", "mouthLeft",
                                                 "mouthRight", "eyeSquintLeft", "mouthUpperUpRight", "cheekPuff",
                                                 "mouthFunnel", "mouthPucker", "mouthRollUpper", "tongueOut",
                                                 "mouthStretchLeft", "mouthShrugLower", "mouthPressLeft")}
        frame = MotionFrame(t=0.0, expressions=expressions)
        recorder = receive([frame])
        sent = recorder.params()
        expected = unified_expressions(frame)
        for name in names:
            count = TEMPLATE_BINARY[name]
            bits = [sent[f"{name}{1 << i}"] for i in range(count)]
            assert all(isinstance(b, bool) for b in bits)
            assert all(recorder.tags[f"{ROOT}{name}{1 << i}"] in (",T", ",F") for i in range(count))
            negative = sent.get(f"{name}Negative", False)
            assert (f"{name}Negative" in sent) == (name in SIGNED)
            assert abs(decode(bits, negative) - expected[name]) <= 1.0 / ((1 << count) - 1) + 1e-9, name
            assert sent[name] == pytest.approx(expected[name], abs=1e-6)  # the local float beside the bits


def test_bit_counts_are_configurable_per_parameter():
    assert parse_binary_spec(None) == TEMPLATE_BINARY
    spec = parse_binary_spec("JawOpen=4, MouthX=2,TongueOut=0")
    assert spec["JawOpen"] == 4 and spec["MouthX"] == 2 and "TongueOut" not in spec
    assert parse_binary_spec("none") == {}
    for bad in ("JawOpen", "Nope=3", "JawOpen=9", "JawOpen=x"):
        with pytest.raises(ValueError, match="--vrchat-binary"):
            parse_binary_spec(bad)
    values = receive([MotionFrame(t=0.0, expressions={"jawOpen": 1.0})], binary=spec).params()
    assert [values[f"JawOpen{b}"] for b in (1, 2, 4, 8)] == [True] * 4
    assert "MouthX4" not in values and "MouthX2" in values and "TongueOut1" not in values


# --------------------------------------------------------------------------- flags, change-only, sizes

def test_tracking_flags_on_while_running_and_off_at_close():
    recorder, _ = asyncio.run(_receive([MotionFrame(t=0.0)], close=False))
    assert recorder.args["/avatar/parameters/EyeTrackingActive"] == [True]
    assert recorder.args["/avatar/parameters/LipTrackingActive"] == [True]
    assert recorder.tags["/avatar/parameters/EyeTrackingActive"] == ",T"
    closed = receive([MotionFrame(t=0.0)])
    assert closed.args["/avatar/parameters/EyeTrackingActive"] == [False]
    assert closed.tags["/avatar/parameters/LipTrackingActive"] == ",F"


def test_only_changes_are_sent_and_everything_again_each_refresh():
    encoder = VrchatEncoder(refresh_s=1.0)
    still = MotionFrame(t=0.0)
    full = encoder.encode(still)
    assert sum(len(OscPacket(d).messages) for d in full) == len(encoder.messages(still))
    assert encoder.encode(MotionFrame(t=0.1)) == []  # nothing moved
    moved = encoder.encode(MotionFrame(t=0.2, expressions={"jawOpen": 0.5}))
    sent = {t.message.address for d in moved for t in OscPacket(d).messages}
    assert sent == {ROOT + "JawOpen"}  # JawOpen is synced as a float: no bits
    smile = encoder.encode(MotionFrame(t=0.3, expressions={"jawOpen": 0.5, "mouthSmileLeft": 0.9}))
    sent = {t.message.address for d in smile for t in OscPacket(d).messages}
    assert {ROOT + "MouthSmileLeft", ROOT + "SmileFrownLeft", ROOT + "SmileFrownLeft1"} <= sent
    assert ROOT + "JawOpen" not in sent
    again = encoder.encode(MotionFrame(t=1.3, expressions={"jawOpen": 0.5, "mouthSmileLeft": 0.9}))
    assert sum(len(OscPacket(d).messages) for d in again) == len(encoder.messages(still))
    rewound = encoder.encode(MotionFrame(t=0.0, expressions={"jawOpen": 0.5, "mouthSmileLeft": 0.9}))
    assert sum(len(OscPacket(d).messages) for d in rewound) == len(encoder.messages(still))


def test_every_datagram_fits_the_budget():
    frame = MotionFrame(t=0.0, expressions={"jawOpen": 0.3}, blink=Blink(0.2, 0.4), gaze=Gaze(10, -5))
    for binary in (None, {name: 8 for name in FLOAT_NAMES}):
        datagrams = VrchatEncoder(binary=binary).encode(frame)
        assert datagrams and all(len(d) <= MAX_DATAGRAM for d in datagrams)
        assert all(d.startswith(b"#bundle\0") for d in datagrams)


def test_sender_without_vrchat_never_raises(caplog):
    caplog.set_level(logging.WARNING, logger="facecast.bridges.vrchat")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    sender = VrchatSender("127.0.0.1", port)
    for i in range(200):
        sender.send(MotionFrame(t=i / 30, expressions={"jawOpen": (i % 10) / 10}))
    sender.close()
    assert sender.transport.failed > 0
    assert len(caplog.records) == 1


# --------------------------------------------------------------------------- the avatar's own parameter list

def avatar_config(parameters: dict[str, str], name: str = "Test Avatar", avatar_id: str = "avtr_test") -> dict:
    """An avatar OSC config as VRChat writes it (docs.vrchat.com, vrchat-community/osc example)."""
    return {"id": avatar_id, "name": name, "parameters": [
        {"name": p, "input": {"address": f"/avatar/parameters/{p}", "type": t},
         "output": {"address": f"/avatar/parameters/{p}", "type": t}} for p, t in parameters.items()]
        + [{"name": "VelocityZ", "output": {"address": "/avatar/parameters/VelocityZ", "type": "Float"}}]}


def write_config(path, config: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(config).encode())  # VRChat writes a UTF-8 BOM


def test_avatar_config_limits_what_is_sent_and_says_what_it_lacks(tmp_path, caplog):
    """An older-template avatar under "v2/" with a 4-bit MouthX: its addresses and bit counts win."""
    caplog.set_level(logging.INFO, logger="facecast.bridges.vrchat")
    params = {"v2/JawOpen": "Float", "v2/MouthX": "Float", "EyeTrackingActive": "Bool",
              **{f"v2/MouthX{b}": "Bool" for b in (1, 2, 4, 8)}, "v2/MouthXNegative": "Bool",
              "v2/EyeLidLeft": "Float", "v2/EyeLidRight": "Float", "v2/JawX": "Int", "Face": "Int"}
    path = tmp_path / "avtr_test.json"
    write_config(path, avatar_config(params))
    frame = MotionFrame(t=0.0, expressions={"jawOpen": 0.6, "mouthLeft": 0.5})
    recorder = receive([frame], avatars=AvatarConfigSource(path))
    sent = set(recorder.args)
    # The avatar animates its own eyelids (EyeLidLeft/Right), so VRChat's native eyelids stay off; gaze stays on.
    assert sent == {"/tracking/eye/LeftRightPitchYaw",
                    *(f"/avatar/parameters/{p}" for p in params if p not in ("v2/JawX", "Face"))}
    values = recorder.params("/avatar/parameters/v2/")
    bits = [values[f"MouthX{b}"] for b in (1, 2, 4, 8)]
    assert decode(bits, values["MouthXNegative"]) == pytest.approx(-0.5, abs=1 / 15)
    lines = [r.getMessage() for r in caplog.records if "VRChat avatar" in r.getMessage()]
    assert len(lines) == 1
    assert "'Test Avatar' (avtr_test)" in lines[0] and "1 with binary sync" in lines[0]
    assert "native eye tracking (gaze)" in lines[0]
    assert "lacks" in lines[0] and "JawX" in lines[0] and "LipTrackingActive" in lines[0]
    assert "JawOpen," not in lines[0]


def test_avatar_without_face_tracking_gets_only_native_eye_tracking(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="facecast.bridges.vrchat")
    path = tmp_path / "plain.json"
    write_config(path, avatar_config({"Face": "Int", "Toggle": "Bool"}, name="Plain"))
    recorder = receive([MotionFrame(t=0.0)], avatars=AvatarConfigSource(path))
    assert set(recorder.args) == {"/tracking/eye/EyesClosedAmount", "/tracking/eye/LeftRightPitchYaw"}
    assert any("'Plain'" in r.getMessage() and "no VRCFaceTracking parameters" in r.getMessage()
               for r in caplog.records)


def test_newest_config_in_the_osc_folder_is_followed(tmp_path):
    osc = tmp_path / "OSC"
    first = osc / "usr_1" / "Avatars" / "avtr_a.json"
    write_config(first, avatar_config({"FT/v2/JawOpen": "Float"}, name="A", avatar_id="avtr_a"))
    os.utime(first, (1_000_000, 1_000_000))
    assert newest_avatar_config([osc]) == first
    source = AvatarConfigSource(osc, poll_s=0.0)  # a folder: the newest file in it
    assert source.poll(now=0.0).name == "A"
    assert source.poll(now=1.0) is None  # unchanged
    second = osc / "usr_1" / "Avatars" / "avtr_b.json"
    write_config(second, avatar_config({"v2/JawOpen": "Float"}, name="B", avatar_id="avtr_b"))
    assert source.poll(now=2.0).name == "B"
    broken = osc / "usr_1" / "Avatars" / "avtr_c.json"
    broken.write_text("{not json")
    assert source.poll(now=3.0) is None  # logged, previous list kept
    assert newest_avatar_config([tmp_path / "missing"]) is None


def test_named_config_must_be_readable(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        AvatarConfigSource(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"id": "x"}')
    with pytest.raises(ValueError, match="not a VRChat avatar OSC config"):
        AvatarConfigSource(tmp_path / "bad.json")
    assert AvatarParameters.from_config(avatar_config({"A": "Float"})).inputs == {"/avatar/parameters/A": "Float"}
