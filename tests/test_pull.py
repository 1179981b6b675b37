"""``emberllm pull``/``list``/``rm`` and ``pull_model`` against a local HTTP server serving the real Gemma file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emberllm.runtime.model_store import list_models, remove_model
from emberllm.runtime.pull import PullError, pull_model

from .file_server import FileServer, Route

GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA_SIZE = 253_113_024


@pytest.fixture()
def server():
    with FileServer() as s:
        yield s


def store_files(store: Path) -> list[str]:
    """Everything in the store but the per-name lock files."""
    return sorted(p.name for p in store.iterdir() if not p.name.endswith(".lock")) if store.exists() else []


def cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EMBERLLM_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "emberllm.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_cli_pull_list_rm(server, gemma_path, tmp_path):
    server.routes["/files/gemma-3-270m-q4_k_m.gguf"] = Route(gemma_path)
    proc = cli("pull", server.url("/files/gemma-3-270m-q4_k_m.gguf"), "--sha256", GEMMA_SHA256, cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    stored = tmp_path / "models" / "gemma-3-270m-q4_k_m.gguf"
    assert proc.stdout.strip() == str(stored) and stored.stat().st_size == GEMMA_SIZE
    assert "100% 253.1/253.1 MB" in proc.stderr and "verifying sha256 digest" in proc.stderr, proc.stderr

    listing = cli("list", cache=tmp_path)
    assert listing.returncode == 0, listing.stderr
    header, line = listing.stdout.splitlines()
    assert header.split() == ["NAME", "SIZE", "QUANT", "ARCH", "MODIFIED"]
    assert line.split()[:7] == ["gemma-3-270m-q4_k_m", "253.1", "MB", "Q4_K", "-", "Medium", "gemma3"]

    missing = cli("rm", "gemma3", cache=tmp_path)
    assert missing.returncode == 1 and "no model 'gemma3'" in missing.stderr and "gemma-3-270m-q4_k_m" in missing.stderr
    gone = cli("rm", "gemma-3-270m-q4_k_m", cache=tmp_path)
    assert gone.returncode == 0 and store_files(tmp_path / "models") == []
    assert "no models in" in cli("list", cache=tmp_path).stdout


def test_pull_resumes_dropped_connections(server, gemma_path, tmp_path):
    server.routes["/m.gguf"] = Route(gemma_path, drop_after=[40_000_000, 150_000_001])
    events: list[tuple[int, int | None, str]] = []
    path = pull_model(server.url("/m.gguf"), tmp_path, sha256=GEMMA_SHA256, name="gemma",
                      progress=lambda *e: events.append(e), retry_delay=0.01)
    assert path == tmp_path / "gemma.gguf" and path.stat().st_size == GEMMA_SIZE
    assert [r for _, r in server.log] == [None, "bytes=40000000-", "bytes=150000001-"]
    assert events[-1] == (GEMMA_SIZE, GEMMA_SIZE, "success")
    assert [e[2] for e in events[-3:]] == ["verifying sha256 digest", "verifying GGUF header", "success"]
    done = [e[0] for e in events if e[2] == "downloading"]
    assert done == sorted(done) and all(e[1] == GEMMA_SIZE for e in events)
    assert store_files(tmp_path) == ["gemma.gguf"]
    assert [(m.name, m.architecture, m.file_type, m.size) for m in list_models(tmp_path)] == [
        ("gemma", "gemma3", "Q4_K - Medium", GEMMA_SIZE)]


def test_interrupted_pull_keeps_part_and_next_pull_resumes(server, gemma_path, tmp_path):
    server.routes["/m.gguf"] = Route(gemma_path, drop_after=[100_000_000])
    with pytest.raises(PullError, match=r"failed after 100,000,000 bytes: connection closed.*pull again to resume"):
        pull_model(server.url("/m.gguf"), tmp_path, retries=0)
    assert store_files(tmp_path) == ["m.gguf.part"]
    assert (tmp_path / "m.gguf.part").stat().st_size == 100_000_000
    assert list_models(tmp_path) == []  # a partial download is not a model

    path = pull_model(server.url("/m.gguf"), tmp_path, sha256=GEMMA_SHA256)
    assert server.log[-1][1] == "bytes=100000000-" and path.stat().st_size == GEMMA_SIZE
    assert store_files(tmp_path) == ["m.gguf"]
    n_get = len(server.log)
    assert pull_model(server.url("/m.gguf"), tmp_path, sha256=GEMMA_SHA256) == path
    assert len(server.log) == n_get  # already there with that digest: nothing fetched


def test_server_without_range_support_restarts(server, gemma_path, tmp_path):
    server.routes["/m.gguf"] = Route(gemma_path, drop_after=[30_000_000], ranges=False, fail_first=[503])
    path = pull_model(server.url("/m.gguf"), tmp_path, sha256=GEMMA_SHA256, retry_delay=0.01)
    assert path.stat().st_size == GEMMA_SIZE and len(server.log) == 3  # a 503, a cut 200, then the whole file


def test_wrong_sha256_leaves_nothing(server, gemma_path, tmp_path):
    server.routes["/m.gguf"] = Route(gemma_path)
    with pytest.raises(PullError, match=f"sha256 mismatch .*expected {'0' * 64}, got {GEMMA_SHA256}"):
        pull_model(server.url("/m.gguf"), tmp_path, sha256="0" * 64)
    assert store_files(tmp_path) == []


def test_truncated_file_is_refused(server, gemma_path, tmp_path):
    cut = tmp_path / "cut.gguf"
    with open(gemma_path, "rb") as f:
        cut.write_bytes(f.read(10_000_000))
    store = tmp_path / "store"
    server.routes["/cut.gguf"] = Route(cut)  # complete as served (Content-Length 10 MB), truncated as a model
    with pytest.raises(PullError, match=r"not a usable GGUF file \(10,000,000 bytes\).*outside the file.*truncated"):
        pull_model(server.url("/cut.gguf"), store)
    assert store_files(store) == []
    proc = cli("pull", str(cut), "--store", str(store), cache=tmp_path)  # a local path goes through the same checks
    assert proc.returncode == 1 and proc.stderr.count("error: ") == 1 and "truncated" in proc.stderr
    assert "Traceback" not in proc.stderr and store_files(store) == []


def test_corrupt_files_are_refused(server, gemma_path, tmp_path):
    page = tmp_path / "login.html"
    page.write_bytes(b"<!DOCTYPE html><html>sign in</html>")
    bad_header = tmp_path / "bad.gguf"
    with open(gemma_path, "rb") as f:
        head = bytearray(f.read(2_000_000))
    head[16:24] = (1 << 62).to_bytes(8, "little")  # metadata count: absurd
    bad_header.write_bytes(bytes(head))
    server.routes["/login.gguf"] = Route(page)
    server.routes["/bad.gguf"] = Route(bad_header)
    store = tmp_path / "store"
    with pytest.raises(PullError, match=r"is not a GGUF file: it starts with b'<!DOCTYPE"):
        pull_model(server.url("/login.gguf"), store)
    with pytest.raises(PullError, match="not a usable GGUF file"):
        pull_model(server.url("/bad.gguf"), store)
    with pytest.raises(PullError, match="HTTP 404"):
        pull_model(server.url("/nope.gguf"), store)
    server.routes["/busy.gguf"] = Route(page, fail_first=[503, 503, 503])
    with pytest.raises(PullError, match=r"failed after 0 bytes: HTTP 503"):  # 5xx is retried, then given up
        pull_model(server.url("/busy.gguf"), store, retries=2, retry_delay=0.01)
    assert [r for r in server.log if r[0] == "/busy.gguf"] == [("/busy.gguf", None)] * 3
    assert store_files(store) == []


def test_names_and_local_copies(gemma_path, tmp_path):
    with pytest.raises(PullError, match="invalid model name"):
        pull_model(str(gemma_path), tmp_path, name="../evil")
    with pytest.raises(PullError, match="invalid sha256"):
        pull_model(str(gemma_path), tmp_path, sha256="abc")
    with pytest.raises(PullError, match="no such file"):
        pull_model(str(tmp_path / "nope.gguf"), tmp_path)
    path = pull_model(gemma_path.as_uri(), tmp_path, name="g.gguf")
    assert path == tmp_path / "g.gguf" and path.stat().st_size == GEMMA_SIZE
    assert remove_model("g", tmp_path) == [path] and store_files(tmp_path) == []
