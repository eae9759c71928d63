"""`facecast live`: options (TOML config + flags), output adapters, and start-up/shutdown.

One table, `OPTIONS`, defines every live setting once: its TOML key, its
command-line flag, its default and its help. The config file written by
`facecast config --init`, the parser and the validation all come from it, so a
setting can never exist in one place and not the other.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facecast.controls import controls_from
from facecast.errors import InputError
from facecast.motion import MotionFrame
from facecast.app.render import DEFAULT_GENERATOR, GENERATOR_CHOICES

log = logging.getLogger("facecast.live")

LIVE_FPS = (30.0, 60.0)
VMC_NAME_SETS = ("vrm0", "vrm1", "arkit")


@dataclass(frozen=True)
class Option:
    """One live setting: TOML key `name`, flag `--name-with-dashes`."""

    name: str
    kind: type
    default: Any
    help: str
    optional_value: bool = False  # a flag that may be given bare (`--vmc`) or with a value (`--vmc 39540`)
    metavar: str = "[HOST:]PORT"


OPTIONS: tuple[Option, ...] = (
    Option("portrait", str, None, "the picture to animate"),
    Option("audio", str, None, "play this audio file in real time instead of using the microphone"),
    Option("device", str, None, "microphone: a name (or part of it) or an index from `facecast devices`; default input if unset"),
    Option("fps", float, 30.0, "output frames per second: 30 or 60"),
    Option("size", int, 512, "avatar size in pixels, 256-1024"),
    Option("seed", int, 0, "random seed for blinks, glances and idle motion"),
    # The learned model, streamed, as offline: it meets the latency target; rule is the light choice (0.53 vs
    # 0.95 cores at 30 fps, 225 MiB less; README: Live).
    Option("generator", str, DEFAULT_GENERATOR, f"speech -> motion: {' or '.join(GENERATOR_CHOICES)} (the learned "
           "model streams with an 80 ms lookahead; rule needs less CPU)"),
    Option("motion_model", str, None, "weights for the learned generator, e.g. from `facecast train` "
           "(default: the shipped model)"),
    Option("once", bool, False, "with --audio: exit when the file has played instead of idling"),
    Option("log_level", str, "info", "debug, info, warning or error"),
    Option("badge", str, None, "show a visible disclosure label on the avatar (bare flag: AI-generated); "
           "the invisible watermark is always embedded", optional_value=True, metavar="TEXT"),
    Option("emotion", str, None, "an emotion over the speech, NAME[:INTENSITY]: neutral, happy, sad, angry, surprised, "
           "fear, disgusted or contempt; intensity 0-1 (changeable live over ws /control)"),
    Option("gaze", str, None, "main gaze direction YAW,PITCH in degrees (0,0: the camera; yaw > 0 towards image right)"),
    Option("distance", float, 1.0, "head distance relative to the portrait, 0.5-2"),
    Option("vcam", bool, False, "send the avatar to a virtual webcam (OBS, Discord, Zoom)"),
    Option("vcam_width", int, 1280, "virtual webcam width"),
    Option("vcam_height", int, 720, "virtual webcam height"),
    Option("background", str, "#00b140", "virtual webcam background: #RRGGBB or an image file"),
    Option("vmc", str, None, "send VMC protocol to [HOST:]PORT (bare flag: 127.0.0.1:39539, performer; 39540 for assistant)",
           optional_value=True),
    Option("vmc_names", str, "vrm0", "VMC blendshape names: vrm0, vrm1 or arkit (perfect sync)"),
    Option("vrchat", str, None, "send VRChat OSC to [HOST:]PORT (bare flag: 127.0.0.1:9000)", optional_value=True),
    Option("vrchat_prefix", str, "FT/v2/", "VRChat parameter prefix (VRCFaceTracking v2 names follow it)"),
    Option("vts", bool, False, "drive VTube Studio through its plugin API (approve facecast in VTube Studio once)"),
    Option("ws", int, None, "serve the overlay page, motion stream and /status on this port (bare flag: 39650)",
           optional_value=True, metavar="PORT"),
    Option("ws_host", str, "127.0.0.1", "address the WebSocket/HTTP server binds to"),
)
_BY_NAME = {o.name: o for o in OPTIONS}


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "facecast" / "facecast.toml"


def default_config_text() -> str:
    """A commented TOML file listing every setting with its default."""
    lines = ["# facecast live settings. Every key is also a command-line flag (`--key-name`);",
             "# flags override this file. Uncomment and edit what you need.", ""]
    for option in OPTIONS:
        lines.append(f"# {option.help}")
        value = option.default
        if value is None:
            example = {"portrait": '"me.png"', "audio": '"speech.wav"', "device": '"USB Microphone"',
                       "vmc": '"127.0.0.1:39539"', "vrchat": '"127.0.0.1:9000"', "ws": "39650",
                       "badge": '"AI-generated"', "emotion": '"happy:0.5"', "gaze": '"10,-5"',
                       "motion_model": '"my_motion.pt"'}[option.name]
            lines.append(f"# {option.name} = {example}")
        elif isinstance(value, bool):
            lines.append(f"# {option.name} = {'true' if value else 'false'}")
        elif isinstance(value, str):
            lines.append(f'# {option.name} = "{value}"')
        else:
            lines.append(f"# {option.name} = {value:g}" if isinstance(value, float) else f"# {option.name} = {value}")
        lines.append("")
    return "\n".join(lines)


def add_live_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per option; defaults are SUPPRESSed so only flags the user typed override the config."""
    parser.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML settings file (see `facecast config --init`)")
    for option in OPTIONS:
        flag = "--" + option.name.replace("_", "-")
        default_text = "" if option.default in (None, False) else f" (default {option.default})"
        if option.kind is bool:
            parser.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=option.help)
        elif option.optional_value:
            parser.add_argument(flag, nargs="?", const="", default=argparse.SUPPRESS, metavar=option.metavar,
                                help=option.help)
        else:
            parser.add_argument(flag, type=option.kind, default=argparse.SUPPRESS, help=option.help + default_text)


