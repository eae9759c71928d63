"""facecast's WebSocket + HTTP server against real clients on loopback (websockets, raw sockets, PyAV; no mocks)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator

import av
import cv2
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from facecast.bridges.frame_codec import FRAME_HEADER, MJPEG_BOUNDARY, decode_frame
from facecast.bridges.ws_protocol import MAX_MESSAGE_BYTES
from facecast.bridges.ws_server import ServerStartError, WsServer
from facecast.motion import HeadPose, MotionFrame

DISC_RGB = (220, 40, 60)
TIMEOUT_S = 5.0


def disc_avatar(size: int = 128, rgb: tuple[int, int, int] = DISC_RGB) -> np.ndarray:
    """A synthetic RGBA avatar: an opaque disc (radius size/4) on full transparency."""
    image = np.zeros((size, size, 4), np.uint8)
    cv2.circle(image, (size // 2, size // 2), size // 4, (*rgb, 255), -1)
    return image


def motion(i: int, fps: float = 30.0, capture_delay: float | None = None) -> MotionFrame:
    capture = None if capture_delay is None else time.monotonic() - capture_delay
    return MotionFrame(t=i / fps, head=HeadPose(yaw=i * 0.5, pitch=-i * 0.25), voice=(i % 10) / 10,
                       expressions={"jawOpen": (i % 7) / 7}, capture_time=capture)


class FrameProducer:
    """The daemon's frame loop in miniature: sends `count` frames at `fps` from its own thread."""

    def __init__(self, server: WsServer, image: np.ndarray | Callable[[int], np.ndarray] | None, count: int,
                 fps: float = 30.0, capture_delay: float | None = None) -> None:
        self.server, self.image, self.count, self.fps, self.capture_delay = server, image, count, fps, capture_delay
        self.send_seconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        for i in range(self.count):
            if self._stop.wait(max(0.0, start + i / self.fps - time.monotonic())):
                return
            image = self.image(i) if callable(self.image) else self.image
            frame = motion(i, self.fps, self.capture_delay)
            before = time.monotonic()
            self.server.send(frame, image)
            self.send_seconds.append(time.monotonic() - before)

    def __enter__(self) -> FrameProducer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def join(self) -> None:
        self._thread.join()


@pytest.fixture
def commands() -> list[dict]:
    """The control commands the server passed on, in order."""
    return []


