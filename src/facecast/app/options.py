"""Settings of `facecast live` (TOML config + flags), and option parsers the commands share.

One table, `OPTIONS`, defines every live setting once: its TOML key, its
command-line flag, its default and its help. The config file written by
`facecast config --init`, the parser and the validation all come from it, so a
setting can never exist in one place and not the other.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facecast.app.hybrid import DRIVE_HELP, parse_drive
from facecast.bridges.vmc import parse_bone_offsets
from facecast.bridges.vrchat import parse_binary_spec
from facecast.controls import controls_from
from facecast.errors import InputError, check_regular_file
from facecast.speech.generator import DEFAULT_GENERATOR, GENERATOR_CHOICES
from facecast.user_dirs import user_config_dir

LIVE_FPS = (30.0, 60.0)
#: `--framing` of `render` and `live`: facecast.face.portrait.FRAMINGS, repeated here so `--help` need not load
#: the face models (a test keeps them equal), and in the OBS panel.
FRAMING_CHOICES = ("auto", "face", "picture", "full")
FRAMING_HELP = ("how the output frames the picture: auto (a square inside the picture around the head, the face "
                "filling 30 to 60 percent of its height), face (the head alone), picture (the largest square "
                "inside the picture) or full (the whole picture, its longer side as long as the size)")
#: `--latency` of `live`: learned_stream.LATENCIES, repeated here so `--help` need not load torch (a test keeps
#: them equal).
LATENCY_CHOICES = ("low", "sync")
VMC_NAME_SETS = ("vrm0", "vrm1", "arkit")
VMC_ROLES = ("auto", "performer", "assistant")


@dataclass(frozen=True)
class Option:
    """One live setting: TOML key `name`, flag `--name-with-dashes`."""

    name: str
    kind: type
    default: Any
    help: str
    optional_value: bool = False  # a flag that may be given bare (`--vmc`) or with a value (`--vmc 39540`)
    metavar: str = "[HOST:]PORT"


#: The largest virtual webcam side: 8K (7680x4320) fits; v4l2loopback, OBS's virtual camera and video
#: calls take no more, and a frame beyond it would only exhaust memory.
MAX_VCAM_SIDE = 8192

OPTIONS: tuple[Option, ...] = (
    Option("portrait", str, None, "the picture to animate"),
    Option("landmarks", str, None, "hand-placed face points for the portrait when no face is detected: a JSON "
           "object of [x, y] pixel positions (the keys `facecast render --help` lists)", metavar="POINTS.json"),
    Option("audio", str, None, "play this audio file in real time instead of using the microphone"),
    Option("device", str, None, "microphone: a name (or part of it) or an index from `facecast devices`; "
           "default input if unset"),
    Option("camera", str, None, "drive the head, eyes and expressions from a webcam: an index or name (or part of "
           "one) from `facecast devices` (bare flag: the first camera); the voice keeps the lips",
           optional_value=True, metavar="INDEX|NAME"),
    Option("camera_file", str, None, "play this video file in real time as the webcam (demos, tests, benchmarks; "
           "replaces --camera)"),
    Option("mirror", bool, True, "the avatar mirrors you, as a selfie view does (--no-mirror: turns as the camera "
           "sees you)"),
    Option("drive", str, "", DRIVE_HELP),
    Option("fps", float, 30.0, "output frames per second: 30 or 60"),
    Option("size", int, 512, "avatar size in pixels, 256-1024"),
    Option("framing", str, "auto", FRAMING_HELP),
    Option("seed", int, 0, "random seed for blinks, glances and idle motion"),
    # The learned model, streamed, as offline: it meets the latency target; rule is the light choice (README: Live).
    Option("generator", str, DEFAULT_GENERATOR, f"speech -> motion: {' or '.join(GENERATOR_CHOICES)} (the learned "
           "model streams with an 80 ms lookahead; rule needs less CPU)"),
    Option("latency", str, "low", "how far the avatar trails the voice: low (about 0.2 s: calls, games) or sync "
           "(about 1.7 s, the learned mouth as `facecast render` makes it: for streams that delay the voice as "
           "much, e.g. OBS's Sync Offset on the microphone)"),
    Option("motion_model", str, None, "weights for the learned generator, e.g. from `facecast train` "
           "(default: the shipped model)"),
    Option("once", bool, False, "with --audio: exit when the file has played instead of idling"),
    Option("log_level", str, "info", "debug, info, warning or error"),
    Option("badge", str, None, "show a visible disclosure label on the avatar (bare flag: AI-generated); "
           "the invisible watermark is always embedded", optional_value=True, metavar="TEXT"),
    Option("emotion", str, None, "an emotion over the speech, NAME[:INTENSITY]: neutral, happy, sad, angry, "
           "surprised, fear, disgusted or contempt; intensity 0-1 (changeable live over ws /control)"),
    Option("mouth_intensity", float, 1.0, "how far the lips move with speech, 0-2: below 1 calmer, above 1 "
           "livelier (changeable live over ws /control)"),
    Option("head_intensity", float, 1.0, "how far the head moves, 0-2: 0 holds it as pictured, below 1 a calmer, "
           "steadier head, above 1 livelier (changeable live over ws /control)"),
    Option("gaze", str, None, "main gaze direction YAW,PITCH in degrees (0,0: the camera; "
           "yaw > 0 towards image right)"),
    Option("distance", float, 1.0, "head distance relative to the portrait, 0.5-2"),
    Option("cutout", bool, False, "cut the person out of the picture's background: transparent in the overlay, "
           "on --background in the virtual webcam"),
    Option("vcam", bool, False, "send the avatar to a virtual webcam (OBS, Discord, Zoom)"),
    Option("vcam_width", int, 1280, "virtual webcam width"),
    Option("vcam_height", int, 720, "virtual webcam height"),
    Option("background", str, "#00b140", "virtual webcam background: #RRGGBB or an image file"),
    Option("vmc", str, None, "send VMC protocol to [HOST:]PORT (bare flag: 127.0.0.1:39539, performer; "
           "39540 for assistant)", optional_value=True),
    Option("vmc_names", str, "vrm0", "VMC blendshape names: vrm0, vrm1 or arkit (perfect sync)"),
    Option("vmc_role", str, "auto", "VMC role: performer (bones, to a renderer), assistant (head as a virtual "
           "tracker + blendshapes, to a performer) or auto (assistant on port 39540)"),
    Option("vmc_bone_offsets", str, "0.10,0.08", "VMC Neck,Head local positions in metres (NECK_Y,HEAD_Y or "
           "NX,NY,NZ,HX,HY,HZ); receivers that synchronise bone positions apply them to the model"),
    Option("vrchat", str, None, "send VRChat OSC to [HOST:]PORT (bare flag: 127.0.0.1:9000)", optional_value=True),
    Option("vrchat_prefix", str, "FT/v2/", "VRChat parameter prefix (VRCFaceTracking v2 names follow it)"),
    Option("vrchat_eye_tracking", bool, True, "send VRChat's native eye tracking (/tracking/eye/*: blinks and "
           "gaze on any avatar)"),
    Option("vrchat_binary", str, "", "binary-synced VRChat parameters, NAME=BITS,... over the face-tracking "
           "template's (BITS 0: float only; 'none': no bits)"),
    Option("vrchat_avatar_config", str, "auto", "the avatar's OSC config: a FILE or FOLDER, 'auto' (newest in "
           "VRChat's OSC folder, local VRChat only) or 'off' (send every parameter)"),
    Option("vts", bool, False, "drive VTube Studio through its plugin API (approve facecast in VTube Studio once)"),
    Option("ws", int, None, "serve the overlay page, motion stream and /status on this port (bare flag: 39650)",
           optional_value=True, metavar="PORT"),
    Option("ws_host", str, "127.0.0.1", "address the WebSocket/HTTP server binds to; anything but loopback (e.g. "
           "0.0.0.0 for OBS on another PC) needs the token, kept in the config folder, on every endpoint"),
)
_BY_NAME = {o.name: o for o in OPTIONS}


def default_config_path() -> Path:
    """Where `facecast config --init` writes: facecast.toml in the OS's settings folder (`facecast.user_dirs`)."""
    return user_config_dir() / "facecast.toml"


