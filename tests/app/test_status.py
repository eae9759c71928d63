"""`/status` tells the truth (issue 21, finding 5): recent and whole-run figures, every output's own counters
merged with the daemon's, and a UDP receiver that refuses shown as a current error until packets flow again."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import pytest

from conftest import FakeClock
from facecast.app.daemon import LiveDaemon
from facecast.bridges.osc_udp import RECOVERY_S, VmcSender, VrchatSender
from facecast.bridges.ws_server import WsServer
from facecast.motion import MotionFrame

STATUS_WINDOW_S = 5.0  # facecast.app.daemon.STATUS_WINDOW_S: the recent figures cover the last 5 s


class Idle:
    status = {"state": "idle"}
    finished = False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def read(self, timeout: float = 0.1):
        return None


def play(daemon: LiveDaemon, clock: FakeClock, seconds: float, fps: float = 30.0, latency_s: float = 0.04) -> None:
    """Hand `seconds` of frames to the outputs as the frame loop would (without running it)."""
    previous = None
    for _ in range(round(seconds * fps)):
        clock.now += 1.0 / fps
        frame = MotionFrame(t=clock.now, capture_time=clock.now - latency_s)
        daemon._account(frame, True, clock.now, previous)
        previous = clock.now


def test_fps_and_latency_cover_the_last_seconds_as_well_as_the_whole_run() -> None:
    clock = FakeClock()
    daemon = LiveDaemon(Idle(), None, [], 30, clock=clock, sleep=clock.sleep)
    daemon.stats.started = clock()
    play(daemon, clock, 6.0, latency_s=0.04)
    steady = daemon.status()
    assert steady["fps"] == pytest.approx(30, abs=0.5) and steady["slowest_second_frames"] >= 29
    assert steady["latency_ms"]["p95"] == pytest.approx(40, abs=1) and steady["max_gap_ms"] < 40
    clock.now += 3.0  # the frame loop stalls for 3 s
    stalled = daemon.status()
    assert stalled["fps"] == pytest.approx(2.0 * 30 / STATUS_WINDOW_S, abs=0.5)  # 2 s of frames in the window
    assert stalled["slowest_second_frames"] == 0 and stalled["max_gap_ms"] >= 3000
    assert stalled["run"]["fps"] == pytest.approx(180 / 9, abs=0.5)  # the old whole-run average hid the stall
    assert stalled["run"]["latency_ms"]["p95"] == pytest.approx(40, abs=1)
    play(daemon, clock, 6.0, latency_s=0.09)  # back, but later
    recovered = daemon.status()
    assert recovered["fps"] == pytest.approx(30, abs=0.5) and recovered["latency_ms"]["p50"] == pytest.approx(90, abs=1)
    assert 39 <= recovered["run"]["latency_ms"]["p50"] <= 92 and recovered["run"]["latency_ms"]["p95"] >= 89
    assert recovered["frames"] == 360


def test_each_outputs_own_counters_are_merged_with_the_daemons() -> None:
    server = WsServer(port=0)
    server.start()
    clock = FakeClock()
    daemon = LiveDaemon(Idle(), None, [server], 30, clock=clock, sleep=clock.sleep)
    server.set_status_provider(daemon.status)
    try:
        for output in daemon.outputs:
            output.send(MotionFrame(t=0.0), None)
        with urllib.request.urlopen(server.url + "/status", timeout=10) as answer:
            status = json.loads(answer.read())
    finally:
        server.stop()
    entry = status["outputs"]["websocket"]
    assert entry["sent"] == 1 and entry["errors"] == 0 and entry["error"] is None  # the daemon's counters
    assert entry["submitted"] == 1 and "clients" in entry and "motion_sent" in entry  # and the server's own


def talking(i: int) -> MotionFrame:
    """A frame whose mouth moves (VRChat's sender sends only what changed)."""
    return MotionFrame(t=i / 30, expressions={"jawOpen": (i % 10) / 10}, voice=(i % 7) / 7)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("sender_kind", [VmcSender, VrchatSender])
def test_a_refusing_udp_receiver_is_a_current_error_until_packets_flow_again(sender_kind) -> None:
    port = _free_udp_port()  # nobody listens: loopback answers with ICMP port unreachable
    sender = sender_kind("127.0.0.1", port)
    clock = FakeClock()
    daemon = LiveDaemon(Idle(), None, [sender], 30, clock=clock, sleep=clock.sleep)
    guarded = daemon.outputs[0]
    try:
        for i in range(20):
            guarded.send(talking(i), None)
            time.sleep(0.005)
        down = daemon.status()
        entry = down["outputs"][sender.name]
        assert entry["errors"] > 0 and "refused" in entry["error"].lower(), entry
        assert entry["packets_failed"] > 0 and down["last_error"].startswith(f"{sender.name}: ")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
            receiver.bind(("127.0.0.1", port))  # the receiver comes back
            receiver.settimeout(2)
            end, i = time.monotonic() + RECOVERY_S + 0.5, 0
            while time.monotonic() < end:
                guarded.send(talking(i), None)
                time.sleep(0.02)
                i += 1
            assert receiver.recv(65536)
            up = daemon.status()
        assert up["outputs"][sender.name]["error"] is None and up["last_error"] is None
        assert "refused" in up["outputs"][sender.name]["last_error"].lower()  # the latest reason stays readable
    finally:
        sender.close()


def test_the_avatars_delay_behind_the_voice_is_measured_from_the_audio_it_shows(sample_speech) -> None:
    """`/status` says how far the avatar trails the microphone, from a real run (the speech file played in real
    time through the rule generator): the capture of the sound each frame shows to its hand-off, made of the
    audio reaching the daemon, the generator's lookahead and the processing after it."""
    from facecast.app.audio_input import FileSource
    from facecast.speech.generator import make_generator

    generator = make_generator("rule", fps=30, streaming=True)
    daemon = LiveDaemon(FileSource(sample_speech), generator, [], 30)
    assert daemon.status()["av_delay_ms"] is None            # nothing shown yet: nothing to say
    daemon.run(max_seconds=3.0)
    status = daemon.status()
    delay = status["av_delay_ms"]
    assert delay["total"] == pytest.approx(delay["capture"] + delay["lookahead"] + delay["processing"], abs=1)
    # the rule generator hears 80 ms past a frame's time (`voice.LOOKAHEAD_S`), give or take one 10 ms block
    assert 1000 * generator.lookahead_s - 12 <= delay["lookahead"] <= 1000 * generator.lookahead_s + 12
    assert 0 <= delay["capture"] < delay["total"]
    # the delay is the mic-to-frame latency (from the newest sample heard) plus the lookahead before it
    assert delay["total"] == pytest.approx(status["latency_ms"]["p50"] + delay["lookahead"], abs=12)
    assert daemon.summary()["av_delay_ms"] == delay