@pytest.fixture
def server(commands: list[dict]) -> Iterator[WsServer]:
    srv = WsServer(port=0, on_control=lambda command, reply: commands.append(command), background=(0, 0, 255))
    srv.start()
    yield srv
    srv.stop()


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def ws_url(server: WsServer, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def raw_get(port: int, path: str, host: str | None = None, origin: str | None = None,
            upgrade: bool = False, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 GET over a plain socket with exactly the given Host/Origin; reads until the server closes
    (an MJPEG stream: until its first part)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}"]
    if origin:
        lines.append(f"Origin: {origin}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if upgrade:
        lines += ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                  "Sec-WebSocket-Version: 13"]
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            if (upgrade or b"multipart/x-mixed-replace" in data) and b"\r\n\r\n" in data:  # streams stay open
                break
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, body


# --------------------------------------------------------------------------- the live server


def test_motion_stream_hello_rate_and_values(server: WsServer) -> None:
    count, fps = 30, 30.0
    last_t = round((count - 1) / fps, 6)

    async def run() -> tuple[dict, list[tuple[float, dict]], dict]:
        async with connect(ws_url(server, "/motion")) as ws:
            hello = json.loads(await ws.recv())
            received: list[tuple[float, dict]] = []
            with FrameProducer(server, disc_avatar(), count, fps, capture_delay=0.04):
                while not received or received[-1][1]["frame"]["t"] < last_t:  # the newest frame always arrives
                    message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
                    received.append((time.monotonic(), message))
            async with connect(ws_url(server, "/motion")) as late:  # joins right after 1 s of frames
                late_hello = json.loads(await late.recv())
        return hello, received, late_hello

    hello, received, late_hello = asyncio.run(run())
    assert hello == {"type": "hello", "version": 1, "fps": 0.0, "size": None}
    assert late_hello["size"] == [128, 128] and 20 <= late_hello["fps"] <= 35
    indexes = [round(message["frame"]["t"] * fps) for _, message in received]
    assert indexes == sorted(set(indexes)) and len(indexes) >= 0.9 * count  # all of them on an idle machine
    for i, (_, message) in zip(indexes, received, strict=True):
        assert message["type"] == "motion" and message["version"] == 1
        capture = message["frame"].pop("capture_time")
        assert message["frame"] == motion(i, fps).to_dict()
        assert isinstance(capture, float) and 40 <= message["latency_ms"] < 200
    span, expected = received[-1][0] - received[0][0], (indexes[-1] - indexes[0]) / fps
    assert 0.7 * expected < span < 1.5 * expected  # delivered at the submitted rate
    counters = server.counters
    assert counters["motion_sent"] >= len(received) and counters["encoded"] == 0  # no frame client: no encoding


def test_frames_stream_header_and_alpha(server: WsServer) -> None:
    image = disc_avatar(128)

    async def run() -> list[bytes]:
        async with connect(ws_url(server, "/frames")) as ws:
            with FrameProducer(server, image, 10, capture_delay=0.0):
                return [await asyncio.wait_for(ws.recv(), TIMEOUT_S) for _ in range(5)]

    messages = asyncio.run(run())
    indexes = []
    for data in messages:
        assert isinstance(data, bytes)
        header, decoded = decode_frame(data)
        indexes.append(header.index)
        assert header.t == pytest.approx((header.index - 1) / 30.0)
        assert header.capture_time is not None and abs(header.capture_time - time.monotonic()) < 10
        np.testing.assert_array_equal(decoded[..., 3], image[..., 3])
        assert decoded[0, 0, 3] == 0 and decoded[64, 64, 3] == 255
        assert np.abs(decoded[64, 64, :3].astype(int) - DISC_RGB).max() <= 4
    assert indexes == sorted(indexes) and len(set(indexes)) == len(indexes)


def test_new_frames_client_gets_the_current_frame_at_once(server: WsServer) -> None:
    server.send(motion(0), disc_avatar(64))

    async def first() -> bytes:
        async with connect(ws_url(server, "/frames")) as ws:
            return await asyncio.wait_for(ws.recv(), TIMEOUT_S)

    assert decode_frame(asyncio.run(first()))[0].index == 1
    assert decode_frame(asyncio.run(first()))[0].index == 1  # from the cache: encoded once
    assert server.counters["encoded"] == 1


def test_slow_client_does_not_delay_fast_client_or_grow_memory(server: WsServer) -> None:
    rng = np.random.default_rng(1)
    noisy = [np.dstack([rng.integers(0, 256, (384, 384, 3), np.uint8), np.full((384, 384), 255, np.uint8)])
             for _ in range(4)]
    count, fps = 75, 30.0  # incompressible images: ~100 KiB per WebP, more than the kernel buffers hold
    slow_received: list[int] = []
    fast_delays: dict[int, float] = {}  # frame index -> seconds from capture (= send) to arrival

    async def slow(connected: asyncio.Event) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny window: the server must buffer or drop
        sock.connect(("127.0.0.1", server.port))
        async with connect(ws_url(server, "/frames"), sock=sock, max_size=None, max_queue=1,
                           close_timeout=0.1) as ws:
            connected.set()
            while True:
                slow_received.append(FRAME_HEADER.unpack_from(await ws.recv())[2])
                await asyncio.sleep(1.0)  # reads one message per second

    async def fast(ws: ClientConnection) -> None:
        while True:
            _, _, index, _, capture = FRAME_HEADER.unpack_from(await ws.recv())  # no need to decode the image
            fast_delays[index] = time.monotonic() - capture

    async def run(producer: FrameProducer) -> int:
        connected = asyncio.Event()
        slow_task = asyncio.create_task(slow(connected))
        await asyncio.wait_for(connected.wait(), TIMEOUT_S)
        async with connect(ws_url(server, "/frames"), max_size=None) as ws:
            server.send(motion(0), noisy[0])  # warm the encoder up; not counted
            await asyncio.wait_for(ws.recv(), TIMEOUT_S)
            fast_task = asyncio.create_task(fast(ws))
            with producer:
                await asyncio.sleep(0.5)  # buffers towards the slow client are full by now
                before = tracemalloc.get_traced_memory()[0]
                await asyncio.get_running_loop().run_in_executor(None, producer.join)
            growth = tracemalloc.get_traced_memory()[0] - before
            await asyncio.sleep(0.3)  # the last frames in flight
            for task in (fast_task, slow_task):
                task.cancel()
            await asyncio.gather(fast_task, slow_task, return_exceptions=True)
        return growth

    producer = FrameProducer(server, lambda i: noisy[i % len(noisy)], count, fps, capture_delay=0.0)
    tracemalloc.start()
    try:
        growth = asyncio.run(run(producer))
    finally:
        tracemalloc.stop()
    # 2 s of frames towards the slow client would be ~6 MiB if queued; latest-frame-wins holds about one
    assert growth < 1.5 * 2**20, f"memory grew by {growth / 2**20:.1f} MiB"
    assert len(slow_received) <= 4 and server.counters["dropped"] > 0
    # The fast client gets every frame the server encoded (all of them on an idle machine; a CPU-starved
    # encoder skips frames for everyone alike), and gets it soon: waiting for the slow client would cost ~1 s.
    encoded = server.counters["encoded"] - 1  # without the warm-up frame
    assert len(fast_delays) >= 0.95 * encoded, f"fast client got {len(fast_delays)} of {encoded} encoded frames"
    assert encoded >= count // 3, f"only {encoded} of {count} frames encoded"
    median = float(np.median(list(fast_delays.values())))
    assert median < 0.25, f"median delivery delay {median * 1000:.0f} ms"
    # send never waits for clients (only, like any Python thread, for the GIL now and then)
    assert np.median(producer.send_seconds) < 0.005


def test_status_json_with_provider(server: WsServer) -> None:
    with FrameProducer(server, None, 10, capture_delay=0.05) as producer:
        producer.join()
    server.set_status_provider(lambda: {"repeated": 3, "inputs": {"mic": "ok"}, "outputs": {"vmc": {"sent": 9}}})
    status, headers, body = raw_get(server.port, "/status")
    assert status == 200 and headers["content-type"] == "application/json"
    assert not any(name.startswith("access-control-") for name in headers)
    data = json.loads(body)
    assert data["frames"] == 10 and data["repeated"] == 3 and data["inputs"] == {"mic": "ok"}
    assert data["fps"] > 0 and data["latency_ms"]["p50"] == pytest.approx(50, abs=20)
    assert data["latency_ms"]["p95"] >= data["latency_ms"]["p50"]
    assert data["outputs"]["vmc"] == {"sent": 9} and data["outputs"]["websocket"]["submitted"] == 10
    assert data["clients"] == 0 and data["last_error"] is None

    def broken() -> dict:
        raise RuntimeError("daemon state unavailable")

    server.set_status_provider(broken)
    status, _, body = raw_get(server.port, "/status")
    assert status == 200 and "daemon state unavailable" in json.loads(body)["last_error"]


def test_overlay_page_and_http_errors(server: WsServer) -> None:
    for path in ("/", "/overlay", "/overlay?width=300&x=10"):
        status, headers, body = raw_get(server.port, path)
        assert status == 200 and headers["content-type"].startswith("text/html") and b"overlay.js" in body
        assert "connect-src 'self'" in headers["content-security-policy"]
        assert not any(name.startswith("access-control-") for name in headers)
    status, headers, body = raw_get(server.port, "/overlay.js")
    assert status == 200 and "javascript" in headers["content-type"] and b"/frames" in body
    assert raw_get(server.port, "/nope")[0] == 404
    assert raw_get(server.port, "/motion")[0] == 426  # a WebSocket endpoint needs an upgrade


def test_mjpeg_stream_over_raw_socket_and_pyav(server: WsServer) -> None:
    with FrameProducer(server, disc_avatar(128), 90), \
            socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(f"GET /video.mjpeg HTTP/1.1\r\nHost: localhost:{server.port}\r\n\r\n".encode())
        data = b""
        while data.count(f"--{MJPEG_BOUNDARY}\r\n".encode()) < 4:
            chunk = sock.recv(65536)
            assert chunk, "the stream ended"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}".encode() in head
        assert b"access-control" not in head.lower()
        parts = body.split(f"--{MJPEG_BOUNDARY}\r\n".encode())[1:3]
        for part in parts:
            part_head, _, rest = part.partition(b"\r\n\r\n")
            fields = dict(line.split(": ", 1) for line in part_head.decode().split("\r\n"))
            assert fields["Content-Type"] == "image/jpeg"
            jpeg = rest[:int(fields["Content-Length"])]
            rgb = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
            assert np.abs(rgb[64, 64].astype(int) - DISC_RGB).max() <= 8
            assert np.abs(rgb[2, 2].astype(int) - (0, 0, 255)).max() <= 8  # alpha over the background colour
        with av.open(f"{server.url}/video.mjpeg", timeout=TIMEOUT_S) as container:
            stream = container.streams.video[0]
            frame = next(container.decode(stream))
            assert stream.codec_context.name == "mjpeg" and (frame.width, frame.height) == (128, 128)
        assert wait_until(lambda: server.counters["clients"]["mjpeg"] == 1)  # the raw client still streams
    assert wait_until(lambda: server.counters["clients"]["mjpeg"] == 0)


