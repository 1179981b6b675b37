"""Build the C kernels into a WebAssembly side module (``libemberllm.so``) for Pyodide.

Usage: ``python build_scripts/build_wasm.py [--out DIR] [--relaxed]``.

Toolchains, first found wins:

* ``emcc`` on PATH: ``emcc -sSIDE_MODULE=1 -O3 -msimd128``.
* clang + ``wasm-ld`` (Debian ``clang lld``): every source is compiled with
  ``clang --target=wasm32-unknown-emscripten -fPIC -nostdlibinc`` (not ``-ffreestanding``: it stops clang
  inlining ``memcpy`` of scalars, which then become calls into the main module) and linked with
  ``wasm-ld -shared --experimental-pic``.  libc is *not* linked in: the module imports ``memcpy``, ``malloc``,
  ``expf``... from Pyodide's main module when it is loaded.  Only the declarations are needed at compile time;
  they come from WASI libc's headers (Debian ``wasi-libc``: ``/usr/include/wasm32-wasi``), which describe the
  same wasm32 ILP32 ABI as Emscripten's libc for the functions the kernels call.

``--relaxed`` also builds ``libemberllm_relaxed.so`` with ``-mrelaxed-simd``: with the same compiler when it
knows relaxed SIMD (Debian's clang 14 does not), else with PyPI ``ziglang``'s clang when installed; skipped
(with a message) otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNEL_DIR = ROOT / "core" / "wasm_kernels"
DEFAULT_OUT = ROOT / "build" / "wasm"
WASI_INCLUDE_DIRS = (Path("/usr/include/wasm32-wasi"), Path("/usr/share/wasi-sysroot/include"),
                     Path("/usr/share/wasi-sysroot/include/wasm32-wasi"))
# -ffp-contract=off: with relaxed SIMD clang would fuse a*b+c into relaxed_madd, whose rounding differs between
# engines; the kernels must round as the scalar twins (and the native build) do.
COMMON_FLAGS = ["-std=c11", "-O3", "-msimd128", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math",
                "-Wall", "-Wno-unused-function"]
RELAXED_PROBE = """
#include <wasm_simd128.h>
v128_t probe(v128_t a, v128_t b, v128_t c) { return __builtin_wasm_relaxed_dot_i8x16_i7x16_add_s_i32x4(a, b, c); }
"""


class ToolchainError(RuntimeError):
    """No usable WebAssembly toolchain."""


@dataclass(frozen=True)
class Toolchain:
    """How to compile and link: ``emcc`` or clang + wasm-ld with the headers for declarations."""

    kind: str
    cc: tuple[str, ...]
    ld: str | None = None
    include_dirs: tuple[str, ...] = ()

    def compile_flags(self) -> list[str]:
        """Flags for every source (besides ``-c``/``-o``)."""
        if self.kind == "emcc":
            return [*COMMON_FLAGS, "-fPIC", "-fvisibility=hidden", f"-I{KERNEL_DIR}"]
        if self.kind == "zig":  # zig's own clang resource headers, WASI libc's for declarations
            return [*COMMON_FLAGS, "-fPIC", "-fvisibility=hidden", f"-I{KERNEL_DIR}", "-isystem", self.include_dirs[0]]
        flags = ["--target=wasm32-unknown-emscripten", *COMMON_FLAGS, "-fPIC", "-fvisibility=hidden",
                 "-nostdlibinc", f"-I{KERNEL_DIR}"]
        for inc in self.include_dirs:
            flags += ["-isystem", inc]
        return flags


def _wasi_include_dir() -> str | None:
    for d in WASI_INCLUDE_DIRS:
        if (d / "string.h").is_file() and (d / "math.h").is_file():
            return str(d)
    return None


def find_toolchain() -> Toolchain:
    """The toolchain to use, or :class:`ToolchainError` saying what is missing."""
    emcc = shutil.which("emcc")
    if emcc:
        return Toolchain("emcc", (emcc,))
    clang = shutil.which(os.environ.get("EMBERLLM_WASM_CC", "clang"))
    ld = shutil.which("wasm-ld") or shutil.which("wasm-ld-14")
    wasi = _wasi_include_dir()
    missing = [name for name, found in (("clang", clang), ("wasm-ld (lld)", ld), ("wasi-libc headers", wasi))
               if not found]
    if missing:
        raise ToolchainError("no WebAssembly toolchain: emcc not on PATH and missing " + ", ".join(missing) +
                             " (Debian: apt-get install clang lld wasi-libc)")
    resource = subprocess.run([clang, "-print-resource-dir"], capture_output=True, text=True, check=True).stdout
    tc = Toolchain("clang", (clang,), ld, (str(Path(resource.strip()) / "include"), wasi))
    if not _compiles(tc, "#include <string.h>\n#include <wasm_simd128.h>\nint f(void) { return 0; }\n"):
        raise ToolchainError(f"{clang} cannot compile for wasm32-unknown-emscripten with -msimd128")
    return tc


def _compiles(tc: Toolchain, source: str, extra: tuple[str, ...] = ()) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text(source)
        proc = subprocess.run([*tc.cc, *tc.compile_flags(), *extra, "-c", str(src), "-o", str(Path(tmp) / "probe.o")],
                              capture_output=True, text=True)
        return proc.returncode == 0


def supports_relaxed_simd(tc: Toolchain) -> bool:
    """Whether the compiler knows relaxed SIMD (clang 14 does not)."""
    return _compiles(tc, RELAXED_PROBE, ("-mrelaxed-simd",))


def _zig_binary() -> str | None:
    """The ``zig`` executable of PyPI ``ziglang``: the installed package, else ``pip install --target`` into
    ``$EMBERLLM_CACHE/ziglang`` (default ~/.cache/emberllm/ziglang)."""
    spec = importlib.util.find_spec("ziglang")
    dirs = [Path(spec.origin).parent] if spec is not None and spec.origin else []
    cache = Path(os.environ.get("EMBERLLM_CACHE", Path.home() / ".cache" / "emberllm"))
    dirs.append(cache / "ziglang" / "ziglang")
    for d in dirs:
        if (d / "zig").is_file():
            return str(d / "zig")
    return None


def find_relaxed_toolchain(base: Toolchain | None = None) -> Toolchain:
    """A toolchain that can build the relaxed-SIMD variant: ``base`` when its compiler can, else the newer
    clang of PyPI ``ziglang`` (``zig cc -target wasm32-emscripten``) with ``base``'s linker and headers."""
    base = base or find_toolchain()
    if supports_relaxed_simd(base):
        return base
    zig_bin = _zig_binary()
    if base.kind == "clang" and zig_bin is not None:
        zig = Toolchain("zig", (zig_bin, "cc", "-target", "wasm32-emscripten"), base.ld, (base.include_dirs[1],))
        if supports_relaxed_simd(zig):
            return zig
    raise ToolchainError(f"relaxed SIMD: {' '.join(base.cc)} does not support it and no newer compiler was found "
                         "(pip install ziglang, or put a current emcc on PATH)")


