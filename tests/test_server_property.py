"""Property-based robustness of ``emberllm serve``: hypothesis builds request bodies for the JSON endpoints from the
server's own OpenAPI description (``GET /openapi.json``), with the right types, wrong types, out-of-range numbers,
random JSON and broken bytes mixed in, and every answer must be a 2xx or a 4xx (never a 5xx, never a dropped
connection) with ``/health`` still 200 afterwards.

Generation stays cheap: the server runs with ``-n 2`` (no request generates more than two tokens) and a small
context, so a "valid" body costs one short prompt and two decode steps.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from emberllm.edge_server.openapi import REQUESTS, openapi_schema

from .server_fixtures import AUTH, run_server

N_CTX = 128
N_PREDICT_CAP = 2
MAX_BODY = 16384
N_VOCAB = 262144  # Gemma 3's vocabulary: token ids on both sides of the edge
EXAMPLES_PER_PATH = 100  # x 6 paths = 600 generated bodies, plus the raw-bytes test

FUZZ = settings(max_examples=EXAMPLES_PER_PATH, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_server(gemma_path, tmp_path_factory.mktemp("server"), "-c", str(N_CTX), "-t", "2",
                    "-n", str(N_PREDICT_CAP), "--max-body-bytes", str(MAX_BODY), "--no-webui") as srv:
        yield srv.url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=AUTH, timeout=60) as c:
        yield c


# -- strategies --------------------------------------------------------------------------------------------

SHORT_TEXT = st.text(max_size=24)
JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.integers(-3, 3)
                | st.floats(allow_nan=True, allow_infinity=True) | SHORT_TEXT)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(SHORT_TEXT, inner, max_size=4), max_leaves=12)


def _edge_numbers(schema: dict[str, Any], integer: bool, strict: bool) -> st.SearchStrategy[Any]:
    """Numbers in range, on the bounds and just past them (``strict``: in range only)."""
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    hi = schema.get("maximum")
    if strict:
        low = lo if lo is not None else -4
        high = min(hi, low + 64) if hi is not None else low + 64
        if integer:
            return st.integers(low, high)
        return st.floats(low, high, exclude_min="exclusiveMinimum" in schema)
    edges: list[Any] = [0, 1, -1, 2**31, 2**63, -(2**31)]
    for bound in (lo, hi):
        if bound is not None:
            edges += [bound, bound - 1, bound + 1]
    if integer:
        return st.sampled_from(edges) | st.integers(lo if lo is not None else -(2**40), hi if hi is not None else 2**40)
    return (st.sampled_from([float(e) for e in edges] + [0.5, math.inf, -math.inf, math.nan, 1e308])
            | st.floats(lo if lo is not None else -1e6, hi if hi is not None else 1e6, allow_nan=False))


def from_schema(schema: dict[str, Any], depth: int = 0, strict: bool = False) -> st.SearchStrategy[Any]:
    """Values matching ``schema`` most of the time, always with ``strict`` (the OpenAPI subset that
    ``edge_server.openapi`` uses)."""
    if "const" in schema:
        return st.just(schema["const"])
    if "oneOf" in schema:
        return st.one_of([from_schema(s, depth, strict) for s in schema["oneOf"]])
    kinds = schema.get("type", "object")
    if isinstance(kinds, list):
        return st.one_of([from_schema({**schema, "type": k}, depth, strict) for k in kinds])
    if kinds == "null":
        return st.none()
    if kinds == "boolean":
        return st.booleans()
    if kinds == "integer":
        return _edge_numbers(schema, True, strict)
    if kinds == "number":
        return _edge_numbers(schema, False, strict)
    if kinds == "string":
        return SHORT_TEXT | st.sampled_from(["", "Hello", "<start_of_turn>", "user", "\n", "é東"])
    if kinds == "array":
        items = schema.get("items", {})
        if items == {"type": "integer", "minimum": 0}:  # token ids
            item = st.integers(0, N_VOCAB - 1)
            if not strict:
                item |= st.sampled_from([-1, N_VOCAB, 2**40, 2])
        else:
            item = from_schema(items, depth + 1, strict) if items else JSON_VALUES
        return st.lists(item, min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 4), 4))
    # object
    props = schema.get("properties", {})
    if not props:
        return st.dictionaries(SHORT_TEXT, JSON_SCALARS, max_size=3)
    required = set(schema.get("required", []))
    if strict:
        fields = {name: from_schema(sub, depth + 1, True) for name, sub in props.items()}
        optional = sorted(set(props) - required)
        if not optional:
            return st.fixed_dictionaries(fields)
        return st.lists(st.sampled_from(optional), max_size=3, unique=True).flatmap(
            lambda names: st.fixed_dictionaries({k: v for k, v in fields.items() if k in required or k in names}))
    fields = {name: field_value(sub, depth + 1) for name, sub in props.items()}
    return st.fixed_dictionaries({k: v for k, v in fields.items() if k in required},
                                 optional={k: v for k, v in fields.items() if k not in required})


def field_value(schema: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    """A field's value: usually per its schema, sometimes any JSON value (a wrong type)."""
    return st.one_of(from_schema(schema, depth), from_schema(schema, depth), from_schema(schema, depth),
                     JSON_VALUES)


