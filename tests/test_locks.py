"""locks/ agrees with pyproject.toml, without the network: one lock per supported Python and OS, every base
dependency pinned at a version its specifier accepts, nothing pinned for a dependency since removed.

scripts/refresh_locks.py writes the locks (against the package index, wheels only); this test is what
keeps a changed pyproject.toml from landing without them.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "locks"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
REQUIREMENTS = [Requirement(text) for text in PROJECT["dependencies"]]


def _refresh_script():
    spec = importlib.util.spec_from_file_location("refresh_locks", REPO / "scripts" / "refresh_locks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


refresh = _refresh_script()
TARGETS = [(python, platform) for python in refresh.PYTHONS for platform in refresh.PLATFORMS]
#: The marker environment of each lock platform (for dependencies with markers, e.g. `; sys_platform == ...`).
PLATFORM_MARKERS = {
    "linux-x86_64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                     "os_name": "posix"},
    "windows-x86_64": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64",
                       "os_name": "nt"},
    "macos-arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64",
                    "os_name": "posix"},
}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def read_lock(path: Path) -> tuple[dict[str, Version], set[str]]:
    """(package -> pinned version, the packages uv says come straight from facecast's pyproject.toml)."""
    pins: dict[str, Version] = {}
    direct: set[str] = set()
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = Version(match.group(2).split(";")[0])
        elif current is not None and line.strip().startswith("#") and "facecast (pyproject.toml)" in line:
            direct.add(current)
    return pins, direct


def marker_environment(python: str, platform: str) -> dict[str, str]:
    return {**default_environment(), **PLATFORM_MARKERS[platform], "python_version": python,
            "python_full_version": python + ".0", "implementation_name": "cpython",
            "platform_python_implementation": "CPython"}


def test_one_lock_per_supported_python_and_os_and_no_other() -> None:
    assert set(PLATFORM_MARKERS) == set(refresh.PLATFORMS)
    expected = {refresh.lock_name(python, platform) for python, platform in TARGETS}
    present = {path.name for path in LOCKS.glob("*.txt")}
    assert present - expected == set(), "stale lock files: remove them or run scripts/refresh_locks.py"
    assert expected - present == set(), "missing lock files: run scripts/refresh_locks.py"


def test_requires_python_has_a_lower_bound_only_and_the_locks_start_there() -> None:
    specifier = SpecifierSet(PROJECT["requires-python"])
    assert {s.operator for s in specifier} == {">="}
    assert [s.version for s in specifier] == [refresh.PYTHONS[0]]
    assert all(Version(python) in specifier for python in refresh.PYTHONS)


def test_no_dependency_has_an_upper_bound() -> None:
    """A cap (<, <=, ==, ~=) keeps streamers off new Pythons and numpy 2; one needs a written reason here."""
    capped = [str(r) for r in REQUIREMENTS if any(s.operator in ("<", "<=", "==", "===", "~=") for s in r.specifier)]
    assert capped == []


@pytest.mark.parametrize(("python", "platform"), TARGETS, ids=[f"py{p}-{q}" for p, q in TARGETS])
def test_lock_pins_every_base_dependency_within_its_specifier(python: str, platform: str) -> None:
    path = LOCKS / refresh.lock_name(python, platform)
    pins, direct = read_lock(path)
    assert pins, f"{path.name} pins nothing"
    environment = marker_environment(python, platform)
    wanted = {canonicalize_name(r.name): r for r in REQUIREMENTS
              if r.marker is None or r.marker.evaluate(environment)}
    missing = sorted(set(wanted) - set(pins))
    assert missing == [], f"{path.name} lacks {missing}: run scripts/refresh_locks.py"
    outside = [f"{name}=={pins[name]} (pyproject: {wanted[name].specifier})" for name in sorted(wanted)
               if not wanted[name].specifier.contains(pins[name], prereleases=True)]
    assert outside == [], f"{path.name}: {outside}: run scripts/refresh_locks.py"
    removed = sorted(direct - set(wanted))
    assert removed == [], f"{path.name} still pins {removed}, no longer in pyproject.toml"
    assert direct == set(wanted), f"{path.name} was not resolved from this pyproject.toml"


def test_the_lock_check_notices_a_stale_or_removed_pin(tmp_path: Path) -> None:
    """The checks above fail for real mismatches: a version outside the specifier and a removed dependency."""
    lock = tmp_path / "lock.txt"
    lock.write_text("mediapipe==0.10.21\n    # via facecast (pyproject.toml)\njax==0.7.1\n    # via\n"
                    "    #   facecast (pyproject.toml)\n    #   mediapipe\nnumpy==1.26.4\n    # via mediapipe\n")
    pins, direct = read_lock(lock)
    assert pins == {"mediapipe": Version("0.10.21"), "jax": Version("0.7.1"), "numpy": Version("1.26.4")}
    assert direct == {"mediapipe", "jax"}
    mediapipe = next(r for r in REQUIREMENTS if r.name == "mediapipe")
    assert not mediapipe.specifier.contains(pins["mediapipe"])
    assert "jax" not in {canonicalize_name(r.name) for r in REQUIREMENTS}