def test_mjpeg_stream_keeps_its_size_when_the_pictures_shrink_under_load(server: WsServer) -> None:
    """The live daemon sends smaller pictures when it falls behind; OBS's Media Source would resize its scene item
    with the stream, so the MJPEG stream stays at the largest size sent (the overlay page scales up itself)."""
    big, small = disc_avatar(128), disc_avatar(64)
    with FrameProducer(server, lambda i: big if i < 5 else small, 120):
        wait_until(lambda: server.counters["submitted"] > 10)      # the small pictures are coming now
        with av.open(f"{server.url}/video.mjpeg", timeout=TIMEOUT_S) as container:
            frame = next(container.decode(container.streams.video[0]))
            assert (frame.width, frame.height) == (128, 128)
            rgb = frame.to_ndarray(format="rgb24")
            assert np.abs(rgb[64, 64].astype(int) - DISC_RGB).max() <= 8   # the small disc, scaled up


def test_control_commands(server: WsServer, commands: list[dict]) -> None:
    async def request(ws: ClientConnection, message: object) -> dict:
        await ws.send(message if isinstance(message, str) else json.dumps(message))
        return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))

    async def run() -> None:
        async with connect(ws_url(server, "/control")) as ws:
            assert await request(ws, {"type": "gaze", "yaw": 10, "pitch": -5, "token": server.token}) == {"type": "ack"}
            for bad in ({"type": "mute", "muted": True},
                        {"type": "mute", "muted": True, "token": server.token + "x"},
                        "{not json", {"type": "distance", "value": 9, "token": server.token}):
                reply = await request(ws, bad)
                assert reply["type"] == "error" and reply["message"]
            await ws.send(b"\x00binary")
            assert (json.loads(await ws.recv()))["type"] == "error"
            assert await request(ws, {"type": "mute", "muted": True, "token": server.token}) == {"type": "ack"}

    asyncio.run(run())
    assert commands == [{"type": "gaze", "yaw": 10.0, "pitch": -5.0}, {"type": "mute", "muted": True}]