def resolve_settings(flags: dict[str, Any]) -> dict[str, Any]:
    """Defaults, then the config file, then the flags; validated."""
    settings = {o.name: o.default for o in OPTIONS}
    config_path = flags.pop("config", None)
    if config_path is not None:
        settings.update(read_config(Path(config_path)))
    settings.update({k: v for k, v in flags.items() if k in _BY_NAME})
    _validate(settings)
    return settings


def read_config(path: Path) -> dict[str, Any]:
    """Parse a TOML settings file; unknown keys and wrong types are one-line errors."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"config file not found: {path} (create one with `facecast config --init`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path} is not valid TOML: {exc}") from None
    out = {}
    for key, value in data.items():
        option = _BY_NAME.get(key)
        if option is None:
            raise InputError(f"{path}: unknown setting '{key}' (see `facecast config --init` for the list)")
        if option.optional_value and value is True:
            value = ""
        elif option.optional_value and value is False:
            value = None
        elif option.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif option.kind is int and option.optional_value and isinstance(value, int):
            pass
        elif not isinstance(value, option.kind) or (option.kind is int and isinstance(value, bool)):
            raise InputError(f"{path}: '{key}' must be {option.kind.__name__}, got {value!r}")
        out[key] = value
    return out


def _validate(settings: dict[str, Any]) -> None:
    if not settings["portrait"]:
        raise InputError("give the picture to animate: --portrait FILE (or `portrait` in the config file)")
    if settings["fps"] not in LIVE_FPS:
        raise InputError(f"--fps must be 30 or 60 for live output (got {settings['fps']:g})")
    if settings["vmc_names"] not in VMC_NAME_SETS:
        raise InputError(f"--vmc-names must be one of {', '.join(VMC_NAME_SETS)}")
    if settings["log_level"].upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise InputError("--log-level must be debug, info, warning or error")
    controls_from(settings["emotion"], settings["gaze"], settings["distance"])  # raises InputError for bad values
    if settings["generator"] not in GENERATOR_CHOICES:
        raise InputError(f"--generator must be one of {', '.join(GENERATOR_CHOICES)} (got {settings['generator']!r})")
    if settings["generator"] == "learned" and settings["motion_model"] and not Path(settings["motion_model"]).is_file():
        raise InputError(f"motion model not found: {settings['motion_model']}")
    if settings["ws"] is not None and settings["ws"] != "":
        try:
            port = int(settings["ws"])
        except (TypeError, ValueError):
            raise InputError(f"--ws takes a port number (got {settings['ws']!r})") from None
        if not 0 <= port < 65536:
            raise InputError(f"--ws port must be 0-65535, 0 = any free port (got {port})")


# --- outputs ------------------------------------------------------------------------------------------

class OscOutput:
    """VMC or VRChat: motion only."""

    needs_image = False

    def __init__(self, name: str, sender: Any) -> None:
        self.name = name
        self._sender = sender

    def send(self, frame: MotionFrame, image: np.ndarray | None) -> None:
        self._sender.send(frame)

    def close(self) -> None:
        self._sender.close()


class VtsOutput:
    """VTube Studio: the client keeps only the latest frame; its own thread talks to VTS."""

    name = "vtube_studio"
    needs_image = False

    def __init__(self) -> None:
        from facecast.bridges.vtube_studio import VTubeStudioClient

        self._client = VTubeStudioClient()
        self._client.start()

    def send(self, frame: MotionFrame, image: np.ndarray | None) -> None:
        self._client.submit(frame)

    def close(self) -> None:
        self._client.stop()


class WsOutput:
    """facecast's own server: JSON motion, overlay frames, MJPEG, /status."""

    name = "websocket"
    needs_image = True

    def __init__(self, server: Any) -> None:
        self.server = server

    def send(self, frame: MotionFrame, image: np.ndarray | None) -> None:
        self.server.submit(frame, image)

    def close(self) -> None:
        self.server.stop()


