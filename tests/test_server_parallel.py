"""Parallel slots and continuous batching in the real server (``-np 4``), driven over HTTP.

Each slot gets ``-c / -np`` positions; prompts are evaluated in the engine's own micro-batches and a batched
decode step gives every sequence its single-sequence logits, so concurrent greedy requests must return exactly
what the engine alone returns for each of them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .server_fixtures import AUTH, run_server

N_CTX = 2048
N_SLOTS = 4
SLOT_CTX = N_CTX // N_SLOTS
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,",
           "The three primary colors are"]


@pytest.fixture(scope="module")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_server(gemma_path, tmp_path_factory.mktemp("server_np"), "-c", str(N_CTX), "-np", str(N_SLOTS),
                    "-t", "1", "--metrics") as srv:
        yield srv.url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=AUTH, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def engine(gemma_path: Path):
    from emberllm.runtime.model import Model

    with Model(gemma_path, n_ctx=SLOT_CTX, n_threads=1) as model:
        yield model


def _greedy(engine, prompt: str, n: int) -> str:
    engine.sequence.clear()
    return "".join(s.text for s in engine.generate(prompt, n_predict=n, temperature=0, ignore_eos=True))


def _metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"llamacpp:{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing from /metrics")


def _run_concurrently(fn, n: int) -> list:
    results: list = [None] * n

    def one(i: int) -> None:
        try:
            results[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller's assertions
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_slots_split_the_context(client):
    slots = client.get("/slots").json()
    assert [s["id"] for s in slots] == list(range(N_SLOTS))
    assert all(s["next_token"][0] == {"has_next_token": False, "n_remain": -1, "n_decoded": 0} for s in slots), slots
    assert all(s["n_ctx"] == SLOT_CTX and not s["is_processing"] for s in slots)
    assert client.get("/props").json()["total_slots"] == N_SLOTS


def test_four_concurrent_streams_equal_the_engine_and_share_decode_steps(server, client, engine):
    n = 24
    expected = [_greedy(engine, p, n) for p in PROMPTS]
    steps0, rows_per0 = _metric(client, "n_decode_total"), _metric(client, "n_busy_slots_per_decode")
    assert rows_per0 >= 0

    def stream(i: int) -> tuple[str, int]:
        body = {"prompt": PROMPTS[i], "n_predict": n, "temperature": 0, "ignore_eos": True, "stream": True,
                "cache_prompt": False}
        text, slot = "", -1
        with httpx.stream("POST", f"{server}/completion", json=body, headers=AUTH, timeout=120) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: "):
                    chunk = json.loads(line[6:])
                    text += chunk["content"]
                    slot = chunk["id_slot"]
        return text, slot

    results = _run_concurrently(stream, N_SLOTS)
    for res in results:
        assert not isinstance(res, BaseException), res
    assert [text for text, _ in results] == expected
    assert sorted(slot for _, slot in results) == list(range(N_SLOTS))  # every request had its own slot
    steps = _metric(client, "n_decode_total") - steps0
    # 4 x 23 decode rows (the first token of each comes from its prompt) in far fewer steps than one per row
    assert steps < 0.6 * N_SLOTS * (n - 1), steps
    assert _metric(client, "n_busy_slots_per_decode") > 1.0


def test_openai_chat_streams_in_parallel(server, engine):
    openai = pytest.importorskip("openai")
    oai = openai.OpenAI(base_url=f"{server}/v1", api_key=AUTH["Authorization"][7:], max_retries=0, timeout=120)
    questions = ["What is the capital of France?", "Name a primary color.", "Say hello.", "Count to three."]
    expected = []
    for q in questions:
        engine.sequence.clear()
        expected.append("".join(s.text for s in engine.chat([{"role": "user", "content": q}], n_predict=12,
                                                             temperature=0)))

    def chat(i: int) -> str:
        out = oai.chat.completions.create(model="x", messages=[{"role": "user", "content": questions[i]}],
                                          max_tokens=12, temperature=0, stream=True, extra_body={"cache_prompt": False})
        return "".join(c.choices[0].delta.content or "" for c in out if c.choices)

    assert _run_concurrently(chat, 4) == expected


def test_disconnect_frees_its_slot_while_others_run(server, client, engine):
    expected = _greedy(engine, PROMPTS[0], 16)

    def long_then_leave() -> None:
        body = {"prompt": "Once upon a time", "n_predict": 4000, "ignore_eos": True, "stream": True}
        with httpx.stream("POST", f"{server}/completion", json=body, headers=AUTH, timeout=60) as r:
            seen = 0
            for line in r.iter_lines():
                seen += line.startswith("data: ")
                if seen == 3:
                    break

    survivor: dict = {}

    def steady() -> None:
        survivor["out"] = client.post("/completion", json={"prompt": PROMPTS[0], "n_predict": 16, "temperature": 0,
                                                           "ignore_eos": True, "cache_prompt": False}).json()

    t = threading.Thread(target=steady)
    t.start()
    long_then_leave()
    deadline = time.monotonic() + 5
    while sum(s["is_processing"] for s in client.get("/slots").json()) > (1 if t.is_alive() else 0):
        assert time.monotonic() < deadline, "the abandoned generation still holds its slot"
        time.sleep(0.05)
    t.join(60)
    assert survivor["out"]["content"] == expected
    assert client.get("/health").status_code == 200


def test_id_slot_and_prompt_reuse(client):
    body = {"prompt": PROMPTS[1], "n_predict": 4, "temperature": 0, "id_slot": 2}
    first = client.post("/completion", json=body).json()
    assert first["id_slot"] == 2
    again = client.post("/completion", json={**body, "id_slot": -1}).json()
    # the free slot holding the longest common prefix is chosen, so the prompt comes from its cache
    assert again["id_slot"] == 2 and again["tokens_cached"] == first["tokens_evaluated"]
    assert again["content"] == first["content"]
    bad = client.post("/completion", json={**body, "id_slot": N_SLOTS})
    assert bad.status_code == 400 and "id_slot" in bad.json()["error"]["message"]


def test_long_prompt_is_400_unless_truncation_is_requested(client):
    words = " ".join(f"word{i}" for i in range(SLOT_CTX))
    r = client.post("/completion", json={"prompt": words, "n_predict": 2})
    assert r.status_code == 400
    err = r.json()["error"]  # llama-server's shape for it
    assert err["type"] == "exceed_context_size_error" and err["n_ctx"] == SLOT_CTX and err["n_prompt_tokens"] > SLOT_CTX
    assert "exceeds the available context size" in err["message"]
    ok = client.post("/completion", json={"prompt": words, "n_predict": 2, "truncate": True, "n_keep": 8})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["truncated"] is True and body["tokens_predicted"] == 2
    assert body["tokens_evaluated"] < SLOT_CTX
    chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": words}],
                                                     "max_tokens": 2, "truncate": True})
    assert chat.status_code == 200 and chat.json()["usage"]["prompt_tokens"] < SLOT_CTX


def test_without_context_shift_generation_stops_at_the_slot_context(client, engine):
    """No --context-shift (llama-server's default): the prompt and the reply fill the slot's context, then the reply
    ends as llama-server's does (truncated, stop_type "limit"; finish_reason "length" in OpenAI's API)."""
    prompt = "Hi how are you"
    n_prompt = len(engine.tokenize(prompt))
    body = client.post("/completion", json={"prompt": prompt, "n_predict": -1, "ignore_eos": True,
                                            "temperature": 0.8, "seed": 1}).json()
    assert body["tokens_predicted"] == SLOT_CTX - n_prompt
    assert body["truncated"] is True and body["stop_type"] == "limit"
    short = client.post("/completion", json={"prompt": prompt, "n_predict": 16, "ignore_eos": True}).json()
    assert short["tokens_predicted"] == 16 and short["truncated"] is False
    chat = client.post("/v1/completions", json={"prompt": prompt, "max_tokens": 4 * SLOT_CTX, "ignore_eos": True})
    assert chat.json()["choices"][0]["finish_reason"] == "length"
    assert chat.json()["usage"]["completion_tokens"] == SLOT_CTX - n_prompt
