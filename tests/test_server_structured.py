"""Structured output through ``emberllm serve`` with the Gemma model: ``grammar`` / ``json_schema`` on
``/completion``, ``response_format`` (json_object, json_schema, the official client's ``parse``) on the OpenAI
endpoints, streamed and not; sampled outputs parse and validate with ``jsonschema``; bad grammars and schemas are
400s naming the field, and the server keeps serving."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from .server_fixtures import API_KEY, AUTH, run_server

N_CTX = 1024
MAX_TOKENS = 200
SEEDS_OAI = (1, 2, 3)
SEEDS_NATIVE = (11, 12)

SCHEMAS: list[dict] = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                      "age": {"type": "integer", "minimum": 0, "maximum": 120}},
     "required": ["name", "age"], "additionalProperties": False},
    {"type": "string", "enum": ["red", "green", "blue"]},
    {"type": "object", "properties": {"ok": {"type": "boolean"},
                                      "count": {"type": "integer", "minimum": 0, "maximum": 9}},
     "required": ["ok"], "additionalProperties": False},
    {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 99}, "minItems": 1, "maxItems": 3},
    {"type": "object", "properties": {"person": {"type": "object", "properties": {
        "first": {"type": "string", "maxLength": 10}, "last": {"type": "string", "maxLength": 10}},
        "required": ["first", "last"], "additionalProperties": False}},
     "required": ["person"], "additionalProperties": False},
    {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 1000}, {"type": "string", "maxLength": 8}]},
    {"type": "integer", "minimum": 10, "maximum": 99},
    {"type": "string", "maxLength": 5},
    {"type": "object", "properties": {"day": {"type": "string", "format": "date"}}, "required": ["day"],
     "additionalProperties": False},
    {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}, "required": ["id"],
     "additionalProperties": False},
    {"type": "object", "properties": {"kind": {"const": "point"},
                                      "x": {"type": "integer", "minimum": -5, "maximum": 5}},
     "required": ["kind", "x"], "additionalProperties": False},
    {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 2, "maxItems": 2},
    {"type": "boolean"},
    {"type": "number"},
    {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 0, "maximum": 9}]},
    {"$defs": {"pt": {"type": "object", "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 9},
                                                       "y": {"type": "integer", "minimum": 0, "maximum": 9}},
                      "required": ["x", "y"], "additionalProperties": False}},
     "type": "object", "properties": {"from": {"$ref": "#/$defs/pt"}, "to": {"$ref": "#/$defs/pt"}},
     "required": ["from", "to"], "additionalProperties": False},
    {"type": "array", "items": {"type": "object", "properties": {"tag": {"type": "string", "maxLength": 6}},
                                "required": ["tag"], "additionalProperties": False}, "minItems": 1, "maxItems": 2},
    {"oneOf": [{"type": "boolean"}, {"type": "integer", "minimum": 0, "maximum": 5}]},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}},
                "required": ["a"]},
               {"type": "object", "properties": {"b": {"type": "boolean"}}, "required": ["b"]}]},
    {"type": "string", "pattern": "^[A-Z]{2}[0-9]{3}$"},
    {"enum": [1, "two", None, True]},
    {"type": "object", "properties": {"code": {"type": "string", "minLength": 2, "maxLength": 6},
                                      "qty": {"type": "integer", "exclusiveMinimum": 0, "maximum": 50},
                                      "note": {"type": "string", "maxLength": 10}},
     "required": ["code", "qty"], "additionalProperties": False},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string", "maxLength": 5},
                                               "maxItems": 3},
                                      "when": {"type": "string", "format": "time"}},
     "required": ["tags"], "additionalProperties": False},
    {"type": "object", "properties": {"size": {"enum": ["S", "M", "L"]}, "price": {"type": "number", "minimum": 0}},
     "required": ["size", "price"], "additionalProperties": False},
]


@pytest.fixture(scope="module")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of one running server for the module."""
    with run_server(gemma_path, tmp_path_factory.mktemp("server"), "-c", str(N_CTX), "-t", "1",
                    "--alias", "gemma-test") as srv:
        yield srv.url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=AUTH, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def oai(server: str):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0, timeout=120)


def _ask(schema: dict) -> str:
    return f"Reply with a short JSON value matching this JSON schema:\n{json.dumps(schema)}"


def _check(schema: dict, text: str, finish: str, tally: dict[str, int]) -> None:
    """A finished output parses and validates (formats included); a cut one is only counted."""
    if finish != "stop":
        tally["length"] += 1
        return
    _validate(json.loads(text), schema)
    tally["stop"] += 1


