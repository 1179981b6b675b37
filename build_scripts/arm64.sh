#!/usr/bin/env bash
# Runs CMD under qemu-aarch64 user emulation with an arm64 CPython 3.11 and this checkout installed for arm64:
#   bash build_scripts/arm64.sh emberllm run -m MODEL -p "Hello" -n 16 --temp 0
#   bash build_scripts/arm64.sh python -m pytest tests/test_engine_reference.py
# CMD is `python` (python3, python3.11), a console script of the project (`emberllm`), or an aarch64 executable.
# EMBERLLM_QEMU_CPU picks the emulated core: cortex-a76 (default; Raspberry Pi 5: NEON + dotprod), cortex-a72
# (Pi 4: NEON, no dotprod), cortex-a53 (Pi 3 / Zero 2), or anything `qemu-aarch64 -cpu help` lists.
# The first call sets up ${EMBERLLM_CACHE:-~/.cache/emberllm}/arm64 (Debian's arm64 python3.11 .debs unpacked into a
# sysroot, PyPI's aarch64 wheels, the kernels cross-compiled with aarch64-linux-gnu-gcc; build_scripts/arm64_setup.py
# says how) and prints how long it took; later calls reuse it while its inputs are unchanged.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
if [ $# -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]   (CMD: python, emberllm, or an aarch64 executable)" >&2
    exit 2
fi
ENV_LINES=$("$PY" "$ROOT/build_scripts/arm64_setup.py" --print-env)
eval "$ENV_LINES"
CMD=$1
shift
case "$CMD" in
    python | python3 | "python3.11") set -- "$ARM64_PYTHON" "$@" ;;
    *)
        if [ -f "$ARM64_BIN/$CMD" ]; then
            set -- "$ARM64_PYTHON" "$ARM64_BIN/$CMD" "$@"
        else
            set -- "$CMD" "$@"
        fi
        ;;
esac
# the guest must see none of the host Python's own paths (x86-64 packages)
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP VIRTUAL_ENV
export PYTHONNOUSERSITE=1 EMBERLLM_ARM64_SRC="$ROOT" EMBERLLM_ARM64_KERNELS="$ARM64_KERNELS"
exec qemu-aarch64 -L "$ARM64_SYSROOT" -cpu "${EMBERLLM_QEMU_CPU:-cortex-a76}" "$@"
