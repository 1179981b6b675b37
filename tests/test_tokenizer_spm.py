"""The SentencePiece tokenizer against llama.cpp (commit 0c1e570).

Expected ids come from llama.cpp itself: ``reference`` (shared/reference/llamacpp_reference.json), and the
literal tables below, produced with ``llama_tokenize`` / ``llama_detokenize`` of that commit on the same
model files (``EDGE_CASES``: Gemma 3 270M; ``LLAMA_SPM_CASES`` / ``PHI3_CASES``: the vocab-only GGUFs of
llama.cpp's own tokenizer tests, used when its source tree is in the cache).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emberllm.gguf.reader import GGUFFile
from emberllm.tokenizers import SPMTokenizer, StreamDecoder, load_tokenizer

from . import llamacpp
from .conftest import PPL_TEXT

MODES = [(False, False), (False, True), (True, False), (True, True)]
BOS = 2
SAME = None  # parse_special gives the same ids

# (text, ids with add_special=False and parse_special=False, ids with parse_special=True or SAME);
# with add_special=True llama.cpp gives the same ids after BOS (2).
EDGE_CASES: list[tuple[str, list[int], list[int] | None]] = [
    ("", [], SAME),
    (" ", [236743], SAME),
    ("     ", [141], SAME),
    ("  leading and trailing  ", [138, 26016, 532, 45330, 138], SAME),
    ("\n\n\n", [109], SAME),
    ("\n" * 40, [137, 115], SAME),
    (" " * 40, [167, 145], SAME),
    ("<start_of_turn>", [236820, 3041, 236779, 1340, 236779, 887, 236813], [105]),
    ("<end_of_turn>model\n<eos>",
     [236820, 643, 236779, 1340, 236779, 887, 236813, 4368, 107, 236820, 211827, 236813],
     [106, 4368, 107, 1]),
    # "</s>" is a user-defined token in Gemma, but llama.cpp makes it an end-of-generation control token
    ("a</s>b", [236746, 954, 236751, 236813, 236763], [236746, 212, 236763]),
    ("<b>bold</b> and <unused5>", [200, 15640, 209, 532, 655, 63634, 236810, 236813],
     [200, 15640, 209, 532, 236743, 11]),
    ("\U000f0000 \U0010fffd", [481, 414, 366, 366, 236743, 482, 381, 429, 427], SAME),
    ("\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522",
     [478, 395, 386, 390, 478, 395, 386, 409, 254865, 478, 395, 386, 398, 255458, 478, 395, 386, 399,
      478, 395, 386, 400], SAME),
    ("e\u0301 \u200d \U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
     [236744, 238288, 205730, 236743, 243767, 237243, 243767, 237243, 244814, 237243, 244990], SAME),
    ("tab\t\t\tand  spaces\r\n", [4823, 255970, 624, 138, 35220, 251, 107], SAME),
    ("[multimodal]", [5], SAME),
    ("<start_of_image><end_of_image>", [255999, 256000], SAME),
    ("def f(x):\n    return x  # comment\n",
     [2063, 517, 236769, 236781, 1473, 107, 140, 2060, 1123, 138, 236865, 5739, 107], SAME),
    ("\u2581already escaped\u2581", [3016, 41685, 236743], SAME),
    ("ab\x00cd\x7f", [596, 238, 2692, 251541], SAME),
    ("<bos><bos>hi", [236820, 46757, 1798, 46757, 236813, 2202], [2, 2, 2202]),
    ("<unk><mask><pad>", [236820, 4984, 1798, 1080, 1798, 13039, 236813], [3, 4, 0]),
    ("日本語のテキスト、中文文本。", [94951, 236945, 95830, 236951, 55041, 57489, 236924], SAME),
    # invalid UTF-8 bytes 0xFF 0xC3, passed as surrogateescape characters
    ("abc\udcff\udcc3", [28180, 493, 433], SAME),
]

# llama.cpp's tokenizer-test vocabularies: (text, ids for the four MODES)
LLAMA_SPM_CASES = [
    ("<s>Hello</s> world", [[529, 29879, 29958, 10994, 829, 29879, 29958, 3186],
                            [1, 15043, 2, 29871, 3186],
                            [1, 529, 29879, 29958, 10994, 829, 29879, 29958, 3186],
                            [1, 1, 15043, 2, 29871, 3186]]),
    (" <s> x", [[29871, 529, 29879, 29958, 921], [259, 1, 29871, 921], [1, 29871, 529, 29879, 29958, 921],
                [1, 259, 1, 29871, 921]]),
    ("Hello\n\n  world", [[15043, 13, 13, 29871, 3186]] * 2 + [[1, 15043, 13, 13, 29871, 3186]] * 2),
    ("", [[], [], [1], [1]]),
]
PHI3_CASES = [
    ("<|user|>\nHi there<|end|>\n<|assistant|>", [
        [529, 29989, 1792, 29989, 29958, 13, 18567, 727, 29966, 29989, 355, 29989, 29958, 13, 29966, 29989,
         465, 22137, 29989, 29958],
        [32010, 6324, 727, 32007, 32001],
        [1, 529, 29989, 1792, 29989, 29958, 13, 18567, 727, 29966, 29989, 355, 29989, 29958, 13, 29966, 29989,
         465, 22137, 29989, 29958],
        [1, 32010, 6324, 727, 32007, 32001]]),
    # phi-3's special tokens strip the whitespace after them
    ("<|end|>   \n  x", [[529, 29989, 355, 29989, 29958, 1678, 13, 29871, 921], [32007, 921],
                         [1, 529, 29989, 355, 29989, 29958, 1678, 13, 29871, 921], [1, 32007, 921]]),
    ("a </s> \n b", [[263, 1533, 29879, 29958, 29871, 13, 289], [263, 29871, 2, 289],
                     [1, 263, 1533, 29879, 29958, 29871, 13, 289], [1, 263, 29871, 2, 289]]),
]


def mode_key(add_special: bool, parse_special: bool) -> str:
    """The reference JSON's name of a mode."""
    return f"add_special={add_special},parse_special={parse_special}"


