"""`facecast doctor`: check what a first run needs, one line per check, each problem with its one-line fix.

Required (exit 1 when one fails): the Python and the packages facecast was installed with, the face models
(found by running them on a portrait), the learned motion model and the Whisper encoders its mouth hears
(package data a broken install can lack), the H.264 encoder, and a CUDA GPU when `--gpu` asks for one.
Reported but not required (`render` needs none of them; `live` needs some): microphones, cameras, a
virtual-camera backend, the default ports, a CUDA build of torch on a machine without a GPU.

Every probe that touches hardware runs with a time limit, and every check turns its own failure into its
line: the doctor itself never crashes on a machine that has nothing.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

OK, FAIL, WARN, INFO = "ok", "fail", "warn", "info"
SYMBOLS = {OK: "✓", FAIL: "✗", WARN: "!", INFO: "·"}
ASCII_SYMBOLS = {OK: "[ok]", FAIL: "[FAIL]", WARN: "[warn]", INFO: "[-]"}

#: The bundled sample the face models are run on (a source checkout has it; pass --portrait otherwise).
SAMPLE_PORTRAIT = Path(__file__).resolve().parents[3] / "samples" / "mona_lisa.jpg"
#: facecast live's own server (TCP, must be free); the UDP ports it only sends to.
WS_PORT = 39650
UDP_TARGETS = ((39539, "VMC"), (9000, "VRChat OSC"))
#: Time limits for probes that can hang on broken drivers or sound servers.
MICROPHONE_TIMEOUT_S = 10.0
CAMERA_TIMEOUT_S = 6.0
CAMERA_INDICES = range(4)
CPU_TORCH = "pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cpu"
CUDA_TORCH = "pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu128"


@dataclass
class Check:
    """One line of the report: a status, what was found and, for a problem, how to fix it."""

    status: str
    name: str
    detail: str
    fix: str = ""

    def line(self, symbols: dict[str, str] = SYMBOLS) -> str:
        text = f"{symbols[self.status]} {self.name}: {self.detail}"
        return text + (f" - fix: {self.fix}" if self.fix and self.status in (FAIL, WARN) else "")


# --------------------------------------------------------------------------------------------- required

def check_python(version: tuple[int, int, int] | None = None, requires: str | None = None) -> Check:
    from packaging.specifiers import SpecifierSet

    found = ".".join(str(v) for v in (version or sys.version_info[:3]))
    requires = requires if requires is not None else (_metadata("Requires-Python") or ">=3.11")
    if SpecifierSet(requires).contains(found):
        return Check(OK, "Python", f"{found} ({sys.executable}; facecast supports {requires})")
    return Check(FAIL, "Python", f"{found}, but facecast needs {requires}",
                 "install Python 3.11-3.14 (python.org, your package manager or Homebrew) and make the "
                 "virtual environment with it")


def check_packages(requirements: Iterable[str] | None = None,
                   installed: Callable[[str], str] = metadata.version) -> list[Check]:
    """Each base dependency installed at a version pyproject.toml accepts; one line when all are."""
    from packaging.requirements import Requirement

    if requirements is None:
        try:
            requirements = metadata.requires("facecast") or []
        except metadata.PackageNotFoundError:
            return [Check(FAIL, "packages", "facecast itself is not installed in this Python",
                          'pip install -e . (in the facecast folder, with its virtual environment active)')]
        requirements = _checkout_requirements() or requirements  # a source checkout's pyproject.toml is newer
    problems: list[Check] = []
    versions: dict[str, str] = {}
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # an extra (train, test) or another OS's dependency
        wanted = f'pip install "{requirement.name}{requirement.specifier}"'
        try:
            version = installed(requirement.name)
        except metadata.PackageNotFoundError:
            problems.append(Check(FAIL, requirement.name, f"not installed (facecast needs {requirement})", wanted))
            continue
        versions[requirement.name] = version
        if not requirement.specifier.contains(version, prereleases=True):
            problems.append(Check(FAIL, requirement.name, f"{version} installed, facecast needs {requirement}",
                                  wanted))
    if problems:
        return problems
    shown = ", ".join(f"{name} {versions[name]}" for name in ("torch", "mediapipe", "numpy", "opencv-contrib-python")
                      if name in versions)
    return [Check(OK, "packages", f"all {len(versions)} as facecast asks ({shown}, ...)")]


def check_metadata(pyproject: Path | None = None, installed: Iterable[str] | None = None) -> Check | None:
    """In a source checkout: the installed metadata still lists pyproject.toml's dependencies (else pip's view of
    what facecast needs is out of date, and so is the packages check)."""
    import tomllib

    from packaging.requirements import Requirement

    pyproject = pyproject or SAMPLE_PORTRAIT.parents[1] / "pyproject.toml"
    try:
        declared = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
        installed = list(installed if installed is not None else metadata.requires("facecast") or [])
    except (OSError, KeyError, ValueError, metadata.PackageNotFoundError):
        return None
    base = {str(Requirement(text)) for text in installed if "extra ==" not in text}
    if base == {str(Requirement(text)) for text in declared}:
        return None
    return Check(FAIL, "install", f"facecast's installed metadata is older than {pyproject}",
                 f'pip install -e "{pyproject.parent}" (refreshes what pip knows facecast needs)')


def check_face_models(portrait: Path | None = None) -> Check:
    """Run the face tracker on a portrait (the bundled sample by default): the models load and find the face."""
    from facecast.errors import FacecastError, NoFaceError

    picture = portrait or SAMPLE_PORTRAIT
    if portrait is not None and not portrait.is_file():   # the user's own picture: say what is wrong with it
        what = "not found" if not portrait.exists() else "is a folder" if portrait.is_dir() else \
            "is not a file but a device, pipe or socket"
        return Check(FAIL, "face models", f"--portrait {portrait}: {what}", "give the path of a picture file")
    if not picture.is_file():
        try:  # no sample outside a source checkout: at least load the models
            from facecast.face.tracker import FaceLandmarker

            FaceLandmarker().close()
        except Exception as exc:
            return Check(FAIL, "face models", f"cannot load them: {type(exc).__name__}: {exc}",
                         'reinstall facecast (pip install --force-reinstall -e .) and "pip install -U mediapipe"')
        return Check(OK, "face models", "load (no sample picture here to run them on: add --portrait FILE)")
    started = time.perf_counter()
    try:
        from facecast.face.portrait import analyze_portrait

        rig = analyze_portrait(picture, size=256)
    except NoFaceError as exc:  # the models ran and found no face
        return Check(FAIL, "face models", f"{picture.name}: {exc}",
                     "try another picture, or place the points by hand with --landmarks (README)")
    except FacecastError as exc:  # not a picture facecast can read: the models never saw it
        return Check(FAIL, "face models", f"{picture.name}: {exc}", "give --portrait a JPEG, PNG or WebP picture")
    except Exception as exc:
        return Check(FAIL, "face models", f"cannot run them: {type(exc).__name__}: {exc}",
                     'pip install -U "mediapipe>=1.2.3"; on Linux mediapipe needs glibc 2.28 or newer (README: '
                     'Troubleshooting)')
    return Check(OK, "face models", f"found {rig.face_count} face(s) in {picture.name} via {rig.method} "
                                    f"in {time.perf_counter() - started:.1f} s")


def check_motion_model() -> Check:
    """The default generator's model file and the Whisper encoders its offline mouth-gap nets name load: without
    them `render` stops at its first second of audio."""
    try:
        from facecast.speech.learned import load
        from facecast.speech.whisper_states import encoder

        model = load()
        names = model.offline_mouth.encoders if model.offline_mouth is not None else ()
        for name in names:
            encoder(name)
    except Exception as exc:
        return Check(FAIL, "motion model", f"cannot load it: {_first_sentence(str(exc)) or type(exc).__name__}",
                     "reinstall facecast (pip install --force-reinstall -e .), or render with --generator rule")
    heard = f", its mouth hearing Whisper {' and '.join(names)}" if names else ""
    return Check(OK, "motion model", f"the learned model loads{heard}")


def check_encoder() -> Check:
    """`render` writes H.264 + AAC through PyAV's bundled FFmpeg."""
    try:
        import av

        missing = [name for name in ("libx264", "aac") if not _has_encoder(av, name)]
    except Exception as exc:
        return Check(FAIL, "video encoder", f"PyAV does not load: {exc}", 'pip install --force-reinstall "av>=12"')
    if missing:
        return Check(FAIL, "video encoder", f"PyAV {av.__version__}'s FFmpeg lacks {', '.join(missing)}",
                     "use PyPI's PyAV wheel, which bundles x264: "
                     'pip install --force-reinstall --only-binary av "av>=12"')
    return Check(OK, "video encoder", f"H.264 (libx264) and AAC in PyAV {av.__version__}")


