"""Where the tests find llama.cpp and its reference outputs, and what happens when one is missing.

llama.cpp is build_scripts/build_llamacpp.py's build (``$EMBERLLM_CACHE/llamacpp``, or ``$EMBERLLM_LLAMACPP_DIR``);
build_scripts/test.sh makes it before pytest.  The reference outputs are ``../shared/reference`` (or
``$EMBERLLM_SHARED/reference``).  A test that needs a missing one skips with the reason, except under ``CI=true``,
where it fails: CI must run every llama.cpp comparison, not skip them quietly.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EMBERLLM_SHARED", ROOT.parent / "shared"))
REFERENCE_JSON = SHARED / "reference" / "llamacpp_reference.json"
PPL_TEXT = SHARED / "reference" / "ppl_text.txt"


def _load_build_module() -> ModuleType:
    """build_scripts/build_llamacpp.py (not a package), imported once under its own name."""
    if "build_llamacpp" in sys.modules:
        return sys.modules["build_llamacpp"]
    spec = importlib.util.spec_from_file_location("build_llamacpp", ROOT / "build_scripts" / "build_llamacpp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build = _load_build_module()


def in_ci() -> bool:
    """Whether ``CI`` is set to true (as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``, or fail with it under ``CI=true``."""
    if in_ci():
        pytest.fail(f"{reason} [CI=true: the llama.cpp comparisons must run, not skip]", pytrace=False)
    pytest.skip(reason)


def _need(path: Path, what: str) -> Path:
    """``path`` when it is a file, else ``unavailable``."""
    if not path.is_file():
        unavailable(f"{what} not found at {path} (build it: python build_scripts/build_llamacpp.py)")
    return path


def binary(name: str) -> Path:
    """One of llama.cpp's programs (``"llama-completion"``) from the build."""
    return _need(build.binary(name), f"llama.cpp's {name}")


def library(name: str) -> Path:
    """llama.cpp's ``lib{name}.so`` (``"llama"``, ``"ggml-base"``) from the build."""
    return _need(build.library(name), f"llama.cpp's lib{name}.so")


def vocab(name: str) -> Path:
    """llama.cpp's vocab-only test model ``models/ggml-vocab-{name}.gguf`` (with its ``.inp``/``.out`` cases)."""
    return _need(build.vocab(name), f"llama.cpp's ggml-vocab-{name}.gguf")


def reference_file(path: Path) -> Path:
    """A file of ``../shared/reference`` (llama.cpp's recorded outputs)."""
    if not path.is_file():
        unavailable(f"llama.cpp's reference outputs not found at {path} (../shared/reference, or set $EMBERLLM_SHARED)")
    return path