def test_control_callback_refusal_and_crash_keep_serving() -> None:
    def on_control(command: dict, reply: object) -> None:
        if command["type"] == "portrait":
            raise ValueError(f"cannot read {command['path']}")
        raise RuntimeError("daemon bug")

    srv = WsServer(port=0, on_control=on_control, token="fixed-token")
    srv.start()
    try:
        async def run() -> list[dict]:
            async with connect(ws_url(srv, "/control")) as ws:
                replies = []
                for message in ({"type": "portrait", "path": "/missing.png"}, {"type": "mute", "muted": True}):
                    await ws.send(json.dumps({**message, "token": "fixed-token"}))
                    replies.append(json.loads(await ws.recv()))
                return replies

        assert asyncio.run(run()) == [{"type": "error", "message": "cannot read /missing.png"},
                                      {"type": "error", "message": "internal error"}]
        assert raw_get(srv.port, "/status")[0] == 200
    finally:
        srv.stop()


def test_oversize_message_closes_only_that_connection(server: WsServer, commands: list[dict],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        async with connect(ws_url(server, "/motion")) as watcher:
            await watcher.recv()  # hello
            async with connect(ws_url(server, "/control"), max_size=None) as ws:
                await ws.send(json.dumps({"type": "mute", "pad": "x" * MAX_MESSAGE_BYTES, "token": server.token}))
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), TIMEOUT_S)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big
            server.send(motion(1))
            assert json.loads(await asyncio.wait_for(watcher.recv(), TIMEOUT_S))["type"] == "motion"
            async with connect(ws_url(server, "/control")) as ws:
                await ws.send(json.dumps({"type": "mute", "muted": False, "token": server.token}))
                assert json.loads(await ws.recv()) == {"type": "ack"}

    with caplog.at_level(logging.WARNING, logger="facecast"):
        asyncio.run(run())
    assert commands == [{"type": "mute", "muted": False}]
    assert [r.getMessage() for r in caplog.records] == [
        f"control message refused: over {MAX_MESSAGE_BYTES} bytes (connection closed)"]


