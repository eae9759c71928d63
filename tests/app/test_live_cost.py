"""Live cost (issue 23, part 3): no picture is rendered for an overlay server nobody watches."""

from __future__ import annotations

import time

import numpy as np
import websockets.exceptions
import websockets.sync.client

from facecast.app.audio_input import FileSource
from facecast.app.daemon import LiveDaemon
from facecast.bridges.frame_codec import decode_frame
from facecast.bridges.ws_server import WsServer
from facecast.motion import MotionFrame
from facecast.speech.generator import make_generator


class CountingRenderer:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, frame: MotionFrame) -> np.ndarray:
        self.calls += 1
        image = np.zeros((64, 64, 4), np.uint8)
        image[16:48, 16:48] = (200, 100, 50, 255)
        return image


def test_pictures_are_rendered_only_while_someone_reads_them(sample_speech) -> None:
    def live(watch: bool) -> tuple[CountingRenderer, LiveDaemon, list[bytes]]:
        server = WsServer(port=0)
        server.start()
        render = CountingRenderer()
        daemon = LiveDaemon(FileSource(sample_speech), make_generator("rule", fps=30, streaming=True), [server], 30,
                            render=render)
        received: list[bytes] = []
        try:
            if not watch:
                daemon.run(max_seconds=1.5)
                return render, daemon, received
            with websockets.sync.client.connect(server.url.replace("http", "ws") + "/frames") as ws:
                deadline = time.monotonic() + 5
                while not server.wants_image and time.monotonic() < deadline:
                    time.sleep(0.01)
                daemon.run(max_seconds=1.5)
                while True:
                    try:
                        message = ws.recv(timeout=0.5)
                    except (TimeoutError, websockets.exceptions.ConnectionClosed):   # the daemon closes its outputs
                        break
                    if isinstance(message, bytes):
                        received.append(message)
        finally:
            server.stop()
        return render, daemon, received

    unwatched, daemon, _ = live(watch=False)
    assert daemon.stats.frames > 10 and unwatched.calls == 0    # motion went out; no picture was made
    assert daemon.status()["outputs"]["websocket"]["sent"] == daemon.stats.frames
    watched, daemon, received = live(watch=True)
    fresh = daemon.stats.frames - daemon.stats.repeated          # a repeated frame reuses its picture
    assert watched.calls >= fresh - 1 and fresh > 10            # every fresh frame rendered
    assert received and decode_frame(received[-1])[1].shape == (64, 64, 4)