def default_token_path() -> Path:
    """Where the server's token lives when it serves beyond loopback: `token` in the OS's settings folder."""
    return user_config_dir() / "token"


def persistent_token(path: Path | None = None) -> str:
    """The token kept in `path` (default `default_token_path`), created on first use, readable by the user only.

    A server bound beyond loopback needs its token on every endpoint, so the
    URL saved in OBS (``...?token=T``) must keep working across restarts.
    Delete the file to change the token.
    """
    path = path or default_token_path()
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the token file {path}: {exc}") from None
    if token:
        if len(token) < 16 or not all(c.isalnum() or c in "-_" for c in token):
            raise InputError(f"{path} must hold one token of at least 16 letters, digits, '-' or '_' "
                             "(delete it to get a new one)")
        return token
    token = secrets.token_urlsafe(24)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
    except FileExistsError:  # another facecast made it meanwhile
        return persistent_token(path)
    except OSError as exc:
        raise InputError(f"cannot save the token in {path}: {exc.strerror or exc}") from None
    return token


def default_config_text() -> str:
    """A commented TOML file listing every setting with its default."""
    lines = ["# facecast live settings: use them with `facecast live --config THIS-FILE`. Every key is also a",
             "# command-line flag (`--key-name`); flags override this file. Uncomment and edit what you need.",
             "# Paths may start with ~ (your home folder) or be relative to this file's folder.", ""]
    for option in OPTIONS:
        lines.append(f"# {option.help}")
        value = option.default
        if value is None:
            example = {"portrait": '"me.png"', "audio": '"speech.wav"', "device": '"USB Microphone"',
                       "vmc": '"127.0.0.1:39539"', "vrchat": '"127.0.0.1:9000"', "ws": "39650",
                       "badge": '"AI-generated"', "emotion": '"happy:0.5"', "gaze": '"10,-5"',
                       "motion_model": '"my_motion.pt"', "camera": '"0"', "camera_file": '"me.mp4"',
                       "landmarks": '"points.json"'}[option.name]
            lines.append(f"# {option.name} = {example}")
        elif isinstance(value, bool):
            lines.append(f"# {option.name} = {'true' if value else 'false'}")
        elif isinstance(value, str):
            lines.append(f'# {option.name} = "{value}"')
        else:
            lines.append(f"# {option.name} = {value:g}" if isinstance(value, float) else f"# {option.name} = {value}")
        lines.append("")
    return "\n".join(lines)


