"""Byte-level BPE tokenizer (``tokenizer.ggml.model = "gpt2"``): Llama 3, Qwen2/3, SmolLM, GPT-2, DeepSeek...

Tokenization matches llama.cpp's BPE path:

1. special tokens are cut out of the raw text (:meth:`Vocab.partition`);
2. each text fragment is split into words by the pre-tokenizer named by ``tokenizer.ggml.pre``
   (:mod:`emberllm.tokenizers.pretokenize`);
3. each word's UTF-8 bytes are written as GPT-2's byte characters (byte ``0x20`` is ``"Ġ"`` ...);
4. the word starts as single characters and the adjacent pair with the lowest merge rank is merged, again
   and again (ties: leftmost pair first), until no adjacent pair has a merge; with ``ignore_merges``
   (Llama 3) a word that is itself a token is taken whole;
5. every final piece is looked up in the vocabulary.

Results are cached per word, so repeated words cost one dictionary lookup.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from emberllm.tokenizers.base import Tokenizer
from emberllm.tokenizers.pretokenize import PreTokenizer, pre_tokenizer
from emberllm.tokenizers.vocab import (
    ATTR_BYTE,
    ATTR_CONTROL,
    ATTR_NORMAL,
    ATTR_PARSE_ONLY,
    ATTR_UNKNOWN,
    ATTR_USER_DEFINED,
    Vocab,
)

log = logging.getLogger(__name__)

# llama.cpp's defaults for BPE vocabularies (the metadata normally overrides them).
_BPE_DEFAULT_IDS = {"bos": 11, "eos": 11}

#: Words longer than this (in byte characters) are merged with a heap instead of rescanning all pairs.
_HEAP_THRESHOLD = 48
#: Cached words before the cache is emptied.
_CACHE_LIMIT = 200_000


def byte_to_unicode() -> list[str]:
    """GPT-2's byte characters: printable Latin-1 bytes stand for themselves, the others for U+0100 on."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = [""] * 256
    extra = 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(0x100 + extra)
            extra += 1
    return table


_BYTE_CHARS = byte_to_unicode()
#: str.translate table: Latin-1 character (one per byte) -> byte character
_BYTE_ENCODE = {i: c for i, c in enumerate(_BYTE_CHARS)}
#: byte character -> byte
_BYTE_DECODE = {c: i for i, c in enumerate(_BYTE_CHARS)}


def byte_encode(text: str) -> str:
    """``text``'s UTF-8 bytes written as GPT-2 byte characters (invalid text via ``surrogateescape``)."""
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("latin-1").translate(_BYTE_ENCODE)


def byte_decode(token_text: str) -> bytes:
    """The bytes a normal BPE token stands for (llama.cpp's ``llama_decode_text``).

    A character that is no byte character becomes ``[UNK_BYTE_0x<hex>` + token text + `]``, as in llama.cpp.
    """
    get = _BYTE_DECODE.get
    out = bytearray()
    for char in token_text:
        byte = get(char)
        if byte is not None:
            out.append(byte)
        else:
            utf8 = char.encode("utf-8", "surrogatepass")
            out += b"[UNK_BYTE_0x" + utf8.hex().encode() + token_text.encode("utf-8", "surrogatepass") + b"]"
    return bytes(out)


def parse_merges(merges: list[str]) -> dict[str, int]:
    """Merge ranks from GGUF ``tokenizer.ggml.merges``, keyed by the "left right" string itself.

    A pair of symbols is looked up as ``left + " " + right``. llama.cpp splits each entry at its first space
    after the first character; the two agree because byte-level symbols never contain a space (it is
    written "Ġ"). A repeated entry keeps its first rank, as llama.cpp's ``map.emplace`` does.
    """
    n = len(merges)
    return dict(zip(reversed(merges), range(n - 1, -1, -1), strict=True))


