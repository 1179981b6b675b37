"""The Pyodide tests' session fixtures (the npm Pyodide package, the WASM side module, the Pyodide wheel) and their
runner; tests/conftest.py makes the fixtures available to every test module, so each is built once per run."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emberllm.runtime.model_store import cache_dir

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "tests" / "pyodide" / "run_in_pyodide.mjs"
PYODIDE_VERSION = "314.0.7"
NPM_CACHE = cache_dir() / "npm-pyodide"


def load_build_wasm():
    """build_scripts/build_wasm.py as a module."""
    spec = importlib.util.spec_from_file_location("_emb_build_wasm", ROOT / "build_scripts" / "build_wasm.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pyodide_dir() -> Path:
    """The npm ``pyodide`` package directory (installed into the cache when missing)."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    out = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    if int(out.lstrip("v").split(".")[0]) < 20:
        pytest.skip(f"node {out} is too old (Node 20 or later is needed)")
    forced = os.environ.get("EMBERLLM_PYODIDE_DIR")
    if forced:
        return Path(forced)
    pkg = NPM_CACHE / "node_modules" / "pyodide"
    if not (pkg / "pyodide.mjs").is_file():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed (needed to fetch pyodide)")
        NPM_CACHE.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["npm", "install", "--silent", "--prefix", str(NPM_CACHE), f"pyodide@{PYODIDE_VERSION}"],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not (pkg / "pyodide.mjs").is_file():
            pytest.skip(f"npm install pyodide@{PYODIDE_VERSION} failed: {proc.stderr.strip()[-500:]}")
    return pkg


@pytest.fixture(scope="session")
def wasm_lib(tmp_path_factory) -> Path:
    """``libemberllm.so`` built by build_scripts/build_wasm.py into a temporary directory."""
    bw = load_build_wasm()
    try:
        tc = bw.find_toolchain()
    except bw.ToolchainError as exc:
        pytest.skip(str(exc))
    return bw.build(tmp_path_factory.mktemp("wasm"), tc=tc)


@pytest.fixture(scope="session")
def pyodide_wheel(tmp_path_factory, wasm_lib) -> Path:
    """The Pyodide wheel built by pyodide_pkg/build_wheel.py around ``wasm_lib``."""
    spec = importlib.util.spec_from_file_location("_emb_build_wheel", ROOT / "pyodide_pkg" / "build_wheel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    whl = module.build_wheel(wasm_lib, tmp_path_factory.mktemp("wheel"))
    assert whl.name == f"emberllm-{module.project_version()}-py3-none-pyemscripten_2026_0_wasm32.whl"
    return whl


def run_in_pyodide(pyodide_dir: Path, lib: Path, script: Path, model: Path | None = None,
                   timeout: int = 600) -> str:
    """Run ``script`` in Pyodide with emberllm installed; returns stdout (fails the test on an error)."""
    cmd = ["node", str(HARNESS), str(pyodide_dir), str(ROOT / "core"), str(lib), str(script)]
    if model is not None:
        cmd.append(str(model))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc.stdout
