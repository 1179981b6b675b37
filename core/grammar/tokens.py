"""The vocabulary walk: which tokens a grammar state allows, without testing every token.

:class:`TokenIndex` (built once per vocabulary) holds the distinct token byte strings sorted, with the length of
the prefix each shares with the one before.  :func:`allowed_ranges` walks them in order against a grammar state,
reusing the states of the shared prefix; when a prefix is rejected, every token starting with it is skipped with
one binary search.  Tokens with no text (control tokens) are never allowed; end-of-generation tokens only when the
grammar is complete.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable

from .matcher import DEAD, Grammar


class TokenIndex:
    """The vocabulary sorted by token bytes (see the module docstring)."""

    def __init__(self, pieces: list[bytes], eog_ids: Iterable[int] = ()) -> None:
        self.n_vocab = len(pieces)
        self.pieces = pieces
        self.eog_ids = frozenset(eog_ids)
        by_piece: dict[bytes, list[int]] = {}
        textless: list[int] = []
        for tok, piece in enumerate(pieces):
            if tok in self.eog_ids:
                continue
            if piece:
                by_piece.setdefault(piece, []).append(tok)
            else:
                textless.append(tok)
        self.keys: list[bytes] = sorted(by_piece)
        self.order: list[int] = []
        self.starts: list[int] = [0]
        for key in self.keys:
            self.order.extend(by_piece[key])
            self.starts.append(len(self.order))
        self.lcp: list[int] = [0] * len(self.keys)
        for k in range(1, len(self.keys)):
            a, b = self.keys[k - 1], self.keys[k]
            n = min(len(a), len(b))
            i = 0
            while i < n and a[i] == b[i]:
                i += 1
            self.lcp[k] = i
        self.textless = textless
        self.max_len = max((len(k) for k in self.keys), default=0)

    @classmethod
    def from_function(cls, n_vocab: int, piece: Callable[[int], bytes], eog_ids: Iterable[int] = ()) -> TokenIndex:
        """From ``piece(id)``: a token's bytes (control tokens: ``b""``)."""
        return cls([piece(t) for t in range(n_vocab)], eog_ids)

    def ids(self, ranges: list[tuple[int, int]]) -> list[int]:
        """The token ids of key ranges ``[a, b)``."""
        out: list[int] = []
        order, starts = self.order, self.starts
        for a, b in ranges:
            out.extend(order[starts[a] : starts[b]])
        return out

    def complement(self, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The key ranges not in ``ranges`` (sorted, disjoint)."""
        out, at = [], 0
        for a, b in ranges:
            if a > at:
                out.append((at, a))
            at = b
        if at < len(self.keys):
            out.append((at, len(self.keys)))
        return out


def _after_prefix(keys: list[bytes], prefix: bytes, lo: int) -> int:
    """The first key index >= lo whose key does not start with ``prefix``."""
    p = prefix.rstrip(b"\xff")
    if not p:
        return len(keys)
    return bisect_left(keys, p[:-1] + bytes((p[-1] + 1,)), lo)


def allowed_ranges(grammar: Grammar, state: int, index: TokenIndex) -> list[tuple[int, int]]:
    """Key ranges ``[a, b)`` of the tokens whose whole text the grammar accepts from ``state``."""
    keys, lcp, trans, step = index.keys, index.lcp, grammar.trans, grammar.step
    n = len(keys)
    states = [state] * (index.max_len + 1)
    ranges: list[tuple[int, int]] = []
    run = -1
    good = 0
    k = 0
    while k < n:
        key = keys[k]
        d = lcp[k] if lcp[k] < good else good
        s = states[d]
        length = len(key)
        while d < length:
            byte = key[d]
            t = trans.get(s * 256 + byte)
            if t is None:
                t = step(s, byte)
            if t == DEAD:
                break
            d += 1
            states[d] = s = t
        if d == length:
            if run < 0:
                run = k
            good = length
            k += 1
            continue
        if run >= 0:
            ranges.append((run, k))
            run = -1
        good = d
        k = _after_prefix(keys, key[: d + 1], k + 1)
    if run >= 0:
        ranges.append((run, n))
    return ranges


def token_allowed(grammar: Grammar, state: int, index: TokenIndex, token: int) -> bool:
    """Whether one token is allowed from ``state`` (EOG: when complete; a textless token: never)."""
    if token in index.eog_ids:
        return grammar.complete[state]
    piece = index.pieces[token]
    return bool(piece) and grammar.feed(state, piece) != DEAD
