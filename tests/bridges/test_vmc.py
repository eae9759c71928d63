"""VMC bridge against a real OSC receiver on loopback (python-osc server, no mocks)."""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_packet import OscPacket
from pythonosc.osc_server import BlockingOSCUDPServer
from pythonosc.parsing.osc_types import get_string

from facecast.bridges.osc import MAX_DATAGRAM
from facecast.bridges.osc_udp import VmcSender
from facecast.bridges.vmc import (
    ASSISTANT_PORT,
    BONE_OFFSETS,
    TRACKER_SERIAL,
    VRM0_TO_VRM1,
    VmcEncoder,
    parse_bone_offsets,
    role_for_port,
    unity_rotation,
)
from facecast.motion import ARKIT_BLENDSHAPES, Blink, Gaze, HeadPose, MotionFrame

VRM0_NAMES = {"A", "I", "U", "E", "O", "Blink", "Blink_L", "Blink_R", "Joy", "Angry", "Sorrow",
              "LookUp", "LookDown", "LookLeft", "LookRight"}
VRM1_NAMES = {"aa", "ih", "ou", "ee", "oh", "blink", "blinkLeft", "blinkRight", "happy", "angry", "sad",
              "lookUp", "lookDown", "lookLeft", "lookRight"}


@dataclass
class Packet:
    """One received datagram: was it a bundle, and its messages as (address, type tags, args)."""

    bundle: bool
    messages: list[tuple[str, str, list]] = field(default_factory=list)


class _RecordingDispatcher(Dispatcher):
    """Dispatches as usual (frames counted on /VMC/Ext/OK) and keeps each datagram's structure and type tags."""

    def __init__(self) -> None:
        super().__init__(strict_timing=False)
        self.packets: list[Packet] = []
        self.frames = 0
        self.map("/VMC/Ext/OK", self._ok)
        self.set_default_handler(lambda *_: None)

    def _ok(self, _address: str, *_args) -> None:
        self.frames += 1

    def call_handlers_for_packet(self, data: bytes, client_address):
        packet = Packet(bundle=data.startswith(b"#bundle\0"))
        for timed in OscPacket(data).messages:
            message = timed.message
            _, index = get_string(message.dgram, 0)
            tags, _ = get_string(message.dgram, index)
            packet.messages.append((message.address, tags, list(message.params)))
        self.packets.append(packet)
        return super().call_handlers_for_packet(data, client_address)


class Receiver:
    """A VMC Marionette stand-in: python-osc's UDP server in a thread (blocking flavour: datagrams stay in order)."""

    def __init__(self, port: int = 0) -> None:
        self.dispatcher = _RecordingDispatcher()
        self.server = BlockingOSCUDPServer(("127.0.0.1", port), self.dispatcher)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(2)

    def wait_packets(self, count: int, timeout: float = 3.0) -> list[Packet]:
        deadline = time.monotonic() + timeout
        while len(self.dispatcher.packets) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(self.dispatcher.packets) >= count, f"got {len(self.dispatcher.packets)} of {count} datagrams"
        return self.dispatcher.packets

    def times(self) -> list[float]:
        """The /VMC/Ext/T value of every frame received."""
        return [args[0] for p in self.dispatcher.packets for address, _, args in p.messages
                if address == "/VMC/Ext/T"]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def closed_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def blend_values(packets: list[Packet]) -> dict[str, float]:
    return {args[0]: args[1] for p in packets for address, _, args in p.messages if address == "/VMC/Ext/Blend/Val"}


def send_one(receiver: Receiver, frame: MotionFrame, names: str = "vrm0", **options) -> list[Packet]:
    sender = VmcSender("127.0.0.1", receiver.port, names=names, **options)
    try:
        sender.send(frame)
        return receiver.wait_packets(len(sender.encoder.encode(frame)))
    finally:
        sender.close()


def test_frame_is_bones_bundle_then_blend_bundle_then_ok_with_exact_types(receiver):
    packets = send_one(receiver, MotionFrame(t=1.25, head=HeadPose(yaw=10.0)))
    assert len(packets) == 3 and all(p.bundle for p in packets)

    bones, blend, ok = packets
    assert [(a, t, args[0]) for a, t, args in bones.messages] == [
        ("/VMC/Ext/Bone/Pos", ",sfffffff", "Neck"), ("/VMC/Ext/Bone/Pos", ",sfffffff", "Head")]
    for _, _, args in bones.messages:
        qx, qy, qz, qw = args[4:]
        assert math.isclose(qx * qx + qy * qy + qz * qz + qw * qw, 1.0, rel_tol=1e-5)

    assert blend.messages[-1] == ("/VMC/Ext/Blend/Apply", ",", [])
    vals = blend.messages[:-1]
    assert {a for a, _, _ in vals} == {"/VMC/Ext/Blend/Val"}
    assert {t for _, t, _ in vals} == {",sf"}
    assert {args[0] for _, _, args in vals} == VRM0_NAMES

    assert ok.messages == [("/VMC/Ext/OK", ",i", [1]), ("/VMC/Ext/T", ",f", [1.25])]
    assert receiver.dispatcher.frames == 1


