"""VTube Studio client against a stand-in VTS API server (real WebSockets and UDP on loopback, no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest
from test_vtube_studio_protocol import RANGES, frame
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from facecast.bridges.vtube_studio import TokenStore, VTubeStudioClient, default_token_path, discover_api_state
from facecast.motion import HeadPose, MotionFrame

FAST = dict(backoff_min=0.05, backoff_max=0.2, response_timeout=2.0, token_timeout=5.0, denied_retry=0.2)


class FakeVTS:
    """The documented API flow: token request -> token; auth -> authenticated true/false; inject -> checked.

    Every envelope and payload the client sends is validated; violations are
    collected in `problems` (asserted empty by the tests).
    """

    def __init__(self, deny: int = 0, inject_delay: float = 0.0, ranges: dict | None = None,
                 list_error: bool = False) -> None:
        self.deny = deny                    # deny this many token requests (errorID 50)
        self.inject_delay = inject_delay    # a slow VTS
        self.ranges = dict(RANGES if ranges is None else ranges)  # the model's input parameters
        self.list_error = list_error        # refuse InputParameterListRequest
        self.controlled_by_other: set[str] = set()  # another plugin owns these: error 454
        self.refusals: list[list[str]] = []  # the ids of every request refused with 454
        self.list_requests = 0
        self.valid_tokens: set[str] = set()
        self.token_requests = 0
        self.auth_results: list[tuple[str, bool]] = []
        self.injections: list[tuple[float, dict]] = []
        self.request_ids: set[str] = set()
        self.problems: list[str] = []
        self.server = None
        self.port = 0

    async def start(self, port: int = 0) -> None:
        self.server = await serve(self._handle, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def kill(self) -> None:
        """Stop like a crash: connections cut without a closing handshake."""
        for connection in list(self.server.connections):
            connection.transport.abort()
        self.server.close()
        await self.server.wait_closed()

    def revoke(self) -> None:
        """The user revokes facecast's access in VTS's settings."""
        self.valid_tokens.clear()

    def _problem(self, text: str) -> None:
        self.problems.append(text)

    def _check_envelope(self, message: dict) -> None:
        if message.get("apiName") != "VTubeStudioPublicAPI":
            self._problem(f"apiName {message.get('apiName')!r}")
        if message.get("apiVersion") != "1.0":
            self._problem(f"apiVersion {message.get('apiVersion')!r}")
        rid = message.get("requestID")
        if not isinstance(rid, str) or not rid.isascii() or not 1 <= len(rid) <= 64:
            self._problem(f"requestID {rid!r}")
        elif rid in self.request_ids:
            self._problem(f"requestID {rid!r} reused")
        self.request_ids.add(rid)
        if not isinstance(message.get("data"), dict):
            self._problem(f"{message.get('messageType')}: data is not an object")

    def _check_plugin(self, data: dict) -> None:
        if data.get("pluginName") != "facecast" or data.get("pluginDeveloper") != "facecast project":
            self._problem(f"plugin identity {data}")
        if not 3 <= len(data.get("pluginName", "")) <= 32 or not 3 <= len(data.get("pluginDeveloper", "")) <= 32:
            self._problem("plugin name/developer must be 3-32 characters")

    def _check_inject(self, data: dict) -> None:
        if data.get("faceFound") is not True or data.get("mode") != "set":
            self._problem(f"faceFound/mode {data.get('faceFound')!r} {data.get('mode')!r}")
        values = data.get("parameterValues")
        ids = [v.get("id") for v in values] if isinstance(values, list) else []
        if not ids or len(set(ids)) != len(ids) or not set(ids) <= set(self.ranges):
            self._problem(f"parameter ids {ids}")
        for item in values or []:
            value = item.get("value")
            low, high = self.ranges.get(item.get("id"), (-1e6, 1e6))
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high:
                self._problem(f"{item.get('id')} = {value!r} outside [{low}, {high}]")
            if set(item) - {"id", "value", "weight"}:
                self._problem(f"unknown fields in {item}")

    async def _handle(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):  # the client going away is normal
            await self._serve(ws)

    async def _serve(self, ws: ServerConnection) -> None:
        session_token = None
        async for raw in ws:
            message = json.loads(raw)
            self._check_envelope(message)
            kind, rid, data = message.get("messageType"), message.get("requestID"), message.get("data") or {}

            async def reply(message_type: str, payload: dict, rid: object = rid) -> None:
                await ws.send(json.dumps({"apiName": "VTubeStudioPublicAPI", "apiVersion": "1.0",
                                          "timestamp": int(time.time() * 1000), "messageType": message_type,
                                          "requestID": rid, "data": payload}))

            async def error(error_id: int, text: str) -> None:
                await reply("APIError", {"errorID": error_id, "message": text})

            if kind == "AuthenticationTokenRequest":
                self._check_plugin(data)
                self.token_requests += 1
                await asyncio.sleep(0.05)  # the user reading the popup
                if self.deny > 0:
                    self.deny -= 1
                    await error(50, "User has denied API access for your plugin.")
                else:
                    token = f"token-{self.token_requests}"
                    self.valid_tokens.add(token)
                    await reply("AuthenticationTokenResponse", {"authenticationToken": token})
            elif kind == "AuthenticationRequest":
                self._check_plugin(data)
                token = data.get("authenticationToken")
                ok = token in self.valid_tokens
                session_token = token if ok else None
                self.auth_results.append((token, ok))
                await reply("AuthenticationResponse", {"authenticated": ok, "reason": "ok" if ok else "invalid"})
            elif kind == "InjectParameterDataRequest":
                if session_token is None:
                    await error(8, "Request requires authentication.")
                elif session_token not in self.valid_tokens:
                    await error(50, "User has denied API access for your plugin.")
                else:
                    self._check_inject(data)
                    ids = [v.get("id") for v in data.get("parameterValues") or []]
                    await asyncio.sleep(self.inject_delay)
                    if set(ids) & self.controlled_by_other:
                        # The real error names no parameter (DenchiSoft/VTubeStudio, Files/ErrorID.cs).
                        self.refusals.append(ids)
                        await error(454, "Only one plugin can send data for a parameter at a time.")
                    else:
                        self.injections.append((time.monotonic(), data))
                        await reply("InjectParameterDataResponse", {})
            elif kind == "InputParameterListRequest":
                self.list_requests += 1
                if session_token is None:
                    await error(8, "Request requires authentication.")
                elif self.list_error:
                    await error(0, "Internal server error.")
                else:  # the README's InputParameterListResponse, with this model's parameters
                    await reply("InputParameterListResponse", {
                        "modelLoaded": True, "modelName": "Test Model", "modelID": "TestModelID",
                        "customParameters": [],
                        "defaultParameters": [{"name": name, "addedBy": "VTube Studio", "value": 0.0,
                                               "min": low, "max": high, "defaultValue": 0.0}
                                              for name, (low, high) in self.ranges.items()]})
            else:
                self._problem(f"unexpected request {kind!r}")
                await error(7, "Unknown request type.")


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Feeder:
    """A frame loop in another thread, sending frames at ~100 fps."""

    def __init__(self, client: VTubeStudioClient) -> None:
        self.client = client
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.client.send(frame(self.count))
            self.count += 1
            time.sleep(0.01)

    def __enter__(self) -> "Feeder":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


async def stop(client: VTubeStudioClient) -> None:
    await asyncio.to_thread(client.stop)
    assert client._thread is not None and not client._thread.is_alive()


def test_token_store_location_and_permissions(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_token_path() == tmp_path / "facecast" / "vtube_studio_token.json"
    store = TokenStore()
    assert store.load() is None
    store.save("abc")
    assert store.load() == "abc"
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    store.path.write_text("{broken")
    assert store.load() is None
    store.delete()
    store.delete()  # already gone: fine
    assert not store.path.exists()


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def broadcast(port: int, active: bool = True) -> bytes:
    return json.dumps({"apiName": "VTubeStudioPublicAPI", "apiVersion": "1.0", "timestamp": 0,
                       "requestID": "VTubeStudioAPIStateBroadcast", "messageType": "VTubeStudioAPIStateBroadcast",
                       "data": {"active": active, "port": port, "instanceID": "test",
                                "windowTitle": "VTube Studio"}}).encode()


@contextlib.asynccontextmanager
async def announcing(datagram: bytes):
    """VTS's periodic UDP state broadcast, sent to an ephemeral discovery port (yielded)."""
    discovery = free_udp_port()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def announce() -> None:
        while True:
            sender.sendto(datagram, ("127.0.0.1", discovery))
            await asyncio.sleep(0.05)

    task = asyncio.create_task(announce())
    try:
        yield discovery
    finally:
        task.cancel()
        sender.close()


