"""VRChat OSC bridge against a real OSC receiver on loopback (python-osc asyncio server, no mocks)."""

from __future__ import annotations

import asyncio
import logging
import math
import socket

import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_packet import OscPacket
from pythonosc.osc_server import AsyncIOOSCUDPServer
from pythonosc.parsing.osc_types import get_string

from facecast.bridges.osc import MAX_DATAGRAM
from facecast.bridges.osc_udp import VrchatSender
from facecast.bridges.vrchat import VrchatEncoder
from facecast.motion import Blink, Gaze, MotionFrame

REQUIRED = {"JawOpen", "MouthClosed", "LipFunnel", "LipPucker", "MouthUpperUp", "MouthLowerDown",
            "MouthStretchLeft", "MouthStretchRight", "MouthSmileLeft", "MouthSmileRight", "MouthOpen",
            "EyeLidLeft", "EyeLidRight", "EyeLeftX", "EyeLeftY", "EyeRightX", "EyeRightY",
            "BrowInnerUp", "BrowDownLeft", "BrowDownRight", "CheekPuffSuck"}
SIGNED = {"EyeLeftX", "EyeLeftY", "EyeRightX", "EyeRightY", "EyeX", "EyeY", "JawX"}


class _Recorder(Dispatcher):
    """Records every /avatar/parameters/* message with its OSC type tags and datagram sizes."""

    def __init__(self) -> None:
        super().__init__(strict_timing=False)
        self.values: dict[str, float] = {}
        self.tags: dict[str, str] = {}
        self.sizes: list[int] = []
        self.map("/avatar/parameters/*", self._parameter)

    def _parameter(self, address: str, *args) -> None:
        self.values[address] = args[0]

    def call_handlers_for_packet(self, data: bytes, client_address):
        self.sizes.append(len(data))
        for timed in OscPacket(data).messages:
            _, index = get_string(timed.message.dgram, 0)
            self.tags[timed.message.address] = get_string(timed.message.dgram, index)[0]
        return super().call_handlers_for_packet(data, client_address)


async def receive(frames: list[MotionFrame], prefix: str | None = None) -> _Recorder:
    """Send `frames` to a VRChat stand-in listening on an ephemeral loopback port."""
    recorder = _Recorder()
    server = AsyncIOOSCUDPServer(("127.0.0.1", 0), recorder, asyncio.get_running_loop())
    transport, _ = await server.create_serve_endpoint()
    port = transport.get_extra_info("sockname")[1]
    sender = VrchatSender("127.0.0.1", port, **({} if prefix is None else {"prefix": prefix}))
    try:
        for frame in frames:
            sender.send(frame)
        for _ in range(200):
            await asyncio.sleep(0.005)
            if len(recorder.sizes) >= len(frames) * len(sender.encoder.encode(frames[0])):
                break
    finally:
        sender.close()
        transport.close()
    return recorder


def params(recorder: _Recorder, prefix: str = "FT/v2/") -> dict[str, float]:
    root = "/avatar/parameters/" + prefix
    assert all(address.startswith(root) for address in recorder.values)
    return {address[len(root):]: value for address, value in recorder.values.items()}


def test_unified_expression_parameters_are_floats_in_range():
    frame = MotionFrame(t=0.0, expressions={"jawOpen": 0.7, "mouthSmileLeft": 0.3, "cheekPuff": 0.5,
                                            "mouthUpperUpLeft": 0.2, "mouthUpperUpRight": 0.4,
                                            "mouthLowerDownLeft": 0.6, "mouthLowerDownRight": 0.6})
    recorder = asyncio.run(receive([frame]))
    values = params(recorder)
    assert REQUIRED <= set(values)
    assert set(recorder.tags.values()) == {",f"}
    for name, value in values.items():
        low = -1.0 if name in SIGNED else 0.0
        assert low <= value <= 1.0, name
    assert values["JawOpen"] == pytest.approx(0.7)
    assert values["MouthSmileLeft"] == pytest.approx(0.3) and values["MouthSmileRight"] == 0.0
    assert values["MouthUpperUp"] == pytest.approx(0.3)
    assert values["MouthLowerDown"] == pytest.approx(0.6)
    assert values["MouthOpen"] == pytest.approx(0.45)
    assert values["CheekPuffSuck"] == pytest.approx(0.5)
    assert all(size <= MAX_DATAGRAM for size in recorder.sizes)


def test_eyelids_and_gaze():
    frame = MotionFrame(t=0.0, blink=Blink(left=1.0, right=0.0), gaze=Gaze(yaw=45.0, pitch=-22.5),
                        expressions={"eyeWideRight": 1.0})
    values = params(asyncio.run(receive([frame])))
    assert values["EyeLidLeft"] == 0.0        # closed
    assert values["EyeLidRight"] == 1.0       # open and wide
    # Looking towards image right is the avatar's left: negative X. Down is negative Y.
    assert values["EyeLeftX"] == values["EyeRightX"] == pytest.approx(-1.0)
    assert values["EyeLeftY"] == values["EyeRightY"] == pytest.approx(-0.5)

    relaxed = params(asyncio.run(receive([MotionFrame(t=0.0)])))
    assert relaxed["EyeLidLeft"] == relaxed["EyeLidRight"] == pytest.approx(0.75)
    assert relaxed["EyeLeftX"] == relaxed["EyeLeftY"] == 0.0


def test_out_of_range_and_nan_inputs_are_clamped():
    frame = MotionFrame(t=0.0, gaze=Gaze(yaw=-400.0, pitch=float("nan")),
                        expressions={"jawOpen": 3.0, "mouthClose": -1.0, "browInnerUp": float("nan")})
    values = params(asyncio.run(receive([frame])))
    assert values["JawOpen"] == 1.0 and values["MouthClosed"] == 0.0 and values["BrowInnerUp"] == 0.0
    assert values["EyeLeftX"] == 1.0 and values["EyeLeftY"] == 0.0
    assert all(math.isfinite(v) for v in values.values())


def test_custom_prefix():
    values = params(asyncio.run(receive([MotionFrame(t=0.0, expressions={"jawOpen": 0.5})], prefix="v2/")),
                    prefix="v2/")
    assert values["JawOpen"] == pytest.approx(0.5)


@pytest.mark.parametrize("prefix", ["/FT/v2/", "FT v2/", "FT//v2/", "FT/*/"])
def test_invalid_prefix_is_rejected(prefix):
    with pytest.raises(ValueError, match="invalid VRChat parameter prefix"):
        VrchatEncoder(prefix)


def test_sender_without_vrchat_never_raises(caplog):
    caplog.set_level(logging.WARNING, logger="facecast.bridges.vrchat")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    sender = VrchatSender("127.0.0.1", port)
    for i in range(200):
        sender.send(MotionFrame(t=i / 30))
    sender.close()
    assert sender.transport.failed > 0
    assert len(caplog.records) == 1