def test_vrm0_values_visemes_blinks_gaze_and_joy(receiver):
    frame = MotionFrame(
        t=0.0, blink=Blink(left=1.0, right=0.0), gaze=Gaze(yaw=15.0, pitch=-30.0),
        expressions={"jawOpen": 0.8, "mouthSmileLeft": 0.6, "mouthSmileRight": 0.6},
        visemes={"sil": 0.2, "A": 0.8, "I": 0.0, "U": 0.0, "E": 0.0, "O": 0.0})
    values = blend_values(send_one(receiver, frame))
    assert values["A"] == pytest.approx(0.8, abs=1e-6)
    assert values["I"] == values["U"] == values["E"] == values["O"] == 0.0
    # The subject's left eye (on image right) is Blink_L; nothing shared by both eyes.
    assert (values["Blink_L"], values["Blink_R"], values["Blink"]) == (1.0, 0.0, 0.0)
    assert values["Joy"] == pytest.approx(0.6, abs=1e-6)
    # Looking towards image right is the avatar's own left; down at full scale.
    assert values["LookLeft"] == pytest.approx(0.5, abs=1e-6) and values["LookRight"] == 0.0
    assert values["LookDown"] == pytest.approx(1.0) and values["LookUp"] == 0.0
    assert all(0.0 <= v <= 1.0 for v in values.values())


def test_shared_blink_goes_to_blink_and_the_rest_to_each_eye():
    shapes = VmcEncoder().blendshapes(MotionFrame(t=0.0, blink=Blink(left=0.8, right=0.6)))
    assert shapes["Blink"] == pytest.approx(0.6)
    assert shapes["Blink_L"] == pytest.approx(0.2) and shapes["Blink_R"] == 0.0


def _rotate(q: tuple[float, float, float, float], v: tuple[float, float, float]) -> tuple[float, float, float]:
    """Rotate vector v by unit quaternion q (x, y, z, w): v' = q v q*."""
    x, y, z, w = q
    vx, vy, vz = v
    tx, ty, tz = 2 * (y * vz - z * vy), 2 * (z * vx - x * vz), 2 * (x * vy - y * vx)
    return (vx + w * tx + y * tz - z * ty, vy + w * ty + z * tx - x * tz, vz + w * tz + x * ty - y * tx)


def _compose(a, b):
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz)


def head_rotation(receiver: Receiver, head: HeadPose) -> tuple[float, float, float, float]:
    """Neck * Head world rotation as received."""
    bones = send_one(receiver, MotionFrame(t=0.0, head=head))[0]
    (_, _, neck), (_, _, hd) = bones.messages
    return _compose(tuple(neck[4:]), tuple(hd[4:]))


def test_head_yaw_turns_the_nose_to_image_right_which_is_minus_x(receiver):
    q = head_rotation(receiver, HeadPose(yaw=30.0))
    assert q[1] < 0  # negative rotation about Unity's Y
    nose = _rotate(q, (0.0, 0.0, 1.0))
    assert nose[0] == pytest.approx(-math.sin(math.radians(30)), abs=1e-4)


def test_pitch_up_and_counter_clockwise_roll_signs():
    nose = _rotate(unity_rotation(0.0, 20.0, 0.0), (0.0, 0.0, 1.0))
    assert nose[1] == pytest.approx(math.sin(math.radians(20)))  # chin up: nose to +Y
    top = _rotate(unity_rotation(0.0, 0.0, 20.0), (0.0, 1.0, 0.0))
    assert top[0] == pytest.approx(math.sin(math.radians(20)))  # CCW for the viewer: top to image left (+X)


def test_unity_rotation_matches_unity_euler_composition():
    # Quaternion.Euler(0, 90, 0) == (0, 0.7071, 0, 0.7071): our yaw is the opposite sign.
    assert unity_rotation(-90.0, 0.0, 0.0) == pytest.approx((0.0, math.sqrt(0.5), 0.0, math.sqrt(0.5)))
    # Unity applies Z, then X, then Y: Euler(x=10, y=20, z=30) = qY * qX * qZ.
    combined = unity_rotation(-20.0, -10.0, -30.0)
    expected = _compose(unity_rotation(-20, 0, 0), _compose(unity_rotation(0, -10, 0), unity_rotation(0, 0, -30)))
    assert combined == pytest.approx(expected)


