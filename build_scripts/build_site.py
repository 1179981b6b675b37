"""Build the static chat site: ``python build_scripts/build_site.py [--out dist/site] [--with-model]``.

``dist/site/`` gets everything the page needs, so that any static host serves it (GitHub Pages, nginx,
``python -m http.server``):

* the page itself (``web/``: HTML, CSS, ES modules, the web app manifest, the service worker ``sw.js`` stamped
  with the build id and the sha256 of ``site.json``);
* ``emberllm.mjs`` (the Pyodide loader from ``pyodide_pkg/``) and ``webgpu.mjs`` (its WebGPU driver);
* ``pyodide/``: Pyodide's core files from the npm package ``pyodide@314.0.7`` (installed into
  ``~/.cache/emberllm/npm-pyodide`` with npm when missing);
* ``wheel/``: the emberllm wheel for Pyodide, assembled from the current sources (the WASM side module is
  rebuilt into ``build/site-wasm/`` when a kernel source is newer than it);
* ``site.json``: where those are, ``integrity`` (the SRI sha256 of every file the service worker may serve from its
  cache: the page's files, Pyodide's, the wheel; it serves none that fails its hash), and (``--with-model``) the
  bundled model under ``models/`` (not in the service worker's cache) that the page downloads into browser storage
  and loads with zero clicks.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
PYODIDE_VERSION = "314.0.7"
NPM_CACHE = Path.home() / ".cache" / "emberllm" / "npm-pyodide"
PYODIDE_FILES = ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json")
WASM_BUILD = ROOT / "build" / "site-wasm"
BUILD_MARK = "__EMBERLLM_BUILD__"
SITE_HASH_MARK = "__EMBERLLM_SITE_HASH__"
NOT_SHELL = ("sw.js", "site.json")  # web/ files the service worker does not cache as such (see web/sw.js)
SKIP = ("README.md",)  # web/ files the build does not copy


def _module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def pyodide_dir(npm_cache: Path = NPM_CACHE) -> Path:
    """The npm ``pyodide`` package directory, installed into ``npm_cache`` when missing."""
    pkg = npm_cache / "node_modules" / "pyodide"
    if not (pkg / "pyodide.mjs").is_file():
        if shutil.which("npm") is None:
            raise SystemExit("npm is needed to fetch Pyodide (npm install pyodide); install Node.js/npm")
        npm_cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--prefix", str(npm_cache), f"pyodide@{PYODIDE_VERSION}"],
                       check=True)
    return pkg


def _fresh(target: Path) -> bool:
    """Whether ``target`` exists and is newer than every kernel source, the header and the build script."""
    sources = [*(ROOT / "core" / "wasm_kernels").glob("*.[ch]"), ROOT / "build_scripts" / "build_wasm.py"]
    return target.is_file() and target.stat().st_mtime >= max(p.stat().st_mtime for p in sources)


def _wheel_builder() -> ModuleType:
    return _module("_emb_site_build_wheel", ROOT / "pyodide_pkg" / "build_wheel.py")


def side_module(out_dir: Path = WASM_BUILD) -> Path:
    """The WASM side module, rebuilt when missing or older than a kernel source or header."""
    target = out_dir / "libemberllm.so"
    return target if _fresh(target) else _wheel_builder().build_side_module(out_dir)


def relaxed_side_module(out_dir: Path = WASM_BUILD) -> Path | None:
    """The relaxed-SIMD side module (rebuilt like ``side_module``), or None with a message when no compiler here
    can build it (the site then has the SIMD128 module only)."""
    target = out_dir / "libemberllm_relaxed.so"
    return target if _fresh(target) else _wheel_builder().build_relaxed_side_module(out_dir)


def build_wheel(out_dir: Path, lib: Path | None = None, relaxed_lib: Path | None = None) -> Path:
    """The emberllm Pyodide wheel, assembled from the current sources into ``out_dir``: the SIMD128 module and, when
    it can be built (or is given), the relaxed-SIMD one that the loader picks where the browser runs it."""
    relaxed = relaxed_lib if relaxed_lib is not None else (relaxed_side_module() if lib is None else None)
    return Path(_wheel_builder().build_wheel(lib or side_module(), out_dir, relaxed))


def web_files(src: Path = WEB) -> list[str]:
    """The files of ``src`` that the build copies (POSIX paths relative to it): all but dotfiles and ``SKIP``."""
    return [path.relative_to(src).as_posix() for path in sorted(src.rglob("*"))
            if path.is_file() and path.name not in SKIP and not path.name.startswith(".")]


def shell_files(src: Path = WEB) -> list[str]:
    """The app shell that the service worker caches: every copied file of ``src`` but ``NOT_SHELL``."""
    return [name for name in web_files(src) if name not in NOT_SHELL]


def _copy_tree(src: Path, dst: Path) -> None:
    for rel in web_files(src):
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dst / rel)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def sri(data: bytes) -> str:
    """The Subresource-Integrity form of ``data``'s sha256: ``sha256-<base64>``."""
    return "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode()