class VcamOutput:
    """The virtual webcam: the avatar composited on a 16:9 canvas."""

    name = "virtual_camera"
    needs_image = True

    def __init__(self, width: int, height: int, fps: float, background: str) -> None:
        from facecast.bridges.vcam import VcamCompositor, VirtualCamera

        backdrop: Any = background
        if background.startswith("#"):
            from facecast.app.cli import parse_color

            backdrop = parse_color(background)
        self._compositor = VcamCompositor(width, height, backdrop)
        self._camera = VirtualCamera(width, height, fps)
        log.info("virtual camera %s (%s) started at %dx%d", self._camera.device, self._camera.backend, width, height)

    def send(self, frame: MotionFrame, image: np.ndarray | None) -> None:
        if image is not None:
            self._camera.send(self._compositor.compose(image))

    def close(self) -> None:
        self._camera.close()


class ControlForward:
    """Lets the WebSocket server start before the daemon exists, then hands control messages to it."""

    def __init__(self) -> None:
        self.handler: Any = None

    def __call__(self, command: dict[str, Any]) -> None:
        if self.handler is None:
            raise ValueError("facecast is still starting")
        self.handler(command)


def build_outputs(settings: dict[str, Any], on_control: ControlForward | None = None) -> list[Any]:
    """The enabled outputs; one that cannot start is a one-line error before anything runs."""
    from facecast.bridges.osc import parse_host_port

    outputs: list[Any] = []
    try:
        if settings["vmc"] is not None:
            from facecast.bridges.vmc import PERFORMER_PORT, VmcSender

            host, port = parse_host_port(settings["vmc"], "127.0.0.1", PERFORMER_PORT)
            outputs.append(OscOutput("vmc", VmcSender(host, port, names=settings["vmc_names"])))
            log.info("VMC to %s:%d (%s names)", host, port, settings["vmc_names"])
        if settings["vrchat"] is not None:
            from facecast.bridges.vrchat import DEFAULT_PORT as VRCHAT_PORT
            from facecast.bridges.vrchat import VrchatSender

            host, port = parse_host_port(settings["vrchat"], "127.0.0.1", VRCHAT_PORT)
            outputs.append(OscOutput("vrchat", VrchatSender(host, port, prefix=settings["vrchat_prefix"])))
            log.info("VRChat OSC to %s:%d", host, port)
        if settings["vts"]:
            outputs.append(VtsOutput())
        if settings["ws"] is not None:
            from facecast.bridges.ws_server import DEFAULT_PORT as WS_PORT
            from facecast.bridges.ws_server import ServerStartError, WsServer

            server = WsServer(settings["ws_host"], int(settings["ws"]) if settings["ws"] != "" else WS_PORT,
                              on_control=on_control)
            try:
                server.start()
            except ServerStartError as exc:  # a port in use is the user's to fix: one line, not an internal error
                raise InputError(str(exc)) from None
            outputs.append(WsOutput(server))
            log.info("overlay page %s/overlay (control token %s)", server.url, server.token)
        if settings["vcam"]:
            outputs.append(VcamOutput(settings["vcam_width"], settings["vcam_height"], settings["fps"],
                                      settings["background"]))
    except ValueError as exc:
        for output in outputs:
            output.close()
        raise InputError(str(exc)) from None
    except BaseException:
        for output in outputs:
            output.close()
        raise
    return outputs