def build(out_dir: Path = DEFAULT_OUT, relaxed: bool = False, tc: Toolchain | None = None,
          name: str | None = None) -> Path:
    """Compile every kernel source and link the side module; returns its path."""
    tc = tc or find_toolchain()
    extra = ["-mrelaxed-simd"] if relaxed else []
    name = name or ("libemberllm_relaxed.so" if relaxed else "libemberllm.so")
    obj_dir = out_dir / ("obj_relaxed" if relaxed else "obj")
    obj_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted(KERNEL_DIR.glob("*.c"))
    target = out_dir / name
    if tc.kind == "emcc":
        subprocess.run([*tc.cc, *tc.compile_flags(), *extra, "-sSIDE_MODULE=1", "-o", str(target),
                        *map(str, sources)], check=True)
        return target
    objs = []
    for src in sources:
        obj = obj_dir / (src.stem + ".o")
        subprocess.run([*tc.cc, *tc.compile_flags(), *extra, "-c", str(src), "-o", str(obj)], check=True)
        objs.append(str(obj))
    subprocess.run([tc.ld, "-shared", "--experimental-pic", "--export-dynamic", "-o", str(target), *objs],
                   check=True)
    return target


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default build/wasm)")
    parser.add_argument("--relaxed", action="store_true", help="also build the relaxed-SIMD variant if possible")
    args = parser.parse_args(argv)
    try:
        tc = find_toolchain()
    except ToolchainError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(build(args.out, tc=tc))
    if args.relaxed:
        try:
            print(build(args.out, relaxed=True, tc=find_relaxed_toolchain(tc)))
        except ToolchainError as exc:
            print(f"{exc}; skipped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