def _validate(value: object, schema: dict) -> None:
    """Validate under draft 2020-12 with its format checks (date, time, uuid)."""
    cls = jsonschema.Draft202012Validator
    cls(schema, format_checker=cls.FORMAT_CHECKER).validate(value)


def _sse(lines: Iterator[str]) -> list[dict]:
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ") and line != "data: [DONE]"]


def _healthy(client: httpx.Client) -> None:
    assert client.get("/health").json()["status"] == "ok"


def test_sampled_outputs_validate_through_openai_client_and_completion(oai, client):
    """Every schema, several seeds at temperature 0.8, through the official client (response_format json_schema,
    strict) and through /completion (json_schema): every finished output validates; most finish."""
    oai_tally = {"stop": 0, "length": 0}
    native_tally = {"stop": 0, "length": 0}
    for i, schema in enumerate(SCHEMAS):
        fmt = {"type": "json_schema", "json_schema": {"name": f"schema{i}", "schema": schema, "strict": True}}
        for seed in SEEDS_OAI:
            res = oai.chat.completions.create(model="gemma-test", messages=[{"role": "user", "content": _ask(schema)}],
                                              max_tokens=MAX_TOKENS, temperature=0.8, seed=seed, response_format=fmt)
            choice = res.choices[0]
            _check(schema, choice.message.content, choice.finish_reason, oai_tally)
        for seed in SEEDS_NATIVE:
            r = client.post("/completion", json={"prompt": _ask(schema) + "\nJSON: ", "n_predict": MAX_TOKENS,
                                                 "temperature": 0.8, "seed": seed, "json_schema": schema})
            assert r.status_code == 200, r.text
            body = r.json()
            _check(schema, body["content"], "stop" if body["stop_type"] == "eos" else "length", native_tally)
    print(f"\nstructured output: {len(SCHEMAS)} schemas; openai client {len(SEEDS_OAI)} seeds: {oai_tally}; "
          f"/completion {len(SEEDS_NATIVE)} seeds: {native_tally}")
    for tally, seeds in ((oai_tally, SEEDS_OAI), (native_tally, SEEDS_NATIVE)):
        assert tally["stop"] + tally["length"] == len(SCHEMAS) * len(seeds)
        assert tally["stop"] >= 0.85 * len(SCHEMAS) * len(seeds), tally


def test_parse_with_a_pydantic_model_fills_parsed(oai):
    pydantic = pytest.importorskip("pydantic")

    class City(pydantic.BaseModel):
        name: str = pydantic.Field(max_length=20)
        country: str = pydantic.Field(max_length=20)
        population: int = pydantic.Field(ge=0, le=50_000_000)

    chat = oai.chat if hasattr(oai.chat.completions, "parse") else oai.beta.chat
    res = chat.completions.parse(model="gemma-test", messages=[{"role": "user", "content": "Describe Paris."}],
                                 response_format=City, max_tokens=MAX_TOKENS, temperature=0.8, seed=5)
    msg = res.choices[0].message
    assert res.choices[0].finish_reason == "stop"
    assert isinstance(msg.parsed, City) and msg.parsed == City.model_validate_json(msg.content)


def test_client_stream_helper_with_a_pydantic_model_fills_parsed(oai):
    pydantic = pytest.importorskip("pydantic")

    class Pet(pydantic.BaseModel):
        name: str = pydantic.Field(max_length=12)
        legs: int = pydantic.Field(ge=0, le=8)

    chat = oai.chat if hasattr(oai.chat.completions, "stream") else oai.beta.chat
    with chat.completions.stream(model="gemma-test", messages=[{"role": "user", "content": "A pet as JSON."}],
                                 response_format=Pet, max_tokens=MAX_TOKENS, seed=6) as stream:
        deltas = [ev.delta for ev in stream if ev.type == "content.delta"]
        final = stream.get_final_completion()
    msg = final.choices[0].message
    assert final.choices[0].finish_reason == "stop" and len(deltas) > 1
    assert isinstance(msg.parsed, Pet) and "".join(deltas) == msg.content


