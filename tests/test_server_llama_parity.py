"""llama-server behaviours beyond the basic endpoints, on ``emberllm serve`` with the Gemma model: the Responses API
(the official ``openai`` client), ``return_progress`` / ``timings_per_token``, ``/metrics``' counters and scrape-window
gauges, the same request giving the same tokens streamed or not, ``--sleep-idle-seconds`` and ``--kv-unified``.
(llama.cpp's own tests of these run in ``../shared/llamacpp_server_suite``; these are the fast ones CI keeps.)"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from emberllm.edge_server.errors import ApiError
from emberllm.edge_server.responses_request import to_chat

from .server_fixtures import API_KEY, AUTH, run_server

openai = pytest.importorskip("openai")

MODEL = "parity"
GREEDY = {"temperature": 0.0, "top_k": 1}


@pytest.fixture(scope="module")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_server(gemma_path, tmp_path_factory.mktemp("parity"), "-c", "1024", "-np", "1", "-t", "1", "-b", "16",
                    "--metrics", "--alias", MODEL) as srv:
        yield srv.url


def _post(server: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server}{path}", json=body, headers=AUTH, timeout=120)


def _events(server: str, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream("POST", f"{server}{path}", json=body, headers=AUTH, timeout=120) as r:
        assert r.status_code == 200
        return [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ") and line[6:] != "[DONE]"]


# -- /v1/responses ----------------------------------------------------------------------------------------------


def test_responses_with_the_openai_client(server):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0, timeout=120)
    items = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
    res = client.responses.create(model=MODEL, input=items, max_output_tokens=8, extra_body=GREEDY)
    assert res.id.startswith("resp_") and res.status == "completed" and res.output[0].id.startswith("msg_")
    chat = _post(server, "/v1/chat/completions", {"messages": items, "max_tokens": 8, **GREEDY}).json()
    assert res.output_text == chat["choices"][0]["message"]["content"]  # the same prompt and greedy tokens
    assert res.usage.input_tokens == chat["usage"]["prompt_tokens"] and res.usage.output_tokens == 8

    stream = client.responses.create(model=MODEL, input=items, max_output_tokens=8, stream=True, extra_body=GREEDY)
    kinds, text, done = [], "", None
    for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type == "response.completed":
            done = event.response
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert {"response.output_item.added", "response.content_part.added", "response.output_text.done",
            "response.output_item.done"} <= set(kinds)
    assert done is not None and text == done.output_text == res.output_text

    counted = _post(server, "/v1/responses/input_tokens", {"input": items}).json()
    assert counted == {"object": "response.input_tokens", "input_tokens": res.usage.input_tokens}


def test_responses_text_format_and_errors(server):
    r = _post(server, "/v1/responses", {"input": "Give me a JSON object.", "max_output_tokens": 24,
                                         "text": {"format": {"type": "json_object"}}, **GREEDY})
    assert r.status_code == 200
    text = r.json()["output"][0]["content"][0]["text"]
    assert text.lstrip().startswith("{")  # constrained: a JSON object (perhaps cut at max_output_tokens)
    for body, field in (({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
                        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
                         "input_image"),
                        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
                        ({"input": 5}, "input"), ({}, "input"),
                        ({"input": "x", "reasoning": {"summary": "auto"}}, "reasoning.summary")):
        r = _post(server, "/v1/responses", body)
        assert r.status_code == 400 and field in r.json()["error"]["message"], (body, r.text)
    assert _post(server, "/health", {}).status_code in (200, 405)  # still serving


def test_responses_items_convert_as_llama_server():
    data = to_chat({"instructions": "sys", "max_output_tokens": 5, "reasoning": {"effort": "low"}, "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"}],
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]})
    assert data["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "hello"}],
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"}]
    assert data["max_tokens"] == 5 and data["reasoning_effort"] == "low"
    assert data["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"},
                                                               "strict": True}}]
    with pytest.raises(ApiError, match="cannot determine"):
        to_chat({"input": [{"type": "mystery"}]})


# -- progress, timings, determinism, metrics ---------------------------------------------------------------------


def test_return_progress_and_timings_per_token(server):
    prompt = "the quick brown fox jumps over the lazy dog " * 6  # several micro-batches of -b 16
    chunks = _events(server, "/completion", {"prompt": prompt, "n_predict": 3, "stream": True, "cache_prompt": False,
                                             "return_progress": True, "timings_per_token": True, **GREEDY})
    progress = [c for c in chunks if "prompt_progress" in c]
    assert len(progress) >= 3 and progress[0]["prompt_progress"]["processed"] == 0
    assert progress[0]["timings"]["prompt_n"] == 0 and progress[0]["timings"]["prompt_ms"] == 0.0
    done = [p["prompt_progress"]["processed"] for p in progress]
    assert done == sorted(done) and done[-1] == progress[-1]["prompt_progress"]["total"]
    tokens = [c for c in chunks if c.get("tokens")]
    assert len(tokens) == 3 and all("timings" in c for c in tokens)
    assert [c["timings"]["predicted_n"] for c in tokens] == [1, 2, 3]


def test_same_request_same_tokens_streamed_or_not(server):
    body = {"prompt": "I believe the meaning of life is", "n_predict": 12, "temperature": 0.9, "seed": 7}
    streamed = "".join(c["content"] for c in _events(server, "/completion", {**body, "stream": True}))
    whole = _post(server, "/completion", body).json()
    assert whole["timings"]["cache_n"] > 0 and whole["content"] == streamed  # the prompt came from the cache


def test_metrics_counters_and_scrape_window(server):
    def metrics() -> dict[str, float]:
        text = httpx.get(f"{server}/metrics", headers=AUTH, timeout=30).text
        return {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("llamacpp:")}

    metrics()
    body = {"prompt": "Once upon a time there was", "n_predict": 6, "ignore_eos": True, **GREEDY}
    first, second = _post(server, "/completion", body).json(), _post(server, "/completion", body).json()
    m = metrics()
    assert m["llamacpp:prompt_tokens_cached_total"] >= second["timings"]["cache_n"] > 0
    assert m["llamacpp:predicted_tokens_seconds"] > 0 and m["llamacpp:n_tokens_max"] >= 6
    assert metrics()["llamacpp:predicted_tokens_seconds"] == 0  # nothing ran since the last scrape
    t = first["timings"]  # the rate is over 5 decode steps: the first token comes from the prompt's logits
    assert abs(t["predicted_per_second"] - 1e3 / t["predicted_ms"] * 5) < 1e-6


# -- --sleep-idle-seconds and --kv-unified -----------------------------------------------------------------------


def test_sleep_idle_seconds(gemma_path, tmp_path):
    with run_server(gemma_path, tmp_path, "-c", "256", "-t", "1", "--sleep-idle-seconds", "1", "--metrics") as srv:
        def props() -> dict[str, Any]:
            return httpx.get(f"{srv.url}/props", headers=AUTH, timeout=30).json()

        deadline = time.monotonic() + 20
        while not props()["is_sleeping"]:
            assert time.monotonic() < deadline, "the server did not fall asleep"
            time.sleep(0.2)
        for path in ("/health", "/v1/models", "/metrics"):
            assert httpx.get(f"{srv.url}{path}", headers=AUTH, timeout=30).status_code == 200, path
        assert props()["is_sleeping"]  # read-only endpoints do not wake it
        r = httpx.post(f"{srv.url}/tokenize", json={"content": "Hello"}, headers=AUTH, timeout=60)
        assert r.status_code == 200 and r.json()["tokens"]
        assert not props()["is_sleeping"]
        assert "sleeping" in srv.log_path.read_text()


def test_kv_unified_pool(gemma_path, tmp_path):
    with run_server(gemma_path, tmp_path, "-c", "128", "-np", "2", "-t", "1", "--kv-unified") as srv:
        body = {"prompt": "A", "n_predict": 100, "ignore_eos": True, **GREEDY}
        r = httpx.post(f"{srv.url}/completion", json=body, headers=AUTH, timeout=120).json()
        assert r["tokens_predicted"] == 100  # one slot may use (nearly) the whole -c, not -c/-np
        assert httpx.get(f"{srv.url}/slots", headers=AUTH, timeout=30).json()[0]["n_ctx"] == 128
        with ThreadPoolExecutor(2) as pool:  # together they need more than the pool
            results = list(pool.map(lambda _: httpx.post(f"{srv.url}/completion", json=body, headers=AUTH,
                                                         timeout=120), range(2)))
        for res in results:
            assert res.status_code in (200, 500), res.text
            if res.status_code == 500:
                assert "context size has been exceeded" in res.json()["error"]["message"]
            else:
                assert res.json()["tokens_predicted"] == 100
        assert any(res.status_code == 500 for res in results)
        assert httpx.get(f"{srv.url}/health", timeout=30).status_code == 200


# -- Vertex AI (AIP_MODE=PREDICTION) ------------------------------------------------------------------------------


def test_vertex_ai_predict(gemma_path, tmp_path, monkeypatch):
    from emberllm.edge_server.gcp import request_format

    assert [request_format(p) for p in ("/v1/chat/completions", "/apply-template", "/completion", "/v1/rerank")] == \
        ["chatCompletions", "applyTemplate", "completion", "rerank"]
    monkeypatch.setenv("AIP_MODE", "PREDICTION")
    monkeypatch.setenv("AIP_HEALTH_ROUTE", "ping")
    with run_server(gemma_path, tmp_path, "-c", "512", "-np", "2", "-t", "1") as srv:
        chat = {"@requestFormat": "chatCompletions", "max_tokens": 4, "stream": True,
                "messages": [{"role": "user", "content": "Say hello"}], **GREEDY}
        tokens = {"@requestFormat": "/tokenize", "content": "Hello"}
        r = httpx.post(f"{srv.url}/predict", json={"instances": [chat, tokens, {"@requestFormat": "nope"}, 3]},
                       headers=AUTH, timeout=120)
        assert r.status_code == 200
        reply, tok, unknown, bad = r.json()["predictions"]
        assert reply["choices"][0]["message"]["role"] == "assistant" and reply["usage"]["completion_tokens"] == 4
        assert tok["tokens"] and "nope" in unknown["error"]["message"] and "JSON object" in bad["error"]["message"]
        assert httpx.post(f"{srv.url}/predict", json={"instances": [chat]}, timeout=30).status_code == 401  # the key
        assert httpx.post(f"{srv.url}/predict", json={}, headers=AUTH, timeout=30).status_code == 400
        assert httpx.get(f"{srv.url}/ping", timeout=30).json()["status"] == "ok"


# -- chat: several choices, a continued message of content parts --------------------------------------------------


def test_chat_several_choices(server):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0, timeout=120)
    messages = [{"role": "user", "content": "Name a fruit."}]
    res = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=5, n=3,
                                         extra_body={"temperature": 0.9, "seed": 3})
    assert [c.index for c in res.choices] == [0, 1, 2] and 3 <= res.usage.completion_tokens <= 15
    greedy = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=5, n=2, extra_body=GREEDY)
    assert greedy.choices[0].message.content == greedy.choices[1].message.content
    stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=5, n=2, stream=True,
                                            stream_options={"include_usage": True}, extra_body=GREEDY)
    texts, finished, usage = ["", ""], set(), []
    for chunk in stream:
        if chunk.usage is not None:
            usage.append(chunk.usage)
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finished.add(choice.index)
    assert texts == [greedy.choices[0].message.content] * 2 and finished == {0, 1}
    assert len(usage) == 1 and usage[0].completion_tokens == 10
    for body in ({"n": 0}, {"n": 17}):
        r = _post(server, "/v1/chat/completions", {"messages": messages, "max_tokens": 2, **body})
        assert r.status_code == 400 and "n:" in r.json()["error"]["message"], body
    r = _post(server, "/v1/completions", {"prompt": "x", "max_tokens": 2, "n": 2})
    assert r.status_code == 400 and "n:" in r.json()["error"]["message"]


def test_continued_message_parts_join_with_a_blank_line(server):
    messages = [{"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "Wh"}, {"type": "text", "text": "ill"}]}]
    r = _post(server, "/apply-template", {"messages": messages})
    assert r.status_code == 200 and r.json()["prompt"].endswith("Wh\n\nill")  # llama.cpp's render_content


# -- the host-RAM prompt cache (--cache-ram) ----------------------------------------------------------------------


def test_prompt_cache_lets_conversations_take_turns(gemma_path, tmp_path):
    first = "Once upon a time in a land far away there lived a brave knight who crossed the mountains. " * 3
    second = "The recipe needs flour, eggs, butter and a pinch of salt, mixed slowly by hand. " * 3
    for cache_ram, restored in (("64", True), ("0", False)):
        with run_server(gemma_path, tmp_path, "-c", "512", "-np", "1", "-t", "1", "-v",
                        "--cache-ram", cache_ram) as srv:
            def run(prompt: str) -> dict[str, Any]:
                body = {"prompt": prompt, "n_predict": 2, **GREEDY}
                return httpx.post(f"{srv.url}/completion", json=body, headers=AUTH, timeout=120).json()

            a, _, again = run(first), run(second), run(first + " The end.")
            n_first = a["timings"]["prompt_n"]
            if restored:  # the one slot's rows of the first prompt came back from RAM
                assert again["timings"]["cache_n"] >= n_first - 1 and again["timings"]["prompt_n"] < 8
                assert again["content"] == run(first + " The end.")["content"]
                assert "updating prompt cache" in srv.log_path.read_text()
            else:
                assert again["timings"]["cache_n"] <= 2


def test_a_batch_of_one_prompt_gives_equal_replies(gemma_path, tmp_path):
    # llama.cpp's test_completion_with_tokens_input: the second slot gets the prompt from the prompt cache with the
    # logits of its last token, so it does not evaluate that token alone (whose rounding differs from the batch's)
    with run_server(gemma_path, tmp_path, "-c", "512", "-np", "2", "-b", "32", "-t", "1", "-n", "48") as srv:
        ids = httpx.post(f"{srv.url}/tokenize", json={"content": "I believe the meaning of life is",
                                                      "add_special": True}, headers=AUTH, timeout=30).json()["tokens"]
        one = httpx.post(f"{srv.url}/completion", json={"prompt": ids, **GREEDY}, headers=AUTH, timeout=120).json()
        for prompt in ([ids, ids], [ids, "I believe the meaning of life is"]):
            both = httpx.post(f"{srv.url}/completion", json={"prompt": prompt, **GREEDY}, headers=AUTH,
                              timeout=120).json()
            assert {b["id_slot"] for b in both} == {0, 1}
            assert both[0]["content"] == both[1]["content"] == one["content"]