@pytest.mark.parametrize("path", ["/motion", "/frames", "/control"])
def test_foreign_origin_refused_on_every_websocket(server: WsServer, path: str) -> None:
    async def status(origin: str) -> int:
        try:
            async with connect(ws_url(server, path), origin=origin):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(status("http://evil.example")) == 403
    assert asyncio.run(status(f"http://evil.example:{server.port}")) == 403
    assert asyncio.run(status(f"http://127.0.0.1:{server.port}")) == 101  # the overlay page's own origin


def test_wrong_host_refused_everywhere(server: WsServer) -> None:
    port = server.port
    for path, upgrade in (("/", False), ("/status", False), ("/video.mjpeg", False), ("/motion", True),
                          ("/control", True)):
        assert raw_get(port, path, host=f"evil.example:{port}", upgrade=upgrade)[0] == 403, path
        assert raw_get(port, path, origin="http://evil.example", upgrade=upgrade)[0] == 403, path
    assert raw_get(port, "/status", host=f"localhost:{port}")[0] == 200
    assert raw_get(port, "/control", host=f"localhost:{port}", upgrade=True)[0] == 101
    assert server.counters["http_refused"] == 10


def test_port_in_use_is_a_one_line_oserror(server: WsServer) -> None:
    other = WsServer(port=server.port)
    with pytest.raises(ServerStartError) as caught:
        other.start()
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.EADDRINUSE
    assert str(caught.value).count("\n") == 0 and str(server.port) in str(caught.value)
    assert raw_get(server.port, "/status")[0] == 200  # the first server is unaffected


def test_stop_closes_clients_and_frees_the_port() -> None:
    srv = WsServer(port=0)
    srv.start()
    port = srv.port

    async def run() -> None:
        async with connect(ws_url(srv, "/motion")) as ws:
            await ws.recv()
            await asyncio.get_running_loop().run_in_executor(None, srv.stop)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), TIMEOUT_S)

    asyncio.run(run())
    srv.send(motion(0))  # after stop: harmless
    again = WsServer(port=port)
    again.start()
    again.stop()


# --------------------------------------------------------------------------- hostile input (issue 21, finding 3)

