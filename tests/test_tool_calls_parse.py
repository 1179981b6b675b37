"""Unit tests of ``emberllm.chat.tool_calls``: format detection, the parsers on hand-written outputs of each family,
history rewriting and the grammars that force a call (checked with the GBNF engine)."""

from __future__ import annotations

import json

import pytest

from emberllm.chat.template import BUILTIN_TEMPLATES
from emberllm.chat.tool_calls import (
    call_schema,
    detect_format,
    new_call_id,
    parse_tool_calls,
    prepare_messages,
    tool_call_grammar,
)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                                    "unit": {"enum": ["c", "f"]}},
                   "required": ["city"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}

HERMES_TEMPLATE = ("{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
                   "{%- for c in m.tool_calls or [] %}<tool_call>\n{{ c.function | tojson }}\n</tool_call>"
                   "{%- endfor %}<|im_end|>\n{%- endfor %}")


def test_detect_format():
    assert detect_format(HERMES_TEMPLATE) == "hermes"
    assert detect_format("{{ '[TOOL_CALLS]' + calls|tojson }}[INST]") == "mistral"
    assert detect_format("<|start_header_id|>ipython<|end_header_id|>{% if tools %}{% endif %}") == "llama3"
    assert detect_format(BUILTIN_TEMPLATES["llama3"]) == "generic"  # the built-in knows no tools
    assert detect_format(BUILTIN_TEMPLATES["gemma"]) == "generic"
    assert detect_format(None) == "generic"


def test_parse_hermes():
    text = ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
            '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>')
    content, calls = parse_tool_calls(text, "hermes")
    assert content.strip() == "Let me check."
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"}),
                                                                  ("get_time", {})]
    # arguments given as a JSON string (some Qwen outputs), and a missing closing tag
    content, calls = parse_tool_calls('<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}', "hermes")
    assert content == "" and calls[0].arguments == '{"a": 1}'
    # not a call: all content
    assert parse_tool_calls("<tool_call>oops</tool_call>", "hermes") == ("<tool_call>oops</tool_call>", [])
    assert parse_tool_calls("plain answer", "hermes") == ("plain answer", [])


def test_parse_llama3():
    content, calls = parse_tool_calls('{"name": "get_weather", "parameters": {"city": "Oslo", "unit": "c"}}',
                                      "llama3")
    assert content == "" and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Oslo", "unit": "c"}
    _, calls = parse_tool_calls('<|python_tag|>{"name": "a", "arguments": {"x": 1}}; {"name": "b", "parameters": {}}',
                                "llama3")
    assert [c.name for c in calls] == ["a", "b"]
    assert parse_tool_calls("The weather is fine.", "llama3") == ("The weather is fine.", [])
    assert parse_tool_calls('{"answer": 42}', "llama3") == ('{"answer": 42}', [])


def test_parse_mistral():
    text = 'Sure. [TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Rome"}, "id": "abcDEF123"}]'
    content, calls = parse_tool_calls(text, "mistral")
    assert content == "Sure." and calls[0].id == "abcDEF123" and json.loads(calls[0].arguments) == {"city": "Rome"}
    content, calls = parse_tool_calls('[TOOL_CALLS]get_time[ARGS]{}[TOOL_CALLS]get_weather[ARGS]{"city": "X"}',
                                      "mistral")
    assert [c.name for c in calls] == ["get_time", "get_weather"] and content == ""
    assert parse_tool_calls("no calls", "mistral") == ("no calls", [])


def test_parse_generic():
    _, calls = parse_tool_calls('{"tool_call": {"name": "get_weather", "arguments": {"city": "Lima"}}}', "generic")
    assert calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Lima"}
    _, calls = parse_tool_calls('{"tool_calls": [{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]}',
                                "generic")
    assert [c.name for c in calls] == ["a", "b"]
    assert parse_tool_calls('{"response": "Hello there"}', "generic") == ("Hello there", [])
    assert parse_tool_calls("free text", "generic") == ("free text", [])
    assert parse_tool_calls('{"tool_call": {"oops": 1}}', "generic") == ('{"tool_call": {"oops": 1}}', [])
    with pytest.raises(ValueError, match="unknown tool-call format"):
        parse_tool_calls("", "nope")


def test_call_ids_and_openai_shape():
    ids = {new_call_id() for _ in range(50)}
    assert len(ids) == 50 and all(i.startswith("call_") and len(i) == 29 for i in ids)
    _, calls = parse_tool_calls('{"tool_call": {"name": "f", "arguments": {"a": [1, "é"]}}}', "generic")
    entry = calls[0].to_openai()
    assert entry["type"] == "function" and entry["function"] == {"name": "f", "arguments": '{"a": [1, "é"]}'}