def test_discovery_without_broadcast_falls_back_to_8001(tmp_path):
    assert asyncio.run(discover_api_state(timeout=0.1, discovery_port=free_udp_port())) is None

    async def scenario() -> None:
        vts = FakeVTS()
        try:
            await vts.start(8001)
        except OSError:
            pytest.skip("port 8001 is taken on this machine")
        client = VTubeStudioClient(port=None, discovery_port=free_udp_port(), discovery_timeout=0.1,
                                   token_path=tmp_path / "token.json", **FAST)
        client.start()
        try:
            await until(lambda: client.live)
        finally:
            await stop(client)
            await vts.kill()

    asyncio.run(scenario())


def test_api_switched_off_in_vts_is_reported_once(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="facecast.bridges.vtube_studio")

    async def scenario() -> None:
        async with announcing(broadcast(8001, active=False)) as discovery:
            client = VTubeStudioClient(port=None, discovery_port=discovery, discovery_timeout=1.0,
                                       token_path=tmp_path / "token.json", **FAST)
            client.start()
            await asyncio.sleep(0.8)  # several attempts
            await stop(client)

    asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "plugin API is off" in warnings[0]


# --------------------------------------------------------------------------- the client against a stand-in VTS

def test_first_run_asks_for_token_and_persists_it_second_run_reuses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # the default token location, in a temp dir

    async def scenario() -> None:
        vts = FakeVTS()
        await vts.start()
        token_file = tmp_path / "facecast" / "vtube_studio_token.json"
        try:
            async with announcing(broadcast(vts.port)) as discovery:
                for _ in range(2):
                    client = VTubeStudioClient(port=None, discovery_port=discovery, discovery_timeout=2.0, **FAST)
                    client.start()
                    with Feeder(client):
                        start = len(vts.injections)
                        await until(lambda start=start: len(vts.injections) >= start + 5)
                    await stop(client)
                    assert token_file.exists()
                    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
                    assert json.loads(token_file.read_text()) == {"authenticationToken": "token-1"}
        finally:
            await vts.kill()
        assert vts.token_requests == 1  # the second run reused the stored token
        assert vts.auth_results == [("token-1", True), ("token-1", True)]
        assert vts.problems == []

    asyncio.run(scenario())


