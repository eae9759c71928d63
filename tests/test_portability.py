"""What differs between Linux, Windows and macOS, tested here on Linux by standing in for the other OS:
stop signals, console encoding, settings folders, microphones listed once per host API, and outputs that
another program holds open (Windows file locks). README lists what still needs a real Windows or Mac."""

from __future__ import annotations

import io
import os
import pty
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from facecast import media
from facecast.app import audio_input
from facecast.app.audio_input import input_candidates, list_input_devices
from facecast.app.cli import configure_console
from facecast.app.stop_signals import install_stop_handlers
from facecast.errors import OutputError
from facecast.user_dirs import user_cache_dir, user_config_dir

# --------------------------------------------------------------------------------------------- stop signals


class FakeSignals:
    """A `signal` module of another OS: only the names given exist; records the handlers set."""

    SIG_IGN, SIG_DFL = signal.SIG_IGN, signal.SIG_DFL

    def __init__(self, ignored: tuple[int, ...] = (), **numbers: int) -> None:
        for name, number in numbers.items():
            setattr(self, name, number)
        self.handlers: dict[int, Any] = {number: (signal.SIG_IGN if number in ignored else None)
                                         for number in numbers.values()}

    def getsignal(self, number: int) -> Any:
        return self.handlers[number]

    def signal(self, number: int, handler: Any) -> Any:
        previous, self.handlers[number] = self.handlers[number], handler
        return previous


def test_stop_handlers_on_windows_take_sigbreak() -> None:
    windows = FakeSignals(SIGINT=2, SIGTERM=15, SIGBREAK=21)  # Windows' signal module has no SIGHUP
    stopped: list[bool] = []
    restore = install_stop_handlers(lambda: stopped.append(True), signals=windows)
    assert callable(windows.handlers[21]) and callable(windows.handlers[15])
    assert windows.handlers[2] is None  # Ctrl-C stays Python's KeyboardInterrupt
    windows.handlers[21](21, None)  # Ctrl-Break
    assert stopped == [True]
    restore()
    assert windows.handlers[21] == signal.SIG_DFL and windows.handlers[15] == signal.SIG_DFL


def test_stop_handlers_on_posix_leave_an_ignored_sighup_alone() -> None:
    posix = FakeSignals(ignored=(1,), SIGINT=2, SIGTERM=15, SIGHUP=1)  # started under nohup
    restore = install_stop_handlers(lambda: None, signals=posix)
    assert callable(posix.handlers[15]) and posix.handlers[1] == signal.SIG_IGN
    restore()
    assert posix.handlers[1] == signal.SIG_IGN


def test_stop_handlers_with_the_real_signal_module_restore_what_was_there() -> None:
    before = signal.getsignal(signal.SIGTERM)
    restore = install_stop_handlers(lambda: None)
    assert signal.getsignal(signal.SIGTERM) is not before
    restore()
    assert signal.getsignal(signal.SIGTERM) == before


# --------------------------------------------------------------------------------------------- console encoding