def load_metadata(path: Path) -> dict[str, Any]:
    """A GGUF file's metadata as a plain dict."""
    return dict(GGUFFile.open(path).metadata)


@pytest.fixture(scope="module")
def tok(gemma_path: Path) -> SPMTokenizer:
    """The Gemma 3 tokenizer."""
    tokenizer = load_tokenizer(load_metadata(gemma_path))
    assert isinstance(tokenizer, SPMTokenizer)
    return tokenizer


def llamacpp_vocab(name: str) -> Path:
    """One of llama.cpp's vocab-only test models (``models/ggml-vocab-NAME.gguf``; skip, or fail under CI)."""
    return llamacpp.vocab(name)


# -- llama.cpp's reference outputs --------------------------------------------------------------------------
def test_reference_tokenize_all_modes(tok: SPMTokenizer, reference: dict) -> None:
    checked = 0
    for text, modes in reference["tokenize"].items():
        for add_special, parse_special in MODES:
            expected = modes[mode_key(add_special, parse_special)]
            ids = tok.encode(text, add_special=add_special, parse_special=parse_special)
            assert ids == expected["ids"], (text, add_special, parse_special)
            pieces = [bytes(p) if isinstance(p, list) else p.encode() for p in expected["pieces"]]
            assert [tok.token_to_piece(i, special=True) for i in ids] == pieces, text
            checked += 1
    assert checked == 4 * len(reference["tokenize"]) >= 24


def test_reference_prompts_and_generated_text(tok: SPMTokenizer, reference: dict) -> None:
    for prompt, run in reference["prompts"].items():
        assert tok.encode(prompt, add_special=True, parse_special=True) == run["prompt_token_ids"]
        assert tok.decode(run["generated_token_ids"]) == run["generated_text"]


def test_ppl_text_token_count(tok: SPMTokenizer, reference: dict) -> None:
    text = llamacpp.reference_file(PPL_TEXT).read_text(encoding="utf-8")
    ids = tok.encode(text, add_special=True, parse_special=False)
    assert ids[0] == BOS
    assert len(ids) == reference["perplexity"]["n_tokens_with_bos"] == 5024


