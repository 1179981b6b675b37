"""What the sampler needs from a model's vocabulary (:class:`VocabInfo`) and DRY's processed breakers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

DRY_MAX_CHAR_LEN = 40  # llama.cpp truncates each sequence breaker to this many characters
DRY_MAX_SEQ_LEN = 20  # and keeps at most this many tokens of a breaker's tail


@dataclass
class VocabInfo:
    """What the sampler needs from the model's vocabulary; make one per model and reuse it.

    ``token_text(id)`` is a token's text as ``llama_detokenize`` renders it (special tokens included);
    ``tokenize(text)`` encodes without BOS/EOS or special parsing.  Both serve DRY's sequence breakers
    only; the processed breakers are cached here per breaker list (the first use scans the vocabulary).
    ``token_piece(id)`` is a token's bytes with control tokens empty (grammars match it).
    """

    n_vocab: int
    eog_ids: frozenset[int] = frozenset()
    token_text: Callable[[int], str] | None = None
    tokenize: Callable[[str], list[int]] | None = None
    token_piece: Callable[[int], bytes] | None = None
    _texts: list[str] | None = field(default=None, init=False, repr=False, compare=False)
    _dry_cache: dict[tuple[str, ...], dict[int, list[tuple[int, ...]]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> VocabInfo:
        """From an ``emberllm.tokenizers.Tokenizer``."""
        return cls(
            n_vocab=tokenizer.n_vocab,
            eog_ids=frozenset(tokenizer.eog_ids),
            token_text=lambda t: tokenizer.decode([t], special=True),
            tokenize=lambda s: tokenizer.encode(s, add_special=False, parse_special=False),
            token_piece=tokenizer.token_to_piece,
        )

    def texts(self) -> list[str]:
        """Every token's text (computed once)."""
        if self._texts is None:
            if self.token_text is None:
                raise ValueError("VocabInfo has no token_text function")
            self._texts = [self.token_text(t) for t in range(self.n_vocab)]
        return self._texts

    def dry_breakers(self, breakers: Sequence[str]) -> dict[int, list[tuple[int, ...]]]:
        """DRY's processed sequence breakers: head token -> tails (token tuples; empty = the head alone).

        Empty without ``token_text``/``tokenize`` (then DRY runs without breakers).
        """
        key = tuple(breakers)
        if key not in self._dry_cache:
            if self.token_text is None or self.tokenize is None:
                self._dry_cache[key] = {}
            else:
                self._dry_cache[key] = process_dry_breakers(self.texts(), self.tokenize, breakers)
        return self._dry_cache[key]


def process_dry_breakers(
    texts: Sequence[str], tokenize: Callable[[str], list[int]], breakers: Sequence[str]
) -> dict[int, list[tuple[int, ...]]]:
    """llama.cpp's ``get_overlapping_token_sequences`` for each breaker.

    A token whose text contains the breaker is a head with an empty tail; a token whose text ends with a
    proper prefix of the breaker is a head whose tail is the rest of the breaker, tokenized (at most 20
    tokens).
    """
    out: dict[int, list[tuple[int, ...]]] = {}
    for raw in breakers:
        brk = raw[:DRY_MAX_CHAR_LEN]
        if not brk:
            continue
        first = brk[0]
        for tid, word in enumerate(texts):
            if first not in word:
                continue
            if brk in word:
                _add_tail(out, tid, ())
                continue
            pos = word.find(first)
            while pos != -1:
                rest = word[pos:]
                if brk.startswith(rest):
                    _add_tail(out, tid, tuple(tokenize(brk[len(rest) :])[:DRY_MAX_SEQ_LEN]))
                pos = word.find(first, pos + 1)
    return out


def _add_tail(out: dict[int, list[tuple[int, ...]]], tok: int, tail: tuple[int, ...]) -> None:
    tails = out.setdefault(tok, [])
    if tail not in tails:
        tails.append(tail)