def test_prepare_messages_generic_and_native():
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
    ]
    generic = prepare_messages(history, "generic", [WEATHER], "auto")
    assert generic[0]["role"] == "system" and "get_weather" in generic[0]["content"]
    assert json.loads(generic[2]["content"]) == {"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"},
                                                               "id": "call_1"}}
    assert generic[3]["role"] == "user"
    assert json.loads(generic[3]["content"]) == {"tool_response": {"tool": "get_weather", "content": "18 C, sunny",
                                                                   "tool_call_id": "call_1"}}
    native = prepare_messages(history, "hermes", [WEATHER], "auto")
    assert native[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert native[2] == history[2] and len(native) == 3
    assert history[1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'  # input untouched


CALL_TEXTS = {
    "generic": ('{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}',
                '{"response": "hi"}'),
    "hermes": ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
               'Paris is sunny.'),
    "llama3": ('{"name": "get_weather", "parameters": {"city": "Paris"}}', 'Paris is sunny.'),
    "mistral": ('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]', 'Paris is sunny.'),
}


@pytest.mark.parametrize("fmt", ["generic", "hermes", "llama3", "mistral"])
def test_required_grammar_accepts_calls_only(fmt):
    """A forced call's grammar takes a valid call in the format, which parses back, and refuses free text, an
    unknown function, and arguments that break the schema."""
    from emberllm.grammar.matcher import Matcher

    m = Matcher(tool_call_grammar([WEATHER, TIME], fmt, required=True, parallel=False))
    call, other = CALL_TEXTS[fmt]
    assert m.accepts(call)
    assert not m.accepts(other)
    assert not m.accepts(call.replace("get_weather", "get_wether"))
    assert not m.accepts(call.replace('"Paris"', "12"))
    _, calls = parse_tool_calls(call, fmt)
    assert calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Paris"}
    time_only = Matcher(tool_call_grammar([TIME], fmt, required=True, parallel=False))
    assert not time_only.accepts(call)


def test_parallel_grammars():
    from emberllm.grammar.matcher import Matcher

    block = '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
    assert Matcher(tool_call_grammar([TIME], "hermes", True, True)).accepts(block + "\n" + block)
    assert not Matcher(tool_call_grammar([TIME], "hermes", True, False)).accepts(block + "\n" + block)
    two = '{"tool_calls": [{"name": "get_time", "arguments": {}}, {"name": "get_time", "arguments": {}}]}'
    assert Matcher(tool_call_grammar([TIME], "generic", True, True)).accepts(two)
    assert len(parse_tool_calls(two, "generic")[1]) == 2


def test_auto_grammar():
    assert tool_call_grammar([WEATHER], "hermes", required=False, parallel=False) == ""
    assert tool_call_grammar([WEATHER], "generic", required=False, parallel=False)
    schema = call_schema([WEATHER], "generic", required=False, parallel=False)
    assert "anyOf" in schema
    from emberllm.grammar.matcher import Matcher

    m = Matcher(tool_call_grammar([WEATHER], "generic", required=False, parallel=False))
    assert m.accepts(CALL_TEXTS["generic"][0]) and m.accepts(CALL_TEXTS["generic"][1]) and not m.accepts("hi")


def test_history_and_tools_render_through_a_native_template():
    """Tools reach the template as ``tools``; an assistant call renders with its arguments as a value (not a
    JSON string in a string) and the tool result keeps its place."""
    from emberllm.chat.template import ChatTemplate

    template = ("{%- for t in tools or [] %}[TOOL {{ t.function.name }}]{% endfor %}"
                "{%- for m in messages %}<{{ m.role }}>{{ m.content or '' }}"
                "{%- for c in m.tool_calls or [] %}<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}"
                "{%- if m.tool_call_id %}({{ m.tool_call_id }}){% endif %}{% endfor %}")
    history = [{"role": "user", "content": "Weather?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    fmt = detect_format(template)
    assert fmt == "hermes"
    text = ChatTemplate(template).render(prepare_messages(history, fmt, [WEATHER]), tools=[WEATHER],
                                         add_generation_prompt=False)
    assert text == ('[TOOL get_weather]<user>Weather?<assistant><tool_call>{"name": "get_weather", "arguments": '
                    '{"city": "Paris"}}</tool_call><tool>sunny(call_1)')
    # the generic format through Gemma's built-in template: the calls and results become JSON turns
    gemma = ChatTemplate.builtin("gemma")
    text = gemma.render(prepare_messages(history, "generic", [WEATHER]), tools=[WEATHER])
    assert '{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}}' in text
    assert '"tool_response": {"tool": "get_weather", "content": "sunny"' in text
    assert "get_weather" in text.split("<start_of_turn>user\n", 1)[1]  # the tool list, in the first user turn


def test_content_prefix_len():
    from emberllm.chat.tool_calls import content_prefix_len

    assert content_prefix_len("Hello <tool", "hermes") == len("Hello ")
    assert content_prefix_len("Hello <tool_call>{", "hermes") == len("Hello ")
    assert content_prefix_len("a < b", "hermes") == len("a < b")
    assert content_prefix_len("ok [TOOL_", "mistral") == 3
    assert content_prefix_len("  ", "llama3") == 0
    assert content_prefix_len(" {", "llama3") == 0
    assert content_prefix_len("<|py", "llama3") == 0
    assert content_prefix_len("<b>", "llama3") == 3
    assert content_prefix_len("The answer", "llama3") == len("The answer")
    assert content_prefix_len('{"response": "x"}', "generic") == 0
    text = 'I will check. <tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
    lengths = [content_prefix_len(text[:i], "hermes") for i in range(len(text) + 1)]
    assert lengths == sorted(lengths) and lengths[-1] == len("I will check. ")


@pytest.mark.parametrize(("fmt", "reply", "content", "names"), [
    ("hermes", 'Let me look. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     "Let me look. ", ["get_weather"]),
    ("hermes", "No tools needed <here>.", "No tools needed <here>.", []),
    ("llama3", '{"name": "get_time", "parameters": {}}', "", ["get_time"]),
    ("generic", '{"response": "It is \\"sunny\\"."}', 'It is "sunny".', []),
    ("generic", '{"tool_calls": [{"name": "get_time", "arguments": {}}, {"name": "get_weather", "arguments": '
                '{"city": "Rome, Italy and around"}}]}', "", ["get_time", "get_weather"]),
])
def test_tool_stream_chunks(fmt, reply, content, names):
    """The streamed chunks of a reply, fed a few characters at a time: the content deltas join to the content
    (sent early for native formats), each call opens with index, id, type and name, its fragments join to its
    arguments, and the finish reason says tool_calls when there are calls."""
    from emberllm.edge_server.openai_api import ToolChatStream
    from emberllm.runtime.model import Step

    stream = ToolChatStream(None, "chatcmpl-x", 0, "m", 10, None, False, fmt=fmt)
    chunks = []
    for i in range(0, len(reply), 3):
        chunk = stream.step(Step(1, reply[i:i + 3]), 1)
        if chunk is not None:
            chunks.append(chunk)
    early = len(chunks)
    chunks += [c for c in stream.tail(Step(1, "", "stop"), None, 5) if c != "[DONE]"]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert "".join(d.get("content") or "" for d in deltas) == content
    if content:
        assert early > 0  # content streamed before the reply ended
    calls: dict[int, dict] = {}
    for d in deltas:
        for tc in d.get("tool_calls", []):
            if "id" in tc:
                assert tc["index"] not in calls and tc["type"] == "function" and tc["id"].startswith("call_")
                calls[tc["index"]] = {"name": tc["function"]["name"], "arguments": tc["function"]["arguments"]}
            else:
                calls[tc["index"]]["arguments"] += tc["function"]["arguments"]
    assert [calls[i]["name"] for i in sorted(calls)] == names
    for call in calls.values():
        json.loads(call["arguments"])
    assert chunks[-1]["choices"][0]["finish_reason"] == ("tool_calls" if names else "stop")


def test_streamable_content_generic_decodes_the_response_so_far():
    from emberllm.chat.tool_calls import streamable_content

    reply = '{"response": "Caf\\u00e9 \\"ok\\" \\ud83d\\ude00 done\\n"}'
    seen = [streamable_content(reply[:i], "generic") for i in range(len(reply) + 1)]
    assert all(b.startswith(a) for a, b in zip(seen, seen[1:], strict=False))
    assert seen[-1] == json.loads(reply)["response"]
    assert streamable_content('{"response": "Caf\\u00', "generic") == "Caf"
    assert streamable_content('{"response": "a\\ud83d', "generic") == "a"  # waits for the low surrogate
    assert streamable_content('{"tool_call": {"name": "x"', "generic") == ""
    assert streamable_content("Hello <tool_c", "hermes") == "Hello "
    # a response cut short parses to the part there is, as streamed
    assert parse_tool_calls('{"response": "It is sun', "generic") == ("It is sun", [])
