"""Shared fixtures: the real Gemma model and llama.cpp's reference outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EMBERLLM_SHARED", ROOT.parent / "shared"))
REFERENCE_JSON = SHARED / "reference" / "llamacpp_reference.json"
PPL_TEXT = SHARED / "reference" / "ppl_text.txt"


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """The real Gemma 3 270M Q4_K_M file (assembled from its PyPI package into the cache once)."""
    from emberllm.model_store import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def reference() -> dict:
    """llama.cpp's outputs for the Gemma model (../shared/reference)."""
    if not REFERENCE_JSON.is_file():
        pytest.skip(f"reference outputs not found at {REFERENCE_JSON}")
    return json.loads(REFERENCE_JSON.read_text())
