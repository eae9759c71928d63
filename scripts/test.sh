#!/usr/bin/env bash
# Install everything the test suite needs into .venv and run it.
# README's test command and CI (.ci/run) both run exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
# The CPU build of torch first, so the dependency resolver never pulls CUDA wheels.
pip install --quiet "torch==2.13.0"
pip install --quiet -e '.[test]'

set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: failing on purpose" >&2
    exit 1
fi
exit "$status"
