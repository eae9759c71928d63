"""`facecast doctor`: one line per check, each problem with a one-line fix, exit 1 only for required ones."""

from __future__ import annotations

import io
import socket
import time
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from conftest import run_facecast
from facecast.app import doctor
from facecast.app.audio_input import AudioDeviceError
from facecast.app.doctor import FAIL, INFO, OK, WARN, Check

SYMBOL_LINE = ("✓ ", "✗ ", "! ", "· ")


def test_doctor_on_this_machine_reports_everything_and_passes() -> None:
    """No microphone, camera or virtual camera here: each is a line of its own, never a crash or exit 1."""
    result = run_facecast("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("facecast doctor: ") and lines[-1].startswith("ready: every required check passed")
    checks = lines[1:-1]
    assert all(line.startswith(SYMBOL_LINE) for line in checks), checks
    names = [name for name in (line[2:].split(":")[0] for line in checks) if name != "torch build"]  # CUDA torch
    assert names == ["Python", "packages", "face models", "motion model", "video encoder", "microphones",
                     "cameras", "virtual camera", "ports", "GPU"], names
    assert "✓ motion model: the learned model loads, its mouth hearing Whisper tiny.en and base" in checks
    assert next(line for line in checks if "face models" in line).startswith("✓ face models: found 1 face(s) in "
                                                                              "mona_lisa.jpg")
    assert "Traceback" not in result.stderr


def test_a_failing_check_is_one_line_with_its_fix_and_exit_1(tmp_path: Path) -> None:
    wall = tmp_path / "wall.png"
    Image.new("RGB", (320, 320), (120, 140, 160)).save(wall)
    result = run_facecast("doctor", "--portrait", wall)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("✗ ")]
    assert len(failed) == 1
    assert failed[0].startswith("✗ face models: wall.png: no face found")
    assert failed[0].endswith(" - fix: try another picture, or place the points by hand with --landmarks (README)")
    assert result.stdout.splitlines()[-1] == "not ready: 1 required check(s) failed (fixes above)"
    # a file that is no picture is not a face the models missed: no hand-placed points for it
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(wall.read_bytes()[:200])
    failed = [line for line in run_facecast("doctor", "--portrait", broken).stdout.splitlines()
              if line.startswith("✗ ")]
    assert len(failed) == 1 and failed[0].endswith(" - fix: give --portrait a JPEG, PNG or WebP picture"), failed


