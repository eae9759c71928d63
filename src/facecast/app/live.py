"""`facecast live`: start the outputs the settings enable, run the daemon, shut down cleanly.

The settings (TOML config + flags) are `facecast.app.options`; every output is
a bridge implementing `facecast.bridges.output.Output`, started from `OUTPUTS`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from facecast.app.camera_input import CameraInput, CameraSource, VideoFileCamera, list_cameras, resolve_camera
from facecast.app.daemon import LiveDaemon, load_source
from facecast.app.hybrid import parse_drive
from facecast.app.logs import configure_logging
from facecast.app.options import parse_color, persistent_token, resolve_settings
from facecast.app.portrait_job import prepare_portrait
from facecast.app.render import validate_size
from facecast.app.stop_signals import install_stop_handlers
from facecast.bridges import vmc, vrchat, ws_protocol
from facecast.bridges.osc_udp import VmcSender, VrchatSender, parse_host_port
from facecast.bridges.output import Output
from facecast.bridges.vcam import DEVICE_RETRY_S, NoVirtualCameraError, VirtualCamera, WaitingVirtualCamera
from facecast.bridges.vrchat_avatar import AvatarConfigSource
from facecast.bridges.vtube_studio import VTubeStudioClient
from facecast.bridges.ws_protocol import is_loopback_host
from facecast.bridges.ws_server import Reply, ServerStartError, WsServer
from facecast.controls import controls_from
from facecast.errors import InputError
from facecast.provenance.stamp import DEFAULT_BADGE, Provenance
from facecast.render.renderer import Renderer
from facecast.speech.generator import MotionGenerator, make_generator

log = logging.getLogger("facecast.live")


class ControlForward:
    """Lets the WebSocket server start before the daemon exists, then hands control messages to it."""

    def __init__(self) -> None:
        self.handler: Any = None

    def __call__(self, command: dict[str, Any], reply: Reply | None = None) -> dict[str, Any] | None:
        if self.handler is None:
            raise ValueError("facecast is still starting")
        return self.handler(command, reply)


# --- outputs: one opener per output, each given the settings and the control forwarder ------------------

def _open_vmc(settings: dict[str, Any], controls: ControlForward | None) -> Output:
    host, port = parse_host_port(settings["vmc"], vmc.DEFAULT_HOST, vmc.PERFORMER_PORT)
    role = vmc.role_for_port(port) if settings["vmc_role"] == "auto" else settings["vmc_role"]
    sender = VmcSender(host, port, names=settings["vmc_names"], role=role,
                       bone_offsets=vmc.parse_bone_offsets(settings["vmc_bone_offsets"]))
    log.info("VMC to %s:%d (%s names)", host, port, settings["vmc_names"])
    if role == "assistant":
        log.info("VMC assistant: the head goes as virtual tracker '%s' (assign it to the head in the performer), "
                 "expressions and gaze as blendshapes; no bones", vmc.TRACKER_SERIAL)
    return sender


def _is_local(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _open_vrchat(settings: dict[str, Any], controls: ControlForward | None) -> Output:
    host, port = parse_host_port(settings["vrchat"], vrchat.DEFAULT_HOST, vrchat.DEFAULT_PORT)
    config = settings["vrchat_avatar_config"]
    # "auto" reads this machine's VRChat folder, which says nothing about a VRChat elsewhere.
    avatars = None if config == "off" or (config == "auto" and not _is_local(host)) \
        else AvatarConfigSource(None if config == "auto" else config)
    sender = VrchatSender(host, port, prefix=settings["vrchat_prefix"],
                          binary=vrchat.parse_binary_spec(settings["vrchat_binary"]),
                          native_eyes=settings["vrchat_eye_tracking"], avatars=avatars)
    log.info("VRChat OSC to %s:%d", host, port)
    return sender


def _open_vts(settings: dict[str, Any], controls: ControlForward | None) -> Output:
    client = VTubeStudioClient()
    client.start()  # its own thread: connects (and reconnects) while the daemon runs
    return client


def _open_ws(settings: dict[str, Any], controls: ControlForward | None) -> Output:
    port = int(settings["ws"]) if settings["ws"] != "" else ws_protocol.DEFAULT_PORT
    host = settings["ws_host"]
    # Beyond loopback every endpoint needs the token: keep it across runs so a saved OBS URL keeps working.
    token = None if is_loopback_host(host) else persistent_token()
    server = WsServer(host, port, token=token, on_control=controls)
    try:
        server.start()
    except ServerStartError as exc:  # a port in use is the user's to fix: one line, not an internal error
        raise InputError(str(exc)) from None
    log.info("overlay page %s/overlay (control token %s)", server.url, server.token)
    if server.require_token:
        log.warning("serving beyond this computer: OBS on another PC opens http://THIS-PC-ADDRESS:%d/overlay?token=%s "
                    "(the token is kept in the config folder; delete its 'token' file to change it)",
                    server.port, server.token)
    return server


def _open_vcam(settings: dict[str, Any], controls: ControlForward | None) -> Output:
    background = settings["background"]

    def open_camera() -> VirtualCamera:
        return VirtualCamera(settings["vcam_width"], settings["vcam_height"], settings["fps"],
                             background=parse_color(background) if background.startswith("#") else background)

    def started(camera: VirtualCamera) -> None:
        log.info("virtual camera %s (%s) started at %dx%d", camera.device, camera.backend, camera.width,
                 camera.height)

    try:
        camera = open_camera()
    except NoVirtualCameraError as exc:   # a bad background or backend stays a start-up error
        # the device may come (modprobe, OBS installed) while the other outputs run
        log.warning("%s; looking for one every %g s meanwhile", exc, DEVICE_RETRY_S)
        return WaitingVirtualCamera(open_camera, str(exc), on_open=started)
    started(camera)
    return camera


#: Each output's setting (a bare flag, or the target given with it) and its opener, in start-up order.
OUTPUTS: tuple[tuple[str, Callable[[dict[str, Any], ControlForward | None], Output]], ...] = (
    ("vmc", _open_vmc),
    ("vrchat", _open_vrchat),
    ("vts", _open_vts),
    ("ws", _open_ws),
    ("vcam", _open_vcam),
)


def build_outputs(settings: dict[str, Any], on_control: ControlForward | None = None) -> list[Output]:
    """The enabled outputs; one that cannot start is a one-line error before anything runs."""
    outputs: list[Output] = []
    try:
        for setting, open_output in OUTPUTS:
            value = settings[setting]
            if value is not None and value is not False:  # "" is a bare flag, 0 a port
                outputs.append(open_output(settings, on_control))
    except ValueError as exc:
        for output in outputs:
            output.close()
        raise InputError(str(exc)) from None
    except BaseException:
        for output in outputs:
            output.close()
        raise
    return outputs


def open_camera(settings: dict[str, Any]) -> CameraInput | None:
    """The camera input the settings ask for (None without --camera/--camera-file); InputError, one line, for a
    camera that does not exist or a file that is not a video."""
    if settings["camera_file"]:
        source: Any = VideoFileCamera(settings["camera_file"], mirror=settings["mirror"])
    elif settings["camera"] is not None:
        cameras = list_cameras()
        index = resolve_camera(settings["camera"], cameras)
        name = next((c["name"] for c in cameras if c["index"] == index), None)
        source = CameraSource(index, name, mirror=settings["mirror"])
    else:
        return None
    return CameraInput(source)


def make_live_generator(settings: dict[str, Any]) -> MotionGenerator:
    """The streaming speech -> motion generator the settings ask for."""
    if settings["generator"] == "learned":
        import torch  # heavy: only the learned generator needs it

        torch.set_num_threads(1)   # a small model: one thread per chunk, the other core renders
    return make_generator(settings["generator"], fps=settings["fps"], seed=settings["seed"],
                          model_path=settings["motion_model"] or None, streaming=True, latency=settings["latency"])


def run_live(flags: dict[str, Any]) -> int:
    """`facecast live`: resolve settings, start everything, run until Ctrl-C, a stop signal or a `stop` control
    message (or the file ends with --once)."""
    # numpy's BLAS (OpenBLAS) would split the live path's tiny matrix products (the learned generator's
    # log-mel) across threads that then spin between calls: measured, that doubled the daemon's CPU.
    threadpool_limits(limits=1, user_api="blas")
    settings = resolve_settings(flags)
    configure_logging(settings["log_level"])
    validate_size(settings["size"])
    if settings["once"] and not settings["audio"]:
        log.warning("--once has no effect without --audio: the microphone never ends")
    source = load_source(Path(settings["audio"]) if settings["audio"] else None, settings["device"])

    badge = settings["badge"]
    provenance = Provenance(DEFAULT_BADGE if badge == "" else badge)

    def load_renderer(path: Path | str) -> Any:
        # the analysis (mediapipe) in a child process that has ended before the generator (torch) loads, so
        # their memory never adds up; a swap's child inherits the swapper thread's lowered priority.
        # --landmarks places the face of the picture it was given for (not of a picture swapped in later).
        landmarks = settings["landmarks"] if str(path) == str(settings["portrait"]) else None
        rig = prepare_portrait(path, size=settings["size"], framing=settings["framing"], cutout=settings["cutout"],
                               landmarks_json=landmarks)
        renderer = Renderer(rig, device="auto")
        return lambda frame: provenance.apply(renderer.render(frame), frame.t)

    render = load_renderer(settings["portrait"])
    # the generator (torch) before the camera (mediapipe): torch's import reads every loaded module's __file__,
    # which would load mediapipe's deferred drawing helpers and matplotlib (40 MiB, `face.tracker._DEFERRED`)
    generator = make_live_generator(settings)
    camera = open_camera(settings)
    controls = ControlForward()
    outputs = build_outputs(settings, controls)
    if not outputs:
        log.warning("no outputs enabled: add --vcam, --vmc, --vrchat, --vts or --ws (running anyway)")
    daemon = LiveDaemon(source, generator, outputs, settings["fps"], render=render, once=settings["once"],
                        load_renderer=load_renderer, camera=camera, drive=parse_drive(settings["drive"]),
                        controls=controls_from(settings["emotion"], settings["gaze"], settings["distance"],
                                               settings["mouth_intensity"], settings["head_intensity"]))
    controls.handler = daemon.on_control
    for output in outputs:
        if isinstance(output, WsServer):  # /status reports the daemon's health
            output.set_status_provider(daemon.status)
    restore_signals = install_stop_handlers(daemon.stop)
    log.info("live: %s at %g fps from %s%s; watermark run id %s", settings["portrait"], settings["fps"],
             settings["audio"] or "the microphone", "" if camera is None else f" and {camera.source.status['device']}",
             provenance.run_id)
    try:
        stats = daemon.run()
    except KeyboardInterrupt:
        daemon.stop()
        stats = daemon.stats
    finally:
        restore_signals()
    log.info("stopped after %d frames: %s", stats.frames, daemon.status_line())
    log.info("summary %s", json.dumps(daemon.summary()))
    return 0
