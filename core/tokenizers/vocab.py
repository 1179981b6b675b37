"""The vocabulary shared by all tokenizer types: token texts, scores, attributes and special ids.

This follows llama.cpp's ``llama_vocab::load`` (token types become attribute flags, special ids come from
the metadata or from per-type defaults, end-of-generation tokens are auto-detected by their text, a few
attributes are patched by model name) and its special-token partition of raw text
(``tokenizer_st_partition``). Everything is derived from a plain GGUF metadata mapping.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

# llama_token_type (the values of ``tokenizer.ggml.token_type``)
TYPE_UNDEFINED, TYPE_NORMAL, TYPE_UNKNOWN, TYPE_CONTROL, TYPE_USER_DEFINED, TYPE_UNUSED, TYPE_BYTE = range(7)

# llama_token_attr flags
ATTR_UNDEFINED = 0
ATTR_UNKNOWN = 1 << 0
ATTR_UNUSED = 1 << 1
ATTR_NORMAL = 1 << 2
ATTR_CONTROL = 1 << 3
ATTR_USER_DEFINED = 1 << 4
ATTR_BYTE = 1 << 5
ATTR_NORMALIZED = 1 << 6
ATTR_LSTRIP = 1 << 7
ATTR_RSTRIP = 1 << 8
ATTR_SINGLE_WORD = 1 << 9

_TYPE_TO_ATTR = {
    TYPE_UNDEFINED: ATTR_UNDEFINED,
    TYPE_NORMAL: ATTR_NORMAL,
    TYPE_UNKNOWN: ATTR_UNKNOWN,
    TYPE_CONTROL: ATTR_CONTROL,
    TYPE_USER_DEFINED: ATTR_USER_DEFINED,
    TYPE_UNUSED: ATTR_UNUSED,
    TYPE_BYTE: ATTR_BYTE,
}

# the same, as a bytes.translate table (unknown types are undefined), and a pattern for non-plain tokens
_TYPE_TO_ATTR_TABLE = bytes(_TYPE_TO_ATTR.get(t, ATTR_UNDEFINED) for t in range(256))
_NON_PLAIN_ATTR = re.compile(b"[^%c%c]" % (ATTR_NORMAL, ATTR_BYTE))

#: Tokens of these kinds are cut out of raw text before the model's algorithm runs.
ATTR_SPECIAL_MATCH = ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN
#: Of those, these are only cut out when ``parse_special`` is true (and render as "" unless ``special``).
ATTR_PARSE_ONLY = ATTR_CONTROL | ATTR_UNKNOWN

#: C ``isspace`` in the "C" locale, used by the lstrip/rstrip token attributes.
C_SPACES = " \t\n\v\f\r"

_KEY = "tokenizer.ggml."

# Special-id metadata keys, in llama.cpp's order (the deprecated FIM keys come last and win).
_SPECIAL_ID_KEYS = (
    ("bos", "bos_token_id"),
    ("eos", "eos_token_id"),
    ("eot", "eot_token_id"),
    ("eom", "eom_token_id"),
    ("unk", "unknown_token_id"),
    ("sep", "seperator_token_id"),  # sic: llama.cpp's spelling
    ("pad", "padding_token_id"),
    ("mask", "mask_token_id"),
    ("fim_pre", "fim_pre_token_id"),
    ("fim_suf", "fim_suf_token_id"),
    ("fim_mid", "fim_mid_token_id"),
    ("fim_pad", "fim_pad_token_id"),
    ("fim_rep", "fim_rep_token_id"),
    ("fim_sep", "fim_sep_token_id"),
    ("fim_pre", "prefix_token_id"),
    ("fim_suf", "suffix_token_id"),
    ("fim_mid", "middle_token_id"),
)

# Texts that identify special tokens when the metadata does not name them (llama.cpp's lists).
_AUTO_DETECT_TEXTS: dict[str, tuple[str, ...]] = {
    "eot": ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
            "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"),
    "eom": ("<|eom_id|>",),
    "fim_pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
                "<|code_prefix|>", "<|prefix|>"),
    "fim_suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
                "<|code_suffix|>", "<|suffix|>"),
    "fim_mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
                "<|code_middle|>", "<|middle|>"),
    "fim_pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "fim_rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep": ("<|file_sep|>",),
}

# Token texts that end generation (and are forced to be control tokens).
_EOG_TEXTS = (
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~[",
)

# gpt-oss: these always render, as user-defined tokens.
_ALWAYS_RENDERED = ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>")

_SPECIAL_ID_NAMES = ("bos", "eos", "eot", "eom", "unk", "sep", "pad", "mask",
                     "fim_pre", "fim_suf", "fim_mid", "fim_pad", "fim_rep", "fim_sep")

# Special tokens are grouped by the first characters of their text, so that a text is only searched for
# the tokens of the groups whose prefix it contains.
_GROUP_PREFIX_CHARS = 3


def utf8_len(text: str) -> int:
    """Length in bytes of a token text (texts may carry ``surrogateescape``-d invalid bytes)."""
    return len(text.encode("utf-8", "surrogateescape")) if not text.isascii() else len(text)


class Vocab:
    """Token texts, scores and attributes plus the special ids of one model's vocabulary.

    ``default_ids`` are the tokenizer type's fallback special ids (llama.cpp uses bos 1, eos 2, unk 0 for
    SPM); the metadata overrides them when its ids are in range.
    """

    def __init__(self, metadata: Mapping[str, Any], default_ids: Mapping[str, int | None],
                 default_add_bos: bool = True, default_add_eos: bool = False,
                 default_add_space_prefix: bool = False) -> None:
        self.tokens: list[str] = _load_tokens(metadata)
        n = len(self.tokens)
        self.n_vocab = n
        self.token_to_id: dict[str, int] = dict(zip(self.tokens, range(n), strict=True))
        self.scores: list[float] = _load_scores(metadata, n)
        self.attrs: list[int] = _load_attrs(metadata, n)
        # ids that may be special: all but normal and byte tokens, plus any token whose attributes change
        self._maybe_special: set[int] = set(_non_plain_ids(self.attrs))
        self.add_bos = bool(metadata.get(_KEY + "add_bos_token", default_add_bos))
        self.add_eos = bool(metadata.get(_KEY + "add_eos_token", default_add_eos))
        self.add_space_prefix = bool(metadata.get(_KEY + "add_space_prefix", default_add_space_prefix))
        self.ids: dict[str, int | None] = self._special_ids(metadata, default_ids)
        self._auto_detect_specials()
        self._mark_unused()
        self.eog_ids: frozenset[int] = frozenset(self._eog_ids())
        self.special_tokens: list[int] = self._special_token_order()
        self._patch_attrs_by_name(metadata)
        self._groups_all = self._group_specials(self.special_tokens)
        self._groups_user = self._group_specials(
            [t for t in self.special_tokens if not self.attrs[t] & ATTR_PARSE_ONLY])

    # -- loading -----------------------------------------------------------------------------------------
    def _special_ids(self, metadata: Mapping[str, Any],
                     default_ids: Mapping[str, int | None]) -> dict[str, int | None]:
        """Special ids: the defaults (dropped when out of range), then the metadata's in-range ids."""
        n = self.n_vocab
        ids: dict[str, int | None] = {name: None for name in _SPECIAL_ID_NAMES}
        for name, value in default_ids.items():
            ids[name] = value if value is not None and 0 <= value < n else None
        for name, key in _SPECIAL_ID_KEYS:
            value = metadata.get(_KEY + key)
            if value is None:
                continue
            if isinstance(value, int) and 0 <= value < n:
                ids[name] = value
            else:
                log.warning("bad special token: %s = %r, using default id %r", key, value, ids[name])
        return ids

    def _set_attrs(self, token: int, attrs: int) -> None:
        """Change a token's attributes (and remember that it may now be special)."""
        self.attrs[token] = attrs
        self._maybe_special.add(token)

    def _force_control(self, token: int) -> None:
        """Mark a control-looking token as control (llama.cpp overrides wrong types the same way)."""
        if not self.attrs[token] & ATTR_CONTROL:
            log.debug("control-looking token %d %r was not control-type", token, self.tokens[token])
            self._set_attrs(token, self.attrs[token] | ATTR_CONTROL)

    def _auto_detect_specials(self) -> None:
        """Find EOT, EOM and FIM tokens by their text when the metadata does not give them.

        llama.cpp walks a hash map, so when a vocabulary holds several candidates its choice is arbitrary;
        here the first candidate of llama.cpp's list that exists wins.
        """
        for name, texts in _AUTO_DETECT_TEXTS.items():
            if self.ids[name] is not None:
                continue
            for text in texts:
                token = self.token_to_id.get(text)
                if token is not None:
                    self.ids[name] = token
                    self._force_control(token)
                    break

    def _mark_unused(self) -> None:
        """Flag control tokens whose text contains "unused" as unused (informative only)."""
        attrs, tokens = self.attrs, self.tokens
        for i in self._maybe_special:
            if attrs[i] & ATTR_CONTROL and "unused" in tokens[i]:
                attrs[i] |= ATTR_UNUSED

    def _eog_ids(self) -> set[int]:
        """End-of-generation tokens: FIM pad/rep/sep, known end texts, then eos, eot and eom."""
        ids = self.ids
        eog = {ids[name] for name in ("fim_pad", "fim_rep", "fim_sep") if ids[name] is not None}
        for text in _EOG_TEXTS:
            token = self.token_to_id.get(text)
            if token is not None:
                eog.add(token)
                self._force_control(token)
        for text in _ALWAYS_RENDERED:
            token = self.token_to_id.get(text)
            if token is not None:
                self._set_attrs(token, ATTR_USER_DEFINED)
        eog.update(ids[name] for name in ("eos", "eot", "eom") if ids[name] is not None)
        self._fix_eog_exceptions(eog)
        return eog

    def _fix_eog_exceptions(self, eog: set[int]) -> None:
        """Two llama.cpp exceptions to the EOG texts.

        o200k_harmony / solar-open: ``<|end|>`` is not EOG (it becomes user-defined) when ``<|call|>`` or
        ``<|calls|>`` is EOG together with ``<|return|>`` or ``<|flush|>``. gemma4 / plamo: ``</s>`` is a
        normal token when ``<|tool_response>`` or ``<|plamo:eos|>`` is EOG.
        """
        by_text = {self.tokens[t]: t for t in eog}
        has = by_text.__contains__
        end = by_text.get("<|end|>")
        calls = has("<|call|>") or has("<|calls|>")
        if end is not None and calls and (has("<|return|>") or has("<|flush|>")):
            eog.discard(end)
            self._set_attrs(end, ATTR_USER_DEFINED)
        s_token = by_text.get("</s>")
        if s_token is not None and (has("<|tool_response>") or has("<|plamo:eos|>")):
            eog.discard(s_token)
            self._set_attrs(s_token, ATTR_NORMAL)

    def _special_token_order(self) -> list[int]:
        """Control, user-defined and unknown tokens, longest text (in bytes) first, ties by id.

        llama.cpp uses an unstable sort here, so its order among equal-length tokens is unspecified.
        """
        attrs, tokens = self.attrs, self.tokens
        special = sorted(i for i in self._maybe_special if attrs[i] & ATTR_SPECIAL_MATCH)
        special.sort(key=lambda i: -utf8_len(tokens[i]))
        return special

    def _patch_attrs_by_name(self, metadata: Mapping[str, Any]) -> None:
        """llama.cpp's per-model token attributes (lstrip/rstrip), chosen by model, tokenizer or arch name."""
        name = str(metadata.get("general.name", "")).lower()
        pre = str(metadata.get(_KEY + "pre", ""))
        arch = str(metadata.get("general.architecture", ""))
        if any(s in pre for s in ("jina-v2-de", "jina-v2-es", "jina-v2-code")) or any(
                s in arch for s in ("nomic-bert-moe", "jina-bert-v3")):
            self._set_attr("<mask>", ATTR_LSTRIP, True)
        elif "phi-3" in name or "phi3" in name:
            for token in self.special_tokens:
                self.attrs[token] |= ATTR_RSTRIP
            self._set_attr("</s>", ATTR_RSTRIP, True)
            for text in ("<unk>", "<s>", "<|endoftext|>"):
                self._set_attr(text, ATTR_RSTRIP, False)
        elif "modern-bert" in name:
            self._set_attr("[MASK]", ATTR_LSTRIP, True)

    def _set_attr(self, text: str, flag: int, value: bool) -> None:
        """Set or clear an attribute flag of the token ``text`` (ignored when the token is absent)."""
        token = self.token_to_id.get(text)
        if token is not None:
            self.attrs[token] = self.attrs[token] | flag if value else self.attrs[token] & ~flag

    def _group_specials(self, order: list[int]) -> dict[str, list[tuple[int, str, int]]]:
        """Special tokens grouped by text prefix: prefix -> [(priority, text, id)]."""
        groups: dict[str, list[tuple[int, str, int]]] = {}
        for rank, token in enumerate(order):
            text = self.tokens[token]
            groups.setdefault(text[:_GROUP_PREFIX_CHARS], []).append((rank, text, token))
        return groups

    # -- queries -----------------------------------------------------------------------------------------
    def attr(self, token: int) -> int:
        """The attribute flags of a token."""
        return self.attrs[token]

    def special_matches(self, text: str, parse_special: bool) -> list[tuple[str, int, int]]:
        """The special tokens that occur in ``text``, in matching priority: [(text, id, attrs)]."""
        groups = self._groups_all if parse_special else self._groups_user
        found: list[tuple[int, str, int]] = []
        for prefix, members in groups.items():
            if prefix in text:
                found.extend(m for m in members if m[1] in text)
        found.sort()
        attrs = self.attrs
        return [(tok_text, token, attrs[token]) for _, tok_text, token in found]

    def partition(self, text: str, parse_special: bool) -> list[str | int]:
        """Split raw text into text fragments (str) and special tokens (int), like llama.cpp.

        Each special token in turn (longest first) is cut out of every remaining text fragment at all its
        non-overlapping occurrences, left to right. Control and unknown tokens take part only when
        ``parse_special`` is true; user-defined tokens always do. ``lstrip``/``rstrip`` tokens also eat
        the whitespace on that side.
        """
        if not text:
            return []
        fragments: list[str | int] = [text]
        for tok_text, token, attrs in self.special_matches(text, parse_special):
            split: list[str | int] = []
            for fragment in fragments:
                if isinstance(fragment, int) or tok_text not in fragment:
                    split.append(fragment)
                else:
                    _cut(fragment, tok_text, token, attrs, split)
            fragments = split
        return fragments


