"""Ollama's API on the real server, driven by the official ``ollama`` Python client: ``list``, ``show``, ``chat``
(streamed and not, JSON and a pydantic schema through ``format``, tools), ``generate`` (``context``, ``raw``,
``num_ctx``), ``embed`` / ``embeddings``, ``ps``, ``pull`` (a local path, and a URL of an HTTP server on 127.0.0.1),
``copy`` and ``delete``, and the 400s for what the server does not do."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .models_fixtures import models_folder, run_models_server
from .server_fixtures import API_KEY, AUTH

ollama = pytest.importorskip("ollama")
N_CTX = 512
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GREEDY = {"temperature": 0, "repeat_penalty": 1.0}


@pytest.fixture(scope="module")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = models_folder(gemma_path, tmp_path_factory.mktemp("store"), "gemma")
    with run_models_server(tmp_path_factory.mktemp("ollama"), "--models-dir", str(folder), "-c", str(N_CTX),
                           "-t", "1", "--embedding", "--pooling", "mean") as srv:
        yield srv.url, folder


@pytest.fixture(scope="module")
def client(server):
    return ollama.Client(host=server[0], headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120)


@pytest.fixture(scope="module")
def web(gemma_path: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving the folder of the Gemma file (and a file that is not a model)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(gemma_path.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def test_version_tags_and_show(server, client):
    url, _ = server
    assert httpx.get(f"{url}/api/version").json()["version"].count(".") == 2  # public, as /health
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")  # the chat page stays
    (model,) = client.list().models
    assert model.model == "gemma" and model.size == 253113024 and model.digest == GEMMA_SHA256
    assert model.details.family == "gemma3" and model.details.format == "gguf"
    assert model.details.quantization_level == "Q4_K_M" and model.details.parameter_size.endswith("M")
    info = client.show("gemma")
    assert info.capabilities == ["completion", "tools", "embedding"]
    assert info.modelinfo["general.architecture"] == "gemma3" and info.modelinfo["gemma3.context_length"] == 32768
    assert info.modelinfo["general.parameter_count"] > 260e6
    assert "tokenizer.ggml.tokens" in info.modelinfo and info.modelinfo["tokenizer.ggml.tokens"] is None
    assert "<start_of_turn>" in info.template and 'stop "<end_of_turn>"' in info.parameters
    with pytest.raises(ollama.ResponseError) as err:
        client.show("missing")
    assert err.value.status_code == 404


def test_chat_streamed_and_whole_agree(client):
    messages = [{"role": "user", "content": "Name three colours."}]
    opts = {**GREEDY, "num_predict": 12}
    first = client.chat(model="gemma", messages=messages, options=opts)  # the cache state of the two compared below
    assert first.prompt_eval_count >= 1 and first.prompt_eval_duration > 0
    whole = client.chat(model="gemma", messages=messages, options=opts)
    chunks = list(client.chat(model="gemma", messages=messages, options=opts, stream=True))
    assert whole.message.role == "assistant" and whole.message.content
    assert "".join(c.message.content for c in chunks) == whole.message.content
    assert [c.done for c in chunks] == [False] * (len(chunks) - 1) + [True]
    last = chunks[-1]
    assert last.done_reason == whole.done_reason == "length" and last.eval_count == whole.eval_count == 12
    for r in (whole, last):  # the whole prompt came from the cache (its last logits are kept): nothing evaluated
        assert r.prompt_eval_count == 0 and r.prompt_eval_duration >= 0 and r.eval_duration > 0
        assert r.total_duration >= r.prompt_eval_duration + r.eval_duration and r.load_duration >= 0
    assert client.ps().models[0].context_length == N_CTX


def test_generate_context_raw_and_num_ctx(client):
    first = client.generate(model="gemma", prompt="The capital of France is", options={**GREEDY, "num_predict": 6})
    assert first.done and first.response and len(first.context) > 6
    more = client.generate(model="gemma", prompt="And of Spain?", context=first.context,
                           options={**GREEDY, "num_predict": 4})
    assert more.context[: len(first.context)] == first.context and more.eval_count == 4
    raw = client.generate(model="gemma", prompt="1, 2, 3,", raw=True, options={**GREEDY, "num_predict": 4})
    assert raw.context is None and raw.response.strip().startswith("4")
    capped = client.generate(model="gemma", prompt="Hi", options={**GREEDY, "num_ctx": 16})
    assert capped.done_reason == "length" and len(capped.context) == 16
    with pytest.raises(ollama.ResponseError, match="num_ctx"):
        client.generate(model="gemma", prompt="Hi", options={"num_ctx": N_CTX + 1})


def test_format_json_and_pydantic_schema(client):
    from pydantic import BaseModel, Field

    class Pet(BaseModel):
        name: str = Field(max_length=20)
        age: int = Field(ge=0, le=30)

    finished = 0
    for seed in range(4):  # the grammar holds whatever is sampled: every reply that ends is a JSON object
        r = client.chat(model="gemma", messages=[{"role": "user", "content": "Describe a cat as JSON."}],
                        format="json", options={"seed": seed, "repeat_penalty": 1.3, "num_predict": 150})
        assert r.message.content.lstrip().startswith("{")
        if r.done_reason == "stop":
            assert isinstance(json.loads(r.message.content), dict)
            finished += 1
    assert finished >= 1
    r = client.chat(model="gemma", messages=[{"role": "user", "content": "A pet as JSON with name and age."}],
                    format=Pet.model_json_schema(), options={"temperature": 0, "num_predict": 80})
    pet = Pet.model_validate_json(r.message.content)
    assert 0 <= pet.age <= 30


def test_tools_come_back_as_calls(client):
    def add(a: int, b: int) -> int:
        """Add two numbers.

        Args:
          a: the first number
          b: the second number
        """
        return a + b

    r = client.chat(model="gemma", messages=[{"role": "user", "content": "What is 2 + 3? Use the tool."}],
                    tools=[add], options={**GREEDY, "num_predict": 80})
    calls = r.message.tool_calls or []
    assert r.message.content or calls
    for call in calls:
        assert call.function.name == "add" and set(call.function.arguments) <= {"a", "b"}


def test_embed_matches_openai_endpoint(server, client):
    url, _ = server
    texts = ["Hello world", "Embeddings for retrieval."]
    got = client.embed(model="gemma", input=texts)
    assert len(got.embeddings) == 2 and all(len(v) == 640 for v in got.embeddings)
    ref = httpx.post(f"{url}/v1/embeddings", headers=AUTH, json={"model": "gemma", "input": texts}).json()["data"]
    for mine, theirs in zip(got.embeddings, ref, strict=True):
        assert max(abs(a - b) for a, b in zip(mine, theirs["embedding"], strict=True)) < 1e-6
        assert abs(math.sqrt(sum(x * x for x in mine)) - 1) < 1e-4
    legacy = client.embeddings(model="gemma", prompt="Hello world").embedding  # not normalised, as Ollama's
    single = client.embed(model="gemma", input="Hello world").embeddings[0]
    n = math.sqrt(sum(x * x for x in legacy))
    assert abs(n - 1) > 1e-3 and max(abs(x / n - y) for x, y in zip(legacy, single, strict=True)) < 1e-5
    with pytest.raises(ollama.ResponseError, match="dimensions"):
        client.embed(model="gemma", input="x", dimensions=8)


def test_pull_from_http_and_path_then_copy_and_delete(server, client, web, gemma_path):
    url, folder = server
    events = list(client.pull(f"{web}/{gemma_path.name}", stream=True))
    statuses = [e.status for e in events]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    progress = [e for e in events if e.completed is not None]
    assert progress and progress[-1].completed == progress[-1].total == 253113024
    assert [e.digest for e in events if e.status == "verifying sha256 digest"] == [f"sha256:{GEMMA_SHA256}"]
    pulled = gemma_path.name[: -len(".gguf")]
    assert {m.model for m in client.list().models} == {"gemma", pulled}
    assert client.generate(model=pulled, prompt="Hi", options={"num_predict": 1}).eval_count == 1
    client.copy(pulled, "gemma-copy")
    assert {m.model for m in client.list().models} == {"gemma", pulled, "gemma-copy"}
    client.delete(pulled)
    client.delete("gemma-copy")
    assert {m.model for m in client.list().models} == {"gemma"}
    assert not (folder / gemma_path.name).exists() and not list(folder.glob("*.part"))
    with pytest.raises(ollama.ResponseError) as err:
        client.delete(pulled)
    assert err.value.status_code == 404
    # a local path, whole; then a file that is not a model and a missing one
    assert client.pull(str(gemma_path)).status == "success"
    client.delete(pulled)
    bad = folder.parent / "not-a-model.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(ollama.ResponseError, match="GGUF"):
        list(client.pull(str(bad), stream=True))
    with pytest.raises(ollama.ResponseError, match="no such file"):
        client.pull(str(folder / "missing.gguf"))
    with pytest.raises(ollama.ResponseError, match="404"):
        client.pull(f"{web}/missing.gguf")
    assert {m.model for m in client.list().models} == {"gemma"} and not list(folder.glob("*.part"))
    digest = hashlib.sha256(gemma_path.read_bytes()).hexdigest()
    assert digest == GEMMA_SHA256


@pytest.mark.parametrize("body, word", [
    ({"images": ["aGk="]}, "images"),
    ({"template": "{{ .Prompt }}"}, "template"),
    ({"think": True}, "think"),
    ({"suffix": "end"}, "suffix"),
    ({"options": {"tfs_z": 0.5}}, "tfs_z"),
    ({"options": {"top_k": "many"}}, "top_k"),
    ({"format": "yaml"}, "format"),
    ({"format": {"type": "object", "properties": {"x": {"type": "strnig"}}}}, "format"),
    ({"raw": True, "system": "be brief"}, "system"),
    ({"keep_alive": "soon"}, "keep_alive"),
    ({"unknown_field": 1}, "unknown_field"),
])
def test_unsupported_fields_are_400_naming_them(server, body, word):
    url, _ = server
    r = httpx.post(f"{url}/api/generate", headers=AUTH, json={"model": "gemma", "prompt": "Hi", **body})
    assert r.status_code == 400 and word in r.json()["error"], r.text


def test_accepted_options_without_effect_and_model_required(server, client):
    url, _ = server
    r = client.generate(model="gemma", prompt="Hi", options={"num_thread": 4, "num_gpu": 0, "num_predict": 1})
    assert r.eval_count == 1
    assert httpx.post(f"{url}/api/chat", headers=AUTH, json={"messages": []}).json() == {"error": "model is required"}
    bad = httpx.post(f"{url}/api/chat", headers=AUTH, json={"model": "gemma", "messages": [
        {"role": "user", "content": "x", "images": ["aGk="]}]})
    assert bad.status_code == 400 and "images" in bad.json()["error"]


def test_one_model_server_speaks_ollama_too(gemma_path, tmp_path):
    """``-m`` once: the model is listed under the server's name, stays loaded whatever keep_alive says, and pull has
    no models folder to write to."""
    from .server_fixtures import run_server

    with run_server(gemma_path, tmp_path, "-c", "256", "-t", "1", "--alias", "gem") as srv:
        c = ollama.Client(host=srv.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120)
        assert [m.model for m in c.list().models] == ["gem"]
        assert c.show("gem:latest").details.family == "gemma3"
        assert c.generate(model="gem", prompt="Hi", keep_alive=0, options={"num_predict": 2}).eval_count == 2
        (loaded,) = c.ps().models
        assert loaded.model == "gem" and loaded.expires_at.year == 9999
        with pytest.raises(ollama.ResponseError, match="models-dir"):
            c.pull(str(gemma_path))
