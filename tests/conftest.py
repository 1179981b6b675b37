"""Shared fixtures: the real Gemma model, llama.cpp's reference outputs, and the Pyodide build (built once per run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .llamacpp import PPL_TEXT, REFERENCE_JSON, ROOT, SHARED, reference_file
from .pyodide_fixtures import pyodide_dir, pyodide_wheel, wasm_lib  # noqa: F401 - fixtures for every module

__all__ = ["PPL_TEXT", "REFERENCE_JSON", "ROOT", "SHARED"]


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """The real Gemma 3 270M Q4_K_M file (assembled from its PyPI package into the cache once)."""
    from emberllm.runtime.model_store import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def reference() -> dict:
    """llama.cpp's outputs for the Gemma model (../shared/reference; skips without it, fails under CI=true)."""
    return json.loads(reference_file(REFERENCE_JSON).read_text())
