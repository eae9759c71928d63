"""Portrait analysis (and the optional cut-out) in a short-lived child process.

Why: finding the face needs mediapipe, which adds about 90 MiB to a process
(its libraries, graphs and the decoded picture) and never gives it back, while
`render` and `live` only need the result: a framed picture and its landmarks
(`PortraitRig`). Run in a child that exits once it has answered, the analysis
leaves the render or live process that much lighter for its whole run, a huge
picture (a 9000 × 9000 JPEG is 243 MB decoded) weighs on the child alone, and a
crash inside the native code becomes one clear error instead of the daemon's
end. The caller may do light work meanwhile (`render` imports the renderer)
but waits for the child before loading torch, so the two never hold their
memory at the same time.

The child's log lines (a tilted head, invented pixels, the cut-out's fallback)
are replayed in the parent under their own logger names, so they read as
before; its errors are re-raised as the same `FacecastError`.

The prepared rig is also cached by the picture's content and the options, so a
streamer who starts `live` or renders with the same picture again skips the
child (about a second of start-up) altogether; its log lines are kept with it
and said again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import pickle
import stat
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from facecast.errors import FacecastError
from facecast.rig import PortraitRig
from facecast.user_dirs import user_cache_dir

log = logging.getLogger("facecast.portrait")

#: The environment variable that moves the cache (a folder) or turns it off (empty).
CACHE_ENV = "FACECAST_PORTRAIT_CACHE"
#: Bump when what is stored, or how a rig is made from it, changes (older entries are then analysed again).
CACHE_FORMAT = 1
#: Prepared portraits kept (the least recently used go first); a 512² entry is about 1 MiB.
CACHE_ENTRIES = 32
#: Pictures larger than this are not hashed for the cache (analysed every time).
MAX_CACHED_BYTES = 256 * 2**20
#: The rig's array fields, stored as arrays (None ones left out).
_ARRAYS = ("image", "landmarks", "transform", "backdrop")
#: Log lines the child sends back: (logger name, level, message).
_Lines = list[tuple[str, int, str]]
#: The child's first line of input is the parent's sys.path, so it imports the same facecast (a checkout on
#: PYTHONPATH or a path a script inserted); a plain subprocess rather than multiprocessing's spawn, which
#: would re-import the caller's main script (and run it, where it lacks a `__main__` guard).
_BOOTSTRAP = ("import json, sys; sys.path[:0] = json.loads(sys.stdin.buffer.readline()); "
              "from facecast.app.portrait_job import serve; serve()")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: _Lines = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.name, record.levelno, record.getMessage()))


def serve() -> None:
    """The child's side: read the request (pickled) from stdin, analyse, write the answer (pickled) to stdout."""
    answer_fd = os.dup(1)
    # anything else printed (native code, a stray print) goes where stderr goes, never into the answer
    try:
        os.dup2(2, 1)
    except OSError:  # no stderr (a windowless parent): nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    source, options, cutout, level = pickle.load(sys.stdin.buffer)
    collect = _Collect()
    ours = logging.getLogger("facecast")
    ours.addHandler(collect)
    ours.setLevel(level)
    try:
        from facecast.face.portrait import analyze_portrait

        t0 = time.perf_counter()
        rig = analyze_portrait(source, **options)
        seconds = {"analysis": time.perf_counter() - t0}
        if cutout:
            from facecast.app.cutout import cut_out

            t0 = time.perf_counter()
            rig = cut_out(rig)
            seconds["cutout"] = time.perf_counter() - t0
        answer: tuple = ("rig", (rig, seconds), collect.lines)
    except FacecastError as exc:
        answer = ("error", exc, collect.lines)
    except Exception as exc:  # a bug: its name and message, for the parent's one line
        answer = ("bug", f"{type(exc).__name__}: {exc}", collect.lines)
    with os.fdopen(answer_fd, "wb") as out:
        pickle.dump(answer, out, protocol=pickle.HIGHEST_PROTOCOL)


