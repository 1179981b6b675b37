"""``emberllm serve`` end to end: the real server (uvicorn in a subprocess) with the Gemma model, driven by the
official ``openai`` client and by httpx; greedy output compared with the in-process engine."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .server_fixtures import API_KEY, AUTH, run_server

N_CTX = 256
MAX_BODY = 65536
FRESH = {"cache_prompt": False}  # see _greedy


@pytest.fixture(scope="module")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running ``emberllm serve`` (killed at teardown; its log goes to a file, not a pipe)."""
    with run_server(gemma_path, tmp_path_factory.mktemp("server"), "-c", str(N_CTX), "-t", "1", "--metrics",
                    "--max-body-bytes", str(MAX_BODY), "--alias", "gemma-test") as srv:
        yield srv.url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=AUTH, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def engine(gemma_path: Path):
    from emberllm.runtime.model import Model

    with Model(gemma_path, n_ctx=N_CTX, n_threads=1) as model:
        yield model


@pytest.fixture(scope="module")
def oai(server: str):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0, timeout=60)


def _greedy(engine, prompt: str | list[int], n: int) -> str:
    """Greedy text from a cold cache.  Greedy output compared with the server always evaluates the whole prompt
    on both sides (``cache_prompt: false`` there): a reused prefix evaluates the rest of the prompt in a different
    batch shape, which can flip a near-tie between the two most likely tokens."""
    engine.sequence.clear()
    return "".join(s.text for s in engine.generate(prompt, n_predict=n, temperature=0))


def _sse(lines: Iterator[str]) -> list[dict]:
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ") and line != "data: [DONE]"]


def _healthy(client: httpx.Client) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text


# -- native endpoints -------------------------------------------------------------------------------------


def test_health_is_open_and_models_lists_alias(server, client):
    assert httpx.get(f"{server}/health").json() == {"status": "ok", "slots_idle": 1, "slots_processing": 0}
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "gemma-test"