#: The short flags `render` has for the same settings, so a command line moves between the two.
SHORT_FLAGS = {"portrait": ("-p",), "audio": ("-a",)}


def add_live_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per option; defaults are SUPPRESSed so only flags the user typed override the config."""
    parser.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                        help="TOML settings file (see `facecast config --init`)")
    for option in OPTIONS:
        flags = ["--" + option.name.replace("_", "-"), *SHORT_FLAGS.get(option.name, ())]
        default_text = "" if option.default in (None, False) else f" (default {option.default})"
        if option.kind is bool and option.default:  # on by default: --no-... turns it off
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=option.help + " (default on)")
        elif option.kind is bool:
            parser.add_argument(*flags, action="store_true", default=argparse.SUPPRESS, help=option.help)
        elif option.optional_value:
            parser.add_argument(*flags, nargs="?", const="", default=argparse.SUPPRESS, metavar=option.metavar,
                                help=option.help)
        else:
            parser.add_argument(*flags, type=option.kind, default=argparse.SUPPRESS, help=option.help + default_text)


def resolve_settings(flags: dict[str, Any]) -> dict[str, Any]:
    """Defaults, then the config file, then the flags; validated."""
    settings = {o.name: o.default for o in OPTIONS}
    config_path = flags.pop("config", None)
    if config_path is not None:
        settings.update(read_config(Path(config_path)))
    settings.update({k: v for k, v in flags.items() if k in _BY_NAME})
    _validate(settings)
    return settings


#: Settings that name a file or folder: in a config file, `~` is the home folder and a relative path is relative
#: to the config file's own folder (where the user keeps the picture beside it), not to where facecast started.
PATH_SETTINGS = frozenset({"portrait", "landmarks", "audio", "camera_file", "motion_model", "background",
                           "vrchat_avatar_config"})


def _config_path_value(value: str, folder: Path) -> str:
    if value.startswith("#") or value == "auto":   # a background colour, the automatic VRChat avatar config
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else folder / path)


def read_config(path: Path) -> dict[str, Any]:
    """Parse a TOML settings file; unknown keys and wrong types are one-line errors. Paths in it are taken
    from the file's own folder (`PATH_SETTINGS`)."""
    try:
        if path.exists():
            check_regular_file(path, "config")   # /dev/zero or a pipe would never end
        # utf-8-sig: Windows Notepad may save a byte-order mark, which TOML would read as a stray character
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
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
        if key in PATH_SETTINGS and isinstance(value, str) and value:
            value = _config_path_value(value, path.parent)
        out[key] = value
    return out


