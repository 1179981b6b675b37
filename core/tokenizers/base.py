"""What every tokenizer offers, plus incremental (streaming) detokenization."""

from __future__ import annotations

import codecs
from abc import ABC, abstractmethod
from collections.abc import Iterable

from emberllm.tokenizers.vocab import Vocab


class Tokenizer(ABC):
    """A model's tokenizer: text <-> token ids, with llama.cpp's semantics.

    Subclasses implement :meth:`encode` and :meth:`token_to_piece`; the vocabulary (:class:`Vocab`)
    supplies special ids, attributes and lookups.
    """

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab

    # -- vocabulary facts --------------------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        """Number of tokens."""
        return self.vocab.n_vocab

    @property
    def bos_id(self) -> int | None:
        """Beginning-of-sequence token."""
        return self.vocab.ids["bos"]

    @property
    def eos_id(self) -> int | None:
        """End-of-sequence token."""
        return self.vocab.ids["eos"]

    @property
    def eot_id(self) -> int | None:
        """End-of-turn token (e.g. Gemma's ``<end_of_turn>``), if the model has one."""
        return self.vocab.ids["eot"]

    @property
    def unk_id(self) -> int | None:
        """Unknown token."""
        return self.vocab.ids["unk"]

    @property
    def pad_id(self) -> int | None:
        """Padding token."""
        return self.vocab.ids["pad"]

    @property
    def add_bos(self) -> bool:
        """Whether :meth:`encode` prepends BOS when ``add_special``."""
        return self.vocab.add_bos

    @property
    def add_eos(self) -> bool:
        """Whether :meth:`encode` appends EOS when ``add_special``."""
        return self.vocab.add_eos

    @property
    def eog_ids(self) -> frozenset[int]:
        """All end-of-generation tokens."""
        return self.vocab.eog_ids

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends generation (EOS, EOT, EOM and the other tokens llama.cpp treats so)."""
        return token in self.vocab.eog_ids

    def token_text(self, token: int) -> str:
        """The raw vocabulary text of a token (e.g. ``"▁the"``, ``"<0x0A>"``, ``"<bos>"``)."""
        self._check_id(token)
        return self.vocab.tokens[token]

    def _check_id(self, token: int) -> None:
        """Raise ``IndexError`` for ids outside the vocabulary (Python would wrap negative ones)."""
        if not 0 <= token < self.vocab.n_vocab:
            raise IndexError(f"token id {token} is out of range (vocabulary of {self.vocab.n_vocab})")

    def vocab_lookup(self, text: str) -> int | None:
        """The id of the token whose raw vocabulary text is ``text``, or None."""
        return self.vocab.token_to_id.get(text)

    # -- conversions -------------------------------------------------------------------------------------
    @abstractmethod
    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of ``text``; ``add_special`` adds BOS/EOS as the model asks, ``parse_special`` lets
        control tokens written in the text become those tokens."""

    @abstractmethod
    def token_to_piece(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token; control tokens give ``b""`` unless ``special``."""

    def decode_bytes(self, ids: Iterable[int], special: bool = False) -> bytes:
        """The bytes of a token sequence."""
        return b"".join(self.token_to_piece(t, special) for t in ids)

    def decode(self, ids: Iterable[int], special: bool = False) -> str:
        """The text of a token sequence (invalid UTF-8 becomes U+FFFD)."""
        return self.decode_bytes(ids, special).decode("utf-8", "replace")

    def stream_decoder(self, special: bool = False) -> StreamDecoder:
        """A :class:`StreamDecoder` over this tokenizer."""
        return StreamDecoder(self, special)


class StreamDecoder:
    """Turns token ids, fed one at a time, into text that never ends inside a UTF-8 character.

    Bytes of an unfinished character (e.g. the first byte tokens of an emoji) are held back until the
    character completes; invalid bytes become U+FFFD. The texts returned by :meth:`feed` and
    :meth:`flush` concatenate to the decoding of all the pieces at once (like llama.cpp's streaming, no
    leading space is stripped from the first piece).
    """

    def __init__(self, tokenizer: Tokenizer, special: bool = False) -> None:
        self.tokenizer = tokenizer
        self.special = special
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, token: int) -> str:
        """Add one token; return the text completed by it (may be empty)."""
        return self._decoder.decode(self.tokenizer.token_to_piece(token, self.special))

    def flush(self) -> str:
        """Return what is still held back (an unfinished character becomes U+FFFD) and reset."""
        text = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        return text
