"""Anthropic's Messages API (``/v1/messages``, ``/v1/messages/count_tokens``) on ``emberllm serve`` with the Gemma
model, driven by the official ``anthropic`` client (and httpx for raw events and error bodies).

The Gemma file has no tool-aware template, so tools use llama.cpp's generic JSON format; ``tool_choice`` ``any`` and
``tool`` constrain the reply with a grammar, so every ``tool_use`` input must validate against its ``input_schema``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emberllm.edge_server.anthropic_request import to_openai
from emberllm.edge_server.errors import ApiError

from .server_fixtures import API_KEY, AUTH, run_server

anthropic = pytest.importorskip("anthropic")

MODEL = "gemma-test"
GREEDY: dict[str, Any] = {"temperature": 0.0, "top_k": 1}
SYSTEM = "You are a friendly assistant."
ASK = [{"role": "user", "content": "Tell me about the weather in Paris."}]

WEATHER = {"type": "object",
           "properties": {"city": {"type": "string", "maxLength": 20},
                          "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
           "required": ["city", "unit"], "additionalProperties": False}
EVENT = {"type": "object",
         "properties": {"title": {"type": "string", "maxLength": 16},
                        "day": {"type": "integer", "minimum": 1, "maximum": 31}},
         "required": ["title", "day"], "additionalProperties": False}
TOOLS = [{"name": "get_weather", "description": "Current weather in a city", "input_schema": WEATHER},
         {"name": "add_event", "description": "Add an event to the calendar", "input_schema": EVENT}]
SCHEMAS = {"get_weather": WEATHER, "add_event": EVENT}


@pytest.fixture(scope="module")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_server(gemma_path, tmp_path_factory.mktemp("server"), "-c", "2048", "-t", "1",
                    "--alias", MODEL) as srv:
        yield srv.url


@pytest.fixture(scope="module")
def client(server: str) -> Any:
    return anthropic.Anthropic(base_url=server, api_key=API_KEY, max_retries=0, timeout=120)


def _post(server: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server}{path}", json=body, headers=AUTH, timeout=120)


def _events(server: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A streamed reply's ``(event name, data)`` pairs."""
    out: list[tuple[str, dict[str, Any]]] = []
    name = ""
    with httpx.stream("POST", f"{server}/v1/messages", json={**body, "stream": True}, headers=AUTH,
                      timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                assert data["type"] == name
                out.append((name, data))
    return out


def _text(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def test_the_official_client_streams_a_message(client):
    seen: list[str] = []
    with client.messages.stream(model=MODEL, max_tokens=24, system=SYSTEM, messages=ASK,
                                extra_body=GREEDY) as stream:
        for event in stream:
            seen.append(event.type)
        final = stream.get_final_message()
    assert seen[0] == "message_start" and seen[-1] == "message_stop"
    assert "content_block_start" in seen and "content_block_stop" in seen and "message_delta" in seen
    assert final.role == "assistant" and final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0 and final.usage.input_tokens + final.usage.cache_read_input_tokens > 0
    once = client.messages.create(model=MODEL, max_tokens=24, system=SYSTEM, messages=ASK, extra_body=GREEDY)
    assert once.type == "message" and once.content[0].type == "text"
    assert _text(once) == _text(final) and once.stop_reason == final.stop_reason
    assert once.usage.output_tokens == final.usage.output_tokens


def test_stream_events_in_order(server):
    events = _events(server, {"model": MODEL, "max_tokens": 12, "messages": ASK, **GREEDY})
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[1] == "content_block_start"
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"}
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["output_tokens"] == 0
    assert all(d["index"] == 0 and d["delta"]["type"] == "text_delta" for n, d in events if n == "content_block_delta")
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "max_tokens" and delta["usage"]["output_tokens"] == 12
    assert "timings" not in events[-1][1]


def test_count_tokens_equals_the_prompt_tokens_of_the_message(client):
    for extra in ({}, {"system": SYSTEM}, {"system": SYSTEM, "tools": TOOLS}):
        counted = client.messages.count_tokens(model=MODEL, messages=ASK, **extra)
        msg = client.messages.create(model=MODEL, max_tokens=4, messages=ASK, **extra)
        assert counted.input_tokens == msg.usage.input_tokens + msg.usage.cache_read_input_tokens, extra
    bare = client.messages.count_tokens(model=MODEL, messages=ASK).input_tokens
    assert client.messages.count_tokens(model=MODEL, messages=ASK, system=SYSTEM).input_tokens > bare
    assert client.messages.count_tokens(model=MODEL, messages=ASK, tools=TOOLS).input_tokens > bare


def test_a_repeated_prompt_is_read_from_the_cache(client):
    messages = [{"role": "user", "content": "Name three colours of the rainbow, please."}]
    first = client.messages.create(model=MODEL, max_tokens=2, messages=messages, extra_body=GREEDY)
    again = client.messages.create(model=MODEL, max_tokens=2, messages=messages, extra_body=GREEDY)
    total = first.usage.input_tokens + first.usage.cache_read_input_tokens
    assert again.usage.input_tokens + again.usage.cache_read_input_tokens == total
    assert again.usage.cache_read_input_tokens > 0 and again.usage.input_tokens < total


def test_greedy_text_equals_the_openai_endpoints(server, client):
    turns = [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi. How can I help?"},
             {"role": "user", "content": [{"type": "text", "text": "Write a line "},
                                          {"type": "text", "text": "about the sea."}]}]
    msg = client.messages.create(model=MODEL, max_tokens=32, system=SYSTEM, messages=turns, extra_body=GREEDY)
    oai_turns = [{"role": "system", "content": SYSTEM}, *turns]
    res = _post(server, "/v1/chat/completions", {"model": MODEL, "max_tokens": 32, "messages": oai_turns, **GREEDY})
    assert res.status_code == 200
    body = res.json()
    assert _text(msg) == body["choices"][0]["message"]["content"] and _text(msg)
    assert msg.usage.output_tokens == body["usage"]["completion_tokens"]
    assert msg.usage.input_tokens + msg.usage.cache_read_input_tokens == body["usage"]["prompt_tokens"]
    assert msg.stop_reason == {"stop": "end_turn", "length": "max_tokens"}[body["choices"][0]["finish_reason"]]


def test_stop_sequences(server, client):
    free = _text(client.messages.create(model=MODEL, max_tokens=24, messages=ASK, extra_body=GREEDY))
    words = free.split()
    assert len(words) > 3, free
    stop = " " + words[2]
    cut = free[:free.index(stop)]
    msg = client.messages.create(model=MODEL, max_tokens=24, messages=ASK, stop_sequences=["\u2603", stop],
                                 extra_body=GREEDY)
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == stop
    assert _text(msg) == cut
    events = _events(server, {"model": MODEL, "max_tokens": 24, "messages": ASK, "stop_sequences": [stop], **GREEDY})
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": stop}
    unmatched = client.messages.create(model=MODEL, max_tokens=24, messages=ASK, stop_sequences=["\u2603"],
                                       extra_body=GREEDY)
    assert unmatched.stop_sequence is None and _text(unmatched) == free


def _check_tool_use(message: Any, names: set[str]) -> list[Any]:
    assert message.stop_reason == "tool_use", message
    uses = [b for b in message.content if b.type == "tool_use"]
    assert uses, message
    for use in uses:
        assert use.name in names and use.id
        jsonschema.validate(use.input, SCHEMAS[use.name])
    return uses


def test_tool_use_any_and_named(client):
    for _ in range(2):
        msg = client.messages.create(model=MODEL, max_tokens=160, messages=ASK, tools=TOOLS,
                                     tool_choice={"type": "any"}, extra_body={"temperature": 0.8})
        _check_tool_use(msg, set(SCHEMAS))
        named = client.messages.create(model=MODEL, max_tokens=160, messages=ASK, tools=TOOLS,
                                       tool_choice={"type": "tool", "name": "add_event"},
                                       extra_body={"temperature": 0.8})
        assert [u.name for u in _check_tool_use(named, {"add_event"})] == ["add_event"]


def test_tool_use_streamed_as_input_json_deltas(server, client):
    with client.messages.stream(model=MODEL, max_tokens=160, messages=ASK, tools=TOOLS,
                                tool_choice={"type": "tool", "name": "get_weather"},
                                extra_body={"temperature": 0.8}) as stream:
        final = stream.get_final_message()
    _check_tool_use(final, {"get_weather"})
    events = _events(server, {"model": MODEL, "max_tokens": 160, "messages": ASK, "tools": TOOLS,
                              "tool_choice": {"type": "any"}, **GREEDY})
    starts = [d for n, d in events if n == "content_block_start"]
    stops = [d["index"] for n, d in events if n == "content_block_stop"]
    assert [s["index"] for s in starts] == stops == list(range(len(starts)))
    use = starts[-1]
    assert use["content_block"]["type"] == "tool_use" and use["content_block"]["name"] in SCHEMAS
    parts = [d["delta"]["partial_json"] for n, d in events
             if n == "content_block_delta" and d["index"] == use["index"]]
    assert len(parts) > 1
    jsonschema.validate(json.loads("".join(parts)), SCHEMAS[use["content_block"]["name"]])
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_tool_result_round_trip(client):
    msg = client.messages.create(model=MODEL, max_tokens=160, messages=ASK, tools=TOOLS[:1],
                                 tool_choice={"type": "any"}, extra_body=GREEDY)
    (use,) = _check_tool_use(msg, {"get_weather"})

    def conversation(result: Any) -> list[dict[str, Any]]:
        return [*ASK, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": result}]}]

    answer = client.messages.create(model=MODEL, max_tokens=40, messages=conversation("Sunny, 25 C"),
                                    tools=TOOLS[:1], tool_choice={"type": "none"}, extra_body=GREEDY)
    assert answer.stop_reason in ("end_turn", "max_tokens") and answer.content[0].type == "text"
    assert _text(answer)

    for choice in ({"type": "auto"}, {"type": "none"}):
        def count(result: Any, choice: dict[str, str] = choice) -> int:
            return client.messages.count_tokens(model=MODEL, messages=conversation(result), tools=TOOLS[:1],
                                                tool_choice=choice).input_tokens

        short, longer = count("Sunny, 25 C"), count("Sunny, 25 C, with a light breeze from the west all afternoon")
        assert longer > short, choice
        assert count([{"type": "text", "text": "Sunny, "}, {"type": "text", "text": "25 C"}]) == short


def _error(res: httpx.Response, status: int, starts: str) -> None:
    assert res.status_code == status, res.text
    body = res.json()
    assert body["type"] == "error" and body["error"]["code"] == status
    assert body["error"]["type"] == ("invalid_request_error" if status == 400 else "server_error")
    assert body["error"]["message"].startswith(starts), body


@pytest.mark.parametrize(("change", "starts"), [
    ({"service_tier": "auto"}, "service_tier:"),
    ({"stop_sequences": "END"}, "stop_sequences:"),
    ({"messages": None}, "messages:"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role:"),
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}, "messages[0].content[0].type:"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}]}]},
     "messages[0].content[0].type:"),
    ({"messages": [*ASK, {"role": "assistant", "content": "The weather is"}]}, "messages[1]:"),
    ({"tools": [{"name": "f", "input_schema": {"type": "object", "properties": {"x": {"type": "strin"}}}}]},
     "tools[0].input_schema:"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type:"),
    ({"tools": TOOLS, "tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice.name:"),
    ({"tools": TOOLS, "tool_choice": "any"}, "tool_choice:"),
    ({"tool_choice": {"type": "any"}}, "tool_choice:"),
    ({"temperature": "hot"}, "temperature"),
    ({"max_tokens": -2}, "max_tokens:"),
    ({"thinking": {"type": "enabled", "budget_tokens": 0}}, "thinking.budget_tokens:"),
    ({"metadata": {"session": "x"}}, "metadata.session:"),
])
def test_refused_fields_name_themselves_in_anthropics_error_shape(server, client, change, starts):
    _error(_post(server, "/v1/messages", {"model": MODEL, "max_tokens": 8, "messages": ASK, **change}), 400, starts)
    if starts.startswith("service_tier"):
        with pytest.raises(anthropic.BadRequestError) as info:
            client.messages.create(model=MODEL, max_tokens=8, messages=ASK, extra_body=change)
        assert info.value.body["error"]["message"].startswith(starts)


