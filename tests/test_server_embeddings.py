"""The embeddings endpoints of the real server (``emberllm serve --embedding``) with the official ``openai`` client
and plain HTTP: OpenAI's ``/v1/embeddings`` and llama-server's ``/embedding``, their field checks, the pooling
``none`` shapes, the 501 without ``--embedding``, and embeddings running beside a streamed generation."""

from __future__ import annotations

import argparse
import base64
import json
import math
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .server_fixtures import API_KEY, AUTH, run_server

N_CTX = 512
TEXTS = ["Hello world", "The quick brown fox jumps over the lazy dog.", "Embeddings for retrieval."]


def norm(v: list[float]) -> float:
    return math.sqrt(math.fsum(x * x for x in v))


@pytest.fixture(scope="module")
def engine(gemma_path: Path):
    from emberllm.runtime.model import Model

    with Model(gemma_path, n_ctx=N_CTX // 2, n_threads=1) as model:
        yield model


@pytest.fixture(scope="module")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``--embedding --pooling mean`` with two slots."""
    with run_server(gemma_path, tmp_path_factory.mktemp("emb"), "-c", str(N_CTX), "-np", "2", "-t", "1",
                    "--embedding", "--pooling", "mean", "--alias", "gemma-emb") as srv:
        yield srv.url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=AUTH, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def oai(server: str):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0, timeout=120)


def test_openai_client_embeddings_are_model_embed(oai, engine):
    """The official client (base64 on the wire, its default) gets Model.embed's vectors, in order, with usage."""
    res = oai.embeddings.create(model="my-embedder", input=TEXTS)
    want = engine.embed(TEXTS, pooling="mean")
    assert [d.index for d in res.data] == [0, 1, 2] and res.model == "my-embedder" and res.object == "list"
    for got, exp in zip(res.data, want, strict=True):
        assert len(got.embedding) == engine.hp.n_embd
        assert max(abs(a - b) for a, b in zip(got.embedding, exp, strict=True)) < 1e-6
    n_tokens = sum(len(engine.tokenize(t)) for t in TEXTS)
    assert res.usage.prompt_tokens == n_tokens and res.usage.total_tokens == n_tokens
    single = oai.embeddings.create(model="m", input=TEXTS[0], encoding_format="float", user="someone",
                                   dimensions=engine.hp.n_embd)
    assert abs(norm(single.data[0].embedding) - 1.0) < 1e-6
    assert max(abs(a - b) for a, b in zip(single.data[0].embedding, engine.embed(TEXTS[0], pooling="mean"),
                                          strict=True)) < 1e-6


def test_openai_inputs_token_ids_and_base64(client, engine):
    ids = engine.tokenize(TEXTS[1])
    by_text = client.post("/v1/embeddings", json={"input": TEXTS[1]}).json()
    by_ids = client.post("/v1/embeddings", json={"input": ids}).json()
    by_lists = client.post("/v1/embeddings", json={"input": [ids, engine.tokenize(TEXTS[0])]}).json()
    assert by_ids["data"][0]["embedding"] == by_text["data"][0]["embedding"]
    assert len(by_lists["data"]) == 2
    assert by_lists["usage"]["prompt_tokens"] == len(ids) + len(engine.tokenize(TEXTS[0]))
    assert by_text["model"] == "gemma-emb"  # no model in the request: the server's alias
    b64 = client.post("/v1/embeddings", json={"input": TEXTS[1], "encoding_format": "base64"}).json()["data"][0]
    assert b64["encoding_format"] == "base64" and b64["object"] == "embedding"
    raw = base64.b64decode(b64["embedding"])
    floats = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert max(abs(a - b) for a, b in zip(floats, by_text["data"][0]["embedding"], strict=True)) < 1e-7
    raw_norm = client.post("/v1/embeddings", json={"input": TEXTS[1], "embd_normalize": -1}).json()
    assert norm(raw_norm["data"][0]["embedding"]) > 2.0


@pytest.mark.parametrize(("body", "field"), [
    ({"input": "x", "dimensions": 3}, "dimensions"),
    ({"input": "x", "dimensions": "640"}, "dimensions"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "x", "truncate": True}, "truncate"),
    ({"input": "x", "input_type": "query"}, "input_type"),
    ({"model": "m"}, "input"),
    ({"input": []}, "input"),
    ({"input": 5}, "input"),
    ({"input": ["ok", 5]}, "input[1]"),
    ({"input": [[2, 10**7]]}, "input"),
    ({"input": ["ok", "word " * 400]}, "input[1]"),
    ({"input": "x", "embd_normalize": "2"}, "embd_normalize"),
    ({"input": "x", "model": 3}, "model"),
    ({"input": "x", "user": 3}, "user"),
])
def test_openai_fields_are_honoured_or_refused(client, body, field):
    r = client.post("/v1/embeddings", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"].startswith(field), r.text


def test_llama_server_embedding_shapes(client, engine):
    """``/embedding`` (and ``/embeddings``, and ``/v1/embeddings`` given ``content``): per input ``{index,
    embedding: [vector]}``."""
    want = engine.embed(TEXTS[:2], pooling="mean")
    for path, key in (("/embedding", "content"), ("/embeddings", "content"), ("/v1/embeddings", "content"),
                      ("/embedding", "input")):
        body = client.post(path, json={key: TEXTS[:2]}).json()
        assert [b["index"] for b in body] == [0, 1], path
        for item, exp in zip(body, want, strict=True):
            assert len(item["embedding"]) == 1
            assert max(abs(a - b) for a, b in zip(item["embedding"][0], exp, strict=True)) < 1e-6
    one = client.post("/embedding", json={"content": TEXTS[0]}).json()
    assert len(one) == 1 and len(one[0]["embedding"][0]) == engine.hp.n_embd
    r = client.post("/embedding", json={"content": "x", "dimensions": 640})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("dimensions")
    r = client.post("/embedding", json={})
    assert r.status_code == 400 and "content" in r.json()["error"]["message"]


def test_embeddings_run_beside_a_streamed_generation(server, client, engine):
    """Embedding requests while a generation streams: they are answered while it still streams (the engine
    interleaves them, a micro-batch per loop turn), and the stream's greedy text is the one it has alone."""
    prompt = "Once upon a time, in a small village by the sea,"
    body = {"prompt": prompt, "n_predict": 96, "temperature": 0, "stream": True, "cache_prompt": False}
    alone = client.post("/completion", json={**body, "stream": False}).json()["content"]
    results: list[int] = []
    answered: list[float] = []

    def embed_many() -> None:
        with httpx.Client(base_url=server, headers=AUTH, timeout=120) as c:
            for _ in range(4):
                r = c.post("/v1/embeddings", json={"input": TEXTS + ["long " * 200]})
                results.append(r.status_code)
                answered.append(time.monotonic())

    pieces = []
    with client.stream("POST", "/completion", json=body) as r:
        thread = threading.Thread(target=embed_many)
        started = False
        for line in r.iter_lines():
            if line.startswith("data: "):
                pieces.append(json.loads(line[6:])["content"])
                if not started:
                    thread.start()
                    started = True
    stream_end = time.monotonic()
    thread.join(timeout=120)
    assert results == [200] * 4
    assert answered[0] < stream_end, "the embeddings waited for the generation to finish"
    assert "".join(pieces) == alone


@pytest.fixture(scope="module")
def none_server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``--embeddings`` without ``--pooling``: Gemma's GGUF states none, so ``none`` (llama.cpp's default); with
    ``--rerank`` too."""
    with run_server(gemma_path, tmp_path_factory.mktemp("emb-none"), "-c", "256", "-t", "1", "--embeddings",
                    "--rerank") as srv:
        yield srv.url


def test_pooling_none_is_per_token_and_not_openai(none_server, engine):
    with httpx.Client(base_url=none_server, headers=AUTH, timeout=120) as c:
        r = c.post("/v1/embeddings", json={"input": TEXTS[0]})
        assert r.status_code == 400 and "Pooling type 'none' is not OAI compatible" in r.json()["error"]["message"]
        body = c.post("/embedding", json={"content": TEXTS[0]}).json()
    rows = body[0]["embedding"]
    want = engine.embed(TEXTS[0], pooling="none", normalize=-1)
    assert len(rows) == len(engine.tokenize(TEXTS[0])) == len(want)
    assert all(norm(r) > 2.0 for r in rows)  # llama-server leaves per-token vectors unnormalised
    assert max(abs(a - b) for r, w in zip(rows, want, strict=True) for a, b in zip(r, w, strict=True)) < 1e-4


def test_without_embedding_flag_the_endpoints_are_501(gemma_path, tmp_path):
    with run_server(gemma_path, tmp_path, "-c", "256", "-t", "1") as srv:
        for path in ("/v1/embeddings", "/embedding"):
            r = httpx.post(f"{srv.url}{path}", json={"input": "x"}, headers=AUTH, timeout=60)
            assert r.status_code == 501 and "--embeddings" in r.json()["error"]["message"]
        r = httpx.post(f"{srv.url}/rerank", json={"query": "x", "documents": ["y"]}, headers=AUTH, timeout=60)
        assert r.status_code == 501 and "--reranking" in r.json()["error"]["message"]


def test_embedding_flags(tmp_path):
    from emberllm.edge_server.cli import add_parser, apply_env_defaults, config_from_args

    model = tmp_path / "m.gguf"
    model.write_bytes(b"")
    parser = argparse.ArgumentParser()
    serve = add_parser(parser.add_subparsers())
    apply_env_defaults(serve, {"LLAMA_ARG_EMBEDDINGS": "1", "LLAMA_ARG_POOLING": "last"})
    cfg = config_from_args(parser.parse_args(["serve", "-m", str(model), "--embd-normalize", "-1"]))
    assert cfg.embeddings is True and cfg.pooling == "last" and cfg.embd_normalize == -1
    cfg = config_from_args(parser.parse_args(["serve", "-m", str(model), "--pooling", "rank"]))
    assert cfg.rerank is True and cfg.pooling is None  # llama-server's --pooling rank is its --rerank


DOCS = ["A machine is a physical system that uses power to apply forces.",
        "Machine learning is a field of study in artificial intelligence.",
        "Paris, capitale de la France, est une grande ville europeenne."]


def test_rerank_is_llamacpp_rank_pooling(none_server, engine):
    """/rerank (Jina's shape) and TEI's: each document's score is llama.cpp's rank pooling of its prompt (BOS, query,
    document: Gemma's vocabulary adds no EOS/SEP) without a classification head, the last token's first normed
    hidden component; sorted best first, cut to top_n; usage counts the prompts' tokens; bad bodies are 400s."""
    from emberllm.edge_server.rerank import rerank_prompt

    query = "Machine learning is"
    prompts = [rerank_prompt(engine, query, d) for d in DOCS]
    assert prompts[0] == engine.tokenize(query) + engine.tokenize(DOCS[0], add_special=False)
    want = [engine.embed(p, pooling="last", normalize=-1)[0] for p in prompts]
    with httpx.Client(base_url=none_server, headers=AUTH, timeout=120) as c:
        for path in ("/rerank", "/v1/rerank", "/reranking"):
            body = c.post(path, json={"query": query, "documents": DOCS}).json()
            got = {r["index"]: r["relevance_score"] for r in body["results"]}
            assert [r["index"] for r in body["results"]] == sorted(range(3), key=lambda i: -want[i])
            assert all(abs(got[i] - want[i]) < 1e-3 * max(1.0, abs(want[i])) for i in range(3)), (got, want)
            assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] == sum(map(len, prompts))
        top = c.post("/rerank", json={"query": query, "documents": DOCS, "top_n": 2}).json()["results"]
        assert len(top) == 2
        tei = c.post("/rerank", json={"query": query, "texts": DOCS, "return_text": True}).json()
        assert isinstance(tei, list) and {r["text"] for r in tei} == set(DOCS) and "score" in tei[0]
        for bad in ([], None, 123, [1, 2, 3]):
            r = c.post("/rerank", json={"query": query, "documents": bad})
            assert r.status_code == 400 and "documents" in r.json()["error"]["message"]
        r = c.post("/rerank", json={"query": query, "documents": DOCS, "rank_fields": ["x"]})
        assert r.status_code == 400 and "rank_fields" in r.json()["error"]["message"]