def _cut(fragment: str, tok_text: str, token: int, attrs: int, out: list[str | int]) -> None:
    """Append ``fragment`` to ``out`` with every occurrence of ``tok_text`` replaced by ``token``."""
    lstrip = attrs & ATTR_LSTRIP
    rstrip = attrs & ATTR_RSTRIP
    size = len(tok_text)
    end = len(fragment)
    pos = 0
    while True:
        match = fragment.find(tok_text, pos)
        if match < 0:
            if pos < end:
                out.append(fragment[pos:])
            return
        left = fragment[pos:match]
        if lstrip:
            left = left.rstrip(C_SPACES)
        if left:
            out.append(left)
        out.append(token)
        pos = match + size
        if rstrip:
            while pos < end and fragment[pos] in C_SPACES:
                pos += 1


def _load_tokens(metadata: Mapping[str, Any]) -> list[str]:
    """The token texts; empty ones are renamed ``[EMPTY_<id>]`` as llama.cpp does."""
    tokens = metadata.get(_KEY + "tokens")
    if not isinstance(tokens, list) or not tokens:
        raise ValueError("the model has no tokenizer vocabulary (tokenizer.ggml.tokens)")
    tokens = list(tokens)
    if "" in tokens:
        for i, text in enumerate(tokens):
            if not text:
                log.warning("empty token at index %d", i)
                tokens[i] = f"[EMPTY_{i}]"
    return tokens