def check_gpu(torch_module: Any = None) -> Check:
    try:
        torch = torch_module if torch_module is not None else __import__("torch")
    except Exception as exc:
        return Check(FAIL, "GPU", f"torch does not load: {exc}", CUDA_TORCH)
    if torch.cuda.is_available():
        return Check(OK, "GPU", f"{torch.cuda.get_device_name(0)} (torch {torch.__version__}, "
                                f"CUDA {torch.version.cuda}): --device cuda works")
    if torch.version.cuda is None:
        return Check(FAIL, "GPU", f"torch {torch.__version__} is a CPU-only build", CUDA_TORCH)
    return Check(FAIL, "GPU", f"torch {torch.__version__} is built for CUDA {torch.version.cuda} but sees no GPU",
                 "install or update the NVIDIA driver (nvidia-smi must list the GPU); facecast runs on the CPU "
                 "meanwhile")


# --------------------------------------------------------------------------------------------- reported

def check_microphones(lister: Callable[[], list[dict[str, Any]]] | None = None) -> Check:
    from facecast.app.audio_input import PORTAUDIO_HINT, AudioDeviceError, _sounddevice, list_input_devices

    def listing() -> list[dict[str, Any]]:
        if lister is not None:
            return lister()
        _sounddevice()  # a missing PortAudio is its own answer, not an empty list
        return list_input_devices()

    try:
        devices = _bounded(listing, MICROPHONE_TIMEOUT_S)
    except AudioDeviceError:
        return Check(WARN, "microphones", "PortAudio is missing (facecast live cannot hear one)", PORTAUDIO_HINT)
    except TimeoutError:
        return Check(WARN, "microphones", f"listing them took over {MICROPHONE_TIMEOUT_S:g} s",
                     "restart the sound server or the audio driver, then run facecast doctor again")
    except Exception as exc:
        return Check(WARN, "microphones", f"cannot list them: {type(exc).__name__}: {exc}",
                     "check the sound settings, then run facecast devices")
    if not devices:
        return Check(WARN, "microphones", "none found (facecast live needs one, or --audio FILE)", _microphone_fix())
    default = next((d["name"] for d in devices if d.get("is_default")), devices[0]["name"])
    return Check(OK, "microphones", f"{len(devices)} found, default {default!r} (facecast devices lists them)")


