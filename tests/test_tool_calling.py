"""Tool calling through ``emberllm serve`` with the Gemma model and the official ``openai`` client.

The Gemma file carries no chat template: its built-in one knows no tools, so the server uses llama.cpp's generic
JSON format.  More servers run the same model under small Hermes-, Llama 3- and Mistral-style templates
(``--chat-template-file``) to exercise the native formats (``<tool_call>`` blocks, bare JSON, ``[TOOL_CALLS]``).
``tool_choice="required"`` and a named function constrain the reply with a grammar built from the function
schemas: the arguments must validate with ``jsonschema``, streamed (the client's own accumulation) and not, at
temperature 0.8 over several seeds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from .server_fixtures import API_KEY, AUTH, run_server

N_CTX = 2048
FRESH = {"cache_prompt": False}  # the same numbers streamed and not: no prompt-cache reuse
SEEDS = (1, 2, 3)
MAX_TOKENS = 160

WEATHER_PARAMS = {"type": "object",
                  "properties": {"city": {"type": "string", "maxLength": 20},
                                 "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                  "required": ["city", "unit"], "additionalProperties": False}
EVENT_PARAMS = {"type": "object",
                "properties": {"title": {"type": "string", "maxLength": 16},
                               "day": {"type": "integer", "minimum": 1, "maximum": 31},
                               "guests": {"type": "array", "items": {"type": "string", "maxLength": 10},
                                          "maxItems": 3}},
                "required": ["title", "day"], "additionalProperties": False}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                      "parameters": WEATHER_PARAMS}},
    {"type": "function", "function": {"name": "add_event", "description": "Add an event to the calendar",
                                      "parameters": EVENT_PARAMS}},
]
SCHEMAS = {"get_weather": WEATHER_PARAMS, "add_event": EVENT_PARAMS}
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]

HERMES_TEMPLATE = """\
{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}You may call functions. Their signatures are in <tools></tools>:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>
For each call, answer <tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'system' %}
{%- elif message.role == 'assistant' %}<|im_start|>assistant
{% if message.content %}{{ message.content }}{% endif %}
{%- for call in message.tool_calls or [] %}<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


LLAMA3_TEMPLATE = """\
{{- bos_token }}{%- if tools %}<|start_header_id|>system<|end_header_id|>

Environment: ipython
You have access to the following functions. To call one, respond with JSON for a function call with its proper
arguments that best answers the given prompt, in the format {"name": function name, "parameters": dictionary of
argument name and its value}.
{% for t in tools %}{{ t | tojson }}
{% endfor %}<|eot_id|>{%- endif %}
{%- for message in messages %}
{%- if message.role == 'assistant' and message.tool_calls %}<|start_header_id|>assistant<|end_header_id|>

{% for call in message.tool_calls %}{"name": "{{ call.function.name }}", "parameters": \
{{ call.function.arguments | tojson }}}{% endfor %}<|eot_id|>
{%- elif message.role == 'tool' %}<|start_header_id|>ipython<|end_header_id|>

{{ message.content }}<|eot_id|>
{%- else %}<|start_header_id|>{{ message.role }}<|end_header_id|>

{{ message.content }}<|eot_id|>
{%- endif %}{%- endfor %}
{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>

{% endif %}"""

MISTRAL_TEMPLATE = """\
{{- bos_token }}{%- if tools %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif %}
{%- for message in messages %}
{%- if message.role == 'user' or message.role == 'system' %}[INST]{{ message.content }}[/INST]
{%- elif message.role == 'assistant' and message.tool_calls %}[TOOL_CALLS][
{%- for call in message.tool_calls %}{"name": "{{ call.function.name }}", "arguments": \
{{ call.function.arguments | tojson }}, "id": "{{ call.id }}"}{% if not loop.last %}, {% endif %}{% endfor %}]</s>
{%- elif message.role == 'tool' %}[TOOL_RESULTS]{{ message.content }}[/TOOL_RESULTS]
{%- else %}{{ message.content }}</s>{%- endif %}{%- endfor %}"""

NATIVE_TEMPLATES = {"hermes": HERMES_TEMPLATE, "llama3": LLAMA3_TEMPLATE, "mistral": MISTRAL_TEMPLATE}


@pytest.fixture(scope="module")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_server(gemma_path, tmp_path_factory.mktemp("server"), "-c", str(N_CTX), "-t", "1",
                    "--alias", "gemma-test") as srv:
        yield srv.url