class PortraitJob:
    """`analyze_portrait(source, ...)` (then `cut_out` when asked), from the cache when this picture was prepared
    the same way before, else in a child process started here, so the caller can do light work (imports, opening
    files) meanwhile. `result()` waits for it; `cancel()` ends a child whose answer is no longer wanted. The cache
    is `default_cache()`."""

    def __init__(self, source: str | Path, *, size: int, framing: str, face_index: int | None = None,
                 landmarks_json: str | Path | None = None, cutout: bool = False) -> None:
        self.source = str(source)
        options = {"size": size, "framing": framing, "face_index": face_index,
                   "landmarks_json": None if landmarks_json is None else str(landmarks_json)}
        started = time.perf_counter()
        self._folder = default_cache()
        self._key = _cache_key(Path(source), options, cutout) if self._folder is not None else None
        self._cached = _read_cached(self._folder, self._key, self.source) if self._folder and self._key else None
        self._cache_seconds = time.perf_counter() - started
        self._child: subprocess.Popen | None = None
        if self._cached is None:
            request = (self.source, options, cutout, logging.getLogger("facecast").getEffectiveLevel())
            # started from the calling thread, the child inherits its priority (the portrait swapper's is lowered)
            self._child = subprocess.Popen([sys.executable, "-c", _BOOTSTRAP], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE)
            assert self._child.stdin is not None
            try:
                with self._child.stdin:
                    self._child.stdin.write(json.dumps(sys.path).encode() + b"\n" + pickle.dumps(request))
            except BrokenPipeError:  # it ended already: `result()` says so
                pass

    def result(self, stage_seconds: dict[str, float] | None = None) -> PortraitRig:
        """The rig; the child's errors raised here as the same type, what it logged logged here (again on a cache
        hit). Seconds per step ("analysis", "cutout", or "portrait cache") are added to `stage_seconds`."""
        if self._cached is not None:
            rig, lines = self._cached
            _replay(lines)
            if stage_seconds is not None:
                stage_seconds["portrait cache"] = self._cache_seconds
            return rig
        assert self._child is not None and self._child.stdout is not None
        with self._child.stdout:
            data = self._child.stdout.read()
        code = self._child.wait()
        try:
            kind, payload, lines = pickle.loads(data)
        except Exception:  # no answer: the child died (a crash in native code, killed, out of memory)
            raise FacecastError(f"portrait analysis of {Path(self.source).name} stopped unexpectedly (exit "
                                f"status {code}); try another picture, or a smaller one") from None
        _replay(lines)
        if kind == "error":
            raise payload
        if kind == "bug":
            raise RuntimeError(payload)
        rig, seconds = payload
        if stage_seconds is not None:
            stage_seconds.update(seconds)
        if self._folder is not None and self._key:
            _write_cached(self._folder, self._key, rig, lines)
        return rig

    def cancel(self) -> None:
        """End the child if it is still working (the caller failed before it needed the rig)."""
        if self._child is not None and self._child.poll() is None:
            self._child.kill()
            self._child.wait()
        if self._child is not None and self._child.stdout is not None:
            self._child.stdout.close()


def prepare_portrait(source: str | Path, *, stage_seconds: dict[str, float] | None = None,
                     **options: Any) -> PortraitRig:
    """`PortraitJob(source, **options).result(stage_seconds)`: the rig, waited for at once."""
    return PortraitJob(source, **options).result(stage_seconds)


def _replay(lines: _Lines) -> None:
    for name, level, message in lines:
        logging.getLogger(name).log(level, "%s", message)


# ----------------------------------------------------------------------------- the cache

def default_cache() -> Path | None:
    """Where prepared portraits are kept: $FACECAST_PORTRAIT_CACHE when set (empty: no cache), else `portraits`
    in facecast's user cache folder (`facecast.user_dirs`)."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return Path(chosen) if chosen else None
    return user_cache_dir() / "portraits"


@functools.cache
def _code_digest() -> bytes:
    """The source of the modules that make a rig, so a changed analysis never reads an older one's result (read
    once per process: every portrait swap would otherwise read and hash them again)."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted((package / "face").glob("*.py")) + [package / "app" / "cutout.py", package / "rig.py"]:
        digest.update(path.read_bytes())
    return digest.digest()


def _cache_key(source: Path, options: dict[str, Any], cutout: bool) -> str | None:
    """A digest of everything the rig depends on: the picture's bytes, the hand-placed points' bytes, the options,
    facecast's analysis code and mediapipe's version. None (no caching) for what is not a regular file of a sane size:
    the child then says what is wrong with it."""
    digest = hashlib.sha256(f"{CACHE_FORMAT} {_mediapipe_version()} {sorted(options.items())} {cutout}".encode())
    digest.update(_code_digest())
    for path in (source, options["landmarks_json"]):
        if path is None:
            continue
        try:
            info = os.stat(path)
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_CACHED_BYTES:
                return None
            with open(path, "rb") as file:
                digest.update(hashlib.file_digest(file, "sha256").digest())
        except OSError:
            return None
    return digest.hexdigest()[:32]


def _mediapipe_version() -> str:
    try:
        return metadata.version("mediapipe")
    except metadata.PackageNotFoundError:
        return "none"


def _read_cached(folder: Path, key: str, source: str) -> tuple[PortraitRig, _Lines] | None:
    path = folder / f"{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            arrays = {name: stored[name] if name in stored else None for name in _ARRAYS}
        rig = PortraitRig(source=source, face_count=meta["face_count"], method=meta["method"],
                          framing=meta["framing"], picture_size=tuple(meta["picture_size"]),
                          placement=tuple(meta["placement"]), motion_scale=meta["motion_scale"], **arrays)
        os.utime(path)  # recently used: kept longest
        return rig, [tuple(line) for line in meta["lines"]]
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - a damaged or older entry: analyse again (and overwrite it)
        log.debug("ignoring the cached portrait %s", path, exc_info=True)
        return None


def _write_cached(folder: Path, key: str, rig: PortraitRig, lines: _Lines) -> None:
    meta = {"face_count": rig.face_count, "method": rig.method, "framing": rig.framing,
            "picture_size": list(rig.picture_size), "placement": list(rig.placement),
            "motion_scale": rig.motion_scale, "lines": lines}
    arrays = {name: getattr(rig, name) for name in _ARRAYS if getattr(rig, name) is not None}
    temp: Path | None = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as file:
            temp = Path(file.name)
            np.savez(file, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(temp, folder / f"{key}.npz")
        entries = sorted(folder.glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[CACHE_ENTRIES:]:
            old.unlink(missing_ok=True)
    except OSError as exc:  # a read-only or full disk: the cache is only a shortcut
        log.debug("could not cache the analysed portrait in %s: %s", folder, exc)
        if temp is not None:
            temp.unlink(missing_ok=True)   # a half-written entry (a full disk) is not left behind