def control_exchange(server: WsServer, messages: list[str | bytes], answers_each: int = 1) -> list[str]:
    """Send each message on one /control connection and return the raw answers (text frames)."""
    async def run() -> list[str]:
        async with connect(ws_url(server, "/control"), max_size=None) as ws:
            out = []
            for message in messages:
                await ws.send(message)
                for _ in range(answers_each):
                    out.append(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
            return out

    return asyncio.run(run())


def test_hostile_control_messages_get_one_line_each_and_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """JSON nested 20,000 deep, a 4,001-digit integer, paths of 256-4,096 characters or with control
    characters: each gets one one-line error naming the problem, and the log holds no traceback."""
    commands: list[dict] = []
    srv = WsServer(port=0, on_control=lambda command, reply: commands.append(command))
    srv.start()
    token = srv.token
    hostile = {
        "[" * 20_000 + "]" * 20_000: "nested deeper",
        '{"type": "gaze", "yaw": ' + "9" * 4001 + ', "pitch": 0, "token": "%s"}' % token: "at most 32 characters",
        json.dumps({"type": "gaze", "yaw": 1e308 * 10, "pitch": 0, "token": token}): "allows",  # Infinity
        json.dumps({"type": "portrait", "path": "a" * 256, "token": token}): "at most 255 bytes",
        json.dumps({"type": "portrait", "path": "/tmp/" + "b" * 4091, "token": token}): "1-1024 characters",
        json.dumps({"type": "portrait", "path": "me\n.png", "token": token}): "control characters",
        json.dumps({"type": "portrait", "path": "me\ud800.png", "token": token}): "surrogates",
        json.dumps({"type": "portrait", "path": "me\0.png", "token": token}): "control characters",
    }
    try:
        with caplog.at_level(logging.INFO):
            answers = control_exchange(srv, list(hostile))
    finally:
        srv.stop()
    for (message, reason), answer in zip(hostile.items(), answers, strict=True):
        assert "\n" not in answer and answer.count("{") == 1, answer
        reply = json.loads(answer)
        assert reply["type"] == "error" and reason in reply["message"], (message[:60], reply)
    assert commands == []
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    # the refusals are logged, but as one line for a burst (a client's fault must not bury the log) and, at
    # the latest when the server stops, one line counting the rest
    refused = [r.getMessage() for r in caplog.records if "control message refused" in r.getMessage()]
    assert len(refused) == 2 and "nested deeper" in refused[0], refused
    assert f"({len(hostile) - 1} times in the last " in refused[1], refused


def test_a_failing_handler_is_one_error_answer_and_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """A bug in the daemon's handler: one 'internal error' answer, one one-line log record, the traceback
    only at debug level (`--log-level debug`)."""
    def on_control(command: dict, reply: object) -> None:
        raise RuntimeError("daemon bug\nwith a second line")

    srv = WsServer(port=0, on_control=on_control)
    srv.start()
    try:
        message = json.dumps({"type": "mute", "muted": True, "token": srv.token})
        with caplog.at_level(logging.INFO, logger="facecast"):
            assert [json.loads(a) for a in control_exchange(srv, [message] * 3)] == [
                {"type": "error", "message": "internal error"}] * 3
        errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(errors) == 3 and all(r.exc_info is None and "\n" not in r.getMessage() for r in errors)
        assert "RuntimeError: daemon bug with a second line" in errors[0].getMessage()
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="facecast"):
            control_exchange(srv, [message])
        assert any(r.exc_info for r in caplog.records if r.levelno == logging.DEBUG)
        assert raw_get(srv.port, "/status")[0] == 200
    finally:
        srv.stop()


def test_control_messages_are_rate_limited_per_connection(commands: list[dict]) -> None:
    srv = WsServer(port=0, on_control=lambda command, reply: commands.append(command), control_rate=10,
                   control_burst=5)
    srv.start()
    try:
        message = json.dumps({"type": "mute", "muted": True, "token": srv.token})
        answers = [json.loads(a) for a in control_exchange(srv, [message] * 30)]
        limited = [a for a in answers if a["type"] == "error"]
        assert 5 <= len(commands) <= 10 and len(commands) + len(limited) == 30
        assert all("at most 10 per second" in a["message"] for a in limited)
        assert srv.counters["control_limited"] == len(limited)
        time.sleep(0.3)  # the bucket refills: a polite client is served again
        assert json.loads(control_exchange(srv, [message])[0]) == {"type": "ack"}
    finally:
        srv.stop()