def test_revoked_stored_token_is_deleted_and_a_new_one_requested(tmp_path):
    token_path = tmp_path / "token.json"
    TokenStore(token_path).save("stale-token")

    async def scenario() -> None:
        vts = FakeVTS()
        await vts.start()
        client = VTubeStudioClient(port=vts.port, token_path=token_path, **FAST)
        client.start()
        try:
            with Feeder(client):
                await until(lambda: len(vts.injections) >= 5)
                # Now the user revokes access mid-stream: injections fail with error 50.
                vts.revoke()
                await until(lambda: vts.token_requests == 2)
                count = len(vts.injections)
                await until(lambda: len(vts.injections) >= count + 5)
        finally:
            await stop(client)
            await vts.kill()
        assert vts.auth_results == [("stale-token", False), ("token-1", True), ("token-2", True)]
        assert TokenStore(token_path).load() == "token-2"
        assert vts.problems == []

    asyncio.run(scenario())


def test_vts_killed_and_restarted_mid_stream_client_reconnects(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="facecast.bridges.vtube_studio")

    async def scenario() -> None:
        vts = FakeVTS()
        await vts.start()
        port = vts.port
        client = VTubeStudioClient(port=port, token_path=tmp_path / "token.json", **FAST)
        client.start()
        try:
            with Feeder(client):
                await until(lambda: len(vts.injections) >= 10)
                await vts.kill()
                await asyncio.sleep(0.6)  # several failed reconnection attempts
                assert not client.live
                count = len(vts.injections)
                await vts.start(port)     # VTS is back (same token database)
                await until(lambda: len(vts.injections) >= count + 10)
                assert client.live
        finally:
            await stop(client)
            await vts.kill()
        assert vts.token_requests == 1
        assert [ok for _, ok in vts.auth_results] == [True, True]
        assert vts.problems == []

    asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert sum("lost connection" in m for m in messages) == 1  # once per outage, not per attempt
    assert sum("reconnected" in m for m in messages) == 1