def make_live_generator(settings: dict[str, Any]) -> Any:
    """The streaming speech -> motion generator the settings ask for."""
    if settings["generator"] == "learned":
        import torch

        from facecast.speech.learned_stream import LearnedMotionGenerator
        from facecast.speech.learned import WEIGHTS_PATH

        torch.set_num_threads(1)   # a small model: one thread per chunk, the other core renders
        path = Path(settings["motion_model"]) if settings["motion_model"] else WEIGHTS_PATH
        return LearnedMotionGenerator(fps=settings["fps"], seed=settings["seed"], path=path)
    from facecast.speech.rule import RuleMotionGenerator

    return RuleMotionGenerator(fps=settings["fps"], seed=settings["seed"])


def run_live(flags: dict[str, Any]) -> int:
    """`facecast live`: resolve settings, start everything, run until Ctrl-C/SIGTERM (or the file ends with --once)."""
    from facecast.face.portrait import analyze_portrait
    from facecast.provenance.stamp import DEFAULT_BADGE, Provenance
    from facecast.render.renderer import Renderer
    from facecast.app.daemon import LiveDaemon, load_source
    from facecast.app.render import validate_size

    from threadpoolctl import threadpool_limits

    # numpy's BLAS (OpenBLAS) would split the live path's tiny matrix products (the learned generator's
    # log-mel) across threads that then spin between calls: measured, that doubled the daemon's CPU.
    threadpool_limits(limits=1, user_api="blas")
    settings = resolve_settings(flags)
    logging.basicConfig(level=settings["log_level"].upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    validate_size(settings["size"])
    source = load_source(Path(settings["audio"]) if settings["audio"] else None, settings["device"])

    badge = settings["badge"]
    provenance = Provenance(DEFAULT_BADGE if badge == "" else badge)

    def load_renderer(path: Path | str) -> Any:
        renderer = Renderer(analyze_portrait(path, size=settings["size"]), device="auto")
        return lambda frame: provenance.apply(renderer.render(frame), frame.t)

    render = load_renderer(settings["portrait"])
    generator = make_live_generator(settings)
    controls = ControlForward()
    outputs = build_outputs(settings, controls)
    if not outputs:
        log.warning("no outputs enabled: add --vcam, --vmc, --vrchat, --vts or --ws (running anyway)")
    daemon = LiveDaemon(source, generator, outputs, settings["fps"], render=render, once=settings["once"],
                        load_renderer=load_renderer,
                        controls=controls_from(settings["emotion"], settings["gaze"], settings["distance"]))
    controls.handler = daemon.on_control
    for output in outputs:
        if isinstance(output, WsOutput):
            output.server.set_status_provider(daemon.status)
    previous = signal.signal(signal.SIGTERM, lambda *_: daemon.stop())
    log.info("live: %s at %g fps from %s; watermark run id %s", settings["portrait"], settings["fps"],
             settings["audio"] or "the microphone", provenance.run_id)
    try:
        stats = daemon.run()
    except KeyboardInterrupt:
        daemon.stop()
        stats = daemon.stats
    finally:
        signal.signal(signal.SIGTERM, previous)
    log.info("stopped after %d frames: %s", stats.frames, daemon.status_line())
    log.info("summary %s", json.dumps(daemon.summary()))
    return 0
