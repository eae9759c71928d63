"""Which parameters the worn VRChat avatar has: the OSC config files VRChat writes (file reading only).

With OSC enabled, VRChat writes one JSON file per avatar the first time it is
worn, ``…/AppData/LocalLow/VRChat/VRChat/OSC/<user id>/Avatars/<avatar id>.json``
(docs.vrchat.com "OSC Avatar Parameters"); the parsing is
`facecast.bridges.vrchat.AvatarParameters.from_config`. `AvatarConfigSource`
gives the VRChat output either one file the user named, or the newest file in
the OSC folder, looked up again every few seconds so a newly worn avatar is
picked up. VRChat only *creates* a file when it has none for that avatar, so
"newest" means the avatar most recently worn for the first time: the log
line names the avatar, and ``--vrchat-avatar-config FILE`` picks another.
(OSCQuery would name the worn avatar exactly, but needs mDNS discovery: not
implemented.)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from facecast.bridges.vrchat import AvatarParameters
from facecast.errors import InputError, check_regular_file

__all__ = ["AvatarConfigSource", "load_avatar_config", "newest_avatar_config", "vrchat_osc_dirs"]

log = logging.getLogger("facecast.bridges.vrchat")

#: Seconds between looks for a newer avatar config in the OSC folder.
POLL_S = 5.0
#: VRChat's Steam app id (its Proton prefix on Linux).
_STEAM_APP = "438100"
_LOCAL_LOW = Path("AppData", "LocalLow", "VRChat", "VRChat", "OSC")


def vrchat_osc_dirs() -> list[Path]:
    """Where VRChat keeps its OSC configs on this machine (Windows, or Steam's Proton prefix on Linux)."""
    home = Path.home()
    if sys.platform == "win32":
        return [Path(os.environ.get("USERPROFILE") or home) / _LOCAL_LOW]
    proton = Path("steamapps", "compatdata", _STEAM_APP, "pfx", "drive_c", "users", "steamuser") / _LOCAL_LOW
    return [home / ".steam" / "steam" / proton, home / ".local" / "share" / "Steam" / proton]


def newest_avatar_config(osc_dirs: list[Path]) -> Path | None:
    """The most recently written ``<user>/Avatars/*.json`` under any of `osc_dirs` (or directly in one)."""
    newest: tuple[float, Path] | None = None
    for osc_dir in osc_dirs:
        if not osc_dir.is_dir():
            continue
        for path in (*osc_dir.glob("*/Avatars/*.json"), *osc_dir.glob("*.json")):
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            if newest is None or mtime > newest[0]:
                newest = (mtime, path)
    return None if newest is None else newest[1]


def load_avatar_config(path: str | Path) -> AvatarParameters:
    """One avatar's OSC config; ValueError (one line) if it cannot be read or is not one."""
    path = Path(path)
    try:
        if path.exists():
            check_regular_file(path, "VRChat avatar config")   # /dev/zero or a pipe would never end
        # VRChat writes these files with a UTF-8 byte order mark.
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except InputError as exc:
        raise ValueError(str(exc)) from None
    except FileNotFoundError:
        raise ValueError(f"VRChat avatar config not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read VRChat avatar config {path}: {exc}") from None
    try:
        return AvatarParameters.from_config(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


class AvatarConfigSource:
    """The avatar parameter list for the VRChat output: one named file, or the newest in VRChat's OSC folder.

    `poll` is called from the frame loop; it touches the disk at most every
    `poll_s` seconds and returns the avatar only when it changed (a different
    file, or the same file rewritten), else None. A named file is read at once
    (ValueError if unusable); a file found automatically that cannot be read
    is logged once and skipped.
    """

    def __init__(self, path: str | Path | None = None, osc_dirs: list[Path] | None = None,
                 poll_s: float = POLL_S) -> None:
        self.path = Path(path) if path is not None and not Path(path).is_dir() else None
        if path is not None and Path(path).is_dir():
            osc_dirs = [Path(path)]
        self.osc_dirs = osc_dirs if osc_dirs is not None else vrchat_osc_dirs()
        self.poll_s = poll_s
        self._current: tuple[Path, float] | None = None
        self._next_poll = -float("inf")
        self._bad: set[tuple[Path, float]] = set()
        self._pending: AvatarParameters | None = None
        if self.path is not None:
            self._pending = load_avatar_config(self.path)
            self._current = (self.path, self._mtime(self.path))

    @staticmethod
    def _mtime(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return -1.0

    def poll(self, now: float | None = None) -> AvatarParameters | None:
        """The avatar's parameters when they changed since the last call, else None."""
        if self._pending is not None:
            avatar, self._pending = self._pending, None
            return avatar
        now = time.monotonic() if now is None else now
        if now < self._next_poll:
            return None
        self._next_poll = now + self.poll_s
        path = self.path if self.path is not None else newest_avatar_config(self.osc_dirs)
        if path is None:
            return None
        key = (path, self._mtime(path))
        if key == self._current or key in self._bad:
            return None
        try:
            avatar = load_avatar_config(path)
        except ValueError as exc:
            self._bad.add(key)
            log.warning("%s; keeping the previous parameter list", exc)
            return None
        self._current = key
        return avatar
