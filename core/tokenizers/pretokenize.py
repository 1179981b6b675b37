"""BPE pre-tokenizers: llama.cpp's splits chosen by ``tokenizer.ggml.pre``, with the standard ``re`` module.

A pre-tokenizer is a sequence of splits; each cuts every piece from the previous one into its regex matches and
the text between them (Hugging Face's ``Split(behavior="Isolated")``, llama.cpp's ``unicode_regex_split``; an
empty match cuts too). Patterns that need Unicode classes run over the class string of
:mod:`emberllm.tokenizers.unicode_classes`; patterns with explicit code point ranges run over the text (non-ASCII
White_Space read as U+000B, as llama.cpp's ``std::wregex`` path reads it). The few splits llama.cpp writes as
code (Kimi K2, AFMoE's digits) are functions (:mod:`emberllm.tokenizers.pre_custom`). The patterns are in
:mod:`emberllm.tokenizers.pre_patterns`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from emberllm.tokenizers import pre_custom
from emberllm.tokenizers import pre_patterns as pat
from emberllm.tokenizers.unicode_classes import L, N, P, S, classify, text_subject

#: A split written as code: (text, class string, start, end) -> spans
CustomSplit = Callable[[str, str, int, int], list[tuple[int, int]]]


@dataclass(frozen=True)
class Split:
    """One split: a regex over the class string (``on_classes``) or the text, or llama.cpp's custom code."""

    pattern: re.Pattern[str] | None
    on_classes: bool = True
    custom: CustomSplit | None = None

    def spans(self, text: str, classes: str, subject: str, start: int, end: int) -> list[tuple[int, int]]:
        """The pieces of ``[start, end)``: matches and the text between them (an empty match only cuts)."""
        if self.custom is not None:
            return self.custom(text, classes, start, end)
        assert self.pattern is not None
        out: list[tuple[int, int]] = []
        pos = start
        for match in self.pattern.finditer(classes if self.on_classes else subject, start, end):
            m_start, m_end = match.span()
            if m_start > pos:
                out.append((pos, m_start))
            if m_end > m_start:
                out.append((m_start, m_end))
            pos = max(pos, m_end)
        if pos < end:
            out.append((pos, end))
        return out


def _split(pattern: str, on_classes: bool = True) -> Split:
    return Split(re.compile(pattern), on_classes)


def _text(pattern: str) -> Split:
    return Split(re.compile(pattern), on_classes=False)


def _custom(function: CustomSplit) -> Split:
    return Split(None, custom=function)


@dataclass(frozen=True)
class PreTokenizer:
    """A ``tokenizer.ggml.pre`` family: its splits and llama.cpp's per-family vocabulary options."""

    name: str
    splits: tuple[Split, ...]
    ignore_merges: bool = False  # a whole word that is a token skips the merges (Llama 3)
    add_bos: bool = False  # llama.cpp's default for ``add_bos_token``
    clean_spaces: bool = True  # llama.cpp's ``clean_up_tokenization_spaces`` on detokenize
    default_bos: bool = True  # False: no BOS id unless the metadata gives one (ChatGLM/GLM-4)

    def split(self, text: str) -> list[str]:
        """The words of ``text`` (their concatenation is ``text``)."""
        if not text:
            return []
        classes = classify(text)
        subject = text_subject(text)
        spans = [(0, len(text))]
        for step in self.splits:
            spans = [piece for start, end in spans for piece in step.spans(text, classes, subject, start, end)]
        return [text[a:b] for a, b in spans]


def _digit_groups(text: str, classes: str, start: int, end: int) -> list[tuple[int, int]]:
    return pre_custom.digit_groups(classes, start, end)


