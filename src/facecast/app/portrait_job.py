"""Portrait analysis (and the optional cut-out) in a short-lived child process.

Why: finding the face needs mediapipe, which adds about 90 MiB to a process
(its libraries, graphs and the decoded picture) and never gives it back, while
`render` and `live` only need the result: a framed picture and its landmarks
(`PortraitRig`). Run in a child that exits once it has answered, the analysis
leaves the render or live process that much lighter for its whole run, a huge
picture (a 9000 × 9000 JPEG is 243 MB decoded) weighs on the child alone, and a
crash inside the native code becomes one clear error instead of the daemon's
end. The caller waits for the child before loading torch, so the two never
hold their memory at the same time.

The child's log lines (a tilted head, invented pixels, the cut-out's fallback)
are replayed in the parent under their own logger names, so they read as
before; its errors are re-raised as the same `FacecastError`.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

from facecast.errors import FacecastError
from facecast.rig import PortraitRig

log = logging.getLogger("facecast.portrait")

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
    os.dup2(2, 1)  # anything else printed (native code, a stray print) goes where stderr goes, not into the answer
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


def prepare_portrait(source: str | Path, *, size: int, framing: str, face_index: int | None = None,
                     landmarks_json: str | Path | None = None, cutout: bool = False,
                     stage_seconds: dict[str, float] | None = None) -> PortraitRig:
    """`analyze_portrait(source, ...)` (then `cut_out` when asked) in a child process, which has ended when this
    returns; the child's errors are raised here as the same type, and what it logged is logged here. The child's
    own seconds per step ("analysis", "cutout") are added to `stage_seconds` when given."""
    options = {"size": size, "framing": framing, "face_index": face_index,
               "landmarks_json": None if landmarks_json is None else str(landmarks_json)}
    request = (str(source), options, cutout, logging.getLogger("facecast").getEffectiveLevel())
    # started from the calling thread, the child inherits its priority (the portrait swapper's is lowered)
    child = subprocess.run([sys.executable, "-c", _BOOTSTRAP], input=json.dumps(sys.path).encode() + b"\n"
                           + pickle.dumps(request), stdout=subprocess.PIPE, check=False)
    try:
        kind, payload, lines = pickle.loads(child.stdout)
    except Exception:  # no answer: the child died (a crash in native code, killed, out of memory)
        raise FacecastError(f"portrait analysis of {Path(source).name} stopped unexpectedly (exit status "
                            f"{child.returncode}); try another picture, or a smaller one") from None
    for name, level, message in lines:
        logging.getLogger(name).log(level, "%s", message)
    if kind == "error":
        raise payload
    if kind == "bug":
        raise RuntimeError(payload)
    rig, seconds = payload
    if stage_seconds is not None:
        stage_seconds.update(seconds)
    return rig
