"""GGUF tokenizer metadata from a Hugging Face model folder (tokenizer.json, tokenizer_config.json, config.json).

The keys and values follow llama.cpp's ``convert_hf_to_gguf.py``:

* byte-level BPE vocabularies (Llama 3, Qwen2/3, SmolLM, GPT-2, DeepSeek) take its ``_set_vocab_gpt2`` path:
  ``tokenizer.ggml.model = "gpt2"``, the ``pre`` name, tokens, token types and merges;
* SentencePiece-style vocabularies written as tokenizer.json (BPE with ``byte_fallback`` such as Llama 2 and
  Gemma, or Unigram) take its ``LlamaHfVocab`` path: ``tokenizer.ggml.model = "llama"`` with tokens, scores
  and token types.

Special ids, the add-BOS/EOS flags, merges and the chat template come from gguf-py's ``SpecialVocab``
(PyPI ``gguf``), exactly as the converter gets them. Where llama.cpp needs ``transformers`` (the token list,
``tokenizer.ggml.pre`` found by hashing a test tokenization) this module reads tokenizer.json directly;
the differences are listed at :func:`vocab_metadata`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from emberllm.tokenizers.vocab import TYPE_BYTE, TYPE_CONTROL, TYPE_NORMAL, TYPE_UNUSED, TYPE_USER_DEFINED

_KEY = "tokenizer.ggml."

# Pre-tokenizer regexes as tokenizer.json writes them, and the llama.cpp ``pre`` names they stand for.
_LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_RE = _LLAMA3_RE.replace(r"\p{N}{1,3}", r"\p{N}")
_DEEPSEEK3_RES = (
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^""" "\r\n" r"""\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"""
    r"""| ?[\p{P}\p{S}]+""" "[\r\n]*" r"""|\s*""" "[\r\n]+" r"""|\s+(?!\S)|\s+""",
)
_UPPER = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]"
_LOWER = r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
_LEAD = r"[^\r\n\p{L}\p{N}]?"
_TAIL_SLASH = r"| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_CONTRACTION = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
#: Mistral's Tekken (Mistral Nemo, Mistral Small 3, Pixtral)
_TEKKEN_RE = f"{_LEAD}{_UPPER}*{_LOWER}+|{_LEAD}{_UPPER}+{_LOWER}*|\\p{{N}}{_TAIL_SLASH}"
#: GPT-4o's (also Llama 4's)
_GPT4O_RE = (f"{_LEAD}{_UPPER}*{_LOWER}+{_CONTRACTION}?|{_LEAD}{_UPPER}+{_LOWER}*{_CONTRACTION}?|\\p{{N}}{{1,3}}"
             + _TAIL_SLASH)