@pytest.fixture(scope="module", params=sorted(NATIVE_TEMPLATES))
def native_server(request: pytest.FixtureRequest, gemma_path: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same model under a chat template with a native tool-call format (hermes, llama3, mistral)."""
    log_dir = tmp_path_factory.mktemp(request.param)
    template = log_dir / f"{request.param}.jinja"
    template.write_text(NATIVE_TEMPLATES[request.param])
    with run_server(gemma_path, log_dir, "-c", str(N_CTX), "-t", "1", "--alias", "gemma-test",
                    "--chat-template-file", str(template)) as srv:
        yield srv.url


def _client(url: str):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def oai(server: str):
    return _client(server)


@pytest.fixture(scope="module")
def oai_native(native_server: str):
    return _client(native_server)


def _check_calls(message, finish: str, names: set[str]) -> None:
    """A reply that is tool calls whose arguments validate against their function's schema."""
    assert finish == "tool_calls", (finish, message)
    assert message.tool_calls, message
    for call in message.tool_calls:
        assert call.type == "function" and call.id.startswith("call_") and len(call.id) > 10
        assert call.function.name in names
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def _healthy(url: str) -> None:
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_required_non_streamed(oai):
    for seed in SEEDS:
        res = oai.chat.completions.create(model="gemma-test", messages=ASK, tools=TOOLS, tool_choice="required",
                                          temperature=0.8, seed=seed, max_tokens=MAX_TOKENS)
        choice = res.choices[0]
        _check_calls(choice.message, choice.finish_reason, set(SCHEMAS))
        assert choice.message.content is None


def test_required_streamed_with_the_clients_accumulation(oai):
    for seed in SEEDS:
        with oai.chat.completions.stream(model="gemma-test", messages=ASK, tools=TOOLS, tool_choice="required",
                                         temperature=0.8, seed=seed, max_tokens=MAX_TOKENS) as stream:
            final = stream.get_final_completion()
        choice = final.choices[0]
        _check_calls(choice.message, choice.finish_reason, set(SCHEMAS))


def test_streamed_chunks_carry_index_id_name_then_fragments(server):
    body = {"model": "gemma-test", "messages": ASK, "tools": TOOLS, "tool_choice": "required", "stream": True,
            "temperature": 0.8, "seed": 5, "max_tokens": MAX_TOKENS}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, headers=AUTH, timeout=120) as r:
        assert r.status_code == 200
        chunks = [json.loads(line[6:]) for line in r.iter_lines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    calls = [d["tool_calls"][0] for d in deltas if d.get("tool_calls")]
    first, rest = calls[0], calls[1:]
    assert first["index"] == 0 and first["id"].startswith("call_") and first["type"] == "function"
    assert first["function"]["name"] in SCHEMAS and first["function"]["arguments"] == ""
    assert rest and all(set(c) == {"index", "function"} and set(c["function"]) == {"arguments"} for c in rest)
    args = json.loads("".join(c["function"]["arguments"] for c in rest))
    jsonschema.validate(args, SCHEMAS[first["function"]["name"]])
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_named_function(oai):
    for seed in SEEDS[:2]:
        res = oai.chat.completions.create(
            model="gemma-test", messages=[{"role": "user", "content": "Plan a party with Ann and Bo on the 12th."}],
            tools=TOOLS, tool_choice={"type": "function", "function": {"name": "add_event"}},
            temperature=0.8, seed=seed, max_tokens=MAX_TOKENS)
        choice = res.choices[0]
        _check_calls(choice.message, choice.finish_reason, {"add_event"})


def _stream_collect(oai, **kwargs) -> tuple[str, list[str], str | None, int]:
    """Content, call names, finish reason and the number of content chunks of a raw streamed reply."""
    content, names, finish, n_content = "", [], None, 0
    for chunk in oai.chat.completions.create(stream=True, **kwargs):
        delta = chunk.choices[0].delta
        if delta.content:
            content += delta.content
            n_content += 1
        names += [tc.function.name for tc in delta.tool_calls or [] if tc.function and tc.function.name]
        finish = chunk.choices[0].finish_reason or finish
    return content, names, finish, n_content


def test_auto_generic_answers_a_call_or_content(oai):
    """``auto`` with the generic format: a call or a ``response`` (unwrapped into content), streamed alike (the
    response text as it comes, in several chunks)."""
    kinds = set()
    for seed in SEEDS:
        kwargs = {"model": "gemma-test", "messages": [{"role": "user", "content": "Say hello to Bo."}],
                  "tools": TOOLS, "temperature": 0.8, "seed": seed, "max_tokens": MAX_TOKENS, "extra_body": FRESH}
        choice = oai.chat.completions.create(**kwargs).choices[0]
        if choice.message.tool_calls:
            kinds.add("call")
            _check_calls(choice.message, choice.finish_reason, set(SCHEMAS))
        else:
            kinds.add("content")
            assert isinstance(choice.message.content, str)
            assert not choice.message.content.lstrip().startswith('{"response"')
        content, names, finish, n_content = _stream_collect(oai, **kwargs)
        assert content == (choice.message.content or "")
        assert names == [c.function.name for c in choice.message.tool_calls or []]
        assert finish == choice.finish_reason
        if len(content) > 8:
            assert n_content > 1
    print("auto replies:", kinds)


def test_round_trip_with_a_tool_message(oai, server):
    history = [*ASK,
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_abc123", "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
               {"role": "tool", "tool_call_id": "call_abc123", "content": '{"temperature": 18, "sky": "sunny"}'}]
    res = oai.chat.completions.create(model="gemma-test", messages=history, tools=TOOLS, temperature=0.8, seed=2,
                                      max_tokens=MAX_TOKENS)
    choice = res.choices[0]
    assert choice.message.content or choice.message.tool_calls
    # the same history without tools (a plain answer) renders too
    res = oai.chat.completions.create(model="gemma-test", messages=history, max_tokens=20)
    assert res.choices[0].finish_reason in ("stop", "length")
    _healthy(server)


def test_tool_choice_none_is_plain_chat(oai):
    res = oai.chat.completions.create(model="gemma-test", messages=ASK, tools=TOOLS, tool_choice="none",
                                      max_tokens=16, temperature=0)
    choice = res.choices[0]
    assert choice.message.tool_calls is None and choice.finish_reason in ("stop", "length")


BAD_BODIES = [
    ({"tool_choice": {"type": "function", "function": {"name": "launch_rocket"}}, "tools": TOOLS},
     "launch_rocket"),
    ({"tools": "get_weather"}, "tools"),
    ({"tools": [{"type": "function"}]}, "tools[0].function"),
    ({"tools": [{"type": "retrieval", "function": {"name": "x"}}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]}, "tools[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "s": {"not": {"type": "string"}}}}}}]}, "'not' at #/properties/s"),
    ({"tools": TOOLS + [TOOLS[0]]}, "given twice"),
    ({"tools": TOOLS, "tool_choice": "always"}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": TOOLS, "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ({"tools": TOOLS, "response_format": {"type": "json_object"}}, "tools"),
    ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}]},
     "messages[0].tool_calls[0].function.name"),
]


