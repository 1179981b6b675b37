"""Starting the real ``emberllm serve`` (uvicorn in a subprocess on 127.0.0.1) for the server tests."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log_path: Path, timeout_s: float = 60) -> None:
    """Poll ``url``/health until it answers 200; fail with the server's log if it exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"server not healthy after {timeout_s} s: {log_path.read_text()[-3000:]}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass
class RunningServer:
    url: str
    proc: subprocess.Popen
    log_path: Path

    def rss_kib(self) -> int:
        """The server process's resident set size (``VmRSS`` of /proc/PID/status), in KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("VmRSS not found")


@contextlib.contextmanager
def run_server(model: Path | None, log_dir: Path, *args: str) -> Iterator[RunningServer]:
    """``emberllm serve -m MODEL --port FREE --api-key API_KEY ARGS...`` (no ``-m`` when ``model`` is None: the
    args name the models) until healthy; killed on exit, and its log (a file, not a pipe) must hold no traceback."""
    port = free_port()
    cmd = [sys.executable, "-m", "emberllm.cli", "serve", *(["-m", str(model)] if model else []), "--port", str(port),
           "--api-key", API_KEY, "--log-level", "warning", *args]
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