def test_a_later_answer_follows_the_first_on_the_same_connection() -> None:
    """A handler may answer again later, from another thread (a portrait swap: accepted, then swapped)."""
    def on_control(command: dict, reply) -> dict:
        threading.Timer(0.05, reply, args=({"type": "swapped", "path": command["path"]},)).start()
        return {"type": "accepted", "path": command["path"]}

    srv = WsServer(port=0, on_control=on_control)
    srv.start()
    try:
        message = json.dumps({"type": "portrait", "path": "me.png", "token": srv.token})
        assert [json.loads(a) for a in control_exchange(srv, [message], answers_each=2)] == [
            {"type": "accepted", "path": "me.png"}, {"type": "swapped", "path": "me.png"}]
    finally:
        srv.stop()


# --------------------------------------------------------------------------- off loopback (issue 21, finding 6)

def test_off_loopback_every_endpoint_needs_the_token(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="facecast"):
        srv = WsServer("0.0.0.0", 0, token="lan-token-0123456789abcdef")
        srv.start()
    try:
        port = srv.port
        endpoints = [("/", False), ("/overlay", False), ("/overlay.js", False), ("/status", False),
                     ("/video.mjpeg", False), ("/motion", True), ("/frames", True), ("/control", True)]
        for path, upgrade in endpoints:
            assert raw_get(port, path, upgrade=upgrade)[0] == 401, path
            assert raw_get(port, path + "?token=wrong", upgrade=upgrade)[0] == 401, path
            ok = 101 if upgrade else 200
            assert raw_get(port, path + "?token=lan-token-0123456789abcdef", upgrade=upgrade)[0] == ok, path
            assert raw_get(port, path, upgrade=upgrade,
                           headers={"Authorization": "Bearer lan-token-0123456789abcdef"})[0] == ok, path
        assert srv.require_token
        assert any("beyond this computer" in r.getMessage() and "token" in r.getMessage() for r in caplog.records)
        # a LAN address and a local name work in Host (the streaming PC's OBS), a foreign name does not
        for host in (f"192.168.1.5:{port}", f"gaming-pc.local:{port}", f"gaming-pc:{port}"):
            assert raw_get(port, "/status?token=lan-token-0123456789abcdef", host=host)[0] == 200, host
        assert raw_get(port, "/status?token=lan-token-0123456789abcdef", host=f"evil.example:{port}")[0] == 403
        # the overlay page passes the token on to its script (and the script to its socket)
        page = raw_get(port, "/overlay?token=lan-token-0123456789abcdef")[2]
        assert b'src="overlay.js?token=lan-token-0123456789abcdef"' in page
        assert srv.overlay_url.endswith("/overlay?token=lan-token-0123456789abcdef")
    finally:
        srv.stop()


def test_loopback_streams_need_no_token(server: WsServer) -> None:
    assert not server.require_token and server.overlay_url == f"{server.url}/overlay"
    assert raw_get(server.port, "/status")[0] == 200
    assert raw_get(server.port, "/motion", upgrade=True)[0] == 101


@pytest.mark.parametrize("path, upgrade", [("/video.mjpeg", False), ("/status", False), ("/frames", True),
                                           ("/motion", True), ("/overlay", False)])
def test_cross_site_requests_are_refused(server: WsServer, path: str, upgrade: bool) -> None:
    """A foreign page embedding /video.mjpeg in an <img> sends no Origin, but Sec-Fetch-Site: cross-site."""
    for site in ("cross-site", "same-site"):
        assert raw_get(server.port, path, upgrade=upgrade, headers={"Sec-Fetch-Site": site})[0] == 403, site
    for site in ("none", "same-origin"):  # typed or bookmarked (OBS), or the overlay's own requests
        assert raw_get(server.port, path, upgrade=upgrade, headers={"Sec-Fetch-Site": site})[0] in (200, 101)