@pytest.mark.parametrize(("extra", "named"), BAD_BODIES)
def test_bad_tool_fields_are_400s_naming_them(server, extra, named):
    body = {"model": "gemma-test", "messages": ASK, "max_tokens": 8, **extra}
    r = httpx.post(f"{server}/v1/chat/completions", json=body, headers=AUTH, timeout=60)
    assert r.status_code == 400, r.text
    assert named in r.json()["error"]["message"]
    _healthy(server)


def test_tools_elsewhere_are_400s(server):
    r = httpx.post(f"{server}/v1/completions", json={"prompt": "hi", "tools": TOOLS, "max_tokens": 4},
                   headers=AUTH, timeout=60)
    assert r.status_code == 400 and "tools" in r.json()["error"]["message"]
    r = httpx.post(f"{server}/completion", json={"prompt": "hi", "tool_choice": "required", "n_predict": 4},
                   headers=AUTH, timeout=60)
    assert r.status_code == 400 and "tool_choice" in r.json()["error"]["message"]
    _healthy(server)


def test_native_template_required_streamed_and_not(oai_native, native_server):
    """A forced call in the template's own format (the grammar wraps the JSON in <tool_call> / [TOOL_CALLS] where
    the format does), parsed back into tool_calls, streamed and not."""
    for seed in SEEDS[:2]:
        res = oai_native.chat.completions.create(model="gemma-test", messages=ASK, tools=TOOLS,
                                                 tool_choice="required", temperature=0.8, seed=seed,
                                                 max_tokens=MAX_TOKENS)
        choice = res.choices[0]
        _check_calls(choice.message, choice.finish_reason, set(SCHEMAS))
        with oai_native.chat.completions.stream(model="gemma-test", messages=ASK, tools=TOOLS,
                                                tool_choice={"type": "function", "function": {"name": "add_event"}},
                                                temperature=0.8, seed=seed, max_tokens=MAX_TOKENS) as stream:
            final = stream.get_final_completion()
        _check_calls(final.choices[0].message, final.choices[0].finish_reason, {"add_event"})
    _healthy(native_server)


def test_native_round_trip_and_auto(oai_native, native_server):
    """A history with a call and its result renders through the native template; ``auto`` (unconstrained, parsed
    afterwards) answers content or well-formed calls, streamed and not."""
    history = [*ASK,
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_abc123", "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
               {"role": "tool", "tool_call_id": "call_abc123", "content": '{"temperature": 18}'}]
    for messages in (history, ASK):
        res = oai_native.chat.completions.create(model="gemma-test", messages=messages, tools=TOOLS,
                                                 temperature=0.8, seed=3, max_tokens=60, extra_body=FRESH)
        choice = res.choices[0]
        assert choice.message.content is not None or choice.message.tool_calls
        if choice.message.tool_calls:
            assert choice.finish_reason == "tool_calls"
        content, names, finish, _ = _stream_collect(oai_native, model="gemma-test", messages=messages, tools=TOOLS,
                                                    temperature=0.8, seed=3, max_tokens=60, extra_body=FRESH)
        assert content == (choice.message.content or "")
        assert names == [c.function.name for c in choice.message.tool_calls or []]
        assert finish == choice.finish_reason
    _healthy(native_server)