def test_completion_greedy_equals_engine(client, engine):
    prompt = "The capital of France is"
    expected = _greedy(engine, prompt, 12)
    body = client.post("/completion", json={"prompt": prompt, "n_predict": 12, "temperature": 0, **FRESH}).json()
    assert body["content"] == expected
    assert body["stop"] is True and body["stop_type"] == "limit" and body["tokens_predicted"] == 12
    assert body["tokens_evaluated"] == len(engine.tokenize(prompt)) and body["truncated"] is False
    assert body["timings"]["predicted_n"] == 12 and body["generation_settings"]["n_predict"] == 12

    with client.stream("POST", "/completion",
                       json={"prompt": prompt, "n_predict": 12, "temperature": 0, "stream": True, **FRESH}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _sse(r.iter_lines())
    assert "".join(e["content"] for e in events) == expected
    assert events[-1]["stop"] is True and "timings" in events[-1] and not any(e["stop"] for e in events[:-1])
    again = client.post("/completion", json={"prompt": prompt, "n_predict": 1}).json()
    # the whole prompt came from the cache: its last token's logits are kept with the slot, nothing is evaluated
    assert again["tokens_cached"] == len(engine.tokenize(prompt)) and again["timings"]["prompt_n"] == 0


def test_completion_token_prompt_stop_word_and_probs(client, engine):
    ids = engine.tokenize("The capital of France is")
    full = _greedy(engine, "The capital of France is", 8)
    word = full.split()[1]
    body = client.post("/completion", json={"prompt": ids, "n_predict": 8, "temperature": 0, "stop": [word],
                                            "n_probs": 2, **FRESH}).json()
    assert body["stop_type"] == "word" and body["stopping_word"] == word
    assert body["content"] == full[: full.index(word)]
    probs = body["completion_probabilities"]
    assert probs and len(probs[0]["top_logprobs"]) == 2 and probs[0]["logprob"] <= 0


def test_tokenize_detokenize_match_engine(client, engine):
    text = "Hello world, émigré 東京"
    assert client.post("/tokenize", json={"content": text}).json()["tokens"] == engine.tokenize(text, False)
    with_bos = client.post("/tokenize", json={"content": text, "add_special": True}).json()["tokens"]
    assert with_bos == engine.tokenize(text)
    pieces = client.post("/tokenize", json={"content": "Hello world", "with_pieces": True}).json()["tokens"]
    assert [p["piece"] for p in pieces] == ["Hello", " world"]
    assert client.post("/detokenize", json={"tokens": engine.tokenize(text, False)}).json()["content"] == text


def test_apply_template_props_slots_metrics(client, engine):
    messages = [{"role": "user", "content": "Hi"}]
    assert client.post("/apply-template", json={"messages": messages}).json()["prompt"] == \
        engine.apply_chat_template(messages)
    # llama-server's prefill rules: add_generation_prompt honoured; a final assistant message is continued from
    # inside it (the prompt ends with its content); two of them, or a continuation with a generation prompt, are 400s
    no_gen = client.post("/apply-template", json={"messages": messages, "add_generation_prompt": False})
    assert no_gen.json()["prompt"] == engine.apply_chat_template(messages, add_generation_prompt=False)
    assert no_gen.json()["prompt"] != engine.apply_chat_template(messages)
    prefill = [*messages, {"role": "assistant", "content": "The answer is"}]
    assert client.post("/apply-template", json={"messages": prefill}).json()["prompt"].endswith("The answer is")
    for body, word in (({"messages": [*prefill, {"role": "assistant", "content": "x"}]}, "2 or more assistant"),
                       ({"messages": prefill, "continue_final_message": True}, "Cannot set both"),
                       ({"messages": messages, "continue_final_message": "bogus"}, "continue_final_message")):
        r = client.post("/apply-template", json=body)
        assert r.status_code == 400 and word in r.json()["error"]["message"], r.text
        r = client.post("/v1/chat/completions", json={**body, "max_tokens": 1})
        assert r.status_code == 400 and word in r.json()["error"]["message"], r.text
    continued = client.post("/v1/chat/completions", json={"messages": prefill, "max_tokens": 6, "temperature": 0})
    engine.sequence.clear()
    text = engine.chat_template.render_prompt(prefill, add_generation_prompt=False, continue_final_message=True)
    want = "".join(s.text for s in engine.generate(text, n_predict=6, temperature=0))
    assert continued.json()["choices"][0]["message"]["content"] == want
    props = client.get("/props").json()
    assert props["default_generation_settings"]["n_ctx"] == N_CTX and props["total_slots"] == 1
    assert client.get("/slots").json()[0]["id"] == 0
    metrics = client.get("/metrics")
    assert 0 < time.time() - int(metrics.headers["Process-Start-Time-Unix"]) < 3600  # llama-server's header
    text = metrics.text
    assert "llamacpp:tokens_predicted_total" in text and "# TYPE llamacpp:prompt_tokens_total counter" in text


# -- OpenAI endpoints --------------------------------------------------------------------------------------


def test_openai_chat_non_streaming_and_streaming(oai, engine):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    engine.sequence.clear()
    expected = "".join(s.text for s in engine.chat(messages, n_predict=8, temperature=0))
    res = oai.chat.completions.create(model="gemma-test", messages=messages, max_tokens=8, temperature=0,
                                      logprobs=True, top_logprobs=2, extra_body=FRESH)
    choice = res.choices[0]
    assert choice.message.content == expected and choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length") and res.usage.completion_tokens <= 8
    assert res.usage.prompt_tokens == len(engine.tokenize(engine.apply_chat_template(messages)))
    assert choice.logprobs.content and len(choice.logprobs.content[0].top_logprobs) == 2

    stream = oai.chat.completions.create(model="gemma-test", messages=messages, max_tokens=8, temperature=0,
                                         stream=True, stream_options={"include_usage": True}, extra_body=FRESH)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == \
        [choice.finish_reason]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == res.usage.completion_tokens


def test_openai_completions(oai, engine):
    prompt = "The capital of France is"
    expected = _greedy(engine, prompt, 6)
    res = oai.completions.create(model="gemma-test", prompt=prompt, max_tokens=6, temperature=0, seed=1,
                                 extra_body=FRESH)
    assert res.choices[0].text == expected and res.choices[0].finish_reason == "length"
    assert res.usage.completion_tokens == 6
    text = "".join(c.choices[0].text for c in oai.completions.create(
        model="gemma-test", prompt=prompt, max_tokens=6, temperature=0, stream=True, extra_body=FRESH) if c.choices)
    assert text == expected


def test_openai_error_shape_through_client(oai):
    openai = pytest.importorskip("openai")
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="gemma-test", messages=[{"role": "user", "content": "x"}], n=17)
    assert "n:" in info.value.body["message"]


TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}


@pytest.mark.parametrize("field, extra", [
    ("functions", {"functions": [TOOL["function"]]}),
    ("function_call", {"function_call": {"name": "get_weather"}}),
    ("tool_choice", {"tool_choice": "required"}),
])
def test_unhonoured_tool_fields_are_refused_not_ignored(oai, field, extra):
    """The deprecated ``functions`` / ``function_call``, and a call required with no tools, get a 400 naming the
    field (never free text with a 200), through the official client.  (Tool calling: test_tool_calling.py.)"""
    openai = pytest.importorskip("openai")
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="gemma-test", messages=[{"role": "user", "content": "x"}], max_tokens=2,
                                    **extra)
    assert info.value.body["message"].startswith(f"{field}:")


def test_neutral_structured_fields_are_accepted(oai, client):
    res = oai.chat.completions.create(model="gemma-test", messages=[{"role": "user", "content": "x"}], max_tokens=2,
                                      response_format={"type": "text"}, tools=[], tool_choice="none")
    assert res.choices[0].finish_reason in ("length", "stop")
    # tools offered but forbidden by tool_choice "none": honoured (no tool is called), as llama-server does
    res = oai.chat.completions.create(model="gemma-test", messages=[{"role": "user", "content": "x"}], max_tokens=2,
                                      tools=[TOOL], tool_choice="none")
    assert res.choices[0].finish_reason in ("length", "stop") and not res.choices[0].message.tool_calls
    r = client.post("/completion", json={"prompt": "x", "n_predict": 1, "grammar": ""})
    assert r.status_code == 200


@pytest.mark.parametrize("path, body, field", [
    ("/completion", {"prompt": "x", "tools": [TOOL]}, "tools"),
    ("/v1/completions", {"prompt": "x", "tool_choice": "required"}, "tool_choice"),
])
def test_native_tool_fields_are_refused(client, path, body, field):
    r = client.post(path, json=body)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith(f"{field}:")
    _healthy(client)


def test_concurrent_streaming_chats_all_complete(server, engine):
    """Four clients at once on a one-slot server: they queue and each gets the engine's greedy reply."""
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    engine.sequence.clear()
    expected = "".join(s.text for s in engine.chat(messages, n_predict=4, temperature=0))
    results: list[str | BaseException] = [""] * 4

    def one(i: int) -> None:
        try:
            body = {"messages": messages, "max_tokens": 4, "temperature": 0, "stream": True, **FRESH}
            with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, headers=AUTH, timeout=60) as r:
                lines = list(r.iter_lines())
            assert "data: [DONE]" in lines
            results[i] = "".join(c["choices"][0]["delta"].get("content") or "" for c in _sse(iter(lines)))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [expected] * 4


# -- bad input ---------------------------------------------------------------------------------------------

BAD_BODIES = [
    ("/completion", b"{not json", 400, "malformed JSON"),
    ("/completion", b"[1, 2]", 400, "JSON object"),
    ("/completion", b'{"prompt": "x", "temperature": "hot"}', 400, "temperature"),
    ("/completion", b'{"prompt": "x", "n_predict": 1.5}', 400, "n_predict"),
    ("/completion", b'{"prompt": {"a": 1}}', 400, "prompt"),
    ("/completion", b'{"prompt": [999999999]}', 400, "prompt"),
    ("/completion", b'{"prompt": "x", "stream": "yes"}', 400, "stream"),
    ("/tokenize", b'{"content": 5}', 400, "content"),
    ("/detokenize", b'{"tokens": ["a"]}', 400, "tokens"),
    ("/v1/chat/completions", b'{"messages": []}', 400, "messages"),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "top_logprobs": 99, '
                             b'"logprobs": true}', 400, "top_logprobs"),
    ("/v1/completions", b'{"prompt": "x", "max_tokens": -5}', 400, "max_tokens"),
]


