"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""

from __future__ import annotations

import stat
from pathlib import Path


class FacecastError(Exception):
    """Base of every error facecast reports to the user as one line."""


class InputError(FacecastError):
    """Bad user input: a missing, corrupt or unsupported file, or invalid values."""


class NoFaceError(InputError):
    """No usable face was found in a portrait."""


class OutputError(FacecastError):
    """An output cannot be written (unwritable path, existing file without --overwrite)."""


def check_regular_file(path: Path, what: str = "picture") -> None:
    """InputError (one line) unless `path` is an existing regular file: not found, a folder, a device or pipe
    (reading /dev/zero or a FIFO would never end), a path the system refuses (too long, no permission)."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"{what} not found: {path}") from None
    except ValueError:  # an embedded NUL
        raise InputError(f"not a valid file path: {str(path)[:80]!r}") from None
    except OSError as exc:  # too long, permission denied, a symlink loop ...
        raise InputError(f"cannot open {what} {str(path)[:200]}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{path} is not a file but a folder: give a {what} file")
    if not stat.S_ISREG(mode):
        raise InputError(f"{path} is not a file but a device, pipe or socket: give a {what} file")
