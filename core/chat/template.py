"""Chat templates: turn a list of chat messages into the prompt text a model was trained on.

A GGUF file usually carries its template as a Jinja2 string in ``tokenizer.chat_template``. It is rendered
here the way Hugging Face ``transformers`` renders it (``apply_chat_template``): an
``ImmutableSandboxedEnvironment`` with ``trim_blocks``/``lstrip_blocks``, the loop-control extension, a
``{% generation %}`` block tag, and the globals and filters real templates use -- ``bos_token``, ``eos_token``
(and the other special tokens the file names), ``messages``, ``tools``, ``documents``,
``add_generation_prompt``, ``raise_exception``, ``strftime_now``, a ``tojson`` filter that does not escape
HTML or non-ASCII text, plus any extra keyword (``enable_thinking=False``...). For the same inputs the output
is the same string ``transformers`` produces.

Files without a template get a built-in one, chosen by architecture (see :func:`builtin_for_architecture`),
or any template may be forced by name or given as Jinja text (``--chat-template``). The built-ins are Jinja
strings too (:data:`BUILTIN_TEMPLATES`):

* ``gemma`` -- ``<bos><start_of_turn>user\\n...<end_of_turn>\\n<start_of_turn>model\\n``; system messages are
  merged into the next user turn (``system + "\\n\\n" + user``), as Gemma's own template does; the same output as
  Gemma 3's template for plain conversations.
* ``chatml`` -- ``<|im_start|>role\\n...<|im_end|>\\n`` (Qwen 2/3, many fine-tunes), as llama.cpp's ``chatml``.
* ``llama3`` -- ``<|begin_of_text|><|start_header_id|>role<|end_header_id|>\\n\\n...<|eot_id|>`` (content
  trimmed), as Llama 3's template and llama.cpp's ``llama3``.
* ``llama2`` -- Meta's Llama 2 chat format: ``<s>[INST] <<SYS>>\\nsystem\\n<</SYS>>\\n\\nuser [/INST] answer </s>``
  with every turn stripped, as Meta's reference code and the official Llama-2-chat template produce.
* ``mistral-v7`` (alias ``mistral``) -- llama.cpp's ``mistral-v7``:
  ``<s>[SYSTEM_PROMPT] system[/SYSTEM_PROMPT][INST] user[/INST] answer</s>``. This is the form chosen for
  ``mistral``: it is the only Mistral format with a real system prompt; older ``[INST]``-only Mistral files ship
  their own template anyway.
* ``phi3`` -- ``<|role|>\\n...<|end|>\\n`` then ``<|assistant|>\\n``, as llama.cpp's ``phi3``.

The built-ins write the BOS text first where the model family's own template does (gemma, llama3, llama2,
mistral); :meth:`ChatTemplate.render_prompt` drops a leading BOS text when the tokenizer adds BOS itself, as
llama.cpp does, so the prompt never starts with two BOS tokens.

:func:`name_of` reports which family a template text belongs to, with llama.cpp's marker heuristics and names.

Pure Python (jinja2 only): runs under Pyodide.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

__all__ = [
    "BUILTIN_ALIASES",
    "BUILTIN_TEMPLATES",
    "ChatTemplate",
    "ChatTemplateError",
    "builtin_for_architecture",
    "builtin_names",
    "name_of",
]


class ChatTemplateError(ValueError):
    """A chat template could not be compiled or rendered, or it called ``raise_exception``."""


# --------------------------------------------------------------------------------------------------------
# Built-in templates (Jinja source). Written on one logical line each, with whitespace control everywhere,
# so trim_blocks/lstrip_blocks never matter. `bos_token`/`eos_token` may be undefined: `default('', true)`.
# --------------------------------------------------------------------------------------------------------

_GEMMA = (
    "{%- set bos = bos_token | default('', true) -%}"
    "{{- bos -}}"
    "{%- set ns = namespace(system='') -%}"
    "{%- for message in messages -%}"
    "{%- set content = message['content'] or '' -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- set ns.system = ns.system + content + '\\n\\n' -%}"
    "{%- else -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{- '<start_of_turn>' + role + '\\n' -}}"
    "{%- if ns.system and role != 'model' -%}{{- ns.system -}}{%- set ns.system = '' -%}{%- endif -%}"
    "{{- content | trim + '<end_of_turn>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
)

_CHATML = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

_LLAMA3 = (
    "{{- bos_token | default('', true) -}}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + (message['content'] or '') | trim + '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)

_LLAMA2 = (
    "{%- set bos = bos_token | default('', true) -%}"
    "{%- set eos = eos_token | default('', true) -%}"
    "{%- set ns = namespace(system='') -%}"
    "{%- for message in messages -%}"
    "{%- set content = message['content'] or '' -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- set ns.system = (ns.system + '\\n\\n' + content) if ns.system else content -%}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- ' ' + content | trim + ' ' + eos -}}"
    "{%- else -%}"
    "{%- if ns.system -%}"
    "{%- set content = '<<SYS>>\\n' + ns.system + '\\n<</SYS>>\\n\\n' + content -%}"
    "{%- set ns.system = '' -%}"
    "{%- endif -%}"
    "{{- bos + '[INST] ' + content | trim + ' [/INST]' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

_MISTRAL_V7 = (
    "{{- bos_token | default('', true) -}}"
    "{%- set eos = eos_token | default('</s>', true) -%}"
    "{%- for message in messages -%}"
    "{%- set content = message['content'] or '' -%}"
    "{%- if message['role'] == 'system' -%}{{- '[SYSTEM_PROMPT] ' + content + '[/SYSTEM_PROMPT]' -}}"
    "{%- elif message['role'] == 'assistant' -%}{{- ' ' + content + eos -}}"
    "{%- else -%}{{- '[INST] ' + content + '[/INST]' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

_PHI3 = (
    "{%- for message in messages -%}"
    "{{- '<|' + message['role'] + '|>\\n' + (message['content'] or '') + '<|end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
)

# llama.cpp's legacy "command-r" (Command-R/R+): each turn between <|START_OF_TURN_TOKEN|> and <|END_OF_TURN_TOKEN|>
# with the role's token, content trimmed
_COMMAND_R = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{- '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>' -}}"
    "{%- elif message['role'] == 'user' -%}{{- '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' -}}"
    "{%- else -%}{{- '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' -}}{%- endif -%}"
    "{{- ((message['content'] or '') | trim) + '<|END_OF_TURN_TOKEN|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' -}}{%- endif -%}"
)

#: Built-in templates by name (Jinja source).
BUILTIN_TEMPLATES: dict[str, str] = {
    "gemma": _GEMMA,
    "chatml": _CHATML,
    "llama3": _LLAMA3,
    "llama2": _LLAMA2,
    "mistral-v7": _MISTRAL_V7,
    "phi3": _PHI3,
    "command-r": _COMMAND_R,
}

#: Other names accepted for a built-in.
BUILTIN_ALIASES: dict[str, str] = {"mistral": "mistral-v7"}

# Architectures whose files without a template get a given built-in; `llama` is decided by its vocabulary.
_ARCH_TEMPLATES: dict[str, str] = {
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma",
    "gemma3n": "gemma",
    "qwen2": "chatml",
    "qwen2moe": "chatml",
    "qwen3": "chatml",
    "qwen3moe": "chatml",
    "phi3": "phi3",
}

#: What llama.cpp falls back to for a file with no template and an architecture it has no rule for.
DEFAULT_TEMPLATE = "chatml"

# End-of-turn texts per template family (llama.cpp's names). Families not listed imply only the EOS text.
_FAMILY_STOPS: dict[str, tuple[str, ...]] = {
    "gemma": ("<end_of_turn>",),
    "chatml": ("<|im_end|>",),
    "phi4": ("<|im_end|>",),
    "llama3": ("<|eot_id|>", "<|eom_id|>"),
    "llama4": ("<|eot|>",),
    "llama2": ("</s>",),
    "llama2-sys": ("</s>",),
    "llama2-sys-bos": ("</s>",),
    "llama2-sys-strip": ("</s>",),
    "mistral-v1": ("</s>",),
    "mistral-v3": ("</s>",),
    "mistral-v3-tekken": ("</s>",),
    "mistral-v7": ("</s>",),
    "phi3": ("<|end|>", "<|endoftext|>"),
    "zephyr": ("<|endoftext|>",),
    "command-r": ("<|END_OF_TURN_TOKEN|>",),
    "deepseek": ("<|EOT|>",),
    "deepseek3": ("<\uff5cend\u2581of\u2581sentence\uff5c>",),
    "granite": ("<|end_of_text|>",),
    "gpt-oss": ("<|return|>", "<|call|>"),
    "smolvlm": ("<end_of_utterance>",),
}


def builtin_names() -> list[str]:
    """The names accepted for a built-in template (aliases included), sorted."""
    return sorted({*BUILTIN_TEMPLATES, *BUILTIN_ALIASES})


def _resolve_builtin(name: str) -> str | None:
    key = name.strip().lower()
    key = BUILTIN_ALIASES.get(key, key)
    return key if key in BUILTIN_TEMPLATES else None


def builtin_for_architecture(architecture: str | None, tokens: Sequence[str] | None = None) -> str:
    """The built-in template for a file of ``architecture`` that carries none.

    gemma/gemma2/gemma3 -> ``gemma``; qwen2/qwen3 -> ``chatml``; phi3 -> ``phi3``; llama -> ``llama3`` when the
    vocabulary has ``<|start_header_id|>``, else ``llama2``. Anything else -> ``chatml`` (llama.cpp's default).
    """
    arch = (architecture or "").lower()
    if arch == "llama":
        return "llama3" if tokens is not None and "<|start_header_id|>" in tokens else "llama2"
    return _ARCH_TEMPLATES.get(arch, DEFAULT_TEMPLATE)


# --------------------------------------------------------------------------------------------------------
# Family detection (llama.cpp's heuristics: markers in the template text, tried in llama.cpp's order)
# --------------------------------------------------------------------------------------------------------


def _llama2_or_mistral(t: str) -> str:
    if "[SYSTEM_PROMPT]" in t:
        return "mistral-v7"
    if "' [INST] ' + system_message" in t or "[AVAILABLE_TOOLS]" in t:
        if " [INST]" in t:
            return "mistral-v1"
        if '"[INST]"' in t:
            return "mistral-v3-tekken"
        return "mistral-v3"
    if "content.strip()" in t:
        return "llama2-sys-strip"
    if "bos_token + '[INST]" in t:
        return "llama2-sys-bos"
    if "<<SYS>>" in t:
        return "llama2-sys"
    return "llama2"


def _has(*markers: str) -> Callable[[str], bool]:
    return lambda t: all(m in t for m in markers)


_DETECTORS: tuple[tuple[Callable[[str], bool], str | Callable[[str], str]], ...] = (
    (_has("<|im_start|>"), lambda t: "phi4" if "<|im_sep|>" in t else "smolvlm" if "<end_of_utterance>" in t
        else "chatml"),
    (lambda t: t.startswith("mistral") or "[INST]" in t, _llama2_or_mistral),
    (_has("<|assistant|>", "<|end|>"), "phi3"),
    (_has("[gMASK]<sop>"), "chatglm4"),
    (_has("<|assistant|>", "<|user|>"), lambda t: "exaone-moe" if "<|tool_declare|>" in t
        else "falcon3" if "</s>" in t else "glmedge"),
    (_has("<|user|>", "<|endoftext|>"), "zephyr"),
    (_has("bos_token + message['role']"), "monarch"),
    (_has("<start_of_turn>"), "gemma"),
    (_has("'\\n\\nAssistant: ' + eos_token"), "orion"),
    (_has("GPT4 Correct "), "openchat"),
    (_has("USER: ", "ASSISTANT: "), lambda t: "vicuna-orca" if "SYSTEM: " in t else "vicuna"),
    (_has("### Instruction:", "<|EOT|>"), "deepseek"),
    (_has("<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>"), "command-r"),
    (_has("<|start_header_id|>", "<|end_header_id|>"), "llama3"),
    (_has("[gMASK]sop"), "chatglm3"),
    (_has("<\u7528\u6237>"), "minicpm"),
    (_has("'Assistant: ' + message['content'] + eos_token"), "deepseek2"),
    (_has("<\uff5cAssistant\uff5c>", "<\uff5cUser\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>"), "deepseek3"),
    (_has("[|system|]", "[|assistant|]", "[|endofturn|]"), lambda t: "exaone4" if "[|tool|]" in t else "exaone3"),
    (_has("<|start_of_role|>"), "granite"),
    (_has("<|header_start|>", "<|header_end|>"), "llama4"),
    (_has("<|start|>", "<|channel|>"), "gpt-oss"),
    (_has("<|im_assistant|>assistant<|im_middle|>"), "kimi-k2"),
    (_has("<seed:bos>"), "seed_oss"),
)


def name_of(template: str) -> str | None:
    """The family of a template text, with llama.cpp's names (``gemma``, ``chatml``, ``llama3``...), or ``None``.

    A built-in's name (or alias) is returned as its canonical name, another llama.cpp name as itself.
    Otherwise the text is searched for the markers llama.cpp's ``llm_chat_detect_template`` looks for, in the
    same order (a subset of its rules).
    """
    if not template:
        return None
    if len(template) < 64:
        builtin = _resolve_builtin(template)
        if builtin is not None:
            return builtin
        if template.strip().lower() in _FAMILY_STOPS:  # another llama.cpp name
            return template.strip().lower()
    for test, result in _DETECTORS:
        if test(template):
            return result if isinstance(result, str) else result(template)
    return None


# --------------------------------------------------------------------------------------------------------
# Jinja environment (transformers' semantics)
# --------------------------------------------------------------------------------------------------------


def _cut_after_final(text: str, final: Mapping[str, Any]) -> str:
    """``text`` up to the end of the final message's content (transformers' ``continue_final_message``: the content's
    last occurrence, or its stripped text's when the template trimmed it)."""
    content = final.get("content")
    probes: list[str] = []
    if isinstance(content, list):  # the template joins the parts its own way: what it renders last is the last part
        texts = [p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text"]
        probes = [sep.join(texts) for sep in ("\n", "\n\n", "")] + texts[-1:]
    elif isinstance(content, str):
        probes = [content]
    probes = [q for p in probes for q in (p, p.strip()) if q.strip()]
    if not probes:
        raise ValueError("continue_final_message: the final message has no text content to continue")
    for probe in probes:
        at = text.rfind(probe)
        if at >= 0:
            return text[: at + len(probe)]
    raise ValueError("continue_final_message: the chat template does not render the final message's content verbatim")


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"chat template error: {message}")


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | str | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """``tojson`` as transformers defines it: plain ``json.dumps`` (no HTML escaping, non-ASCII kept)."""
    if isinstance(separators, list):
        separators = tuple(separators)  # type: ignore[assignment]
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    """The current local time formatted with ``strftime`` (templates put today's date in system prompts)."""
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2
    import jinja2.ext
    import jinja2.nodes
    import jinja2.utils
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}`` (marks assistant text for training masks): renders its body."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Callable[[], str]) -> str:
            return caller()

    def check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"a template may not set the attribute {name!r} on a namespace")

    class SafeNamespace(jinja2.utils.Namespace):
        """``namespace()`` that refuses underscore-prefixed attributes (no reach into Python internals)."""

        def __init__(*args: Any, **kwargs: Any) -> None:  # `self` in args, as in jinja2.utils.Namespace
            self, rest = args[0], args[1:]
            attrs = dict(*rest, **kwargs)
            for name in attrs:
                check_name(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name: str, value: Any) -> None:
            check_name(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

    class SafeDict:
        """``dict(...)`` and ``dict.fromkeys(...)`` without handing the ``dict`` type itself to templates."""

        def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
            return dict(*args, **kwargs)

        def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
            return dict.fromkeys(*args, **kwargs)

    class LenientUndefined(jinja2.ChainableUndefined):
        """llama.cpp's undefined: empty text, false, no items, its attributes undefined too, and nothing when added
        to a string (a template's ``"\\n" + functions`` renders without ``functions``)."""

        def __init__(self, hint: str | None = None, obj: Any = jinja2.utils.missing, name: str | None = None,
                     exc: type[Exception] = jinja2.exceptions.UndefinedError) -> None:
            if issubclass(exc, jinja2.exceptions.SecurityError):  # the sandbox's refusal is an error, never a blank
                raise exc(hint or f"access to {name!r} is unsafe")
            super().__init__(hint, obj, name, exc)

        def __add__(self, other: Any) -> Any:
            return other

        def __radd__(self, other: Any) -> Any:
            return other

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols],
        undefined=LenientUndefined,
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["namespace"] = SafeNamespace
    env.globals["dict"] = SafeDict()
    return env