def test_vrm1_names(receiver):
    frame = MotionFrame(t=0.0, blink=Blink(left=1.0), visemes={"sil": 0.0, "A": 0.0, "I": 1.0, "U": 0.0,
                                                                 "E": 0.0, "O": 0.0})
    values = blend_values(send_one(receiver, frame, names="vrm1"))
    assert set(values) == VRM1_NAMES
    assert values["ih"] == 1.0 and values["blinkLeft"] == 1.0
    assert set(VRM0_TO_VRM1) == VRM0_NAMES


def test_arkit_perfect_sync_names(receiver):
    frame = MotionFrame(t=0.0, blink=Blink(right=0.5), expressions={"jawOpen": 0.4, "tongueOut": 0.25})
    packets = send_one(receiver, frame, names="arkit")
    # 52 blendshapes do not fit one 1,472-byte datagram: complete bundles, Apply once, at the very end.
    assert all(p.bundle for p in packets)
    blend = [p for p in packets if any(a.startswith("/VMC/Ext/Blend/") for a, _, _ in p.messages)]
    assert len(blend) >= 2
    applies = [(i, j) for i, p in enumerate(blend) for j, (a, _, _) in enumerate(p.messages)
               if a == "/VMC/Ext/Blend/Apply"]
    assert applies == [(len(blend) - 1, len(blend[-1].messages) - 1)]
    values = blend_values(packets)
    assert set(values) == {n[0].upper() + n[1:] for n in ARKIT_BLENDSHAPES}
    assert len(values) == 52
    assert values["JawOpen"] == pytest.approx(0.4) and values["TongueOut"] == 0.25
    assert values["EyeBlinkRight"] == 0.5 and values["EyeBlinkLeft"] == 0.0


def test_unknown_name_set_is_rejected():
    with pytest.raises(ValueError, match="vrm0, vrm1, arkit"):
        VmcEncoder("vrm2")


def test_encoder_is_pure_and_sanitises_numbers():
    frame = MotionFrame(t=2.0, head=HeadPose(yaw=float("nan")), expressions={"mouthSmileLeft": 5.0})
    encoder = VmcEncoder()
    assert encoder.encode(frame) == encoder.encode(frame)
    assert encoder.blendshapes(frame)["Joy"] == 1.0
    # A NaN angle must reach the receiver as no rotation, not as a NaN (or zero) quaternion.
    for timed in OscPacket(encoder.encode(frame)[0]).messages:
        assert timed.message.params[4:] == [0.0, 0.0, 0.0, 1.0]


def test_sender_without_receiver_never_raises_and_counts_failures(caplog):
    caplog.set_level(logging.INFO, logger="facecast.bridges.vmc")
    sender = VmcSender("127.0.0.1", closed_udp_port())
    start = time.monotonic()
    for i in range(300):
        sender.send(MotionFrame(t=i / 60))
    elapsed = time.monotonic() - start
    sender.close()
    sender.send(MotionFrame(t=99.0))  # after close: still no exception
    assert sender.transport.sent + sender.transport.failed == 300 * 3 + 3
    assert sender.transport.failed > 0
    assert elapsed < 2.0  # never blocks
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot send" in warnings[0].getMessage()


def test_a_host_name_that_does_not_resolve_is_an_outage_not_a_failure(caplog, monkeypatch):
    """`--vmc pc.local:39539` before that PC's name resolves: one warning, frames counted as lost, and once the
    name resolves (retried in the background) frames arrive. The resolver is made to fail first and then to
    answer with loopback: a name that starts resolving mid-run cannot be arranged on this machine otherwise."""
    import facecast.bridges.osc_udp as osc_udp

    caplog.set_level(logging.INFO, logger="facecast.bridges.vmc")
    unresolvable = VmcSender("nosuchhost.invalid", 39539)           # a real lookup that fails
    unresolvable.send(MotionFrame(t=0.0))
    assert unresolvable.transport.failed == 3 and "cannot resolve nosuchhost.invalid" in unresolvable.counters["error"]
    unresolvable.close()

    receiver = Receiver()
    real_lookup, lookups = socket.getaddrinfo, []

    def lookup(host, port, *args, **kwargs):
        lookups.append(host)
        if host != "streaming-pc.invalid":
            return real_lookup(host, port, *args, **kwargs)
        if len(lookups) < 3:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_lookup("127.0.0.1", port, *args, **kwargs)

    monkeypatch.setattr(osc_udp.socket, "getaddrinfo", lookup)
    monkeypatch.setattr(osc_udp, "RESOLVE_RETRY_S", 0.05)
    sender = VmcSender("streaming-pc.invalid", receiver.port)
    try:
        deadline = time.monotonic() + 10
        while not receiver.dispatcher.packets and time.monotonic() < deadline:
            sender.send(MotionFrame(t=1.0))
            time.sleep(0.01)
        receiver.wait_packets(3)
    finally:
        sender.close()
        receiver.close()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot resolve streaming-pc.invalid" in m for m in messages) == 1
    assert any("resolved streaming-pc.invalid to 127.0.0.1" in m for m in messages)
    assert sender.transport.failed > 0 and sender.transport.sent >= 3