class BPETokenizer(Tokenizer):
    """The byte-level BPE tokenizer of one GGUF vocabulary."""

    def __init__(self, vocab: Vocab, merges: list[str], pre: PreTokenizer) -> None:
        super().__init__(vocab)
        self.pre = pre
        self.ranks = parse_merges(merges)
        self._cache: dict[str, tuple[int, ...]] = {}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> BPETokenizer:
        """Build the tokenizer from GGUF metadata (``tokenizer.ggml.*`` keys).

        Raises ``ValueError`` when the merges are missing or the pre-tokenizer is unsupported.
        """
        merges = metadata.get("tokenizer.ggml.merges")
        pre_name = metadata.get("tokenizer.ggml.pre")
        if merges is None and pre_name == "kimi-k2":
            merges = []  # llama.cpp lets Kimi K2 go without merges
        if not isinstance(merges, list):
            raise ValueError("the BPE vocabulary has no merges (tokenizer.ggml.merges)")
        if not pre_name:
            log.warning("missing pre-tokenizer type (tokenizer.ggml.pre), using 'default': "
                        "tokenization will differ from the model's; consider regenerating the file")
        pre = pre_tokenizer(pre_name)
        default_ids = _BPE_DEFAULT_IDS if pre.default_bos else {**_BPE_DEFAULT_IDS, "bos": None}
        vocab = Vocab(metadata, default_ids, default_add_bos=pre.add_bos, default_add_eos=False,
                      default_add_space_prefix=False)
        return cls(vocab, merges, pre)

    # -- encoding ----------------------------------------------------------------------------------------
    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of ``text`` (with BOS/EOS as the model asks when ``add_special``).

        ``parse_special`` lets control tokens written in the text (e.g. ``<|im_start|>``) become those
        tokens; user-defined tokens are always recognised.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, not {type(text).__name__}")
        vocab = self.vocab
        out: list[int] = []
        if add_special and vocab.add_bos:
            if self.bos_id is None:
                raise ValueError("the model asks for a BOS token but has none")
            out.append(self.bos_id)
        for fragment in vocab.partition(text, parse_special):
            if isinstance(fragment, int):
                out.append(fragment)
            else:
                self._encode_fragment(fragment, out)
        if add_special and vocab.add_eos:
            if self.eos_id is None:
                raise ValueError("the model asks for an EOS token but has none")
            out.append(self.eos_id)
        return out

    def _encode_fragment(self, text: str, out: list[int]) -> None:
        """Append the tokens of one fragment of plain text."""
        cache = self._cache
        for word in self.pre.split(text):
            ids = cache.get(word)
            if ids is None:
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                ids = cache[word] = self._encode_word(byte_encode(word))
            out.extend(ids)

    def _encode_word(self, word: str) -> tuple[int, ...]:
        """The tokens of one byte-encoded word."""
        lookup = self.vocab.token_to_id.get
        if self.pre.ignore_merges:
            token = lookup(word)
            if token is not None:
                return (token,)
        pieces = merge_word(word, self.ranks) if len(word) > 1 else [word]
        ids: list[int] = []
        for piece in pieces:
            token = lookup(piece)
            if token is not None:
                ids.append(token)
            else:
                # llama.cpp looks up the piece's single bytes: only ASCII characters can be found
                ids.extend(t for t in (lookup(c) for c in piece if c < "\x80") if t is not None)
        return tuple(ids)

    # -- decoding ----------------------------------------------------------------------------------------
    def token_to_piece(self, token: int, special: bool = False) -> bytes:
        """The bytes a token stands for.

        Control and unknown tokens give ``b""`` unless ``special``; user-defined tokens give their text;
        normal tokens their byte characters decoded; byte tokens (``<0xXX>``) their byte.
        """
        self._check_id(token)
        attr = self.vocab.attrs[token]
        if not special and attr & ATTR_PARSE_ONLY:
            return b""
        text = self.vocab.tokens[token]
        if attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED):
            return text.encode("utf-8", "surrogateescape")
        if attr & ATTR_NORMAL:
            return byte_decode(text)
        if attr & ATTR_BYTE:
            try:
                return bytes([int(text[3:5], 16)])
            except ValueError:
                return b"\x00"
        return b""  # unused and undefined tokens render as nothing

    def decode_bytes(self, ids: Iterable[int], special: bool = False) -> bytes:
        """``llama_detokenize``: the pieces joined, then (for most pre-tokenizers) llama.cpp's cleanup of
        spaces before punctuation and contractions."""
        raw = b"".join(self.token_to_piece(t, special) for t in ids)
        return clean_up_spaces(raw) if self.pre.clean_spaces else raw


