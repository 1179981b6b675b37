"""cffi (API mode) build of the C kernels for the host machine.

Used by ``pip install -e .`` through ``setup.py``'s ``cffi_modules``; can also be run directly
(``python build_scripts/build_native.py``) to build ``core/_kernels*.so`` in place.
SIMD paths are compiled with per-function target attributes and picked at run time, so the
extension runs on any CPU of the architecture it was built for.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
KERNEL_DIR = ROOT / "core" / "wasm_kernels"


def _load_kernel_api():
    spec = importlib.util.spec_from_file_location("_emb_kernel_api", ROOT / "core" / "backends" / "kernel_api.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def kernel_sources(absolute: bool = False) -> list[str]:
    """Every C source of the kernels, relative to the project root (setuptools wants relative paths)."""
    return sorted(str(p if absolute else p.relative_to(ROOT)) for p in KERNEL_DIR.glob("*.c"))


def compile_args() -> list[str]:
    """Flags for the host build: C11, optimized, no -march=native (run-time dispatch instead), hot loops aligned."""
    args = ["-std=c11", "-O3", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wno-unused-function"]
    # Without explicit alignment the decode loops' speed depended on where the linker happened to put them: the
    # same sources built by pip (cffi's glue object linked first) decoded 11 % slower at 1 thread than built by
    # cffi directly; aligned, both builds run at the faster speed.
    args += ["-falign-functions=64", "-falign-loops=64"]
    extra = os.environ.get("EMBERLLM_CFLAGS")
    if extra:
        args += extra.split()
    return args


def make_builder(absolute: bool = False) -> FFI:
    """The cffi builder; ``absolute`` paths for a direct build, relative ones for setuptools."""
    builder = FFI()
    builder.cdef(_load_kernel_api().api_text())
    builder.set_source(
        "emberllm._kernels",
        '#include "ember.h"',
        sources=kernel_sources(absolute),
        include_dirs=[str(KERNEL_DIR if absolute else KERNEL_DIR.relative_to(ROOT))],
        extra_compile_args=compile_args(),
        libraries=[] if sys.platform == "win32" else ["m", "pthread"],
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    out = make_builder(absolute=True).compile(tmpdir=str(ROOT / "build" / "cffi"), verbose=False)
    target = ROOT / "core" / Path(out).name.replace("emberllm._kernels", "_kernels")
    os.replace(out, target)
    print(target)
