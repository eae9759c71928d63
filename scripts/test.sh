#!/usr/bin/env bash
# Install everything the test suite needs into .venv and run it.
# README's test command and CI (.ci/run) both run exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages some tests drive for real: PortAudio + a private PulseAudio
# server (a real microphone device fed from a FIFO), Chromium (the overlay page),
# and OBS Studio under a virtual X server with Mesa's software OpenGL (the OBS script);
# gdb prints OBS's threads should OBS ever hang on exit in that test.
DEBIAN_PACKAGES=(libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins chromium
                 obs-studio xvfb libgl1-mesa-dri libegl-mesa0 gdb)
missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ] && command -v apt-get >/dev/null; then
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    echo "installing Debian packages: ${missing[*]}" >&2
    "${as_root[@]}" apt-get update -qq || echo "apt-get update failed; trying the install anyway" >&2
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || echo "could not install ${missing[*]}: the tests that need them will be skipped" >&2
fi

python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
# The CPU build of torch first, so the dependency resolver never pulls CUDA wheels.
pip install --quiet "torch==2.13.0"
pip install --quiet -e '.[test]'

# Style and architecture first: a broken rule or a forbidden import fails the run (pyproject.toml
# configures both: [tool.ruff], and [tool.importlinter]'s layers, forbidden imports and no cycles).
ruff check .
lint-imports

set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: failing on purpose" >&2
    exit 1
fi
exit "$status"