#: Qwen3.5's: marks join letters
_QWEN35_RE = (_CONTRACTION + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")

#: (pre-tokenizer steps, pre name); a step is ("split", regex), ("byte_level", use_regex) or ("digits", individual)
_KNOWN_PRE: list[tuple[tuple[tuple[str, Any], ...], str]] = [
    ((("split", _LLAMA3_RE), ("byte_level", False)), "llama-bpe"),
    ((("split", _QWEN2_RE), ("byte_level", False)), "qwen2"),
    ((("split", _TEKKEN_RE), ("byte_level", False)), "tekken"),
    ((("split", _GPT4O_RE), ("byte_level", False)), "gpt-4o"),
    ((("split", _QWEN35_RE), ("byte_level", False)), "qwen35"),
    ((("byte_level", True),), "gpt-2"),
    ((("digits", True), ("byte_level", True)), "smollm"),
    ((*(("split", r) for r in _DEEPSEEK3_RES), ("byte_level", False)), "deepseek-v3"),
]


def _load_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _pre_steps(node: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """The pre-tokenizer of tokenizer.json as a flat list of (kind, parameter) steps."""
    if not node:
        return []
    kind = node.get("type")
    if kind == "Sequence":
        return [step for child in node.get("pretokenizers", []) for step in _pre_steps(child)]
    if kind == "Split":
        pattern = node.get("pattern", {})
        return [("split", pattern.get("Regex", pattern.get("String")))]
    if kind == "ByteLevel":
        return [("byte_level", bool(node.get("use_regex", True)))]
    if kind == "Digits":
        return [("digits", bool(node.get("individual_digits", False)))]
    return [(str(kind), None)]


def bpe_pre_name(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's ``tokenizer.ggml.pre`` for a byte-level BPE tokenizer.json, from its pre-tokenizer.

    (llama.cpp identifies it by hashing a test tokenization; the families here are told apart by their
    regexes: Llama 3 -> ``llama-bpe``, Qwen2/3 -> ``qwen2``, GPT-2 -> ``gpt-2``, SmolLM/StarCoder digits
    -> ``smollm``, DeepSeek V3 -> ``deepseek-v3``, DeepSeek LLM -> ``deepseek-llm``, Mistral's Tekken ->
    ``tekken``, GPT-4o/Llama 4 -> ``gpt-4o``, Qwen3.5 -> ``qwen35``.) Raises ``ValueError`` for other
    pre-tokenizers.
    """
    steps = tuple(_pre_steps(tokenizer_json.get("pre_tokenizer")))
    for known, name in _KNOWN_PRE:
        if steps == known:
            return name
    splits = [p for kind, p in steps if kind == "split"]
    if (len(splits) == 6 and splits[0] in ("[\r\n]", r"[\r\n]") and splits[-1] == r"\p{N}+"
            and steps[-1] == ("byte_level", False)):
        return "deepseek-llm"
    raise ValueError(f"BPE pre-tokenizer not recognized: {steps!r}; known: Llama 3, Qwen2, Qwen3.5, GPT-2, "
                     "GPT-4o, SmolLM, DeepSeek LLM/V3, Tekken")


def _does_token_look_special(text: str) -> bool:
    """llama.cpp's list of added tokens that are control tokens even when not marked special."""
    return (text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<｜") and text.endswith("｜>"))
            or (text.startswith("<unused") and text.endswith(">")))


def _special_vocab_metadata(hf_dir: Path, tokenizer_json: dict[str, Any], load_merges: bool,
                            n_vocab: int | None) -> dict[str, Any]:
    """What gguf-py's ``SpecialVocab.add_to_gguf`` writes (merges, special ids, add flags, template)."""
    import gguf  # PyPI gguf: only needed for conversion

    class _Recorder(gguf.GGUFWriter):  # type: ignore[misc]
        """Keeps the key/values instead of writing a file."""

        def __init__(self) -> None:  # no file, no super().__init__
            self.kv: dict[str, Any] = {}

        def add_key_value(self, key: str, val: Any, vtype: Any, sub_type: Any = None) -> None:
            self.kv[key] = val

    special = gguf.SpecialVocab(hf_dir, load_merges=load_merges, n_vocab=n_vocab)
    if _has_byte_level_post_processor(tokenizer_json):
        # llama.cpp's gguf-py (newer than some PyPI releases): a ByteLevel post-processor adds nothing
        special.add_special_token.setdefault("bos", False)
        special.add_special_token.setdefault("eos", False)
    recorder = _Recorder()
    special.add_to_gguf(recorder, quiet=True)
    return recorder.kv


def _has_byte_level_post_processor(tokenizer_json: dict[str, Any]) -> bool:
    """Whether tokenizer.json's post-processor is (or contains) ``ByteLevel``."""
    post = tokenizer_json.get("post_processor") or {}
    return any(p.get("type") == "ByteLevel" for p in post.get("processors", [post]))


def _added_tokens(tokenizer_json: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(t["id"]): t for t in tokenizer_json.get("added_tokens", [])}


def _gpt2_vocab(tokenizer_json: dict[str, Any], config: dict[str, Any]) -> tuple[list[str], list[int]]:
    """Tokens and types as ``get_vocab_base`` makes them."""
    model_vocab: dict[str, int] = tokenizer_json["model"]["vocab"]
    added = _added_tokens(tokenizer_json)
    reverse = {i: t for t, i in model_vocab.items()}
    reverse.update((i, t["content"]) for i, t in added.items())
    vocab_size = _config_vocab_size(config) or len(reverse)
    if reverse and max(reverse) >= vocab_size:
        raise ValueError(f"config.json vocab_size {vocab_size} is smaller than the tokenizer's ids")
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        text = reverse.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(TYPE_UNUSED)
            continue
        info = added.get(i)
        if info is None:
            types.append(TYPE_NORMAL)
        elif info.get("special") or _does_token_look_special(text):
            types.append(TYPE_CONTROL)
        else:
            text = text.replace("\u2581", " ")  # pre-normalize user-defined spaces
            types.append(TYPE_USER_DEFINED)
        tokens.append(text)
    return tokens, types


_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _config_vocab_size(config: dict[str, Any]) -> int | None:
    """config.json's ``vocab_size`` (also inside ``text_config`` for multimodal models)."""
    size = config.get("vocab_size", config.get("text_config", {}).get("vocab_size"))
    return int(size) if size is not None else None


def _spm_vocab(tokenizer_json: dict[str, Any], vocab_size: int | None) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and types of a SentencePiece-style tokenizer.json; with ``vocab_size`` (config.json)
    padded with unused ``[PAD<id>]`` tokens or cut to that size, as llama.cpp's SentencePiece path does."""
    model = tokenizer_json["model"]
    added = _added_tokens(tokenizer_json)
    pieces: dict[int, tuple[str, float]] = {}  # id -> (text, score) of the model's own vocabulary
    if model["type"] == "Unigram":
        pieces = {i: (str(p[0]), float(p[1])) for i, p in enumerate(model["vocab"])}
    else:
        ranks = _merge_ranks(model.get("merges", []))
        n_merges = len(ranks)
        for text, i in model["vocab"].items():
            rank = ranks.get(text)
            pieces[i] = (text, -float(rank if rank is not None else n_merges + i))
    n = vocab_size if vocab_size is not None else max(max(pieces, default=-1), max(added, default=-1)) + 1
    tokens: list[str] = []
    scores: list[float] = []
    types: list[int] = []
    for i in range(n):
        info = added.get(i)
        piece = pieces.get(i)
        if piece is None and info is None:
            tokens.append(f"[PAD{i}]")
            scores.append(-1000.0)
            types.append(TYPE_UNUSED)
            continue
        text, score = piece if piece is not None else (info["content"], -1000.0)  # type: ignore[index]
        if _BYTE_TOKEN.fullmatch(text):
            types.append(TYPE_BYTE)
            score = 0.0
        elif info is not None:
            if info.get("special") or _does_token_look_special(text):
                types.append(TYPE_CONTROL)
            else:
                text = text.replace("\u2581", " ")
                types.append(TYPE_USER_DEFINED)
            score = -1000.0
        else:
            types.append(TYPE_NORMAL)
        tokens.append(text)
        scores.append(score)
    return tokens, scores, types


def _merge_ranks(merges: list[Any]) -> dict[str, int]:
    """For each token made by a merge, the rank of the first merge that makes it."""
    ranks: dict[str, int] = {}
    for rank, merge in enumerate(merges):
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        ranks.setdefault(left + right, rank)
    return ranks


def _is_spm_style(tokenizer_json: dict[str, Any]) -> bool:
    model = tokenizer_json.get("model", {})
    return model.get("type") == "Unigram" or (model.get("type") == "BPE" and bool(model.get("byte_fallback")))


def _adds_space_prefix(tokenizer_json: dict[str, Any]) -> bool:
    """Whether the normalizer or pre-tokenizer prepends "▁" (SentencePiece's add_dummy_prefix)."""
    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "Prepend" and node.get("prepend") == "\u2581":
                return True
            if node.get("type") == "Metaspace" and node.get("prepend_scheme", "always") != "never":
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False
    return walk(tokenizer_json.get("normalizer")) or walk(tokenizer_json.get("pre_tokenizer"))


def vocab_metadata(hf_dir: Path) -> dict[str, Any]:
    """The GGUF tokenizer key/values (``"tokenizer.ggml.tokens"`` ...) for the Hugging Face model in ``hf_dir``.

    Byte-level BPE: ``model``="gpt2", ``pre``, ``tokens``, ``token_type`` (normal 1, control 3 for added
    special tokens and ``<|...|>``-looking ones, user-defined 4 for other added tokens, unused 5 for ids
    missing below config.json's ``vocab_size``), ``merges`` and whatever ``SpecialVocab`` finds (special ids,
    ``add_bos_token``/``add_eos_token``, ``chat_template``). SentencePiece-style: ``model``="llama",
    ``pre``="default", ``tokens``, ``scores``, ``token_type`` (byte 6 for ``<0xXX>``) plus the same special
    keys.

    Differences from llama.cpp: ``pre`` is chosen from the pre-tokenizer's regexes, not by hashing; added
    tokens are taken as written (llama.cpp round-trips non-normalized ones through transformers, which leaves
    them unchanged for these tokenizers). On the SentencePiece path a normal token's score is minus the rank
    of the first merge that makes it (tokens no merge makes come after all merges, by id): llama.cpp's
    LlamaHfVocab writes -1000 for every token, which leaves SentencePiece merging nothing to order by, while
    merge ranks reproduce Hugging Face's BPE exactly (checked on Llama 2 and Gemma 3); byte tokens score 0 and
    added tokens -1000 as in llama.cpp's files; added tokens are control when ``special`` or special-looking,
    else user-defined; and ``add_space_prefix`` is written from the normalizer (a ``Prepend("▁")``), which
    LlamaHfVocab leaves to llama.cpp's default (true).
    """
    hf_dir = Path(hf_dir)
    tokenizer_json = _load_json(hf_dir / "tokenizer.json")
    config_path = hf_dir / "config.json"
    config = _load_json(config_path) if config_path.is_file() else {}
    meta: dict[str, Any] = {}
    if _is_spm_style(tokenizer_json):
        tokens, scores, types = _spm_vocab(tokenizer_json, _config_vocab_size(config))
        meta[_KEY + "model"] = "llama"
        meta[_KEY + "pre"] = "default"
        meta[_KEY + "tokens"] = tokens
        meta[_KEY + "scores"] = scores
        meta[_KEY + "token_type"] = types
        meta[_KEY + "add_space_prefix"] = _adds_space_prefix(tokenizer_json)
        meta.update(_special_vocab_metadata(hf_dir, tokenizer_json, load_merges=False, n_vocab=len(tokens)))
        return meta
    model_type = tokenizer_json.get("model", {}).get("type")
    if model_type != "BPE":
        raise ValueError(f"unsupported tokenizer.json model type {model_type!r} (BPE or Unigram expected)")
    tokens, types = _gpt2_vocab(tokenizer_json, config)
    meta[_KEY + "model"] = "gpt2"
    meta[_KEY + "pre"] = bpe_pre_name(tokenizer_json)
    meta[_KEY + "tokens"] = tokens
    meta[_KEY + "token_type"] = types
    meta.update(_special_vocab_metadata(hf_dir, tokenizer_json, load_merges=True, n_vocab=None))
    return meta
