"""Chat prompts without Jinja: the built-in templates of :mod:`emberllm.chat.template` as plain Python.

Pyodide's npm package has no ``jinja2``, so the browser cannot compile a template. For the built-in families
(``gemma``, ``chatml``, ``llama3``, ``llama2``, ``mistral-v7``, ``phi3``, ``command-r``) this module renders the same
text the Jinja built-ins do (checked against them in ``tests/test_chat_plain.py``). A file that carries its own Jinja
template is rendered with the built-in of the family that template is detected as (llama.cpp's heuristics,
:func:`emberllm.chat.template.name_of`), or ChatML when no family is recognised.

Pure Python, no imports beyond :mod:`emberllm.chat.template`'s tables (which themselves import jinja2 lazily).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from emberllm.chat.template import (
    _FAMILY_STOPS,
    BUILTIN_ALIASES,
    DEFAULT_TEMPLATE,
    builtin_for_architecture,
    name_of,
)

__all__ = ["PLAIN_FAMILIES", "plain_family", "plain_prompt", "render_plain"]

Message = Mapping[str, Any]


def _text(message: Message) -> str:
    """A message's content as one string (typed text parts joined with newlines, as the built-ins see them)."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, list | tuple):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return str(content)


def _gemma(messages: Sequence[Message], bos: str, eos: str, gen: bool) -> str:
    out, system = [bos], ""
    for m in messages:
        content = _text(m)
        if m["role"] == "system":
            system += content + "\n\n"
            continue
        role = "model" if m["role"] == "assistant" else str(m["role"])
        out.append(f"<start_of_turn>{role}\n")
        if system and role != "model":
            out.append(system)
            system = ""
        out.append(content.strip() + "<end_of_turn>\n")
    if gen:
        out.append("<start_of_turn>model\n")
    return "".join(out)


def _chatml(messages: Sequence[Message], bos: str, eos: str, gen: bool) -> str:
    out = [f"<|im_start|>{m['role']}\n{_text(m)}<|im_end|>\n" for m in messages]
    return "".join(out) + ("<|im_start|>assistant\n" if gen else "")


def _llama3(messages: Sequence[Message], bos: str, eos: str, gen: bool) -> str:
    out = [bos] + [f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{_text(m).strip()}<|eot_id|>"
                   for m in messages]
    return "".join(out) + ("<|start_header_id|>assistant<|end_header_id|>\n\n" if gen else "")


def _llama2(messages: Sequence[Message], bos: str, eos: str, gen: bool) -> str:
    out, system = [], ""
    for m in messages:
        content = _text(m)
        if m["role"] == "system":
            system = f"{system}\n\n{content}" if system else content
        elif m["role"] == "assistant":
            out.append(f" {content.strip()} {eos}")
        else:
            if system:
                content = f"<<SYS>>\n{system}\n<</SYS>>\n\n{content}"
                system = ""
            out.append(f"{bos}[INST] {content.strip()} [/INST]")
    return "".join(out)


def _mistral_v7(messages: Sequence[Message], bos: str, eos: str, gen: bool) -> str:
    eos = eos or "</s>"
    out = [bos]
    for m in messages:
        content = _text(m)
        if m["role"] == "system":
            out.append(f"[SYSTEM_PROMPT] {content}[/SYSTEM_PROMPT]")
        elif m["role"] == "assistant":
            out.append(f" {content}{eos}")
        else:
            out.append(f"[INST] {content}[/INST]")
    return "".join(out)


def _phi3(messages: Sequence[Message], bos: str, eos: str, gen: bool) -> str:
    out = [f"<|{m['role']}|>\n{_text(m)}<|end|>\n" for m in messages]
    return "".join(out) + ("<|assistant|>\n" if gen else "")


def _command_r(messages: Sequence[Message], bos: str, eos: str, gen: bool) -> str:
    names = {"system": "SYSTEM", "user": "USER", "assistant": "CHATBOT"}
    out = [bos] + [f"<|START_OF_TURN_TOKEN|><|{names.get(m['role'], 'CHATBOT')}_TOKEN|>"
                   f"{_text(m).strip()}<|END_OF_TURN_TOKEN|>" for m in messages]
    return "".join(out) + ("<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>" if gen else "")


#: Plain renderers by built-in family name.
PLAIN_FAMILIES: dict[str, Callable[[Sequence[Message], str, str, bool], str]] = {
    "gemma": _gemma,
    "chatml": _chatml,
    "llama3": _llama3,
    "llama2": _llama2,
    "mistral-v7": _mistral_v7,
    "phi3": _phi3,
    "command-r": _command_r,
}


def render_plain(family: str, messages: Sequence[Message], bos_token: str | None = None,
                 eos_token: str | None = None, add_generation_prompt: bool = True) -> str:
    """The text the Jinja built-in ``family`` renders for ``messages`` (``bos_token``/``eos_token`` may be None)."""
    key = BUILTIN_ALIASES.get(family, family)
    if key not in PLAIN_FAMILIES:
        raise ValueError(f"no plain renderer for chat template family {family!r}; known: {sorted(PLAIN_FAMILIES)}")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m:
            raise ValueError(f"message {i} must be a dict with 'role' and 'content'")
    return PLAIN_FAMILIES[key](messages, bos_token or "", eos_token or "", add_generation_prompt)


def _token(metadata: Mapping[str, Any], key: str) -> str | None:
    tokens = metadata.get("tokenizer.ggml.tokens")
    idx = metadata.get(key)
    if tokens is None or not isinstance(idx, int) or not 0 <= idx < len(tokens):
        return None
    return str(tokens[idx])


def plain_family(metadata: Mapping[str, Any]) -> str:
    """The plain family for a GGUF's metadata: the file template's family when it has a plain renderer, the
    architecture's built-in when the file has no template, else ChatML."""
    template = metadata.get("tokenizer.chat_template")
    if isinstance(template, str) and template:
        family = name_of(template)
        return family if family in PLAIN_FAMILIES else DEFAULT_TEMPLATE
    return builtin_for_architecture(metadata.get("general.architecture"), metadata.get("tokenizer.ggml.tokens"))


def plain_prompt(metadata: Mapping[str, Any], messages: Sequence[Message]) -> tuple[str, list[str]]:
    """Prompt text (less a leading BOS text when the tokenizer adds BOS, as ``render_prompt``) and stop strings."""
    family = plain_family(metadata)
    bos = _token(metadata, "tokenizer.ggml.bos_token_id")
    eos = _token(metadata, "tokenizer.ggml.eos_token_id")
    text = render_plain(family, messages, bos, eos)
    if metadata.get("tokenizer.ggml.add_bos_token") is True and bos and text.startswith(bos):
        text = text[len(bos):]
    stops = list(_FAMILY_STOPS.get(family, ()))
    if eos and eos not in stops:
        stops.append(eos)
    return text, stops