def test_user_denial_is_logged_and_retried_later(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="facecast.bridges.vtube_studio")

    async def scenario() -> None:
        vts = FakeVTS(deny=2)
        await vts.start()
        client = VTubeStudioClient(port=vts.port, token_path=tmp_path / "token.json", **FAST)
        client.start()
        try:
            with Feeder(client):
                await until(lambda: len(vts.injections) >= 3)
        finally:
            await stop(client)
            await vts.kill()
        assert vts.token_requests == 3
        assert vts.problems == []

    asyncio.run(scenario())
    denials = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "facecast.bridges.vtube_studio"]
    assert len(denials) == 2 and all("denied" in r.getMessage() for r in denials)


def test_idle_frame_is_resent_within_a_second(tmp_path):
    async def scenario() -> None:
        vts = FakeVTS()
        await vts.start()
        client = VTubeStudioClient(port=vts.port, token_path=tmp_path / "token.json", **FAST)
        client.start()
        try:
            await asyncio.sleep(0.3)
            assert vts.injections == []  # nothing to inject before the first frame
            client.send(frame(1))
            await asyncio.sleep(1.7)
        finally:
            await stop(client)
            await vts.kill()
        times = [t for t, _ in vts.injections]
        assert len(times) >= 3
        assert max(b - a for a, b in zip(times, times[1:])) < 1.0

    asyncio.run(scenario())


def test_send_never_blocks_and_latest_frame_wins(tmp_path):
    async def scenario() -> None:
        vts = FakeVTS(inject_delay=0.05)  # a slow VTS: at most ~20 injections per second
        await vts.start()
        client = VTubeStudioClient(port=vts.port, token_path=tmp_path / "token.json", **FAST)
        client.start()
        try:
            await until(lambda: client.live)

            def burst() -> float:
                start = time.monotonic()
                for i in range(20000):
                    client.send(MotionFrame(t=i, expressions={"jawOpen": i / 20000}))
                return time.monotonic() - start

            elapsed = await asyncio.to_thread(burst)
            await asyncio.sleep(0.3)
        finally:
            await stop(client)
            await vts.kill()
        assert elapsed < 2.0
        assert len(vts.injections) < 200  # stale frames were dropped, not queued
        last = {p["id"]: p["value"] for p in vts.injections[-1][1]["parameterValues"]}
        assert last["MouthOpen"] == round(19999 / 20000, 4)

    asyncio.run(scenario())


def test_stop_before_vts_exists_returns_quickly(tmp_path):
    client = VTubeStudioClient(port=free_udp_port(), token_path=tmp_path / "token.json", **FAST)
    client.start()
    time.sleep(0.3)
    start = time.monotonic()
    client.stop()
    assert time.monotonic() - start < 1.0
    assert not client._thread.is_alive()
    assert not Path(tmp_path / "token.json").exists()


# --------------------------------------------------------------------------- ranges and contested parameters

