"""Starting ``emberllm serve`` with several models (``--models-dir``) for the multi-model and Ollama API tests."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .server_fixtures import RunningServer, run_server


def models_folder(gemma_path: Path, folder: Path, *names: str) -> Path:
    """``folder`` holding the Gemma file under each of ``names`` (symbolic links: one file, several models)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = folder / f"{name}.gguf"
        if not link.exists():
            os.symlink(gemma_path, link)
    return folder


def run_models_server(log_dir: Path, *args: str) -> contextlib.AbstractContextManager[RunningServer]:
    """``run_server`` without ``-m`` (give ``--models-dir``)."""
    return run_server(None, log_dir, *args)