def _microphone_fix() -> str:
    if sys.platform == "darwin":
        return ("plug one in, and allow microphone access for your terminal (System Settings > Privacy & "
                "Security > Microphone)")
    if sys.platform == "win32":
        return "plug one in, and allow desktop apps to use it (Settings > Privacy & security > Microphone)"
    return "plug one in; check that PulseAudio or PipeWire runs (pactl info) and sees it (pactl list sources short)"


def check_cameras(probe: Callable[[], list[int]] | None = None, platform_name: str = sys.platform,
                  asked: bool = False) -> Check:
    """Cameras OpenCV can open (index 0-3): a virtual camera shows here once it runs. facecast needs none."""
    if platform_name == "darwin" and not asked:
        return Check(INFO, "cameras", "not probed on macOS, where opening one asks for camera permission "
                                      "(add --cameras)")
    try:
        found = _bounded(probe or _probe_cameras, CAMERA_TIMEOUT_S)
    except TimeoutError:
        return Check(WARN, "cameras", f"probing them took over {CAMERA_TIMEOUT_S:g} s (a camera driver is stuck?)",
                     "unplug and replug the camera, or close the app that holds it")
    except Exception as exc:
        return Check(WARN, "cameras", f"cannot probe them: {type(exc).__name__}: {exc}", "")
    if not found:
        return Check(INFO, "cameras", "none found (facecast needs none; its virtual camera shows here while it runs)")
    return Check(OK, "cameras", f"{len(found)} found (index {', '.join(str(i) for i in found)})")


def _probe_cameras() -> list[int]:
    import cv2

    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:
        pass
    found = []
    for index in CAMERA_INDICES:
        if sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{index}"):
            continue  # nothing to open, and OpenCV would log about it
        capture = cv2.VideoCapture(index)
        try:
            if capture.isOpened():
                found.append(index)
        finally:
            capture.release()
    return found


def check_virtual_camera(lister: Callable[[], list[dict[str, Any]]] | None = None) -> Check:
    from facecast.bridges.vcam import list_vcam_backends, setup_hint

    try:
        backends = (lister or list_vcam_backends)()
    except Exception as exc:
        return Check(WARN, "virtual camera", f"cannot check: {type(exc).__name__}: {exc}", setup_hint())
    usable = [b for b in backends if b.get("usable")]
    if usable:
        first = usable[0]
        devices = ", ".join(first.get("devices") or []) or "ready"
        return Check(OK, "virtual camera", f"{first['backend']}: {devices} (facecast live --vcam)")
    details = "; ".join(f"{b['backend']}: {(b.get('detail') or 'not usable').split(';')[0]}" for b in backends)
    return Check(WARN, "virtual camera", f"none usable ({_first_sentence(details or 'no backend')}; only --vcam "
                                         "needs one)", setup_hint())


