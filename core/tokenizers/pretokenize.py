"""BPE pre-tokenizers: llama.cpp's splits chosen by ``tokenizer.ggml.pre``, with the standard ``re`` module.

A pre-tokenizer is a sequence of regex splits; each split cuts every piece from the previous one into its
matches and the text between them (Hugging Face's ``Split(behavior="Isolated")``, llama.cpp's
``unicode_regex_split``). Patterns that need Unicode classes run over the class string of
:mod:`emberllm.tokenizers.unicode_classes`; patterns with explicit code point ranges run over the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from emberllm.tokenizers.unicode_classes import SYM, L, M, N, P, S, classify

# --- the patterns (``{L}`` etc. are bodies of character classes over the class string) -----------------

#: Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
#: \s*[\r\n]+|\s+(?!\S)|\s+
_LLAMA3_BODY = (rf"'(?:[sStTmMdD]|[rR][eE]|[vV][eE]|[lL][lL])|[^\r\n{L}{N}]?[{L}]+|[{N}]{{DIGITS}}"
                rf"| ?[^{S}{L}{N}]+[\r\n]*|[{S}]*[\r\n]+|[{S}]+(?![^{S}])|[{S}]+")
LLAMA3 = _LLAMA3_BODY.replace("{DIGITS}", "{1,3}")
#: Qwen2: as Llama 3 but single digits
QWEN2 = _LLAMA3_BODY.replace("{DIGITS}", "")
#: Poro/Bloom: as Llama 3 but digit runs of any length
PORO = _LLAMA3_BODY.replace("{DIGITS}", "+")
#: GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
GPT2 = rf"'(?:[stmd]|re|ve|ll)| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+|[{S}]+(?![^{S}])|[{S}]+"
#: DeepSeek V3's last split
_DEEPSEEK3 = (r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+"""
              rf"|[^\r\n{L}{P}{SYM}]?[{L}{M}]+| ?[{P}{SYM}]+[\r\n]*|[{S}]*[\r\n]+|[{S}]+(?![^{S}])|[{S}]+")
_CJK_KANA = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"

#: ``\s`` written out over the original text (Unicode White_Space)
_WS_TEXT = "[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
# DeepSeek LLM's letter ranges (from its tokenizer.json)
_DEEPSEEK_LETTERS = (
    "A-Za-z\xb5\xc0-\xd6\xd8-\xf6\xf8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373\u0376\u0377"
    "\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f"
    "\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77"
    "\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d"
    "\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb"
    "\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128"
    "\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4"
    "\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf"
    "\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3"
    "\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943")
_DEEPSEEK_PUNCT = "!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002"
_DEEPSEEK_CJK = "\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff"


@dataclass(frozen=True)
class Split:
    """One regex split; ``on_classes`` runs it over the class string instead of the text."""

    pattern: re.Pattern[str]
    on_classes: bool = True


def _split(pattern: str, on_classes: bool = True) -> Split:
    return Split(re.compile(pattern), on_classes)


@dataclass(frozen=True)
class PreTokenizer:
    """A ``tokenizer.ggml.pre`` family: its splits and llama.cpp's per-family vocabulary options."""

    name: str
    splits: tuple[Split, ...]
    ignore_merges: bool = False  # a whole word that is a token skips the merges (Llama 3)
    add_bos: bool = False  # llama.cpp's default for ``add_bos_token``
    clean_spaces: bool = True  # llama.cpp's ``clean_up_tokenization_spaces`` on detokenize

    def split(self, text: str) -> list[str]:
        """The words of ``text`` (their concatenation is ``text``)."""
        if not text:
            return []
        classes = classify(text)
        spans = [(0, len(text))]
        for step in self.splits:
            subject = classes if step.on_classes else text
            finditer = step.pattern.finditer
            out: list[tuple[int, int]] = []
            for start, end in spans:
                pos = start
                for match in finditer(subject, start, end):
                    m_start, m_end = match.span()
                    if m_start == m_end:
                        continue
                    if m_start > pos:
                        out.append((pos, m_start))
                    out.append((m_start, m_end))
                    pos = m_end
                if pos < end:
                    out.append((pos, end))
            spans = out
        return [text[a:b] for a, b in spans]


_FAMILIES: dict[str, tuple[Split, ...]] = {
    "llama3": (_split(LLAMA3),),
    "qwen2": (_split(QWEN2),),
    "poro": (_split(PORO),),
    "gpt2": (_split(GPT2),),
    "smollm": (_split(f"[{N}]"), _split(GPT2)),
    "default": (_split(rf"[{P}$+<=>^~|]+"), _split(GPT2), _split(f"[{N}]+"), _split("[0-9][0-9][0-9]")),
    "deepseek3": (_split(f"[{N}]{{1,3}}"), _split(_CJK_KANA, on_classes=False), _split(_DEEPSEEK3)),
    "deepseek-llm": (
        _split("[\r\n]", on_classes=False),
        _split(f"{_WS_TEXT}?[{_DEEPSEEK_LETTERS}]+", on_classes=False),
        _split(f"{_WS_TEXT}?[{_DEEPSEEK_PUNCT}]+", on_classes=False),
        _split(f"{_WS_TEXT}+\\Z", on_classes=False),
        _split(f"[{_DEEPSEEK_CJK}]+", on_classes=False),
        _split(f"[{N}]+"),
    ),
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
    **{name: ("qwen2", _NO_CLEAN) for name in ("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan")},
    "megrez": ("qwen2", {}),
    "stablelm2": ("qwen2", {}),
    "poro-chat": ("poro", _NO_CLEAN),
    "bloom": ("poro", {}),
    "gpt3-finnish": ("poro", {}),
    **{name: ("gpt2", {})
       for name in ("gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
                    "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais",
                    "exaone4")},
    "trillion": ("gpt2", _NO_CLEAN),
    "granite-docling": ("gpt2", _NO_CLEAN),
    **{name: ("smollm", {}) for name in ("starcoder", "refact", "codeshell", "exaone", "minerva-7b")},
    "smollm": ("smollm", _NO_CLEAN),
    "command-r": ("smollm", _NO_CLEAN),
    **{name: ("deepseek3", _NO_CLEAN) for name in ("deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4")},
    "deepseek-llm": ("deepseek-llm", _NO_CLEAN),
}

#: The ``tokenizer.ggml.pre`` values this module implements.
SUPPORTED_PRE = frozenset(_PRE_NAMES)


def pre_tokenizer(pre: str | None) -> PreTokenizer:
    """The pre-tokenizer for a ``tokenizer.ggml.pre`` value.

    A missing value means llama.cpp's ``default`` (as llama.cpp does, with a warning there); a value
    llama.cpp knows but this module does not implement raises ``ValueError`` (llama.cpp refuses unknown
    values too).
    """
    name = "default" if not pre else pre
    entry = _PRE_NAMES.get(name)
    if entry is None:
        raise ValueError(f"unsupported BPE pre-tokenizer {name!r} (tokenizer.ggml.pre); supported: "
                         f"{', '.join(sorted(SUPPORTED_PRE))}")
    family, options = entry
    return PreTokenizer(name=name, splits=_FAMILIES[family], **options)