_GPT2 = _split(pat.GPT2)
_FAMILIES: dict[str, tuple[Split, ...]] = {
    "llama3": (_split(pat.LLAMA3),),
    "qwen2": (_split(pat.QWEN2),),
    "qwen35": (_split(pat.QWEN35),),
    "gpt2": (_GPT2,),
    "smollm": (_split(f"[{N}]"), _GPT2),
    "default": (_split(pat.DEFAULT_PUNCT), _GPT2, _split(f"[{N}]+"), _split("[0-9][0-9][0-9]")),
    "falcon": (_split(pat.FALCON_PUNCT), _GPT2, _split("[0-9][0-9][0-9]")),
    "deepseek3": (_split(f"[{N}]{{1,3}}"), _text(pat.CJK_KANA_TEXT), _split(pat.DEEPSEEK3)),
    "deepseek-llm": (
        _text("[\r\n]"),
        _text(f"{pat.WS_TEXT}?[{pat.DEEPSEEK_LETTERS}]+"),
        _text(f"{pat.WS_TEXT}?[{pat.DEEPSEEK_PUNCT}]+"),
        _text(f"{pat.WS_TEXT}+\\Z"),
        _text(f"[{pat.DEEPSEEK_CJK}]+"),
        _split(f"[{N}]+"),
    ),
    "deepseek-coder": (
        _text("[\r\n]"),
        _split(f"[{S}]?[{L}]+"),
        _split(f"[{S}]?[{P}]+"),
        _text(f"[{pat.DEEPSEEK_CJK}]+"),
        _split(f"[{N}]"),
    ),
    "poro": (_text(pat.PORO_TEXT),),
    "viking": (_text(pat.PORO_TEXT), _split(f"[{N}]")),
    "tekken": (_split(pat.TEKKEN),),
    "gpt4o": (_split(pat.GPT4O),),
    "granite-emb-multi": (_split(pat.GRANITE_EMB_MULTI),),
    "tiny-aya": (_custom(_digit_groups), _split(pat.TINY_AYA)),
    "youtu": (_text(pat.YOUTU_TEXT), _split(pat.YOUTU)),
    "chameleon": (_text(pat.CHAMELEON_SENTINEL_TEXT), _text(pat.CHAMELEON_IMAGE_TEXT),
                  _text(pat.CHAMELEON_SPACES_TEXT), _split(f"[{N}]"), _split(pat.CHAMELEON_PUNCT), _GPT2),
    "superbpe": (_split(f"[{N}]+"), _text(pat.THOUSANDS_TEXT)),
    "bailingmoe": (_split(pat.BAILINGMOE),),
    "seed-coder": (_split(pat.SEED_CODER),),
    "ufakzeka": (_split(pat.UFAKZEKA),),
    "laguna": (_text("[^\n]+|[\n]+"), _split(pat.QWEN2)),
    "exaone-moe": (_split(pat.EXAONE_MOE),),
    "jais2": (_split(pat.JAIS2),),
    "minicpm5": (_split(f"[{N}]{{1,3}}"), _split(pat.DIGIT_RUNS)),
    "spark2_5": (_split(f"[{N}]{{1,3}}"), _text(pat.CJK_KANA_TEXT), _split(pat.SPARK2_5), _split(f"[{N}]")),
    "afmoe": (_custom(_digit_groups), _text(pat.AFMOE_SCRIPTS_TEXT), _split(pat.DEEPSEEK3)),
    "kimi-k2": (_custom(pre_custom.kimi_k2),),
}