def test_output_to_a_pipe_or_file_becomes_utf8() -> None:
    """Windows writes a redirected stream in the ANSI code page (cp1252): a Cyrillic file name was an error."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="cp1252", errors="strict")
    configure_console([stream])
    stream.write("portrait Жанна.png ✓\n")
    stream.flush()
    assert raw.getvalue().decode("utf-8") == "portrait Жанна.png ✓\n"


def test_a_terminal_keeps_its_encoding_and_never_fails() -> None:
    main, child = pty.openpty()
    try:
        with open(child, "w", encoding="cp1252", errors="strict", closefd=False) as stream:
            assert stream.isatty()
            configure_console([stream])
            assert stream.encoding == "cp1252" and stream.errors == "replace"
            stream.write("Жанна ✓ café\n")
            stream.flush()
        assert os.read(main, 1024).replace(b"\r\n", b"\n") == "????? ? café\n".encode("cp1252")
    finally:
        os.close(main)
        os.close(child)


def test_replaced_streams_are_left_alone() -> None:
    stream = io.StringIO()
    configure_console([stream])  # pytest's capture, IDE consoles: not ours to change
    stream.write("✓")


# --------------------------------------------------------------------------------------------- settings folders

@pytest.mark.parametrize(("platform", "environ", "expected"), [
    ("linux", {}, "/home/me/.config/facecast"),
    ("win32", {"APPDATA": "/users/me/AppData/Roaming"}, "/users/me/AppData/Roaming/facecast"),
    ("win32", {}, "/home/me/AppData/Roaming/facecast"),
    ("darwin", {}, "/home/me/Library/Application Support/facecast"),
    ("darwin", {"XDG_CONFIG_HOME": "/xdg"}, "/xdg/facecast"),
    ("linux", {"XDG_CONFIG_HOME": "relative"}, "/home/me/.config/facecast"),  # XDG: absolute paths only
])
def test_settings_folder_per_os(platform: str, environ: dict[str, str], expected: str) -> None:
    assert user_config_dir(platform, environ, home=Path("/home/me")) == Path(expected)


@pytest.mark.parametrize("platform, environ, expected", [
    ("linux", {}, "/home/me/.cache/facecast"),
    ("darwin", {}, "/home/me/Library/Caches/facecast"),
    ("win32", {"LOCALAPPDATA": "/c/Users/me/AppData/Local"}, "/c/Users/me/AppData/Local/facecast/Cache"),
    ("win32", {}, "/home/me/AppData/Local/facecast/Cache"),
    ("darwin", {"XDG_CACHE_HOME": "/x/cache"}, "/x/cache/facecast"),
    ("linux", {"XDG_CACHE_HOME": "relative"}, "/home/me/.cache/facecast"),  # XDG: absolute paths only
])
def test_cache_folder_per_os(platform: str, environ: dict[str, str], expected: str) -> None:
    assert user_cache_dir(platform, environ, home=Path("/home/me")) == Path(expected)


# --------------------------------------------------------------------------------------------- microphones

def fake_portaudio(devices: list[tuple[str, str, int]], hostapis: list[str], default: int) -> Any:
    """A sounddevice stand-in listing `devices` as (name, host API, input channels)."""
    listed = [{"name": name, "index": index, "hostapi": hostapis.index(api), "max_input_channels": channels,
               "default_samplerate": 48000.0} for index, (name, api, channels) in enumerate(devices)]
    apis = [{"name": api, "default_input_device": next((d["index"] for d in listed if d["hostapi"] == i
                                                        and d["max_input_channels"]), -1)}
            for i, api in enumerate(hostapis)]
    return SimpleNamespace(query_devices=lambda: listed, query_hostapis=lambda: apis,
                           default=SimpleNamespace(device=[default, -1]), PortAudioError=OSError)


#: Windows lists one microphone through each host API (MME names are cut at 31 characters).
WINDOWS = fake_portaudio([
    ("Microsoft Sound Mapper - Input", "MME", 2), ("Microphone (USB Mic)", "MME", 2),
    ("Speakers (Realtek Audio)", "MME", 0), ("Primary Sound Capture Driver", "Windows DirectSound", 2),
    ("Microphone (USB Mic)", "Windows DirectSound", 2), ("Microphone (USB Mic)", "Windows WASAPI", 1),
    ("Microphone (Realtek Audio)", "Windows WASAPI", 2), ("Microphone (USB Mic)", "Windows WDM-KS", 1),
], ["MME", "Windows DirectSound", "Windows WASAPI", "Windows WDM-KS"], default=1)


def test_windows_lists_each_microphone_once_through_wasapi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio_input, "_sounddevice", lambda: WINDOWS)
    listing = list_input_devices(platform="win32")
    names = [d["name"] for d in listing]
    assert len(names) == len(set(names))
    usb = next(d for d in listing if d["name"] == "Microphone (USB Mic)")
    assert usb["host_api"] == "Windows WASAPI" and usb["index"] == 5 and usb["is_default"]


def test_a_microphone_named_on_windows_is_opened_through_each_host_api_in_turn() -> None:
    # WASAPI first (lowest latency), then MME, DirectSound, WDM-KS: not "Multiple input devices found"
    assert input_candidates(WINDOWS, "Microphone (USB Mic)", platform="win32") == [5, 1, 4, 7]
    assert input_candidates(WINDOWS, "microphone (usb mic)", platform="win32") == [5, 1, 4, 7]
    assert input_candidates(WINDOWS, None, platform="win32") == [5, 1, 4, 7]  # the default, by its name
    assert input_candidates(WINDOWS, "Realtek", platform="win32") == [6]  # part of a name, as sounddevice
    assert input_candidates(WINDOWS, 4, platform="win32") == [4]  # an index is that device
    with pytest.raises(ValueError, match="Multiple input devices found for 'Microphone': Microphone"):
        input_candidates(WINDOWS, "Microphone", platform="win32")
    with pytest.raises(ValueError, match="^No input device matching 'Webcam'$"):
        input_candidates(WINDOWS, "Webcam", platform="win32")


def test_linux_keeps_portaudios_order() -> None:
    linux = fake_portaudio([("HDA Intel PCH: ALC3246 Analog (hw:0,0)", "ALSA", 2), ("pulse", "ALSA", 32),
                            ("default", "ALSA", 32)], ["ALSA"], default=2)
    assert input_candidates(linux, None, platform="linux") == [2]
    assert input_candidates(linux, "ALC3246", platform="linux") == [0]
    assert input_candidates(linux, "pulse", platform="linux") == [1]


# --------------------------------------------------------------------------------------------- file locks

def test_an_output_open_in_another_program_is_retried_then_one_line(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows refuses to replace a file a player holds open (WinError 32); facecast waits briefly, then says so."""
    real_replace, attempts = os.replace, []

    def locked(source: str, target: str) -> None:
        attempts.append(target)
        if len(attempts) < 3 or "always" in str(target):
            raise PermissionError(13, "The process cannot access the file because it is being used by another "
                                      "process")
        real_replace(source, target)

    monkeypatch.setattr(media.os, "replace", locked)
    monkeypatch.setattr(media, "REPLACE_RETRY_S", 0.001)
    (tmp_path / "talk.mp4").write_bytes(b"old")
    with media.AtomicOutput(tmp_path / "talk.mp4", overwrite=True) as sink:
        sink.temp.write_bytes(b"new")
        sink.commit()
    assert (tmp_path / "talk.mp4").read_bytes() == b"new" and len(attempts) == 3
    (tmp_path / "always.mp4").write_bytes(b"old")
    with pytest.raises(OutputError, match=r"cannot replace .*always.mp4: The process cannot access the file .*"
                                          r"\(is it open in another program\?"):
        with media.AtomicOutput(tmp_path / "always.mp4", overwrite=True) as sink:
            sink.temp.write_bytes(b"new")
            sink.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["always.mp4", "talk.mp4"]  # no partial file left
    assert (tmp_path / "always.mp4").read_bytes() == b"old"