# -- edge cases (llama.cpp's ids) ---------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "plain", "parsed"), EDGE_CASES, ids=[ascii(c[0])[:30] for c in EDGE_CASES])
def test_edge_cases(tok: SPMTokenizer, text: str, plain: list[int], parsed: list[int] | None) -> None:
    parsed = plain if parsed is None else parsed
    assert tok.encode(text, add_special=False, parse_special=False) == plain
    assert tok.encode(text, add_special=False, parse_special=True) == parsed
    assert tok.encode(text, add_special=True, parse_special=False) == [BOS, *plain]
    assert tok.encode(text, add_special=True, parse_special=True) == [BOS, *parsed]


def test_special_token_types(tok: SPMTokenizer) -> None:
    assert (tok.bos_id, tok.eos_id, tok.eot_id, tok.unk_id, tok.pad_id) == (2, 1, 106, 3, 0)
    assert tok.n_vocab == 262144
    assert tok.token_text(105) == "<start_of_turn>" and tok.vocab_lookup("<end_of_turn>") == 106
    assert tok.vocab_lookup("no such token") is None
    assert tok.eog_ids == {1, 106, 212}
    assert tok.is_eog(1) and tok.is_eog(106) and not tok.is_eog(2) and not tok.is_eog(107)


def test_token_to_piece_by_type(tok: SPMTokenizer) -> None:
    assert tok.token_to_piece(105) == b""  # control
    assert tok.token_to_piece(105, special=True) == b"<start_of_turn>"
    assert tok.token_to_piece(107) == b"\n"  # user-defined
    assert tok.token_to_piece(138) == b"  "
    assert tok.token_to_piece(3016) == b" already"  # normal: "\u2581" becomes a space
    assert tok.token_to_piece(238 + 0xF0) == b"\xf0"  # byte token <0xF0>
    assert tok.token_to_piece(3) == b"" and tok.token_to_piece(3, special=True) == b"<unk>"
    for bad in (-1, tok.n_vocab):
        with pytest.raises(IndexError):
            tok.token_to_piece(bad)


@pytest.mark.parametrize("text", [
    "Hello world! \u00dcn\u00efc\u00f6d\u00e9 \U0001f999 tabs\tand\nnewlines",
    "  x  \n\n\t\t y \r\n" + " " * 45,
    "\U000f0000\U0001d518 e\u0301 \U0001f469\u200d\U0001f469\u200d\U0001f467",
    "<b>html</b> [multimodal] <start_of_image>",
    "def f(x):\n    return {'a': [1, 2.5e-3]}\n",
])
def test_decode_roundtrip(tok: SPMTokenizer, text: str) -> None:
    """Without control tokens, Gemma's tokenization is lossless."""
    assert tok.decode(tok.encode(text, add_special=False)) == text
    assert tok.decode(tok.encode(text, add_special=True)) == text
    assert tok.decode(tok.encode(text, add_special=True), special=True) == "<bos>" + text


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(exclude_characters="\u2581", exclude_categories=("Cs",)), max_size=40))
def test_roundtrip_and_stream_property(tok: SPMTokenizer, text: str) -> None:
    """Any text (but U+2581, which reads as a space) survives encode/decode and streaming."""
    ids = tok.encode(text, add_special=True)
    assert tok.decode(ids) == text
    chunks = stream(tok, ids)
    assert all("\ufffd" not in c for c in chunks) or "\ufffd" in text
    assert "".join(chunks) == text


def test_decode_special(tok: SPMTokenizer) -> None:
    ids = tok.encode("<start_of_turn>user\nHi<end_of_turn>\n", add_special=True, parse_special=True)
    assert tok.decode(ids) == "user\nHi\n"
    assert tok.decode(ids, special=True) == "<bos><start_of_turn>user\nHi<end_of_turn>\n"


# -- streaming ----------------------------------------------------------------------------------------------
def stream(tok: SPMTokenizer, ids: list[int], special: bool = False) -> list[str]:
    """The texts a StreamDecoder returns for ``ids``, the flush last."""
    decoder = tok.stream_decoder(special)
    return [decoder.feed(t) for t in ids] + [decoder.flush()]


