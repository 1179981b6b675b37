"""SentencePiece-style tokenizer (``tokenizer.ggml.model = "llama"``): Llama 2, Mistral, Gemma, Phi-3...

Tokenization matches llama.cpp's SPM path:

1. special tokens are cut out of the raw text (:meth:`Vocab.partition`);
2. each remaining text fragment gets a leading space when ``add_space_prefix`` is set and it follows a
   special token or starts the text, and its spaces become ``"▁"`` (U+2581);
3. the fragment is split into characters and the adjacent pair that forms the vocabulary token with the
   highest score is merged, again and again (ties: leftmost pair first);
4. every final piece is looked up in the vocabulary; a piece that is not a token is a single character,
   which is emitted as its UTF-8 bytes through the ``<0xXX>`` byte tokens.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from typing import Any

from emberllm.tokenizers.base import Tokenizer
from emberllm.tokenizers.vocab import (
    ATTR_BYTE,
    ATTR_CONTROL,
    ATTR_NORMAL,
    ATTR_PARSE_ONLY,
    ATTR_UNKNOWN,
    ATTR_USER_DEFINED,
    Vocab,
)

SPACE_MARK = "\u2581"  # "▁", how SentencePiece writes a space

# llama.cpp's defaults for SPM vocabularies (the metadata normally overrides them).
_SPM_DEFAULT_IDS = {"bos": 1, "eos": 2, "unk": 0}


class SPMTokenizer(Tokenizer):
    """The SentencePiece (SPM) tokenizer of one GGUF vocabulary."""

    def __init__(self, vocab: Vocab) -> None:
        super().__init__(vocab)
        self._byte_ids: list[int | None] = [self._find_byte_token(b) for b in range(256)]

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> SPMTokenizer:
        """Build the tokenizer from GGUF metadata (``tokenizer.ggml.*`` keys)."""
        return cls(Vocab(metadata, _SPM_DEFAULT_IDS, default_add_bos=True, default_add_eos=False,
                         default_add_space_prefix=True))

    def _find_byte_token(self, byte: int) -> int | None:
        """The token of a raw byte: ``<0xXX>``, else the byte itself as a one-character token."""
        lookup = self.vocab.token_to_id.get
        token = lookup(f"<0x{byte:02X}>")
        if token is None:
            # token texts hold invalid UTF-8 bytes as surrogateescape characters
            token = lookup(chr(byte) if byte < 0x80 else chr(0xDC00 + byte))
        return token

    # -- encoding ----------------------------------------------------------------------------------------
    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of ``text`` (with BOS/EOS as the model asks when ``add_special``).

        ``parse_special`` lets control tokens written in the text (e.g. ``<start_of_turn>``) become
        those tokens; user-defined tokens are always recognised.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, not {type(text).__name__}")
        vocab = self.vocab
        bos, eos = self.bos_id, self.eos_id
        out: list[int] = [bos] if add_special and vocab.add_bos and bos is not None else []
        prev_special = True
        for fragment in vocab.partition(text, parse_special):
            if isinstance(fragment, int):
                out.append(fragment)
                prev_special = True
                continue
            if vocab.add_space_prefix and prev_special:
                fragment = " " + fragment
            self._encode_fragment(fragment.replace(" ", SPACE_MARK), out)
            prev_special = False
        if add_special and vocab.add_eos and eos is not None:
            out.append(eos)
        return out

    def _encode_fragment(self, text: str, out: list[int]) -> None:
        """Append the tokens of one escaped text fragment."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            self._encode_raw_bytes(text, out)
            return
        pieces = merge_symbols(text, [1] * len(text), self.vocab.token_to_id, self.vocab.scores)
        self._emit(pieces, out)

    def _emit(self, pieces: Iterable[str], out: list[int]) -> None:
        """Append the token of each piece, or its UTF-8 bytes as byte tokens when it is no token."""
        lookup = self.vocab.token_to_id.get
        for piece in pieces:
            token = lookup(piece)
            if token is not None:
                out.append(token)
            else:
                out.extend(self._byte_token(b) for b in piece.encode("utf-8", "surrogatepass"))

    def _encode_raw_bytes(self, text: str, out: list[int]) -> None:
        """Tokenize text holding surrogates (invalid UTF-8 smuggled in with ``surrogateescape``).

        llama.cpp sees bytes, so the characters are cut by UTF-8 lead bytes exactly as it does: the text
        is turned into one latin-1 character per byte and vocabulary lookups decode pieces back.
        """
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "surrogatepass")
        chars = raw.decode("latin-1")
        lengths = _utf8_symbol_lengths(raw)
        lookup = _ByteKeyLookup(self.vocab.token_to_id)
        for piece in merge_symbols(chars, lengths, lookup, self.vocab.scores):
            token = lookup.get(piece)
            if token is not None:
                out.append(token)
            else:
                out.extend(self._byte_token(b) for b in piece.encode("latin-1"))

    def _byte_token(self, byte: int) -> int:
        """The byte-fallback token of ``byte``; the unknown token when the vocabulary has none.

        (llama.cpp throws in that case.)
        """
        token = self._byte_ids[byte]
        if token is None:
            token = self.unk_id
            if token is None:
                raise ValueError(f"the vocabulary has no token for byte 0x{byte:02X} and no unknown token")
        return token

    # -- decoding ----------------------------------------------------------------------------------------
    def token_to_piece(self, token: int, special: bool = False) -> bytes:
        """The bytes a token stands for.

        Control and unknown tokens give ``b""`` unless ``special``; user-defined tokens give their text;
        normal tokens their text with ``"▁"`` turned into spaces; byte tokens their byte.
        """
        self._check_id(token)
        attr = self.vocab.attrs[token]
        if not special and attr & ATTR_PARSE_ONLY:
            return b""
        text = self.vocab.tokens[token]
        if attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED):
            return text.encode("utf-8", "surrogateescape")
        if attr & ATTR_NORMAL:
            return text.replace(SPACE_MARK, " ").encode("utf-8", "surrogateescape")
        if attr & ATTR_BYTE:
            try:
                return bytes([int(text[3:5], 16)])
            except ValueError:
                return b"\x00"
        return b""  # unused and undefined tokens render as nothing

    def decode_bytes(self, ids: Iterable[int], special: bool = False) -> bytes:
        """``llama_detokenize``: the pieces joined; with ``add_space_prefix`` the first loses one space."""
        out = [self.token_to_piece(t, special) for t in ids]
        if out and self.vocab.add_space_prefix and out[0].startswith(b" "):
            out[0] = out[0][1:]
        return b"".join(out)