def merge_word(word: str, ranks: Mapping[str, int]) -> list[str]:
    """BPE merges of one word: the pieces after merging, lowest rank first, ties leftmost first."""
    if len(word) > _HEAP_THRESHOLD:
        return _merge_word_heap(word, ranks)
    syms = list(word)
    get = ranks.get
    while len(syms) > 1:
        best = -1
        best_rank = 1 << 62
        left = syms[0]
        for i in range(1, len(syms)):
            right = syms[i]
            rank = get(left + " " + right)
            if rank is not None and rank < best_rank:
                best_rank = rank
                best = i - 1
            left = right
        if best < 0:
            break
        syms[best:best + 2] = [syms[best] + syms[best + 1]]
    return syms


def _merge_word_heap(word: str, ranks: Mapping[str, int]) -> list[str]:
    """:func:`merge_word` with a priority queue (llama.cpp's algorithm), for long words."""
    syms = list(word)
    n = len(syms)
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    prv = list(range(-1, n - 1))
    get = ranks.get
    heap: list[tuple[int, int, str]] = []
    for i in range(n - 1):
        rank = get(syms[i] + " " + syms[i + 1])
        if rank is not None:
            heap.append((rank, i, syms[i] + syms[i + 1]))
    heapq.heapify(heap)
    push, pop = heapq.heappush, heapq.heappop
    while heap:
        _, left, merged = pop(heap)
        right = nxt[left]
        if not syms[left] or right < 0 or syms[left] + syms[right] != merged:
            continue  # stale: one side changed since this pair was queued
        syms[left] = merged
        syms[right] = ""
        after = nxt[right]
        nxt[left] = after
        if after >= 0:
            prv[after] = left
            rank = get(merged + " " + syms[after])
            if rank is not None:
                push(heap, (rank, left, merged + syms[after]))
        before = prv[left]
        if before >= 0:
            rank = get(syms[before] + " " + merged)
            if rank is not None:
                push(heap, (rank, before, syms[before] + merged))
    return [s for s in syms if s]


def clean_up_spaces(text: bytes) -> bytes:
    """llama.cpp's ``clean_spaces`` detokenizer passes: drop the space in " ?", " !", " .", " ,", the spaces
    around a lone " ' ", and the space before " 's", " 'm", " 're", " 've"."""
    if len(text) < 2 or b" " not in text:
        return text
    buf = bytearray(text)
    # pass 1: space before ? ! . ,
    out = bytearray(buf[:1])
    for i in range(1, len(buf)):
        x = buf[i]
        if buf[i - 1] == 0x20 and x in b"?!.,":
            out.pop()
        out.append(x)
    # pass 2: " ' " -> "'"
    buf, out = out, bytearray(out[:1])
    i, n = 1, len(buf)
    while i < n:
        x = buf[i]
        if x == 0x27 and i + 1 < n and buf[i - 1] == 0x20 and buf[i + 1] == 0x20:
            out.pop()
            i += 1
            buf[i] = 0  # the next space is consumed (and no longer counts as a space)
        out.append(x)
        i += 1
    # pass 3: contractions
    buf, out = out, bytearray(out[:1])
    n = len(buf)
    for i in range(1, n):
        x = buf[i]
        if buf[i - 1] == 0x20 and x == 0x27 and i + 1 < n:
            x1 = buf[i + 1]
            if x1 in b"sm" or (i + 2 < n and bytes(buf[i + 1:i + 3]) in (b"re", b"ve")):
                out.pop()
        out.append(x)
    return bytes(out)
