"""Load on ``emberllm serve -np 4``: 200 requests at concurrency 8 mixing ``/completion`` and ``/v1/chat/completions``,
streamed and not, all answered correctly, with the server's RSS growing by at most 50 MB after a warm-up; and a
full queue answering 503 with Retry-After while the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .server_fixtures import AUTH, RunningServer, run_server

N_REQUESTS = 200
CONCURRENCY = 8
WARMUP = 20
#: the host-RAM prompt cache's limit (``--cache-ram``, MiB): the server's memory may grow by it
PROMPT_CACHE_MIB = 16
MAX_RSS_GROWTH_KIB = (50 + PROMPT_CACHE_MIB) * 1024


@pytest.fixture(scope="module")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # 4 slots of 256 tokens: the load runs through continuous batching, 4 requests in flight, 4 queued
    # --cache-ram 16: the prompt cache (slots' rows kept for later prompts) may grow by that much, no more
    with run_server(gemma_path, tmp_path_factory.mktemp("server"), "-c", "1024", "-np", "4", "-t", "2", "--no-webui",
                    "--max-queue", "64", "--cache-ram", str(PROMPT_CACHE_MIB)) as srv:
        yield srv


def _events(text: str) -> list[Any]:
    return [json.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


async def _one(client: httpx.AsyncClient, i: int) -> None:
    """Request ``i`` of the mix (the kind cycles through four; prompts, lengths and sampling vary); raises if the
    answer is wrong in any way."""
    n = 1 + i % 4
    kind = (i // 4) % 4
    stream = kind % 2 == 1
    sampling = {"temperature": 0} if i % 3 == 0 else {"temperature": 0.8, "seed": i}
    if kind < 2:
        body = {"prompt": f"Item {i}: the quick brown fox", "n_predict": n, "stream": stream, **sampling}
        if stream:
            async with client.stream("POST", "/completion", json=body) as r:
                text = (await r.aread()).decode()
            assert r.status_code == 200, text
            events = _events(text)
            assert events[-1]["stop"] is True and 1 <= events[-1]["tokens_predicted"] <= n, events[-1]
            assert not any(e["stop"] for e in events[:-1])
        else:
            r = await client.post("/completion", json=body)
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["stop"] is True and 1 <= out["tokens_predicted"] <= n and isinstance(out["content"], str)
        return
    body = {"messages": [{"role": "user", "content": f"Say something about the number {i}."}], "max_tokens": n,
            "stream": stream, **sampling}
    if stream:
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            text = (await r.aread()).decode()
        assert r.status_code == 200, text
        assert text.rstrip().endswith("data: [DONE]"), text[-300:]
        chunks = _events(text)
        assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length"), chunks[-1]
    else:
        r = await client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["choices"][0]["finish_reason"] in ("stop", "length")
        assert 1 <= out["usage"]["completion_tokens"] <= n


async def _run_load(url: str, start: int, count: int) -> list[BaseException]:
    """``count`` requests at concurrency ``CONCURRENCY``; the failures."""
    sem = asyncio.Semaphore(CONCURRENCY)
    failures: list[BaseException] = []
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=120, limits=limits) as client:

        async def guarded(i: int) -> None:
            async with sem:
                try:
                    await _one(client, i)
                except Exception as exc:  # noqa: BLE001 - collected and reported below
                    failures.append(exc)

        await asyncio.gather(*(guarded(i) for i in range(start, start + count)))
    return failures


def test_200_requests_at_concurrency_8_without_failures_or_rss_growth(server):
    failures = asyncio.run(_run_load(server.url, 0, WARMUP))
    assert not failures, failures[:3]
    rss_before = server.rss_kib()
    t0 = time.monotonic()
    failures = asyncio.run(_run_load(server.url, WARMUP, N_REQUESTS))
    elapsed = time.monotonic() - t0
    rss_after = server.rss_kib()
    print(f"\n{N_REQUESTS} requests at concurrency {CONCURRENCY} in {elapsed:.1f} s; server RSS after warm-up "
          f"{rss_before / 1024:.1f} MiB, at the end {rss_after / 1024:.1f} MiB "
          f"(growth {(rss_after - rss_before) / 1024:+.1f} MiB)")
    assert not failures, f"{len(failures)} failures, first: {failures[:3]!r}"
    assert rss_after - rss_before <= MAX_RSS_GROWTH_KIB
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_full_queue_answers_503_with_retry_after(gemma_path, tmp_path):
    """With ``--max-queue 1``: one generation running, one waiting, the next one gets 503 + Retry-After; the
    waiting one still completes once the running one's client leaves."""
    with run_server(gemma_path, tmp_path, "-c", "2048", "-t", "1", "--no-webui", "--metrics",
                    "--max-queue", "1") as srv, httpx.Client(base_url=srv.url, headers=AUTH, timeout=60) as client:
        long_body = {"prompt": "Once upon a time", "n_predict": 1500, "ignore_eos": True, "stream": True}
        waiting: dict[str, Any] = {}

        def second() -> None:
            try:
                waiting["response"] = httpx.post(f"{srv.url}/completion", headers=AUTH, timeout=60,
                                                 json={"prompt": "Hi", "n_predict": 1})
            except Exception as exc:  # noqa: BLE001 - checked below
                waiting["response"] = exc

        with client.stream("POST", "/completion", json=long_body) as running:
            lines = running.iter_lines()
            while not next(lines).startswith("data: "):  # the long generation is on the engine now
                pass
            thread = threading.Thread(target=second)
            thread.start()
            deadline = time.monotonic() + 10
            while "llamacpp:requests_deferred 1" not in client.get("/metrics").text:
                assert time.monotonic() < deadline, "the second request never queued"
                time.sleep(0.02)
            busy = client.post("/completion", json={"prompt": "Hi", "n_predict": 1})
            assert busy.status_code == 503, busy.text
            assert busy.headers["retry-after"] == "1" and busy.json()["error"]["type"] == "unavailable_error"
            busy_chat = client.post("/v1/chat/completions",
                                    json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1})
            assert busy_chat.status_code == 503 and busy_chat.headers["retry-after"] == "1"
        thread.join(60)  # leaving the stream cancelled the long generation
        response = waiting["response"]
        assert isinstance(response, httpx.Response) and response.status_code == 200, response
        assert response.json()["tokens_predicted"] == 1
        assert client.get("/health").status_code == 200
        assert client.post("/completion", json={"prompt": "Hi", "n_predict": 1}).status_code == 200