def _validate(settings: dict[str, Any]) -> None:
    if not settings["portrait"]:
        raise InputError("give the picture to animate: --portrait FILE (or `portrait` in a config file given "
                         "with --config FILE)")
    if settings["fps"] not in LIVE_FPS:
        raise InputError(f"--fps must be 30 or 60 for live output (got {settings['fps']:g})")
    validate_framing(settings["framing"])
    parse_drive(settings["drive"])
    if settings["vmc_names"] not in VMC_NAME_SETS:
        raise InputError(f"--vmc-names must be one of {', '.join(VMC_NAME_SETS)}")
    if settings["vmc_role"] not in VMC_ROLES:
        raise InputError(f"--vmc-role must be one of {', '.join(VMC_ROLES)} (got {settings['vmc_role']!r})")
    try:
        parse_bone_offsets(settings["vmc_bone_offsets"])
        parse_binary_spec(settings["vrchat_binary"])
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if settings["log_level"].upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise InputError("--log-level must be debug, info, warning or error")
    # raises InputError for bad values
    controls_from(settings["emotion"], settings["gaze"], settings["distance"], settings["mouth_intensity"],
                  settings["head_intensity"])
    if settings["generator"] not in GENERATOR_CHOICES:
        raise InputError(f"--generator must be one of {', '.join(GENERATOR_CHOICES)} (got {settings['generator']!r})")
    if settings["latency"] not in LATENCY_CHOICES:
        raise InputError(f"--latency must be one of {', '.join(LATENCY_CHOICES)} (got {settings['latency']!r})")
    if settings["latency"] != "low" and settings["generator"] != "learned":
        raise InputError(f"--latency {settings['latency']} needs the learned generator (--generator learned)")
    if settings["latency"] != "low" and (settings["camera"] is not None or settings["camera_file"]):
        # the webcam moves the head as it happens; the lips would come 1.7 s after it
        raise InputError(f"--latency {settings['latency']} cannot follow a webcam (the head would move 1.7 s "
                         "before the lips): use --latency low with --camera")
    validate_seed(settings["seed"])
    # checked whether or not their output is on: a setting that is wrong now would surprise later
    if settings["background"].startswith("#"):
        parse_color(settings["background"])
    else:
        check_regular_file(Path(settings["background"]), "background picture")
    width, height = settings["vcam_width"], settings["vcam_height"]
    if not (0 < width <= MAX_VCAM_SIDE and 0 < height <= MAX_VCAM_SIDE):
        raise InputError(f"--vcam-width and --vcam-height must be 1-{MAX_VCAM_SIDE} (got {width}x{height}; "
                         "1280x720 and 1920x1080 are the usual webcam sizes)")
    if settings["generator"] == "learned" and settings["motion_model"]:
        # (with the rule generator a config file's motion_model is left unused: the file may serve both)
        validate_generator_model("learned", settings["motion_model"])
    if settings["ws"] is not None and settings["ws"] != "":
        try:
            port = int(settings["ws"])
        except (TypeError, ValueError):
            raise InputError(f"--ws takes a port number (got {settings['ws']!r})") from None
        if not 0 <= port < 65536:
            raise InputError(f"--ws port must be 0-65535, 0 = any free port (got {port})")


#: Seeds every generator takes (the learned model's torch generator holds 64 bits, the rule's numpy one any
#: non-negative integer): one range for all, so a seed means the same everywhere.
SEED_RANGE = (0, 2**32 - 1)


def validate_seed(seed: int) -> None:
    if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise InputError(f"--seed must be between {SEED_RANGE[0]} and {SEED_RANGE[1]} (got {seed})")


def validate_generator_model(generator: str, motion_model: Path | str | None) -> None:
    """--motion-model before any work: a file that exists, and only for the learned generator (which has weights)."""
    if motion_model is None:
        return
    if generator != "learned":
        raise InputError(f"--motion-model is for --generator learned (the {generator} generator has no weights)")
    check_regular_file(Path(motion_model), "motion model")


def validate_framing(framing: str) -> None:
    if framing not in FRAMING_CHOICES:
        raise InputError(f"--framing must be one of {', '.join(FRAMING_CHOICES)} (got {framing!r})")


def parse_color(text: str) -> tuple[int, int, int]:
    """'#rrggbb' or 'rrggbb' -> an RGB triple."""
    value = text.strip().lstrip("#")
    if len(value) != 6 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise InputError(f"colour must look like #RRGGBB (got '{text}')")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