@pytest.mark.parametrize(("path", "raw", "status", "needle"), BAD_BODIES)
def test_bad_bodies_are_4xx_naming_the_problem(client, path, raw, status, needle):
    r = client.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert needle in error["message"] and error["type"] == "invalid_request_error" and error["code"] == status
    _healthy(client)


def test_infill_without_fim_tokens_is_400(client):
    r = client.post("/infill", json={"input_prefix": "def f(", "input_suffix": "):\n", "n_predict": 2})
    assert r.status_code == 400 and "FIM" in r.json()["error"]["message"]
    _healthy(client)


def test_api_key_required(server, client):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Api-Key": "wrong"}):
        r = httpx.post(f"{server}/completion", json={"prompt": "x", "n_predict": 1}, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    r = httpx.post(f"{server}/tokenize", json={"content": "x"}, headers={"X-Api-Key": API_KEY})
    assert r.status_code == 200
    _healthy(client)


def test_body_too_large_is_413(client):
    r = client.post("/completion", json={"prompt": "a" * (MAX_BODY + 10)})
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    _healthy(client)


def test_prompt_longer_than_context_is_400(client):
    for path, key in (("/completion", "prompt"), ("/v1/completions", "prompt")):
        r = client.post(path, json={key: "word " * (N_CTX + 10), "max_tokens": 1, "n_predict": 1})
        assert r.status_code == 400 and "context" in r.json()["error"]["message"]
    _healthy(client)


def test_unknown_route_is_404_and_static_files_are_safe(server, client):
    r = client.get("/no/such/route")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and "<title>emberllm</title>" in page.text
    for path in ("/../pyproject.toml", "/%2e%2e/pyproject.toml", "/..%2fpyproject.toml"):
        with socket.create_connection(("127.0.0.1", int(server.rsplit(":", 1)[1]))) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        assert b"[project]" not in reply and reply.split(b" ", 2)[1] in (b"400", b"404")
    _healthy(client)


def test_client_disconnect_cancels_generation(client):
    body = {"prompt": "Once upon a time", "n_predict": 2000, "ignore_eos": True, "stream": True}
    with client.stream("POST", "/completion", json=body) as r:
        seen = 0
        for line in r.iter_lines():
            seen += line.startswith("data: ")
            if seen == 3:
                break
    deadline = time.monotonic() + 5
    while client.get("/slots").json()[0]["is_processing"]:
        assert time.monotonic() < deadline, "generation still running after the client left"
        time.sleep(0.05)
    after = client.post("/completion", json={"prompt": "Hi", "n_predict": 2}).json()
    assert after["tokens_predicted"] == 2
    _healthy(client)


def test_client_disconnect_cancels_a_non_streamed_generation(server, client):
    """A non-streamed request whose client gives up is cancelled too (llama-server's behaviour): the slot is free
    long before the ~250 tokens it asked for would take, and the next request is served."""
    for path, body in (("/completion", {"prompt": "Once upon a time", "n_predict": 250}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Tell a story"}],
                                                 "max_tokens": 250})):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server}{path}", json={**body, "ignore_eos": True}, headers=AUTH, timeout=0.5)
        deadline = time.monotonic() + 1.5
        while client.get("/slots").json()[0]["is_processing"]:
            assert time.monotonic() < deadline, f"{path}: still generating after the client left"
            time.sleep(0.05)
        assert client.post("/completion", json={"prompt": "Hi", "n_predict": 2}).json()["tokens_predicted"] == 2


# -- in-process pieces -------------------------------------------------------------------------------------


