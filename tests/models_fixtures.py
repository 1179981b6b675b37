"""Starting ``emberllm serve`` with several models (``--models-dir``) for the multi-model and Ollama API tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from .server_fixtures import API_KEY, RunningServer, free_port, stop, wait_healthy


def models_folder(gemma_path: Path, folder: Path, *names: str) -> Path:
    """``folder`` holding the Gemma file under each of ``names`` (symbolic links: one file, several models)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = folder / f"{name}.gguf"
        if not link.exists():
            os.symlink(gemma_path, link)
    return folder


@contextlib.contextmanager
def run_models_server(log_dir: Path, *args: str) -> Iterator[RunningServer]:
    """``emberllm serve --port FREE --api-key API_KEY ARGS...`` (no ``-m``: give ``--models-dir``) until healthy;
    killed on exit, and its log must hold no traceback."""
    port = free_port()
    cmd = [sys.executable, "-m", "emberllm.cli", "serve", "--port", str(port), "--api-key", API_KEY,
           "--log-level", "warning", *args]
    log_path = log_dir / "server.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log_path)
        yield RunningServer(url, proc, log_path)
    finally:
        stop(proc)
        log.close()
        assert "Traceback" not in log_path.read_text(), log_path.read_text()