def test_streamed_chat_and_completion_follow_the_schema(server):
    schema = SCHEMAS[0]
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    body = {"messages": [{"role": "user", "content": _ask(schema)}], "max_tokens": MAX_TOKENS, "seed": 3,
            "stream": True, "response_format": fmt}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, headers=AUTH, timeout=120) as r:
        chunks = _sse(r.iter_lines())
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    _validate(json.loads(text), schema)

    body = {"prompt": _ask(schema), "n_predict": MAX_TOKENS, "seed": 4, "stream": True, "json_schema": schema}
    with httpx.stream("POST", f"{server}/completion", json=body, headers=AUTH, timeout=120) as r:
        chunks = _sse(r.iter_lines())
    assert chunks[-1]["stop"] is True and chunks[-1]["stop_type"] == "eos"
    _validate(json.loads("".join(c["content"] for c in chunks)), schema)


def test_json_object_mode_gives_an_object(oai, client):
    """Any object is allowed, so the small model may ramble past max_tokens: every output is an object's start,
    every finished one a JSON object, and some seed finishes."""
    finished = 0
    for seed in range(1, 7):
        res = oai.chat.completions.create(model="gemma-test", max_tokens=300, temperature=0.8, seed=seed,
                                          messages=[{"role": "user", "content": "Describe a cat as JSON."}],
                                          response_format={"type": "json_object"})
        text = res.choices[0].message.content
        assert text.startswith("{"), text
        if res.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(text), dict)
            finished += 1
            break
    assert finished
    # llama-server's json_object with a "schema" key, on /v1/completions
    schema = SCHEMAS[2]
    r = client.post("/v1/completions", json={"prompt": _ask(schema), "max_tokens": MAX_TOKENS, "seed": 2,
                                             "response_format": {"type": "json_object", "schema": schema}})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    _validate(json.loads(choice["text"]), schema)


def test_gbnf_grammar_on_completion_gives_yes_or_no(client):
    for seed in (1, 2, 3):
        r = client.post("/completion", json={"prompt": "Is the sky blue? Answer:", "n_predict": 8, "seed": seed,
                                             "temperature": 1.0, "grammar": 'root ::= "yes" | "no"'})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["content"] in ("yes", "no") and body["stop_type"] == "eos"
        assert body["generation_settings"]["grammar"] == 'root ::= "yes" | "no"'
    # the top-level grammar on the OpenAI endpoint, as llama-server accepts it
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Is the sky blue?"}],
                                                  "max_tokens": 8, "grammar": 'root ::= "yes" | "no"'})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] in ("yes", "no")


@pytest.mark.parametrize("path, body, expected", [
    ("/completion", {"prompt": "x", "grammar": 'root ::= "yes" | ("no'}, "grammar: grammar error at line 1"),
    ("/completion", {"prompt": "x", "grammar": "root ::= undefined-rule"}, "grammar:"),
    ("/completion", {"prompt": "x", "json_schema": {"not": {"type": "string"}}}, "json_schema:"),
    ("/completion", {"prompt": "x", "grammar": 'root ::= "a"', "json_schema": SCHEMAS[0]}, "grammar, json_schema:"),
    ("/completion", {"prompt": "x", "grammar": 42}, "grammar: expected a string"),
    ("/completion", {"prompt": "x", "json_schema": [1]}, "json_schema: expected a JSON schema object"),
    ("/v1/completions", {"prompt": "x", "response_format": {"type": "xml"}}, "response_format.type:"),
    ("/v1/completions", {"prompt": "x", "response_format": {"type": "json_object"}, "grammar": 'root ::= "a"'},
     "grammar, response_format:"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "json_schema": SCHEMAS[1],
                              "response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMAS[0]}}},
     "json_schema, response_format:"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "response_format": {
        "type": "json_schema", "json_schema": {"schema": {"type": "object", "properties": {"a": {"not": {}}}}}}},
     "response_format:"),
])
def test_bad_grammars_and_schemas_are_400s_naming_the_field(client, path, body, expected):
    r = client.post(path, json=body)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert message.startswith(expected), message
    if "not" in json.dumps(body):
        assert "'not'" in message and "#" in message
    if "line 1" in expected:
        assert "column" in message
    _healthy(client)


def test_a_grammar_no_token_can_follow_is_a_400(client):
    """No token may start with NUL (llama.cpp's rule), so this grammar cannot even start: a 400, not a 500."""
    r = client.post("/completion", json={"prompt": "x", "n_predict": 4, "grammar": 'root ::= "\\x00"'})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("grammar:"), r.text
    _healthy(client)


def test_unsupported_schema_through_the_client_is_a_bad_request(oai, client):
    openai = pytest.importorskip("openai")
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"not": {"type": "null"}}}}
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="gemma-test", messages=[{"role": "user", "content": "x"}], max_tokens=2,
                                    response_format=fmt)
    assert "'not'" in info.value.body["message"]
    _healthy(client)