def test_count_tokens_takes_the_messages_body(server):
    body = {"model": MODEL, "messages": ASK, "max_tokens": 8, "stop_sequences": ["x"], **GREEDY}
    res = _post(server, "/v1/messages/count_tokens", body)
    assert res.status_code == 200 and res.json()["input_tokens"] == _post(
        server, "/v1/messages/count_tokens", {"model": MODEL, "messages": ASK}).json()["input_tokens"]
    assert set(res.json()) == {"input_tokens"}
    _error(_post(server, "/v1/messages/count_tokens", {"model": MODEL}), 400, "messages:")
    for change, starts in (({"temperature": "hot"}, "temperature"), ({"stream": 1}, "stream:"),
                           ({"max_tokens": -2}, "max_tokens:"),
                           ({"top_k": 1, "service_tier": "auto"}, "service_tier:")):
        _error(_post(server, "/v1/messages/count_tokens", {"model": MODEL, "messages": ASK, **change}), 400, starts)


def test_image_input_is_llama_servers_500(server):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    body = {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": [image]}]}
    _error(_post(server, "/v1/messages", body), 500, "image input is not supported")


def test_llama_servers_lenient_defaults(server, client):
    res = _post(server, "/v1/messages", {"model": MODEL, "messages": [], "max_tokens": 4})
    assert res.status_code == 200 and res.json()["type"] == "message"
    res = _post(server, "/v1/messages", {"messages": ASK, "stop_sequences": [""], **GREEDY, "top_p": 0.9})
    assert res.status_code == 200 and res.json()["usage"]["output_tokens"] > 0
    msg = client.messages.create(model=MODEL, max_tokens=4, messages=ASK, metadata={"user_id": "u1"},
                                 thinking={"type": "enabled", "budget_tokens": 1024},
                                 system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}])
    assert msg.type == "message" and all(b.type != "thinking" for b in msg.content)


