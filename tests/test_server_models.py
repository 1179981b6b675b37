"""Several models by name in one real ``emberllm serve --models-dir``: loading on first use, ``/v1/models`` and
``/health`` with their status, 404 naming the models, least-recently-used unloading beyond ``--models-max 1`` seen
through ``/api/ps``, ``keep_alive`` (0, a duration, forever), a stream on one model going on while another loads
(the model switch latency is printed), and the flags that choose the mode."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .models_fixtures import models_folder, run_models_server
from .server_fixtures import AUTH

N_CTX = 512


@pytest.fixture(scope="module")
def folder(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models_folder(gemma_path, tmp_path_factory.mktemp("models"), "gemma-a", "gemma-b")


@pytest.fixture(scope="module")
def lru(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A client of a server holding at most one model at a time."""
    with run_models_server(tmp_path_factory.mktemp("lru"), "--models-dir", str(folder), "--models-max", "1",
                           "-c", str(N_CTX), "-t", "1") as srv, \
            httpx.Client(base_url=srv.url, headers=AUTH, timeout=120) as c:
        yield c


def _chat(c: httpx.Client, model: str, **extra: object) -> httpx.Response:
    return c.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "Hi"}],
                                                "max_tokens": 2, **extra})


def _ps(c: httpx.Client) -> list[str]:
    return [m["name"] for m in c.get("/api/ps").json()["models"]]


def _status(c: httpx.Client) -> dict[str, str]:
    return {m["id"]: m["status"]["value"] for m in c.get("/v1/models").json()["data"]}


