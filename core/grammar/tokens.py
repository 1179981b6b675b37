"""The vocabulary walk: which tokens a grammar state allows, without testing every token.

:class:`TokenIndex` (built once per vocabulary) holds the distinct token byte strings sorted, with the length of
the prefix each shares with the one before.  :func:`allowed_ranges` walks them in order against a grammar state,
reusing the states of the shared prefix; when a prefix is rejected, every token starting with it is skipped with
one binary search.  :func:`allowed_ranges_c` is the same walk in C (``wasm_kernels/grammar.c``), which asks
back for transitions the grammar has not computed yet.  Tokens with no text (control tokens) or starting with NUL
are never allowed; end-of-generation tokens only when the grammar is complete.
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from .matcher import DEAD, Grammar

UNKNOWN = -2  # a transition the C walk's table does not hold yet


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
            if piece and piece[0] != 0:  # llama.cpp never allows a piece starting with NUL either
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

    def count(self, ranges: list[tuple[int, int]]) -> int:
        """How many token ids the key ranges hold."""
        starts = self.starts
        return sum(starts[b] - starts[a] for a, b in ranges)

    def rejected(self, ranges: list[tuple[int, int]]) -> list[int]:
        """The ids outside the key ranges (textless tokens included, EOG ones not)."""
        return self.ids(self.complement(ranges)) + self.textless

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
    return bool(piece) and piece[0] != 0 and grammar.feed(state, piece) != DEAD


class _CTable:
    """A grammar's transitions as the C walk reads them: ``state * 256 + byte`` -> state (-2: unknown)."""

    def __init__(self, kernels: Any) -> None:
        self.kernels = kernels
        self.cap = 0
        self.buf: Any = None
        self.ensure(64)

    def ensure(self, n_states: int) -> None:
        """Room for states below ``n_states`` (unknown transitions for the new ones)."""
        if n_states <= self.cap:
            return
        cap = max(n_states, 2 * self.cap)
        buf = self.kernels.i32(cap * 256)
        view = buf.view
        view[:] = array("i", [UNKNOWN]) * (cap * 256)
        if self.buf is not None:
            view[: self.cap * 256] = self.buf.view[: self.cap * 256]
        self.buf, self.cap = buf, cap


class _CWalk:
    """The C walk's copy of a :class:`TokenIndex` (keys, offsets, prefix lengths) and its scratch buffers
    (``lock``: one walk at a time, as the C calls release the GIL)."""

    def __init__(self, kernels: Any, index: TokenIndex) -> None:
        self.lock = threading.Lock()
        n = len(index.keys)
        self.blob = b"".join(index.keys) or b"\0"
        self.keys = kernels.bytes_ref(self.blob)
        offsets = array("i", [0])
        for key in index.keys:
            offsets.append(offsets[-1] + len(key))
        self.off = _i32(kernels, offsets)
        self.lcp = _i32(kernels, array("i", index.lcp))
        self.order = _i32(kernels, array("i", index.order + index.textless))
        self.n_textless = len(index.textless)
        self.states = kernels.i32(index.max_len + 1)
        self.resume = kernels.i32(8)
        self.ranges = kernels.i32(2 * (n + 1))


def _i32(kernels: Any, values: array) -> Any:
    buf = kernels.i32(len(values))
    if len(values):
        buf.view[: len(values)] = values
    return buf


def _cwalk(index: TokenIndex, kernels: Any) -> _CWalk:
    walk: _CWalk | None = getattr(index, "_cwalk", None)
    if walk is None:
        walk = _CWalk(kernels, index)
        index._cwalk = walk  # type: ignore[attr-defined]
    return walk


def mask_rejected_c(ranges: list[tuple[int, int]], index: TokenIndex, kernels: Any, logits_ptr: Any) -> int:
    """Set the logits of the ids outside the key ranges (textless ones included) to -inf in C; how many changed."""
    walk = _cwalk(index, kernels)
    starts = index.starts
    flat = array("i")
    for a, b in index.complement(ranges):
        flat.extend((starts[a], starts[b]))
    flat.extend((starts[-1], starts[-1] + walk.n_textless))
    pos = _i32(kernels, flat)
    with walk.lock:
        return int(kernels.lib.emb_grammar_mask(logits_ptr, walk.order.ptr, pos.ptr, len(flat) // 2))


def allowed_ranges_c(grammar: Grammar, state: int, index: TokenIndex, kernels: Any) -> list[tuple[int, int]]:
    """:func:`allowed_ranges` with the walk in C (``emb_grammar_walk``); transitions it lacks are computed here."""
    walk = _cwalk(index, kernels)
    with walk.lock:
        return _walk_locked(grammar, state, index, kernels, walk)


def _walk_locked(grammar: Grammar, state: int, index: TokenIndex, kernels: Any, walk: _CWalk) -> list[tuple[int, int]]:
    table: _CTable | None = getattr(grammar, "_ctable", None)
    if table is None:
        table = _CTable(kernels)
        grammar._ctable = table  # type: ignore[attr-defined]
    resume = walk.resume.view
    resume[0:7] = array("i", [0, 0, -1, 0, 0, 0, 0])
    walk.states.view[0] = state
    table.ensure(state + 1)
    fn = kernels.lib.emb_grammar_walk
    n = len(index.keys)
    while True:
        got = fn(walk.keys.ptr, walk.off.ptr, walk.lcp.ptr, n, table.buf.ptr, table.cap, walk.states.ptr,
                 walk.resume.ptr, walk.ranges.ptr)
        if got >= 0:
            break
        sid, byte = resume[4], resume[5]
        nxt = grammar.trans.get(sid * 256 + byte)
        if nxt is None:
            nxt = grammar.step(sid, byte)
        table.ensure(max(sid, nxt) + 1)
        table.buf.view[sid * 256 + byte] = nxt
    flat = walk.ranges.view[: 2 * got].tolist()
    return list(zip(flat[0::2], flat[1::2], strict=True))