def test_health_is_503_while_loading(gemma_path):
    from starlette.testclient import TestClient

    from emberllm.edge_server import ServerConfig, build_app
    from emberllm.runtime.model import Model

    release = threading.Event()

    def slow_load() -> Model:
        release.wait(30)
        return Model(gemma_path, n_ctx=64, n_threads=1, warmup=False)

    app = build_app(ServerConfig(model_path=gemma_path, webui=False, max_queue=0), model_factory=slow_load)
    with TestClient(app) as tc:
        r = tc.get("/health")
        assert r.status_code == 503 and r.json()["error"]["type"] == "unavailable_error"
        assert tc.post("/completion", json={"prompt": "x"}).status_code == 503
        release.set()
        deadline = time.monotonic() + 30
        while tc.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert tc.get("/").status_code == 404  # --no-webui
        busy = tc.post("/completion", json={"prompt": "x", "n_predict": 1})  # --max-queue 0: always full
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert tc.get("/health").status_code == 200


def test_flags_from_environment(monkeypatch, tmp_path):
    import argparse

    from emberllm.edge_server.cli import add_parser, config_from_args

    model = tmp_path / "m.gguf"
    model.write_bytes(b"")
    env = {"EMBERLLM_ARG_PORT": "9123", "EMBERLLM_ARG_API_KEY": "k", "EMBERLLM_ARG_NO_WEBUI": "1",
           "EMBERLLM_ARG_MODEL": str(model), "EMBERLLM_ARG_PARALLEL": "2"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "--port", "9999"])
    cfg = config_from_args(args)
    assert args.port == 9999  # the command line wins
    assert cfg.api_key == "k" and cfg.webui is False and cfg.n_parallel == 2 and cfg.model_path == model
    monkeypatch.setenv("EMBERLLM_ARG_PARALLEL", "0")
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    with pytest.raises(ValueError, match="parallel"):
        config_from_args(parser.parse_args(["serve"]))
    assert os.environ["EMBERLLM_ARG_PORT"] == "9123"


def test_llama_server_flags_and_environment(monkeypatch, tmp_path):
    import argparse

    from emberllm.edge_server.cli import add_parser, config_from_args
    from emberllm.edge_server.llama_flags import notes

    def parse(*argv: str) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        add_parser(parser.add_subparsers())
        return parser.parse_args(["serve", *argv])

    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"")
    args = parse("-m", str(model), "-b", "2048", "-ub", "256", "--chat-template-file", str(template), "--no-mmap",
                 "-a", "gem", "-ngl", "99", "-fa", "--jinja", "--no-ui")
    cfg = config_from_args(args)
    assert cfg.n_batch == 256 and cfg.chat_template == template.read_text() and cfg.use_mmap is False
    assert cfg.alias == "gem" and cfg.webui is False
    assert cfg.n_gpu_layers == 99  # -ngl is real now (runtime/offload.py)
    assert [n.split(":")[0] for n in notes(args)] == ["-fa on", "--jinja"]
    # sampling flags on the server command line are every request's defaults (llama-server's), --context-shift, -v
    cfg = config_from_args(parse("-m", str(model), "--temp", "0.3", "--top-k", "7", "-s", "42", "--context-shift",
                                 "-v", "--repeat-penalty", "1.1"))
    assert (cfg.sampling.temperature, cfg.sampling.top_k, cfg.sampling.seed) == (0.3, 7, 42)
    assert cfg.sampling.repeat_penalty == 1.1 and cfg.context_shift and cfg.verbose
    # the flags llama.cpp's own server tests pass: accepted with a one-line note each, or refused naming the feature
    args = parse("-m", str(model), "--offline", "--no-jinja", "--kv-unified", "--spec-type", "ngram",
                 "--backend_sampling")
    assert [n.split(":")[0] for n in notes(args)] == ["--offline", "--no-jinja", "--backend-sampling", "--spec-type"]
    assert config_from_args(args).kv_unified and config_from_args(args).kv_pool == 4096
    for flag, word in (("--lora", "LoRA"), ("-md", "draft"), ("--mmproj-url", "multimodal")):
        with pytest.raises(ValueError, match=word):
            config_from_args(parse("-m", str(model), flag, "x"))
    args = parse("-m", str(model), "--no-slots", "--cache-ram", "100", "--no-cache-idle-slots")
    cfg = config_from_args(args)
    assert cfg.slots_endpoint is False and cfg.prompt_cache_bytes == 100 << 20 and not cfg.cache_idle_slots
    assert notes(args) == []
    assert config_from_args(parse("-m", str(model), "--cache-ram", "0")).prompt_cache_bytes == 0
    with pytest.raises(ValueError, match="chat-template-file"):
        config_from_args(parse("-m", str(model), "--chat-template-file", str(tmp_path / "missing.jinja")))
    monkeypatch.setenv("LLAMA_ARG_CTX_SIZE", "0")
    monkeypatch.setenv("LLAMA_ARG_N_PARALLEL", "3")
    monkeypatch.setenv("LLAMA_API_KEY", "from-llama")
    monkeypatch.setenv("EMBERLLM_ARG_PARALLEL", "2")  # EMBERLLM_ARG_* wins over LLAMA_ARG_*
    monkeypatch.setenv("LLAMA_ARG_N_GPU_LAYERS", "all")
    cfg = config_from_args(parse("-m", str(model)))
    assert cfg.n_ctx == 0 and cfg.n_parallel == 2 and cfg.api_key == "from-llama"
    assert cfg.n_gpu_layers >= 1 << 20
    monkeypatch.setenv("LLAMA_ARG_N_GPU_LAYERS", "lots")
    with pytest.raises(SystemExit):
        parse("-m", str(model))