def _digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.name.encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def build_site(out: Path, with_model: bool = False, model: Path | None = None, wheel: Path | None = None,
               npm_cache: Path = NPM_CACHE, lib: Path | None = None) -> Path:
    """Write the site into ``out`` (replacing an earlier build there); returns ``out``."""
    if out.exists():
        if any(out.iterdir()) and not (out / "site.json").is_file():
            raise SystemExit(f"{out} is not empty and holds no earlier site build: refusing to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    _copy_tree(WEB, out)
    for module in ("emberllm.mjs", "webgpu.mjs"):  # the loader and the WebGPU driver it imports
        shutil.copy2(ROOT / "pyodide_pkg" / module, out / module)
    pkg = pyodide_dir(npm_cache)
    for name in PYODIDE_FILES:
        _link_or_copy(pkg / name, out / "pyodide" / name)
    if wheel is not None:
        (out / "wheel").mkdir()
        whl = out / "wheel" / wheel.name
        shutil.copy2(wheel, whl)
    else:
        whl = build_wheel(out / "wheel", lib)
    cached = [*shell_files(), "emberllm.mjs", "webgpu.mjs", *(f"pyodide/{n}" for n in PYODIDE_FILES),
              f"wheel/{whl.name}"]
    with zipfile.ZipFile(whl) as zf:
        relaxed = "emberllm/libemberllm_relaxed.wasm" in zf.namelist()
    site: dict[str, object] = {
        "engine": {"module": "emberllm.mjs", "indexURL": "pyodide/", "wheel": f"wheel/{whl.name}",
                   "relaxedSimd": relaxed},
        "model": None,
        "integrity": {name: sri((out / name).read_bytes()) for name in cached},
    }
    if with_model or model is not None:
        src = model or _default_model()
        _link_or_copy(src, out / "models" / src.name)
        site["model"] = {"name": src.name, "url": f"models/{src.name}", "size": src.stat().st_size}
    build_id = _digest([p for p in out.rglob("*") if p.is_file() and "models" not in p.parts])
    site["build"] = build_id
    site_json = (json.dumps(site, indent=2) + "\n").encode()
    (out / "site.json").write_bytes(site_json)
    sw = out / "sw.js"
    sw.write_text(sw.read_text().replace(BUILD_MARK, build_id).replace(SITE_HASH_MARK, sri(site_json)))
    (out / ".nojekyll").write_text("")
    return out


def _default_model() -> Path:
    from emberllm.runtime.model_store import default_model_path

    path = Path(default_model_path())
    if not path.is_file():
        raise SystemExit(f"the default model {path} is missing: run `emberllm pull` (or pass --model PATH)")
    return path


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "site", help="output directory (dist/site)")
    parser.add_argument("--with-model", action="store_true", help="bundle the default Gemma model (zero clicks)")
    parser.add_argument("--model", type=Path, help="bundle this GGUF instead of the default model")
    parser.add_argument("--wheel", type=Path, help="use this prebuilt Pyodide wheel instead of building one")
    parser.add_argument("--lib", type=Path, help="use this prebuilt WASM side module (libemberllm.so) in the wheel")
    args = parser.parse_args(argv)
    out = build_site(args.out.resolve(), args.with_model, args.model, args.wheel, lib=args.lib)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out} ({size / 1e6:.1f} MB); serve it with: python -m http.server -d {out} 8000")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
