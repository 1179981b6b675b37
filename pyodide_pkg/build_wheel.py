"""Build the Pyodide wheel: ``emberllm-<version>-py3-none-pyemscripten_2026_0_wasm32.whl``.

Usage: ``python pyodide_pkg/build_wheel.py [--out DIR] [--lib libemberllm.so] [--relaxed-lib F | --no-relaxed]``.

The wheel holds the pure-Python core (``core/`` as the ``emberllm`` package, without the server and the native
cffi extension; with the WebGPU backend's WGSL shaders and ``backends/webgpu/browser.py``), the kernel header the
binding reads, and the WASM side module ``emberllm/libemberllm.so``
(built with ``build_scripts/build_wasm.py`` when ``--lib`` is not given).  Pyodide's installer finds the
``.so`` in an installed wheel and preloads it asynchronously.  The relaxed-SIMD build goes in under a name
that is not ``.so`` (``libemberllm_relaxed.wasm``): the installer preloads every ``.so`` of a wheel, and a
module using relaxed SIMD fails to compile where the engine lacks it (Safari), which would fail the whole
install; pyodide_pkg/emberllm.mjs picks it by feature detection.  It declares no dependencies: the Pyodide path
needs no numpy, cffi, jinja2 or server packages.

The platform tag is Pyodide 314's (``pyemscripten_2026_0_wasm32``: ABI 2026_0, see ``pyodide-lock.json``'s
``info.abi_version``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "core"
PLATFORM_TAG = "pyemscripten_2026_0_wasm32"
TAG = f"py3-none-{PLATFORM_TAG}"
# Fixed timestamp: the same sources give the same wheel bytes.
ZIP_DATE = (2024, 1, 1, 0, 0, 0)


def project_version() -> str:
    """The version in pyproject.toml."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def wheel_name(version: str | None = None) -> str:
    """The wheel's file name."""
    return f"emberllm-{version or project_version()}-{TAG}.whl"


def package_files() -> list[tuple[str, Path]]:
    """(archive name, source path) of every file of the pure-Python package (with the WebGPU backend's WGSL
    shaders, ``backends/webgpu/shaders/**/*.wgsl``, read as package resources)."""
    out = []
    for path in sorted(CORE.rglob("*")):
        rel = path.relative_to(CORE)
        if not path.is_file() or "__pycache__" in rel.parts:
            continue
        if path.suffix in (".py", ".wgsl") or rel.as_posix() == "wasm_kernels/ember.h":
            out.append((f"emberllm/{rel.as_posix()}", path))
    return out


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


RELAXED_NAME = "emberllm/libemberllm_relaxed.wasm"


def build_wheel(lib: Path, out_dir: Path, relaxed_lib: Path | None = None) -> Path:
    """Write the wheel into ``out_dir`` with ``lib`` as the side module; returns its path.

    ``relaxed_lib`` (the relaxed-SIMD build) goes in as ``emberllm/libemberllm_relaxed.wasm``: not a ``.so``, so
    Pyodide's installer does not preload it (it would fail to compile where relaxed SIMD is missing); the JS
    loader points the kernel binding at it when the engine runs relaxed SIMD correctly.
    """
    version = project_version()
    dist_info = f"emberllm-{version}.dist-info"
    entries: list[tuple[str, bytes]] = [(name, src.read_bytes()) for name, src in package_files()]
    entries.append(("emberllm/libemberllm.so", lib.read_bytes()))
    if relaxed_lib is not None:
        entries.append((RELAXED_NAME, relaxed_lib.read_bytes()))
    metadata = (f"Metadata-Version: 2.1\nName: emberllm\nVersion: {version}\n"
                "Summary: emberllm's engine for Pyodide (pure-Python core + WASM SIMD kernels)\n"
                "Requires-Python: >=3.11\n")
    wheel = f"Wheel-Version: 1.0\nGenerator: emberllm build_wheel.py\nRoot-Is-Purelib: false\nTag: {TAG}\n"
    entries += [(f"{dist_info}/METADATA", metadata.encode()), (f"{dist_info}/WHEEL", wheel.encode()),
                (f"{dist_info}/top_level.txt", b"emberllm\n")]
    record = "\n".join([*(_record_line(n, d) for n, d in entries), f"{dist_info}/RECORD,,"]) + "\n"
    entries.append((f"{dist_info}/RECORD", record.encode()))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / wheel_name(version)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return target


def _build_wasm_module():
    spec = importlib.util.spec_from_file_location("_emb_build_wasm", ROOT / "build_scripts" / "build_wasm.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def build_side_module(out_dir: Path) -> Path:
    """The SIMD128 side module built into ``out_dir`` (build_scripts/build_wasm.py)."""
    return Path(_build_wasm_module().build(out_dir))


def build_relaxed_side_module(out_dir: Path) -> Path | None:
    """The relaxed-SIMD build, or None (with a message) when no compiler can make it."""
    bw = _build_wasm_module()
    try:
        return Path(bw.build(out_dir, relaxed=True, tc=bw.find_relaxed_toolchain()))
    except bw.ToolchainError as exc:
        print(f"{exc}; the wheel gets the SIMD128 module only", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "pyodide", help="output directory")
    parser.add_argument("--lib", type=Path, help="prebuilt libemberllm.so (default: build it)")
    parser.add_argument("--relaxed-lib", type=Path,
                        help="prebuilt libemberllm_relaxed.so (default: build it when a compiler can)")
    parser.add_argument("--no-relaxed", action="store_true", help="leave the relaxed-SIMD module out")
    args = parser.parse_args(argv)
    lib = args.lib or build_side_module(ROOT / "build" / "wasm")
    relaxed = None if args.no_relaxed else (args.relaxed_lib or build_relaxed_side_module(ROOT / "build" / "wasm"))
    print(build_wheel(lib, args.out, relaxed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