def test_ranges_come_from_the_model_and_missing_parameters_are_never_sent(tmp_path):
    """InputParameterListRequest at connect: values are clamped to the model's ranges; absent ids are left out."""
    ranges = {**RANGES, "FaceAngleX": (-10, 10)}
    del ranges["Brows"]

    async def scenario() -> None:
        vts = FakeVTS(ranges=ranges)
        await vts.start()
        client = VTubeStudioClient(port=vts.port, token_path=tmp_path / "token.json", **FAST)
        client.start()
        try:
            client.send(MotionFrame(t=0.0, head=HeadPose(yaw=25.0)))
            await until(lambda: len(vts.injections) >= 2)
        finally:
            await stop(client)
            await vts.kill()
        assert vts.list_requests == 1 and client.ranges == {k: (float(a), float(b)) for k, (a, b) in ranges.items()}
        sent = {p["id"]: p["value"] for p in vts.injections[-1][1]["parameterValues"]}
        assert set(sent) == set(ranges) and sent["FaceAngleX"] == 10.0
        assert vts.problems == []

    asyncio.run(scenario())


def test_parameter_list_failure_falls_back_to_the_default_ranges(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="facecast.bridges.vtube_studio")

    async def scenario() -> None:
        vts = FakeVTS(list_error=True)
        await vts.start()
        client = VTubeStudioClient(port=vts.port, token_path=tmp_path / "token.json", **FAST)
        client.start()
        try:
            with Feeder(client):
                await until(lambda: len(vts.injections) >= 3)
        finally:
            await stop(client)
            await vts.kill()
        assert client.ranges is None
        assert {p["id"] for p in vts.injections[-1][1]["parameterValues"]} == set(RANGES)
        assert vts.problems == []

    asyncio.run(scenario())
    assert any("default ranges" in r.getMessage() for r in caplog.records)


def test_error_454_drops_only_the_contested_parameter_and_reclaims_it_later(tmp_path, caplog):
    """Another plugin owns FaceAngleZ: VTS answers 454 (naming nothing); facecast finds it and drives the rest."""
    caplog.set_level(logging.INFO, logger="facecast.bridges.vtube_studio")

    async def scenario() -> None:
        vts = FakeVTS()
        vts.controlled_by_other = {"FaceAngleZ"}
        await vts.start()
        client = VTubeStudioClient(port=vts.port, token_path=tmp_path / "token.json", reclaim_interval=0.3,
                                   **FAST)
        client.start()
        try:
            with Feeder(client):
                await until(lambda: len(vts.injections) >= 20)
                assert client.refused == {"FaceAngleZ": 454}
                # Accepted requests: the halves that found it, then every frame without it.
                assert all("FaceAngleZ" not in {p["id"] for p in d["parameterValues"]} for _, d in vts.injections)
                assert {p["id"] for p in vts.injections[-1][1]["parameterValues"]} == set(RANGES) - {"FaceAngleZ"}
                refusals = len(vts.refusals)
                await asyncio.sleep(0.8)  # reclaim attempts while the other plugin still holds it
                assert client.refused == {"FaceAngleZ": 454}
                assert len(vts.refusals) - refusals <= 4  # one single-id probe per interval, no storm
                vts.controlled_by_other.clear()  # the other plugin stops
                await until(lambda: not client.refused)
                count = len(vts.injections)
                await until(lambda: len(vts.injections) >= count + 5)
        finally:
            await stop(client)
            await vts.kill()
        full = {p["id"] for p in vts.injections[-1][1]["parameterValues"]}
        assert full == set(RANGES)
        assert vts.problems == []

    asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records if r.name == "facecast.bridges.vtube_studio"]
    dropped = [m for m in messages if "another plugin controls" in m]
    assert len(dropped) == 1 and "FaceAngleZ (error 454)" in dropped[0] and "other 14 parameters" in dropped[0]
    assert sum("drives FaceAngleZ again" in m for m in messages) == 1
    assert not any("refused facecast's parameters" in m for m in messages)