# ``tokenizer.ggml.pre`` value -> (family, options), following llama.cpp's llama_vocab::load.
_NO_CLEAN = {"clean_spaces": False}
_PRE_NAMES: dict[str, tuple[str, dict[str, bool]]] = {
    "default": ("default", {}),
    **{name: ("llama3", {"ignore_merges": True, "add_bos": True})
       for name in ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                    "jina-v5-nano")},
    "dbrx": ("llama3", {}),
    "smaug-bpe": ("llama3", {}),
    "chatglm-bpe": ("llama3", {"default_bos": False}),
    **{name: ("llama3", {"default_bos": False, "ignore_merges": True}) for name in ("glm4", "glm5")},
    **{name: ("qwen2", _NO_CLEAN)
       for name in ("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "grok-2", "solar-open")},
    "megrez": ("qwen2", {}),
    "stablelm2": ("qwen2", {}),
    "qwen35": ("qwen35", _NO_CLEAN),
    "poro-chat": ("poro", _NO_CLEAN),
    "bloom": ("poro", {}),
    "gpt3-finnish": ("poro", {}),
    "viking": ("viking", _NO_CLEAN),
    **{name: ("gpt2", {})
       for name in ("gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
                    "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais",
                    "exaone4")},
    "trillion": ("gpt2", _NO_CLEAN),
    "granite-docling": ("gpt2", _NO_CLEAN),
    **{name: ("smollm", {}) for name in ("starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2")},
    "smollm": ("smollm", _NO_CLEAN),
    "command-r": ("smollm", _NO_CLEAN),
    "falcon": ("falcon", {}),
    **{name: ("deepseek3", _NO_CLEAN) for name in ("deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4")},
    "deepseek-llm": ("deepseek-llm", _NO_CLEAN),
    "deepseek-coder": ("deepseek-coder", _NO_CLEAN),
    "tekken": ("tekken", {"clean_spaces": False, "ignore_merges": True, "add_bos": True}),
    **{name: ("gpt4o", _NO_CLEAN) for name in ("gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2")},
    "granite-embed-multi-97m": ("granite-emb-multi", {"clean_spaces": False, "ignore_merges": True}),
    **{name: ("tiny-aya", _NO_CLEAN) for name in ("tiny_aya", "cohere2moe")},
    "youtu": ("youtu", {"clean_spaces": False, "ignore_merges": True}),
    "chameleon": ("chameleon", {"clean_spaces": False, "add_bos": True}),
    "superbpe": ("superbpe", _NO_CLEAN),
    **{name: ("bailingmoe", _NO_CLEAN) for name in ("bailingmoe", "bailingmoe2", "llada-moe")},
    "seed-coder": ("seed-coder", _NO_CLEAN),
    "ufakzeka": ("ufakzeka", _NO_CLEAN),
    "laguna": ("laguna", _NO_CLEAN),
    "exaone-moe": ("exaone-moe", {}),
    "jais-2": ("jais2", {}),
    "minicpm5": ("minicpm5", {"ignore_merges": True}),
    "spark2_5": ("spark2_5", _NO_CLEAN),
    "afmoe": ("afmoe", _NO_CLEAN),
    "kimi-k2": ("kimi-k2", _NO_CLEAN),
}

#: The ``tokenizer.ggml.pre`` values this module implements.
SUPPORTED_PRE = frozenset(_PRE_NAMES)

#: Names llama.cpp knows that this module does not implement, and why.
_RAW_UTF8 = "BPE over raw UTF-8 with spaces written as U+2581, not byte-level"
KNOWN_UNSUPPORTED_PRE = {
    "gemma4": _RAW_UTF8,
    "granite-embed-multi-311m": _RAW_UTF8,
    "sarvam-moe": _RAW_UTF8,
    "whitespace": "whitespace-split BPE over raw UTF-8",
}


def pre_tokenizer(pre: str | None) -> PreTokenizer:
    """The pre-tokenizer for a ``tokenizer.ggml.pre`` value.

    A missing value means llama.cpp's ``default`` (as llama.cpp does, with a warning there); a value
    llama.cpp knows but this module does not implement raises ``ValueError`` (llama.cpp refuses unknown
    values too).
    """
    name = "default" if not pre else pre
    entry = _PRE_NAMES.get(name)
    if entry is None:
        why = f" ({KNOWN_UNSUPPORTED_PRE[name]})" if name in KNOWN_UNSUPPORTED_PRE else ""
        raise ValueError(f"unsupported BPE pre-tokenizer {name!r}{why} (tokenizer.ggml.pre); supported: "
                         f"{', '.join(sorted(SUPPORTED_PRE))}")
    family, options = entry
    return PreTokenizer(name=name, splits=_FAMILIES[family], **options)