def check_ports(port: int = WS_PORT) -> Check:
    udp = ", ".join(f"{number} ({name})" for number, name in UDP_TARGETS)
    note = f"; UDP {udp}: facecast only sends there, the receiving app must listen"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if os.name == "posix":  # as the server binds (a port in TIME_WAIT is free); on Windows this would steal it
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            return Check(WARN, "ports", f"TCP 127.0.0.1:{port} is in use ({exc.strerror or exc}){note}",
                         "stop the program using it (another facecast live?) or choose another port: --ws PORT")
    return Check(OK, "ports", f"TCP 127.0.0.1:{port} free for facecast live --ws{note}")


def check_torch_build(distributions: Callable[[], Iterable[Any]] = metadata.distributions,
                      platform_name: str = sys.platform) -> Check | None:
    """A warning when PyPI's CUDA build of torch (with its nvidia-* packages, gigabytes) is installed."""
    nvidia = sorted({d.metadata["Name"] for d in distributions()
                     if (d.metadata["Name"] or "").lower().startswith("nvidia-")})
    if not nvidia:
        return None
    return Check(WARN, "torch build", f"the CUDA build is installed ({len(nvidia)} nvidia-* packages, several GB); "
                                      "facecast needs no GPU",
                 f"on a machine without an NVIDIA GPU: {CPU_TORCH}" + (" (then pip uninstall the nvidia-* packages)"
                                                                       if platform_name != "win32" else ""))


# --------------------------------------------------------------------------------------------- the command

def run_checks(portrait: Path | None = None, gpu: bool = False, cameras: bool = False) -> tuple[list[Check], bool]:
    """Every check in order: (the lines, whether all required checks passed)."""
    stale = _safely(check_metadata, "install")
    required: list[Check] = [check_python(), *([stale] if stale else []), *check_packages(),
                             check_face_models(portrait), check_motion_model(), check_encoder()]
    if gpu:
        required.append(check_gpu())
    reported: list[Check] = [check_microphones(), check_cameras(asked=cameras), check_virtual_camera(),
                             check_ports()]
    torch_build = None if gpu else _safely(check_torch_build, "torch build")
    if torch_build is not None:
        reported.append(torch_build)
    if not gpu:
        reported.append(Check(INFO, "GPU", "not checked (facecast runs on the CPU; --gpu checks for CUDA)"))
    return required + reported, all(c.status == OK for c in required)


def doctor(portrait: Path | None = None, gpu: bool = False, cameras: bool = False, out: TextIO | None = None) -> int:
    """Print the report; 0 when every required check passed, 1 otherwise."""
    out = out or sys.stdout
    symbols = SYMBOLS if _can_print(out, "".join(SYMBOLS.values())) else ASCII_SYMBOLS
    print(f"facecast doctor: {platform.system()} {platform.release()} ({platform.machine()}), "
          f"Python {platform.python_version()}", file=out, flush=True)
    checks, passed = run_checks(portrait, gpu, cameras)
    for check in checks:
        print(check.line(symbols), file=out)
    warnings = sum(c.status == WARN for c in checks)
    if passed:
        print("ready: every required check passed" + (f" ({warnings} to look at before going live)" if warnings
                                                       else ""), file=out)
    else:
        print(f"not ready: {sum(c.status == FAIL for c in checks)} required check(s) failed (fixes above)", file=out)
    return 0 if passed else 1


def _checkout_requirements() -> list[str] | None:
    """The dependencies in the pyproject.toml of the source checkout facecast runs from, if it does."""
    import tomllib

    pyproject = SAMPLE_PORTRAIT.parents[1] / "pyproject.toml"
    try:
        return list(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"])
    except (OSError, KeyError, ValueError):
        return None


def _metadata(field: str) -> str | None:
    try:
        return metadata.metadata("facecast")[field]
    except (metadata.PackageNotFoundError, KeyError):
        return None


def _has_encoder(av: Any, name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


def _bounded(function: Callable[[], Any], seconds: float) -> Any:
    """`function()` on a daemon thread; TimeoutError if it is not back within `seconds` (it is then abandoned)."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = function()
        except BaseException as exc:  # handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=run, name="facecast-doctor-probe", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {seconds:g} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def _safely(check: Callable[[], Check | None], name: str) -> Check | None:
    try:
        return check()
    except Exception as exc:
        return Check(WARN, name, f"cannot check: {type(exc).__name__}: {exc}")


def _first_sentence(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."


def _can_print(stream: TextIO, text: str) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True
