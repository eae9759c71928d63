"""Every bridge is an `Output`; each protocol's pure half does no I/O; bridges depend only on the contracts."""

from __future__ import annotations

import ast
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import pyvirtualcam
from test_vcam import FakeCamera

import facecast.bridges
from facecast.bridges.osc_udp import VmcSender, VrchatSender
from facecast.bridges.output import Output
from facecast.bridges.vcam import VirtualCamera
from facecast.bridges.vtube_studio import VTubeStudioClient
from facecast.bridges.ws_server import WsServer

BRIDGES = Path(facecast.bridges.__file__).parent
#: Motion (or pictures) -> messages or bytes: no sockets, threads, event loops or devices.
PURE_MODULES = ("osc", "vmc", "vrchat", "vtube_studio_protocol", "ws_protocol", "frame_codec", "vcam_compositor",
                "output")
TRANSPORT_LIBRARIES = {"socket", "threading", "asyncio", "concurrent", "websockets", "pyvirtualcam", "selectors"}
CONTRACTS = {"facecast.motion", "facecast.controls", "facecast.errors", "facecast.media", "facecast.rig",
             "facecast.user_dirs", "facecast.log_throttle"}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def imported_modules(module: str) -> set[str]:
    """Every module `facecast/bridges/<module>.py` imports, at any depth of its code."""
    tree = ast.parse((BRIDGES / f"{module}.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "facecast.bridges":
                names |= {f"facecast.bridges.{alias.name}" for alias in node.names}
    return names


@pytest.fixture
def outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Output]]:
    """One of each bridge, constructed but not started (the camera is a stand-in)."""
    FakeCamera.instances = []
    monkeypatch.setattr(pyvirtualcam, "Camera", FakeCamera)
    made = [VmcSender("127.0.0.1", free_udp_port()), VrchatSender("127.0.0.1", free_udp_port()),
            VTubeStudioClient(port=free_udp_port(), token_path=tmp_path / "token.json"), WsServer(port=0),
            VirtualCamera(640, 360)]
    yield made
    for output in made:
        output.close()


def test_every_bridge_is_an_output(outputs: list[Output]) -> None:
    assert all(isinstance(output, Output) for output in outputs)
    assert {output.name: output.needs_image for output in outputs} == {
        "vmc": False, "vrchat": False, "vtube_studio": False, "websocket": True, "virtual_camera": True}
    assert not isinstance(object(), Output)


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_halves_do_no_io(module: str) -> None:
    roots = {name.split(".")[0] for name in imported_modules(module)}
    assert not roots & TRANSPORT_LIBRARIES, f"{module} imports {sorted(roots & TRANSPORT_LIBRARIES)}"
    own = {name for name in imported_modules(module) if name.startswith("facecast.bridges.")}
    assert own <= {f"facecast.bridges.{pure}" for pure in PURE_MODULES}, f"{module} imports a transport: {own}"


@pytest.mark.parametrize("module", sorted(path.stem for path in BRIDGES.glob("*.py") if path.stem != "__init__"))
def test_bridges_import_only_contracts_and_each_other(module: str) -> None:
    facecast = {name for name in imported_modules(module) if name.split(".")[0] == "facecast"}
    foreign = {name for name in facecast if not name.startswith("facecast.bridges") and name not in CONTRACTS}
    assert not foreign, f"{module} imports {sorted(foreign)}"