def test_timeout_stops_a_generation(gemma_path):
    from starlette.testclient import TestClient

    from emberllm.edge_server import ServerConfig, build_app

    app = build_app(ServerConfig(model_path=gemma_path, n_ctx=4096, n_threads=1, timeout_s=0.2, webui=False))
    with TestClient(app) as tc:
        deadline = time.monotonic() + 30
        while tc.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        body = tc.post("/completion", json={"prompt": "Hi", "n_predict": 3000, "ignore_eos": True}).json()
        assert body["stop_type"] == "none" and 0 < body["tokens_predicted"] < 3000


def test_verbose_responses_carry_the_native_result(client, engine):
    """llama-server's ``verbose``: ``__verbose`` is the native result, its prompt the tokenized prompt with BOS."""
    messages = [{"role": "system", "content": "Book"}, {"role": "user", "content": "What is the best book"}]
    for path, body in (("/v1/chat/completions", {"messages": messages}), ("/v1/completions", {"prompt": "Hi"})):
        plain = client.post(path, json={**body, "max_tokens": 2})
        assert "__verbose" not in plain.json()
        r = client.post(path, json={**body, "max_tokens": 2, "verbose": True}).json()
        verbose = r["__verbose"]
        want = engine.apply_chat_template(messages) if path.endswith("chat/completions") else "Hi"
        assert verbose["prompt"] == engine.detokenize(engine.tokenize(want), special=True)
        assert verbose["prompt"].startswith("<bos>") and verbose["tokens_predicted"] == 2
        assert verbose["content"] == (r["choices"][0].get("message") or {}).get("content", r["choices"][0].get("text"))
        bad = client.post(path, json={**body, "max_tokens": 2, "verbose": True, "stream": True})
        assert bad.status_code == 400 and "verbose" in bad.json()["error"]["message"]


def test_completion_says_whether_the_reply_has_a_line_break(client):
    """llama-server's ``has_new_line`` in /completion's final result, streamed and not."""
    for prompt in ("def fibonacci(n):\n", "The capital of France is"):
        body = {"prompt": prompt, "n_predict": 12, "temperature": 0}
        whole = client.post("/completion", json=body).json()
        assert whole["has_new_line"] is ("\n" in whole["content"])
        with client.stream("POST", "/completion", json={**body, "stream": True}) as r:
            chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
        assert chunks[-1]["stop"] is True and chunks[-1]["has_new_line"] is ("\n" in whole["content"])