def _load_scores(metadata: Mapping[str, Any], n: int) -> list[float]:
    """Token scores (0.0 for all when absent)."""
    scores = metadata.get(_KEY + "scores")
    if scores is None:
        return [0.0] * n
    if len(scores) < n:
        raise ValueError(f"tokenizer.ggml.scores has {len(scores)} entries for {n} tokens")
    return [float(s) for s in scores[:n]] if not isinstance(scores[0], float) else list(scores[:n])


def _load_attrs(metadata: Mapping[str, Any], n: int) -> list[int]:
    """Attribute flags from the token types (all normal when absent)."""
    types: list[int] | None = metadata.get(_KEY + "token_type")
    if types is None:
        return [ATTR_NORMAL] * n
    if len(types) < n:
        raise ValueError(f"tokenizer.ggml.token_type has {len(types)} entries for {n} tokens")
    try:
        packed = bytes(types[:n])  # C-speed path: every type fits a byte
    except (ValueError, TypeError):
        get = _TYPE_TO_ATTR.get
        return [get(t, ATTR_UNDEFINED) for t in types[:n]]
    return list(packed.translate(_TYPE_TO_ATTR_TABLE))


def _non_plain_ids(attrs: list[int]) -> list[int]:
    """Ids of the tokens that are neither normal nor byte tokens."""
    try:
        packed = bytes(attrs)
    except ValueError:
        return [i for i, a in enumerate(attrs) if a != ATTR_NORMAL and a != ATTR_BYTE]
    return [m.start() for m in _NON_PLAIN_ATTR.finditer(packed)]