def test_a_missing_whisper_encoder_fails_the_motion_model_check(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken install without the base encoder's file: one failing line naming the file, with its fix."""
    from facecast.speech import whisper_states

    monkeypatch.setitem(whisper_states.ENCODERS, "base", tmp_path / "whisper_base_encoder.pt")
    whisper_states.encoder.cache_clear()
    try:
        check = doctor.check_motion_model()
    finally:
        whisper_states.encoder.cache_clear()
    assert check.status == FAIL and "whisper_base_encoder.pt not found" in check.detail, check
    assert check.line().endswith("fix: reinstall facecast (pip install --force-reinstall -e .), or render with "
                                 "--generator rule")


def test_packages_missing_or_too_old_get_a_pip_command() -> None:
    versions = {"numpy": "1.24.4", "torch": "2.13.0+cpu"}

    def installed(name: str) -> str:
        if name not in versions:
            raise metadata.PackageNotFoundError(name)
        return versions[name]

    checks = doctor.check_packages(["torch>=2.11", "numpy>=1.26", "mediapipe>=1.2.3", 'pytest>=8; extra == "test"'],
                                   installed=installed)
    assert [c.line() for c in checks] == [
        '✗ numpy: 1.24.4 installed, facecast needs numpy>=1.26 - fix: pip install "numpy>=1.26"',
        '✗ mediapipe: not installed (facecast needs mediapipe>=1.2.3) - fix: pip install "mediapipe>=1.2.3"',
    ]
    versions["numpy"], versions["mediapipe"] = "2.4.6", "1.2.3"
    (ok,) = doctor.check_packages(["torch>=2.11", "numpy>=1.26", "mediapipe>=1.2.3"], installed=installed)
    assert ok.status == OK
    assert ok.detail == "all 3 as facecast asks (torch 2.13.0+cpu, mediapipe 1.2.3, numpy 2.4.6, ...)"


def test_python_version_against_requires_python() -> None:
    assert doctor.check_python((3, 14, 0), ">=3.11").status == OK
    old = doctor.check_python((3, 10, 12), ">=3.11")
    assert old.status == FAIL and old.line().startswith("✗ Python: 3.10.12, but facecast needs >=3.11 - fix: install "
                                                        "Python 3.11-3.14")


def test_stale_install_metadata_is_noticed(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["numpy>=1.26", "torch>=2.11"]\n')
    assert doctor.check_metadata(pyproject, ["torch>=2.11", "numpy>=1.26", 'pytest; extra == "test"']) is None
    stale = doctor.check_metadata(pyproject, ["numpy<2,>=1.26", "torch>=2.11"])
    assert stale is not None and stale.status == FAIL and stale.fix.startswith(f'pip install -e "{tmp_path}"')


def fake_torch(cuda: str | None, available: bool) -> SimpleNamespace:
    cuda_module = SimpleNamespace(is_available=lambda: available, get_device_name=lambda index: "NVIDIA H200")
    return SimpleNamespace(__version__="2.13.0", version=SimpleNamespace(cuda=cuda), cuda=cuda_module)


def test_gpu_check_says_which_torch_to_install() -> None:
    assert doctor.check_gpu(fake_torch("12.8", True)).line() == ("✓ GPU: NVIDIA H200 (torch 2.13.0, CUDA 12.8): "
                                                                 "--device cuda works")
    cpu_only = doctor.check_gpu(fake_torch(None, False))
    assert cpu_only.status == FAIL and cpu_only.fix == doctor.CUDA_TORCH and "CPU-only build" in cpu_only.detail
    no_driver = doctor.check_gpu(fake_torch("12.8", False))
    assert no_driver.status == FAIL and no_driver.fix.startswith("install or update the NVIDIA driver")


def test_a_cuda_torch_on_this_machine_is_a_warning_with_the_cpu_install() -> None:
    def distributions(*names: str):
        return lambda: [SimpleNamespace(metadata={"Name": name}) for name in names]

    assert doctor.check_torch_build(distributions("torch", "numpy")) is None
    warning = doctor.check_torch_build(distributions("torch", "nvidia-cublas", "nvidia-cudnn-cu13"), "linux")
    assert warning is not None and warning.status == WARN and "2 nvidia-* packages" in warning.detail
    assert "--index-url https://download.pytorch.org/whl/cpu" in warning.fix


def test_microphones_without_portaudio_or_devices_are_reported() -> None:
    def no_portaudio():
        raise AudioDeviceError("cannot use audio devices (PortAudio library not found)")

    missing = doctor.check_microphones(no_portaudio)
    assert missing.status == WARN and "libportaudio2" in missing.fix
    assert doctor.check_microphones(lambda: []).status == WARN
    found = doctor.check_microphones(lambda: [{"name": "USB Mic", "is_default": True}, {"name": "pulse"}])
    assert found.line() == "✓ microphones: 2 found, default 'USB Mic' (facecast devices lists them)"


def test_camera_probe_is_bounded_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "CAMERA_TIMEOUT_S", 0.2)
    started = time.monotonic()
    stuck = doctor.check_cameras(lambda: time.sleep(5) or [], platform_name="linux")
    assert time.monotonic() - started < 1.0
    assert stuck.status == WARN and "took over 0.2 s" in stuck.detail
    assert doctor.check_cameras(lambda: [0, 2], platform_name="win32").line() == "✓ cameras: 2 found (index 0, 2)"
    mac = doctor.check_cameras(lambda: [0], platform_name="darwin")
    assert mac.status == INFO and "--cameras" in mac.detail  # no permission prompt unless asked
    assert doctor.check_cameras(lambda: [0], platform_name="darwin", asked=True).status == OK


def test_port_in_use_is_a_warning_with_its_fix() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = doctor.check_ports(port)
    assert busy.status == WARN and f"127.0.0.1:{port} is in use" in busy.detail and "--ws PORT" in busy.fix
    assert "UDP 39539 (VMC), 9000 (VRChat OSC): facecast only sends there" in busy.detail
    assert doctor.check_ports(port).status == OK


def test_virtual_camera_missing_is_a_warning_with_the_setup_hint() -> None:
    missing = doctor.check_virtual_camera(lambda: [{"backend": "v4l2loopback", "usable": False, "devices": [],
                                                    "detail": "no v4l2loopback device; on Linux load ..."}])
    assert missing.status == WARN and missing.detail.startswith("none usable (v4l2loopback: no v4l2loopback device;")
    ready = doctor.check_virtual_camera(lambda: [{"backend": "obs", "usable": True, "devices": ["OBS Virtual Camera"]}])
    assert ready.line() == "✓ virtual camera: obs: OBS Virtual Camera (facecast live --vcam)"


def test_a_console_without_the_symbols_gets_ascii(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = [Check(OK, "Python", "3.11.7"), Check(FAIL, "numpy", "1.24", 'pip install "numpy>=1.26"'),
              Check(WARN, "microphones", "none found", "plug one in")]
    monkeypatch.setattr(doctor, "run_checks", lambda *args: (checks, False))
    out = io.TextIOWrapper(io.BytesIO(), encoding="cp1252")  # a legacy Windows console code page
    assert doctor.doctor(out=out) == 1
    out.seek(0)
    lines = out.read().splitlines()[1:]
    assert lines == ["[ok] Python: 3.11.7", '[FAIL] numpy: 1.24 - fix: pip install "numpy>=1.26"',
                     "[warn] microphones: none found - fix: plug one in",
                     "not ready: 1 required check(s) failed (fixes above)"]


def test_doctor_is_in_the_help() -> None:
    result = run_facecast("--help")
    assert "doctor" in result.stdout