def test_stream_holds_back_partial_characters(tok: SPMTokenizer) -> None:
    llama = tok.encode("\U0001f999", add_special=False)
    assert llama == [478, 397, 404, 391]  # four byte tokens
    assert stream(tok, llama) == ["", "", "", "\U0001f999", ""]


@pytest.mark.parametrize("text", [
    "Hello world! \u00dcn\u00efc\u00f6d\u00e9 \U0001f999 tabs\tand\nnewlines",
    "\U0001d518\U0001d52b\U0001d526 \U000f0000 \U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
    "日本語のテキスト、中文文本。 \u0915\u094d\u0937 \U00010348",
])
def test_stream_matches_decode(tok: SPMTokenizer, text: str) -> None:
    ids = tok.encode(text, add_special=True)
    chunks = stream(tok, ids)
    assert all("\ufffd" not in c for c in chunks)
    assert "".join(chunks) == tok.decode(ids) == text


def test_stream_reference_generations(tok: SPMTokenizer, reference: dict) -> None:
    for run in reference["prompts"].values():
        assert "".join(stream(tok, run["generated_token_ids"])) == run["generated_text"]


def test_stream_flush_unfinished_and_reuse(tok: SPMTokenizer) -> None:
    decoder = StreamDecoder(tok)
    assert decoder.feed(478) == ""  # <0xF0>: first byte of a 4-byte character
    assert decoder.flush() == "\ufffd"
    assert decoder.feed(9259) == "Hello"  # the decoder starts afresh after a flush
    special = tok.stream_decoder(special=True)
    assert special.feed(106) == "<end_of_turn>" and tok.stream_decoder().feed(106) == ""


# -- other SPM vocabularies (llama.cpp's tokenizer tests) ----------------------------------------------------
def read_vocab_tests(path: Path) -> list[tuple[str, list[int]]]:
    """llama.cpp's ``.inp``/``.out`` pairs (add_special=False, parse_special=False)."""
    raw = path.with_suffix(".gguf.inp").read_text(encoding="utf-8")
    sep = "\n__ggml_vocab_test__\n"
    texts, pos = [], 0
    while pos < len(raw):
        nxt = raw.find(sep, pos)
        if nxt < 0:
            texts.append(raw[pos:])
            break
        texts.append(raw[pos:nxt])
        pos = nxt + len(sep)
    outs = path.with_suffix(".gguf.out").read_text(encoding="utf-8").splitlines()
    assert len(texts) == len(outs)
    return [(t, [int(x) for x in o.split()]) for t, o in zip(texts, outs, strict=True)]


@pytest.mark.parametrize("name", ["llama-spm", "phi-3"])
def test_llamacpp_vocab_tests(name: str) -> None:
    path = llamacpp_vocab(name)
    tokenizer = load_tokenizer(load_metadata(path))
    for text, expected in read_vocab_tests(path):
        assert tokenizer.encode(text, add_special=False, parse_special=False) == expected, text


@pytest.mark.parametrize(("name", "cases"), [("llama-spm", LLAMA_SPM_CASES), ("phi-3", PHI3_CASES)])
def test_llamacpp_vocab_special_tokens(name: str, cases: list[tuple[str, list[list[int]]]]) -> None:
    tokenizer = load_tokenizer(load_metadata(llamacpp_vocab(name)))
    for text, per_mode in cases:
        for (add_special, parse_special), expected in zip(MODES, per_mode, strict=True):
            assert tokenizer.encode(text, add_special, parse_special) == expected, (text, add_special)


def test_llama_spm_detokenize_strips_first_space() -> None:
    """With add_space_prefix, llama_detokenize drops one leading space of the first piece (not after BOS)."""
    tokenizer = load_tokenizer(load_metadata(llamacpp_vocab("llama-spm")))
    assert tokenizer.decode([15043, 3186]) == "Hello world"
    assert tokenizer.decode([1, 15043]) == " Hello"
    assert tokenizer.decode([1, 15043], special=True) == "<s> Hello"
    assert tokenizer.decode([29871, 15043]) == " Hello"


