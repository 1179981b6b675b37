"""The ARM64 NEON kernel levels against the scalar twins, under qemu-aarch64 (a Raspberry Pi's instruction set).

tests/arm/check_neon.c is built with Debian's aarch64 cross compiler together with every kernel source and run
under qemu-user: quantizers, dequantization and attention (float and half paths) bit for bit, vec_dot and matmuls
within 1e-5 of the sum of |products|; KV caches of other types (q8_0, q4_0, f32) stored and shifted bit for bit and
attended within tolerance.  Skips without ``aarch64-linux-gnu-gcc`` or ``qemu-aarch64``
(``apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user``; build_scripts/test.sh does it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "core" / "wasm_kernels"
CC, QEMU = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64")


@pytest.mark.skipif(CC is None or QEMU is None, reason="no aarch64 cross compiler or qemu-aarch64")
def test_neon_kernels_match_scalar(tmp_path: Path) -> None:
    exe = tmp_path / "check_neon"
    # the flags of the native build (build_scripts/build_native.py): C11 without fp contraction, no -march
    subprocess.run([CC, "-std=c11", "-O2", "-static", "-Wall", "-Werror", "-Wno-unused-function", "-fno-math-errno",
                    "-fno-trapping-math", f"-I{KERNELS}", *map(str, sorted(KERNELS.glob("*.c"))),
                    str(ROOT / "tests" / "arm" / "check_neon.c"), "-lm", "-lpthread", "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([QEMU, "-cpu", "max", str(exe)], capture_output=True, text=True, timeout=300).stdout
    summary = [line for line in out.splitlines() if line.startswith("SUMMARY")]
    assert summary, out[-3000:]
    print(summary[-1])
    assert "levels=neon,neon-dotprod" in summary[-1], summary[-1]
    assert " failed=0 " in summary[-1], out[-3000:]