class _ByteKeyLookup:
    """Vocabulary lookups for pieces written one latin-1 character per byte."""

    def __init__(self, token_to_id: dict[str, int]) -> None:
        self._token_to_id = token_to_id

    def get(self, piece: str) -> int | None:
        """The token whose UTF-8 bytes are ``piece``'s latin-1 code points."""
        return self._token_to_id.get(piece.encode("latin-1").decode("utf-8", "surrogateescape"))


def _utf8_symbol_lengths(raw: bytes) -> list[int]:
    """Byte lengths of llama.cpp's initial SPM symbols: one per UTF-8 lead byte (clipped at the end)."""
    lengths: list[int] = []
    pos, n = 0, len(raw)
    while pos < n:
        lead = raw[pos]
        size = 1 if lead < 0xC0 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        size = min(size, n - pos)
        lengths.append(size)
        pos += size
    return lengths


def merge_symbols(text: str, lengths: list[int], vocab: Any, scores: list[float]) -> list[str]:
    """SentencePiece's greedy merge: the pieces of ``text`` after all merges.

    ``text`` starts as symbols of the given ``lengths`` (in characters of ``text``). Repeatedly the
    adjacent pair whose concatenation is the vocabulary token with the highest score is merged (ties go
    to the leftmost pair) until no adjacent pair forms a token. ``vocab.get(piece)`` gives a token id.
    """
    n = len(lengths)
    if n < 2:
        return [text] if text else []
    lookup = vocab.get
    starts = [0] * n
    for i in range(1, n):
        starts[i] = starts[i - 1] + lengths[i - 1]
    # symbols are indexed by their start offset in ``text``; ``size[s]`` is 0 once merged away
    end = len(text)
    size = [0] * (end + 1)
    prev = [-1] * (end + 1)
    for i, start in enumerate(starts):
        size[start] = lengths[i]
        prev[start] = starts[i - 1] if i else -1
    heap: list[tuple[float, int, int, int]] = []
    for i in range(n - 1):
        left, right = starts[i], starts[i + 1]
        token = lookup(text[left:right + lengths[i + 1]])
        if token is not None:
            heap.append((-scores[token], left, right, lengths[i] + lengths[i + 1]))
    heapq.heapify(heap)
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        _, left, right, merged = pop(heap)
        left_size, right_size = size[left], size[right]
        if not left_size or not right_size or left_size + right_size != merged:
            continue  # stale: one side changed since this pair was queued
        size[left] = merged
        size[right] = 0
        after = left + merged
        if after < end:
            prev[after] = left
            token = lookup(text[left:after + size[after]])
            if token is not None:
                push(heap, (-scores[token], left, after, merged + size[after]))
        before = prev[left]
        if before >= 0:
            token = lookup(text[before:after])
            if token is not None:
                push(heap, (-scores[token], before, left, after - before))
    pieces: list[str] = []
    pos = 0
    while pos < end:
        step = size[pos]
        pieces.append(text[pos:pos + step])
        pos += step
    return pieces
