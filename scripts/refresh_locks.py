"""Re-resolve facecast's base dependencies (pyproject.toml) against the package index for every supported
Python and OS, and write one lock file per target into locks/.

    pip install uv            # any recent uv; the lock files name the version that wrote them
    python scripts/refresh_locks.py [--check]

Every target must install from wheels alone (`--only-binary :all:`): a target for which some dependency has
no wheel fails the run, naming the package and the platforms its wheels do exist for. `--check` resolves
into a temporary folder and reports what would change without touching locks/ (exit 1 when anything
would). tests/test_locks.py checks, without the network, that the committed files still agree with
pyproject.toml.

The locks pin what a plain `pip install` from the package index would take. On Linux that includes
PyPI's torch, the CUDA build with its nvidia-* packages; README's install puts the CPU build first.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "locks"
#: The Pythons facecast supports (pyproject's requires-python is the first; README says the same).
PYTHONS = ("3.11", "3.12", "3.13", "3.14")
#: Lock file suffix -> uv's --python-platform. Linux: the manylinux_2_28 baseline (glibc 2.28) that torch
#: and mediapipe wheels need; macOS: Apple silicon at the oldest macOS uv assumes by default, pinned here
#: (MACOSX_DEPLOYMENT_TARGET) so a newer uv does not move it.
PLATFORMS = {
    "linux-x86_64": "x86_64-manylinux_2_28",
    "windows-x86_64": "x86_64-pc-windows-msvc",
    "macos-arm64": "aarch64-apple-darwin",
}
MACOS_VERSION = "13.0"


def lock_name(python: str, platform: str) -> str:
    return f"base-py{python}-{platform}.txt"


def find_uv() -> list[str]:
    """The uv command: on PATH, or the module beside this Python."""
    found = shutil.which("uv")
    if found:
        return [found]
    try:
        import uv  # type: ignore[import-not-found]

        return [uv.find_uv_bin()]
    except ImportError:
        sys.exit("refresh_locks: uv not found: `pip install uv` first")


def compile_lock(uv: list[str], python: str, platform: str, out: Path) -> subprocess.CompletedProcess[str]:
    """One target's resolution into `out` (uv's own output; the caller adds the header line)."""
    env = {**os.environ, "MACOSX_DEPLOYMENT_TARGET": MACOS_VERSION}
    command = [*uv, "pip", "compile", str(REPO / "pyproject.toml"), "--python-version", python,
               "--python-platform", PLATFORMS[platform], "--only-binary", ":all:", "--no-config",
               "--custom-compile-command", "python scripts/refresh_locks.py", "--quiet", "-o", str(out)]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)


def uv_version(uv: list[str]) -> str:
    return subprocess.run([*uv, "--version"], capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="resolve, compare with locks/, write nothing")
    args = parser.parse_args(argv)
    uv = find_uv()
    version = uv_version(uv)
    today = datetime.date.today().isoformat()
    failed: list[str] = []
    changed: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        for python in PYTHONS:
            for platform in PLATFORMS:
                name = lock_name(python, platform)
                out = Path(scratch) / name
                result = compile_lock(uv, python, platform, out)
                if result.returncode != 0:
                    reason = "\n    ".join(line for line in result.stderr.strip().splitlines() if line.strip())
                    failed.append(f"{name}: no wheel-only resolution:\n    {reason}")
                    print(f"FAIL {name}", file=sys.stderr)
                    continue
                body = out.read_text(encoding="utf-8")
                macos = f", macOS {MACOS_VERSION}" if "apple" in PLATFORMS[platform] else ""
                header = (f"# facecast base dependencies, Python {python} on {platform} "
                          f"({PLATFORMS[platform]}{macos}), wheels only: {version}, {today}\n")
                target = LOCKS / name
                old = target.read_text(encoding="utf-8") if target.exists() else ""
                if _pins(old) != _pins(body):
                    changed.append(name)
                if not args.check:
                    LOCKS.mkdir(exist_ok=True)
                    target.write_text(header + body, encoding="utf-8")
                print(f"ok   {name}: {len(_pins(body))} packages" + (" (changed)" if name in changed else ""))
    if not args.check:
        expected = {lock_name(p, q) for p in PYTHONS for q in PLATFORMS}
        for stale in sorted(LOCKS.glob("base-py*.txt")):
            if stale.name not in expected:
                stale.unlink()
                print(f"removed {stale.name} (no longer a target)")
    for line in failed:
        print(line, file=sys.stderr)
    if failed:
        print(f"refresh_locks: {len(failed)} target(s) cannot install from wheels", file=sys.stderr)
        return 1
    if args.check and changed:
        print(f"refresh_locks: {len(changed)} lock file(s) would change: {', '.join(changed)}", file=sys.stderr)
        return 1
    return 0


def _pins(text: str) -> list[str]:
    return sorted(line.strip() for line in text.splitlines() if "==" in line and not line.lstrip().startswith("#"))


if __name__ == "__main__":
    sys.exit(main())