def test_receiver_restart_mid_stream_gets_frames_again(caplog):
    caplog.set_level(logging.INFO, logger="facecast.bridges.vmc")
    first = Receiver()
    port = first.port
    sender = VmcSender("127.0.0.1", port)

    def stream(start: int, count: int, pause: float = 0.002) -> None:
        for i in range(start, start + count):
            sender.send(MotionFrame(t=float(i)))
            time.sleep(pause)

    stream(0, 20)
    first.wait_packets(60)
    first.close()
    stream(20, 20)  # nobody listening: these are lost
    second = Receiver(port)
    try:
        # Keep streaming a while so the sender sees an error-free stretch and reports recovery.
        stream(40, 140, pause=0.01)
        second.wait_packets(140 * 3)
    finally:
        second.close()
        sender.close()
    assert first.times() == [float(i) for i in range(20)]
    assert second.times() == [float(i) for i in range(40, 180)]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot send" in m for m in messages) == 1
    assert sum("again" in m for m in messages) == 1


def test_every_datagram_fits_one_ethernet_frame():
    frame = MotionFrame(t=3.0, head=HeadPose(yaw=5.0), blink=Blink(left=0.3))
    for names in ("vrm0", "vrm1", "arkit"):
        for role in ("performer", "assistant"):
            datagrams = VmcEncoder(names, role=role).encode(frame)
            assert all(len(d) <= MAX_DATAGRAM for d in datagrams), (names, role, [len(d) for d in datagrams])


def test_assistant_sends_the_head_as_a_virtual_tracker_and_no_performer_messages(receiver):
    """A Performer takes trackers and blendshapes from an Assistant, never bones (performer-spec)."""
    assert role_for_port(ASSISTANT_PORT) == "assistant" and role_for_port(39539) == "performer"
    head = HeadPose(yaw=20.0, pitch=-10.0, roll=5.0)
    packets = send_one(receiver, MotionFrame(t=1.0, head=head, blink=Blink(left=1.0)), role="assistant")
    messages = [m for p in packets for m in p.messages]
    addresses = {a for a, _, _ in messages}
    assert addresses == {"/VMC/Ext/Tra/Pos", "/VMC/Ext/Blend/Val", "/VMC/Ext/Blend/Apply"}
    (tracker,) = [(tags, args) for a, tags, args in messages if a == "/VMC/Ext/Tra/Pos"]
    assert tracker[0] == ",sfffffff" and tracker[1][0] == TRACKER_SERIAL
    assert tracker[1][4:] == pytest.approx(unity_rotation(20.0, -10.0, 5.0), abs=1e-6)
    assert blend_values(packets)["Blink_L"] == 1.0
    assert messages[-1][0] == "/VMC/Ext/Blend/Apply"


def test_assistant_role_follows_the_port_unless_given():
    for port, role, expected in ((ASSISTANT_PORT, "auto", "assistant"), (39539, "auto", "performer"),
                                 (40000, "assistant", "assistant")):
        sender = VmcSender("127.0.0.1", port, role=role)
        sender.close()
        assert sender.encoder.role == expected
    with pytest.raises(ValueError, match="performer or assistant"):
        VmcEncoder(role="marionette")


def test_bone_offsets_are_configurable(receiver):
    assert parse_bone_offsets("0.12,0.09") == ((0.0, 0.12, 0.0), (0.0, 0.09, 0.0))
    assert parse_bone_offsets("0,0.1,0.01, 0,0.08,0.02") == ((0.0, 0.1, 0.01), (0.0, 0.08, 0.02))
    for bad in ("", "0.1", "a,b", "1,2,3", "nan,0.1", "100,0"):
        with pytest.raises(ValueError, match="--vmc-bone-offsets") as info:
            parse_bone_offsets(bad)
        assert "\n" not in str(info.value)
    offsets = parse_bone_offsets("0.12,0.09")
    bones = send_one(receiver, MotionFrame(t=0.0), bone_offsets=offsets)[0]
    assert [tuple(args[1:4]) for _, _, args in bones.messages] == [pytest.approx(o) for o in offsets]
    assert BONE_OFFSETS == ((0.0, 0.10, 0.0), (0.0, 0.08, 0.0))