# -- synthetic vocabularies: the algorithm's rules ----------------------------------------------------------
def tiny_vocab(tokens: dict[str, tuple[float, int]], **extra: Any) -> SPMTokenizer:
    """An SPM tokenizer over ``{text: (score, type)}`` plus the 256 byte tokens."""
    texts = ["<unk>", "<s>", "</s>", *tokens]
    scores = [0.0, 0.0, 0.0, *(s for s, _ in tokens.values())]
    types = [2, 3, 3, *(t for _, t in tokens.values())]
    texts += [f"<0x{b:02X}>" for b in range(256)]
    scores += [0.0] * 256
    types += [6] * 256
    metadata = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": texts,
                "tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": types,
                "tokenizer.ggml.add_space_prefix": False, **extra}
    tokenizer = load_tokenizer(metadata)
    assert isinstance(tokenizer, SPMTokenizer)
    return tokenizer


def names(tokenizer: SPMTokenizer, ids: list[int]) -> list[str]:
    """Token texts of ids."""
    return [tokenizer.token_text(i) for i in ids]


def test_merge_highest_score_then_leftmost() -> None:
    t = tiny_vocab({"a": (0, 1), "b": (0, 1), "ab": (-1, 1), "ba": (-2, 1)})
    assert names(t, t.encode("bab", add_special=False)) == ["b", "ab"]  # "ab" outscores "ba"
    t = tiny_vocab({"a": (0, 1), "b": (0, 1), "ab": (-1, 1), "ba": (-1, 1)})
    assert names(t, t.encode("aba", add_special=False)) == ["ab", "a"]  # tie: leftmost pair


def test_merge_needs_a_path_and_bytes_fall_back() -> None:
    t = tiny_vocab({"a": (0, 1), "b": (0, 1), "c": (0, 1), "abc": (-1, 1)})
    assert names(t, t.encode("abc", add_special=False)) == ["a", "b", "c"]  # no "ab" or "bc": no merge
    assert names(t, t.encode("aé", add_special=False)) == ["a", "<0xC3>", "<0xA9>"]


def test_partition_longest_special_first_and_strip() -> None:
    t = tiny_vocab({"a": (0, 1), "b": (0, 1), "c": (0, 1), "d": (0, 1), "ab": (0, 4), "bcd": (0, 4)})
    assert names(t, t.encode("abcd", add_special=False)) == ["a", "bcd"]  # longer token wins, not leftmost
    t = tiny_vocab({"x": (0, 1), "<e>": (0, 3), "\u2581": (0, 1)}, **{"general.name": "Phi-3 tiny"})
    assert names(t, t.encode("<e> \n x", add_special=False, parse_special=True)) == ["<e>", "x"]
    assert names(t, t.encode("<e> \n x", add_special=False)) == ["<0x3C>", "<0x65>", "<0x3E>", "\u2581",
                                                                 "<0x0A>", "\u2581", "x"]


def test_space_prefix_after_each_special_token() -> None:
    t = tiny_vocab({"x": (0, 1), "\u2581x": (0, 1), "<e>": (0, 3)},
                   **{"tokenizer.ggml.add_space_prefix": True})
    assert names(t, t.encode("x<e>x", add_special=False, parse_special=True)) == ["\u2581x", "<e>", "\u2581x"]
    assert names(t, t.encode("x", add_special=True)) == ["<s>", "\u2581x"]


def test_load_tokenizer_rejects_other_models() -> None:
    with pytest.raises(ValueError, match="'bert'.*not supported"):
        load_tokenizer({"tokenizer.ggml.model": "bert", "tokenizer.ggml.tokens": ["a"]})
    with pytest.raises(ValueError, match="unknown tokenizer model 'weird'.*'llama'"):
        load_tokenizer({"tokenizer.ggml.model": "weird"})
    with pytest.raises(ValueError, match="no tokenizer vocabulary"):
        load_tokenizer({"tokenizer.ggml.model": "llama"})