def test_completion_prompt_forms_and_batches(client, engine):
    """llama-server's prompt forms on /completion: token ids, {"prompt_string"}, ids mixed with text in one sequence
    (text tokenized in place, BOS only before leading text), and a batch of prompts answered as a list in order."""
    text = "I believe the meaning of life is"
    ids = engine.tokenize(text)
    greedy = {"n_predict": 6, "temperature": 0}
    want = client.post("/completion", json={"prompt": text, **greedy}).json()["content"]
    assert client.post("/completion", json={"prompt": ids, **greedy}).json()["content"] == want
    assert client.post("/completion", json={"prompt": {"prompt_string": text}, **greedy}).json()["content"] == want
    batch = client.post("/completion", json={"prompt": [ids, text, {"prompt_string": text}, "Once upon"], **greedy})
    assert batch.status_code == 200, batch.text
    results = batch.json()
    assert [r["index"] for r in results] == [0, 1, 2, 3] and [r["content"] for r in results[:3]] == [want] * 3
    assert results[3]["content"] == client.post("/completion", json={"prompt": "Once upon", **greedy}).json()["content"]
    mixed = [ids[0], "I believe", *engine.tokenize(" the meaning of life is", add_special=False)]
    r = client.post("/completion", json={"prompt": mixed, **greedy}).json()
    assert r["tokens_evaluated"] == len(ids) and r["content"] == want
    for body, word in (({"prompt": {"prompt_string": text, "multimodal_data": ["x"]}}, "multimodal"),
                       ({"prompt": [ids, text], "stream": True}, "batch"),
                       ({"prompt": [["a", "b"]]}, "prompt[0]"),
                       ({"prompt": {"text": text}}, "prompt.text")):
        bad = client.post("/completion", json={**body, **greedy})
        assert bad.status_code == 400 and word in bad.json()["error"]["message"], bad.text


def test_chat_input_tokens_counts_the_prompt(client):
    """llama-server's /v1/chat/completions/input_tokens: the prompt's token count, the one a completion reports."""
    messages = [{"role": "system", "content": "Book"}, {"role": "user", "content": "What is the best book"}]
    for path in ("/v1/chat/completions/input_tokens", "/chat/completions/input_tokens"):
        n = client.post(path, json={"messages": messages}).json()["input_tokens"]
        used = client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 1}).json()
        assert n == used["usage"]["prompt_tokens"] > 5
    bad = client.post("/v1/chat/completions/input_tokens", json={"messages": []})
    assert bad.status_code == 400 and "messages" in bad.json()["error"]["message"]


def test_several_host_addresses(gemma_path, tmp_path):
    """llama-server's comma-separated --host: one server listening on each address."""
    with run_server(gemma_path, tmp_path, "-c", "256", "-t", "1", "--host", "127.0.0.1,127.0.0.2") as srv:
        port = srv.url.rsplit(":", 1)[1]
        for host in ("127.0.0.1", "127.0.0.2"):
            assert httpx.get(f"http://{host}:{port}/health", timeout=10).json()["status"] == "ok"


def test_generation_settings_logit_bias_as_llama_server(client, engine):
    """generation_settings.logit_bias is llama-server's list of {"bias", "token"} (-inf as null); ignore_eos lists the
    end-of-generation tokens it bans, and without it they are not there."""
    body = {"prompt": "Once upon a time", "n_predict": 4, "temperature": 0}
    banned = client.post("/completion", json={**body, "ignore_eos": True, "logit_bias": [[15, 1.5]]}).json()
    bias = banned["generation_settings"]["logit_bias"]
    assert {"bias": 1.5, "token": 15} in bias
    eog = [b["token"] for b in bias if b["bias"] is None]
    assert eog and all(engine.tokenizer.is_eog(t) for t in eog)
    plain = client.post("/completion", json=body).json()
    assert plain["generation_settings"]["logit_bias"] == []