# The conversion itself (a pure function): what llama-server's server_chat_convert_anthropic_to_oai does.

def test_conversion_of_blocks_and_tool_choice():
    body = {"model": "m", "system": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
            "messages": [{"role": "user", "content": "q"},
                         {"role": "assistant", "content": [
                             {"type": "thinking", "thinking": "hmm", "signature": ""},
                             {"type": "text", "text": "Let me look."},
                             {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
                         {"role": "user", "content": [
                             {"type": "text", "text": "Here:"},
                             {"type": "tool_result", "tool_use_id": "t1", "is_error": True,
                              "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]}]}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
            "stop_sequences": ["END"], "top_k": 5}
    out = to_openai(body)
    assert out["messages"] == [
        {"role": "system", "content": "AB"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me look."}], "reasoning_content": "hmm",
         "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]},
        {"role": "user", "content": [{"type": "text", "text": "Here:"}]},
        {"role": "tool", "tool_call_id": "t1", "content": "xy"}]
    assert out["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert out["parallel_tool_calls"] is False
    assert (out["stop"], out["top_k"], out["max_tokens"]) == (["END"], 5, 4096)
    assert to_openai({"messages": [], "tool_choice": {"type": "any"}})["tool_choice"] == "required"
    assert to_openai({"messages": [], "tool_choice": {"type": "none"}})["tool_choice"] == "none"
    with pytest.raises(ApiError, match="^messages: required"):
        to_openai({"max_tokens": 3})


def test_billing_header_stamp_is_blanked_for_the_prompt_cache():
    def system(stamp: str) -> str:
        text = f"x-anthropic-billing-header: cc_version=2.1.101.e51; cc_entrypoint=cli; cch={stamp};You are Claude."
        return to_openai({"system": text, "messages": []})["messages"][0]["content"]

    assert system("a5145") == system("0b7c2") and "cch=fffff;" in system("a5145")
    assert to_openai({"system": "cch=a5145;x", "messages": []})["messages"][0]["content"] == "cch=a5145;x"


_TEXT = st.text(max_size=8)
_SCALARS = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False, allow_infinity=False) | _TEXT
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
                     max_leaves=8)
_KEYS = ("type", "text", "name", "id", "input", "tool_use_id", "content", "thinking", "input_schema", "is_error",
         "source", "cache_control", "disable_parallel_tool_use", "budget_tokens", "user_id")
_KINDS = st.sampled_from(["text", "tool_use", "tool_result", "thinking", "image", "auto", "any", "tool", "none",
                          "custom", "enabled"])


def _objects(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with a ``type`` and some of the keys the API knows, of any values."""
    return st.fixed_dictionaries({"type": _KINDS | _JSON}, optional={k: values for k in _KEYS if k != "type"})


_BLOCKS = st.lists(_objects(_JSON | st.lists(_objects(_JSON), max_size=2)), max_size=3)
_MESSAGES = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]) | _JSON,
                                            "content": _TEXT | _BLOCKS | _JSON}), max_size=3)
_BODIES = st.fixed_dictionaries({"messages": _MESSAGES | _JSON}, optional={
    "system": _TEXT | _BLOCKS | _JSON, "tools": st.lists(_objects(_JSON), max_size=2) | _JSON,
    "tool_choice": _objects(_JSON) | _JSON, "stop_sequences": _JSON, "thinking": _objects(_JSON) | _JSON,
    "metadata": _objects(_JSON) | _JSON})


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(_BODIES)
def test_conversion_of_any_body_is_a_chat_body_or_an_api_error(body):
    try:
        out = to_openai(body)
    except ApiError as exc:
        assert exc.status == 400 or exc.message.startswith("image input"), exc.message
        return
    assert isinstance(out["messages"], list)
    for msg in out["messages"]:
        assert msg["role"] in ("system", "user", "assistant", "tool")
        assert isinstance(msg["content"], str) or all(p["type"] == "text" for p in msg["content"])


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_BODIES)
def test_the_server_answers_any_body_with_a_message_or_a_named_error(server, body):
    res = _post(server, "/v1/messages", {**body, "max_tokens": 1})
    if res.status_code == 200:
        assert res.json()["type"] == "message"
        return
    err = res.json()
    assert err["type"] == "error" and err["error"]["code"] == res.status_code
    assert res.status_code == 400 or err["error"]["message"].startswith("image input"), err