def bodies(path: str) -> st.SearchStrategy[Any]:
    """Request bodies for ``path``: valid ones (the required fields and up to three others, in range),
    schema-shaped objects with any field possibly wrong (a required one dropped now and then, a stray one added),
    or any JSON value at all."""
    schema = REQUESTS[path][1]
    shaped = st.tuples(from_schema(schema), st.booleans(), st.dictionaries(SHORT_TEXT, JSON_VALUES, max_size=2))

    def finish(parts: tuple[dict[str, Any], bool, dict[str, Any]]) -> dict[str, Any]:
        body, drop, extra = parts
        if drop and schema["required"]:
            body = {k: v for k, v in body.items() if k != schema["required"][0]}
        return {**extra, **body}

    valid = from_schema(schema, strict=True)
    return st.one_of(valid, valid, shaped.map(finish), shaped.map(finish), JSON_VALUES)


# -- checks ------------------------------------------------------------------------------------------------


#: path -> status -> count, over the whole module
STATUSES: dict[str, Counter[int]] = {path: Counter() for path in REQUESTS}


def _check_answer(client: httpx.Client, path: str, content: bytes) -> None:
    try:
        r = client.post(path, content=content, headers={"Content-Type": "application/json"})
    except httpx.TransportError as exc:  # a dropped connection is a failure too
        pytest.fail(f"POST {path} {content[:300]!r}: {type(exc).__name__}: {exc}")
    event(f"HTTP {r.status_code}")
    STATUSES[path][r.status_code] += 1
    assert 200 <= r.status_code < 500, f"POST {path} {content[:300]!r} -> {r.status_code} {r.text[:500]}"
    if r.status_code >= 400:
        error = r.json()["error"]
        assert error["code"] == r.status_code and error["message"]
    elif r.headers["content-type"].startswith("text/event-stream"):
        assert "server_error" not in r.text, r.text[:500]  # an error event in the middle of a stream
    else:
        assert isinstance(r.json(), dict)
    health = client.get("/health")
    assert health.status_code == 200, health.text


def _encode(body: Any) -> bytes:
    return json.dumps(body, allow_nan=True).encode()  # NaN / Infinity: Python's json accepts them, so may clients


@pytest.mark.parametrize("path", list(REQUESTS))
def test_generated_bodies_never_5xx(client, path):
    @FUZZ
    @given(body=bodies(path))
    def check(body: Any) -> None:
        _check_answer(client, path, _encode(body))

    before = sum(STATUSES[path].values())
    check()
    seen = STATUSES[path]
    print(f"{path}: {sum(seen.values()) - before} bodies, statuses {dict(sorted(seen.items()))}")
    assert sum(seen.values()) - before >= EXAMPLES_PER_PATH
    assert sum(n for code, n in seen.items() if code < 300) >= 5, "too few bodies got past validation"
    assert sum(n for code, n in seen.items() if code >= 400) >= 5, "too few bad bodies"


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(list(REQUESTS)),
       raw=st.binary(max_size=64) | st.text(max_size=64).map(str.encode)
       | st.sampled_from([b"{", b'{"prompt": "x"', b"\xff\xfe{}", b"null", b"[]", b'"x"', b"1e999",
                          b'{"prompt": "x", "n_predict": 1e999}', b'{"prompt": "\\ud800"}', b" " * 10]))
def test_broken_bytes_are_4xx(client, path, raw):
    _check_answer(client, path, raw)


def test_openapi_describes_the_json_endpoints(server, client):
    doc = httpx.get(f"{server}/openapi.json").json()  # public, like /health
    assert doc == json.loads(json.dumps(openapi_schema()))
    assert set(doc["paths"]) == {"/completion", "/tokenize", "/detokenize", "/apply-template", "/v1/completions",
                                 "/v1/chat/completions"}
    messages = [{"role": "user", "content": "Hi"}]
    minimal = {"/completion": {"prompt": "Hi"}, "/tokenize": {"content": "Hi"}, "/detokenize": {"tokens": [2]},
               "/apply-template": {"messages": messages}, "/v1/completions": {"prompt": "Hi"},
               "/v1/chat/completions": {"messages": messages}}
    for path, body in minimal.items():
        required = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"]
        assert set(required) <= set(body)
        r = client.post(path, json=body)
        assert r.status_code == 200, (path, r.text)
    # -n is the length of a generation whose request sets none (llama-server's n_predict default)
    r = client.post("/completion", json={"prompt": "Hi", "ignore_eos": True}).json()
    assert r["tokens_predicted"] == N_PREDICT_CAP and r["generation_settings"]["n_predict"] == N_PREDICT_CAP
    r = client.post("/completion", json={"prompt": "Hi", "n_predict": 1, "ignore_eos": True}).json()
    assert r["tokens_predicted"] == 1