def _wait_for(check, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_models_listed_by_name_and_unknown_name_is_404(lru):
    assert _status(lru) == {"gemma-a": "unloaded", "gemma-b": "unloaded"}
    health = lru.get("/health").json()  # healthy before any model loads
    assert health["status"] == "ok" and health["models_loaded"] == [] and health["slots_idle"] == 0
    r = _chat(lru, "no-such-model")
    assert r.status_code == 404
    assert "gemma-a" in r.json()["error"]["message"] and "gemma-b" in r.json()["error"]["message"]
    assert lru.post("/completion", json={"model": 3, "prompt": "x"}).status_code == 400
    props = lru.get("/props").json()
    assert props["model_alias"] == "gemma-a" and props["default_generation_settings"]["n_ctx"] == N_CTX
    assert {m["id"]: m["status"] for m in props["models"]} == {"gemma-a": "unloaded", "gemma-b": "unloaded"}


def test_least_recently_used_model_is_unloaded_beyond_models_max(lru):
    r = _chat(lru, "gemma-a")
    assert r.status_code == 200 and r.json()["model"] == "gemma-a"
    assert _ps(lru) == ["gemma-a"] and _status(lru) == {"gemma-a": "loaded", "gemma-b": "unloaded"}
    health = lru.get("/health").json()
    assert health["models_loaded"] == ["gemma-a"] and health["slots_idle"] == 1
    t0 = time.perf_counter()
    body = {"model": "gemma-b", "prompt": "Hi", "options": {"num_predict": 2}}
    with lru.stream("POST", "/api/generate", json=body) as r:
        chunks = []
        for line in r.iter_lines():
            chunks.append(json.loads(line))
            if len(chunks) == 1:
                switch = time.perf_counter() - t0
    assert chunks[0]["model"] == "gemma-b" and chunks[0]["response"] and chunks[-1]["done"]
    print(f"\nmodel switch latency with --models-max 1 (unload A, load B, B's first token): {switch * 1000:.0f} ms")
    assert _ps(lru) == ["gemma-b"] and _status(lru) == {"gemma-a": "unloaded", "gemma-b": "loaded"}
    # Ollama's NAME:latest is NAME; a request without "model" goes to the first model (the chat page sends none)
    assert _chat(lru, "gemma-b:latest").json()["model"] == "gemma-b"
    body = lru.post("/completion", json={"prompt": "Hi", "n_predict": 1}).json()
    assert body["model"] == "gemma-a" and _ps(lru) == ["gemma-a"]
    metrics_free = lru.get("/slots", params={"model": "gemma-a"}).json()
    assert metrics_free[0]["n_ctx"] == N_CTX


def test_keep_alive_zero_duration_and_forever(lru):
    assert _chat(lru, "gemma-b", keep_alive=0).status_code == 200
    _wait_for(lambda: _ps(lru) == [])  # unloaded once the reply has been sent
    assert _chat(lru, "gemma-b", keep_alive="1s").status_code == 200
    assert _ps(lru) == ["gemma-b"]
    _wait_for(lambda: _ps(lru) == [], timeout_s=5)
    assert _chat(lru, "gemma-b", keep_alive=-1).status_code == 200
    (entry,) = lru.get("/api/ps").json()["models"]
    assert entry["expires_at"].startswith("9999-")
    assert _chat(lru, "gemma-b", keep_alive="5x").status_code == 400
    assert lru.post("/api/generate", json={"model": "gemma-b", "keep_alive": 0}).json()["done_reason"] == "unload"
    assert _ps(lru) == []


def test_a_stream_goes_on_while_another_model_loads(folder, tmp_path_factory):
    """Model A streams while model B loads on its own thread; B's first token time is the switch latency."""
    with run_models_server(tmp_path_factory.mktemp("two"), "--models-dir", str(folder), "--models-max", "2",
                           "-c", str(N_CTX), "-t", "1") as srv, \
            httpx.Client(base_url=srv.url, headers=AUTH, timeout=120) as c:
        assert _chat(c, "gemma-a").status_code == 200 and _ps(c) == ["gemma-a"]
        stamps: list[float] = []
        started = threading.Event()

        def stream_a() -> None:
            body = {"model": "gemma-a", "prompt": "Once upon a time", "n_predict": 400, "ignore_eos": True,
                    "stream": True}
            with c.stream("POST", "/completion", json=body) as r:
                for line in r.iter_lines():
                    if line.startswith("data: ") and json.loads(line[6:]).get("content"):
                        stamps.append(time.perf_counter())
                        if len(stamps) == 5:
                            started.set()

        thread = threading.Thread(target=stream_a)
        thread.start()
        assert started.wait(60)
        t0 = time.perf_counter()
        first = None
        with c.stream("POST", "/api/generate", json={"model": "gemma-b", "prompt": "Hi", "raw": True,
                                                     "options": {"num_predict": 4}}) as r:
            for line in r.iter_lines():
                chunk = json.loads(line)
                if first is None and chunk.get("response"):
                    first = time.perf_counter()
                if chunk["done"]:
                    final = chunk
        thread.join(120)
        assert first is not None and len(stamps) == 400
        switch = first - t0
        during = [t for t in stamps if t0 <= t <= first]
        edges = [t0, *during, first]
        gaps = [b - a for a, b in zip(edges, edges[1:], strict=False)]
        print(f"\nmodel switch latency (first token of an unloaded model): {switch * 1000:.0f} ms "
              f"(load_duration {final['load_duration'] / 1e6:.0f} ms); model A streamed {len(during)} tokens "
              f"meanwhile, largest gap {max(gaps, default=0) * 1000:.0f} ms")
        assert final["load_duration"] > 0
        assert len(during) >= 3, "model A's stream stalled while model B loaded"
        assert max(gaps) < switch / 2, "model A's stream stalled while model B loaded"
        assert sorted(_ps(c)) == ["gemma-a", "gemma-b"]


def test_memory_budget_unloads_like_models_max(folder, tmp_path_factory):
    """``--models-memory 300M``: one 253 MB model and its KV caches fit, two do not."""
    with run_models_server(tmp_path_factory.mktemp("budget"), "--models-dir", str(folder), "--models-memory", "300M",
                           "-c", str(N_CTX), "-t", "1") as srv, \
            httpx.Client(base_url=srv.url, headers=AUTH, timeout=120) as c:
        assert _chat(c, "gemma-a").status_code == 200 and _ps(c) == ["gemma-a"]
        (entry,) = c.get("/api/ps").json()["models"]
        assert 253113024 < entry["size"] < 300 << 20  # the weights and the slot's KV cache
        assert _chat(c, "gemma-b").status_code == 200 and _ps(c) == ["gemma-b"]


def test_model_flags_choose_the_mode(tmp_path, monkeypatch, gemma_path):
    import argparse

    from emberllm.edge_server.cli import add_parser, config_from_args

    def config(*argv: str):
        parser = argparse.ArgumentParser()
        add_parser(parser.add_subparsers())
        return config_from_args(parser.parse_args(["serve", *argv]))

    store = models_folder(gemma_path, tmp_path / "cache" / "models", "stored")
    monkeypatch.setenv("EMBERLLM_CACHE", str(tmp_path / "cache"))
    cfg = config()  # no -m: the store, since it holds a model
    assert cfg.multi_model and cfg.models_dir == store and cfg.model_path is None
    cfg = config("-m", str(gemma_path))  # one -m: llama-server's one-model mode, as before
    assert not cfg.multi_model and cfg.model_path == gemma_path
    cfg = config("-m", str(gemma_path), "-m", str(store / "stored.gguf"), "-a", "first", "--models-max", "1",
                 "--keep-alive", "1h30m", "--models-memory", "2G")
    assert cfg.multi_model and list(cfg.models) == ["first", "stored"] and cfg.models_dir is None
    assert cfg.keep_alive_s == 5400 and cfg.models_memory == 2 << 30 and cfg.models_max == 1
    with pytest.raises(ValueError, match="models-max"):
        config("-m", str(gemma_path), "--models-max", "2")
    with pytest.raises(ValueError, match="alias"):
        config("-m", str(gemma_path), "-m", str(gemma_path), "-a", "x", "-a", "y", "-a", "z")
    with pytest.raises(ValueError, match="named"):
        config("-m", str(gemma_path), "-m", str(gemma_path))
    with pytest.raises(SystemExit):
        config("--models-dir", str(store), "--keep-alive", "soon")


def test_keep_alive_durations():
    from emberllm.edge_server.model_catalog import parse_keep_alive

    assert parse_keep_alive("5m") == 300 and parse_keep_alive("1h30m") == 5400 and parse_keep_alive("1.5s") == 1.5
    assert parse_keep_alive(0) == 0 and parse_keep_alive("0") == 0 and parse_keep_alive(30) == 30
    assert parse_keep_alive("-1") == -1 and parse_keep_alive(-5) == -1 and parse_keep_alive("-1m") == -1
    assert parse_keep_alive("300") == 300 and parse_keep_alive("250ms") == 0.25
    for bad in ("", "5x", "m", "1h-", True, [], None):
        with pytest.raises(ValueError, match="keep_alive"):
            parse_keep_alive(bad)