@lru_cache(maxsize=32)
def _compile(source: str) -> Any:
    import jinja2

    try:
        return _environment().from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ChatTemplateError(f"chat template does not compile: {exc.message} (line {exc.lineno})") from exc


# --------------------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------------------

_REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")
_PROBE = "EMBERLLM_CONTENT_PROBE"

ContentMode = Literal["both", "string", "typed"]


def _plain(value: Any) -> Any:
    """A copy made of plain JSON types only (what the sandbox may safely see); other objects become ``<Type>``."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return f"<{type(value).__name__}>"


def _join_text_parts(parts: Sequence[Any]) -> str:
    """Content parts -> one string: the ``text`` parts joined with newlines (llama.cpp's rule; others dropped)."""
    texts = [str(p.get("text", "")) for p in parts if isinstance(p, Mapping) and p.get("type") == "text"]
    return "\n".join(texts)


def _prepare_messages(messages: Sequence[Mapping[str, Any]], mode: ContentMode) -> list[dict[str, Any]]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of dicts, got {type(messages).__name__}")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TypeError(f"message {i} must be a dict with 'role' and 'content', got {type(message).__name__}")
        if "role" not in message:
            raise ChatTemplateError(f"message {i} has no 'role'")
        msg = _plain(message)
        content = msg.get("content")
        if mode == "string" and isinstance(content, (list, tuple)):
            msg["content"] = _join_text_parts(content)
        elif mode == "typed" and isinstance(content, str):
            msg["content"] = [{"type": "text", "text": content}]
        reasoning = next((msg[k] for k in _REASONING_KEYS if msg.get(k) is not None), None)
        if reasoning is not None:  # templates read it under different names: offer it under all of them
            msg = {"thinking": reasoning, **msg, "reasoning_content": reasoning}
        out.append(msg)
    return out


# --------------------------------------------------------------------------------------------------------
# ChatTemplate
# --------------------------------------------------------------------------------------------------------

Source = Literal["gguf", "builtin", "custom"]


def _token_text(tokens: Sequence[str] | None, metadata: Mapping[str, Any], key: str) -> str | None:
    tid = metadata.get(key)
    if tokens is None or not isinstance(tid, int) or not 0 <= tid < len(tokens):
        return None
    return str(tokens[tid])


def _looks_like_jinja(text: str) -> bool:
    """Template text rather than a name: Jinja tags, or words (a name has no spaces; text without tags renders as
    itself, as llama-server's --jinja takes any --chat-template text)."""
    return "{{" in text or "{%" in text or any(c.isspace() for c in text.strip())


class ChatTemplate:
    """A chat template ready to render: its Jinja source, where it came from, and the stops it implies.

    Build one with :meth:`from_metadata` (a GGUF's metadata, optionally overridden by name or Jinja text), or
    directly from Jinja text. ``special_tokens`` are the template variables ``bos_token``, ``eos_token``...
    (texts); a missing one stays undefined, as in transformers.
    """

    def __init__(self, template: str, *, source: Source = "custom", name: str | None = None,
                 special_tokens: Mapping[str, str] | None = None, tokens: Sequence[str] | None = None,
                 add_bos: bool | None = None, add_eos: bool | None = None) -> None:
        """Compile ``template`` (raises :class:`ChatTemplateError` on a syntax error).

        ``name`` defaults to :func:`name_of` the text (``"jinja"`` when no family is recognised). ``tokens`` (the
        vocabulary) lets :attr:`stop_token_ids` map stop strings to ids. ``add_bos``/``add_eos`` are the
        tokenizer's own BOS/EOS habits, used by :meth:`render_prompt`.
        """
        if not isinstance(template, str) or not template:
            raise ChatTemplateError("a chat template must be a non-empty string")
        self.template = template
        self.source: Source = source
        self._family = _resolve_builtin(name) if (name and source == "builtin") else name_of(template)
        self.name: str = name or self._family or "jinja"
        self.special_tokens: dict[str, str] = {k: v for k, v in (special_tokens or {}).items() if v is not None}
        self.add_bos = add_bos
        self.add_eos = add_eos
        self._tokens = tokens
        self._compiled = _compile(template)
        # Built-ins read plain string content; others are probed on first use.
        self._content_mode: ContentMode | None = "string" if source == "builtin" else None

    def __repr__(self) -> str:
        return f"ChatTemplate(name={self.name!r}, source={self.source!r})"

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def builtin(cls, name: str, **kwargs: Any) -> ChatTemplate:
        """A built-in template by name (``ValueError`` listing the built-ins for an unknown name)."""
        key = _resolve_builtin(name)
        if key is None:
            raise ValueError(f"unknown chat template {name!r}; built-in templates: {', '.join(builtin_names())}")
        return cls(BUILTIN_TEMPLATES[key], source="builtin", name=key, **kwargs)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], override: str | None = None) -> ChatTemplate:
        """The template for a model from its GGUF metadata.

        ``override`` (``--chat-template``) may be a built-in name, the name of one of the file's named templates
        (``tokenizer.chat_template.NAME``, e.g. ``tool_use``), or Jinja text; an unknown name is a
        ``ValueError`` listing the built-ins. Without it: the file's ``tokenizer.chat_template`` if it has one,
        else the built-in for its architecture (:func:`builtin_for_architecture`).
        """
        tokens = metadata.get("tokenizer.ggml.tokens")
        if tokens is not None and not isinstance(tokens, Sequence):
            tokens = None
        specials = {
            "bos_token": _token_text(tokens, metadata, "tokenizer.ggml.bos_token_id"),
            "eos_token": _token_text(tokens, metadata, "tokenizer.ggml.eos_token_id"),
            "unk_token": _token_text(tokens, metadata, "tokenizer.ggml.unknown_token_id"),
            "pad_token": _token_text(tokens, metadata, "tokenizer.ggml.padding_token_id"),
        }
        add_bos = metadata.get("tokenizer.ggml.add_bos_token")
        add_eos = metadata.get("tokenizer.ggml.add_eos_token")
        common: dict[str, Any] = {
            "special_tokens": specials,
            "tokens": tokens,
            "add_bos": add_bos if isinstance(add_bos, bool) else None,
            "add_eos": add_eos if isinstance(add_eos, bool) else None,
        }
        if override is not None and override.strip():
            if _resolve_builtin(override) is not None:
                return cls.builtin(override, **common)
            named = metadata.get(f"tokenizer.chat_template.{override.strip()}")
            if isinstance(named, str) and named:
                return cls(named, source="gguf", **common)
            if _looks_like_jinja(override):
                return cls(override, source="custom", **common)
            raise ValueError(
                f"unknown chat template {override!r}; built-in templates: {', '.join(builtin_names())} "
                "(or pass the template's Jinja text)"
            )
        embedded = metadata.get("tokenizer.chat_template")
        if isinstance(embedded, str) and embedded.strip():
            return cls(embedded, source="gguf", **common)
        return cls.builtin(builtin_for_architecture(metadata.get("general.architecture"), tokens), **common)

    # -- properties --------------------------------------------------------------------------------------
    @property
    def bos_token(self) -> str | None:
        """The BOS text given to the template (``None`` when the vocabulary has none)."""
        return self.special_tokens.get("bos_token")

    @property
    def eos_token(self) -> str | None:
        """The EOS text given to the template (``None`` when the vocabulary has none)."""
        return self.special_tokens.get("eos_token")

    @property
    def stop_strings(self) -> list[str]:
        """Texts that end the model's turn under this template: the family's end-of-turn markers, then EOS.

        E.g. ``["<end_of_turn>", "<eos>"]`` for Gemma, ``["<|im_end|>", ...]`` for ChatML.
        """
        stops = list(_FAMILY_STOPS.get(self._family or "", ()))
        eos = self.eos_token
        if eos and eos not in stops:
            stops.append(eos)
        return stops

    @property
    def stop_token_ids(self) -> list[int]:
        """Ids of the :attr:`stop_strings` that are single tokens of the vocabulary (needs ``tokens``)."""
        if self._tokens is None:
            return []
        ids = []
        for text in self.stop_strings:
            try:
                ids.append(self._tokens.index(text))
            except ValueError:
                continue
        return ids

    # -- rendering ---------------------------------------------------------------------------------------
    def render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
               tools: Sequence[Mapping[str, Any]] | None = None, *, continue_final_message: bool = False,
               **kwargs: Any) -> str:
        """Render a conversation to prompt text: the same string transformers' ``apply_chat_template`` makes.

        ``messages``: dicts with ``role`` and ``content`` (a string, or a list of parts like
        ``{"type": "text", "text": ...}``; for templates that only read string content the text parts are
        joined with newlines, as llama.cpp does). ``tools``: JSON schemas of functions. Extra keywords
        (``enable_thinking=False``, ``documents=...``, ``date_string=...``) become template variables and may
        override the special tokens and llama.cpp's ``date_string``/``datetime`` (today). Errors, including the
        template's own ``raise_exception``, raise :class:`ChatTemplateError`.

        ``continue_final_message``: the text ends inside the last (assistant) message, right after its content, so
        that generation continues it (transformers' and llama-server's assistant prefill); it excludes
        ``add_generation_prompt``.
        """
        if continue_final_message and add_generation_prompt:
            raise ValueError("add_generation_prompt and continue_final_message cannot both be true")
        if tools is not None and any(not isinstance(t, Mapping) for t in tools):
            raise TypeError("tools must be JSON schemas (dicts)")
        mode = self._content_mode or self._probe_content_mode()
        variables: dict[str, Any] = dict(self.special_tokens)
        # llama.cpp's extra context: today's date as Llama 3.x ("26 Jul 2024") and FireFunction ("Jul 26 2024") read it
        now = datetime.now()
        variables.update(date_string=now.strftime("%d %b %Y"), datetime=now.strftime("%b %d %Y"))
        variables.update(_plain(kwargs))
        variables.setdefault("documents", None)
        variables["messages"] = _prepare_messages(messages, mode)
        variables["tools"] = _plain(list(tools)) if tools is not None else None
        variables["add_generation_prompt"] = bool(add_generation_prompt)
        text = self._render(variables)
        return _cut_after_final(text, messages[-1]) if continue_final_message and messages else text

    def render_prompt(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
                      tools: Sequence[Mapping[str, Any]] | None = None, *, add_bos: bool | None = None,
                      add_eos: bool | None = None, continue_final_message: bool = False, **kwargs: Any) -> str:
        """:meth:`render`, less a leading BOS text when the tokenizer adds BOS itself (and a trailing EOS text when
        it adds EOS), as llama.cpp does: the text to tokenize with the vocabulary's usual special-token rules.

        ``add_bos``/``add_eos`` default to the file's ``tokenizer.ggml.add_bos_token``/``add_eos_token``.
        """
        text = self.render(messages, add_generation_prompt=add_generation_prompt, tools=tools,
                           continue_final_message=continue_final_message, **kwargs)
        if continue_final_message:  # the text ends inside the message: no end-of-sequence text to take off
            add_eos = False
        add_bos = self.add_bos if add_bos is None else add_bos
        add_eos = self.add_eos if add_eos is None else add_eos
        bos, eos = self.bos_token, self.eos_token
        if add_bos and bos and text.startswith(bos):
            text = text[len(bos):]
        if add_eos and eos and text.endswith(eos):
            text = text[: -len(eos)]
        return text

    def _render(self, variables: dict[str, Any]) -> str:
        import jinja2

        try:
            return self._compiled.render(**variables)
        except ChatTemplateError:
            raise
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"chat template failed: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # templates can raise anything Python can (TypeError on None + str...)
            raise ChatTemplateError(f"chat template failed: {type(exc).__name__}: {exc}") from exc

    def _probe_content_mode(self) -> ContentMode:
        """Whether the template reads string content, a list of typed parts, or both (decided once).

        Like llama.cpp's capability probe: render one user message both ways. Typed content counts as supported
        when it renders exactly as the same text given as a string (or, when strings fail, shows the text).
        """
        base = {**self.special_tokens, "tools": None, "documents": None, "add_generation_prompt": True}

        def attempt(content: Any) -> str | None:
            try:
                return self._compiled.render(**base, messages=[{"role": "user", "content": content}])
            except Exception:
                return None

        as_string = attempt(_PROBE)
        as_typed = attempt([{"type": "text", "text": _PROBE}])
        string_ok = as_string is not None and _PROBE in as_string
        if string_ok:
            typed_ok = as_typed == as_string
        else:
            typed_ok = as_typed is not None and _PROBE in as_typed and "'text'" not in as_typed
        mode: ContentMode = "both" if string_ok and typed_ok else "typed" if typed_ok else "string"
        self._content_mode = mode
        return mode
