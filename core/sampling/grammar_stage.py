"""Grammar-constrained sampling (llama.cpp's ``grammar`` sampler) over a GBNF grammar.

As llama.cpp's common sampler does, the chain first runs without the grammar and the chosen token is checked;
only when it is rejected does the draw start over with the grammar applied to the whole vocabulary first
(:class:`GrammarStage`, placed before the chain).  After a token is chosen the grammar advances by its bytes.
The vocabulary walk is :mod:`emberllm.grammar.tokens`; its index and compiled grammars are cached per
:class:`VocabInfo`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from emberllm.grammar.gbnf import GrammarDeadEndError
from emberllm.grammar.matcher import Grammar
from emberllm.grammar.tokens import TokenIndex, allowed_ranges, allowed_ranges_c, mask_rejected_c, token_allowed

from .candidates import Candidates, ListCands
from .floats import INF
from .full import FullCands
from .stage import Stage
from .vocab import VocabInfo

#: Up to this many allowed tokens the candidates become a list; more are masked in the logits buffer.
LIST_LIMIT = 4096
_GRAMMARS_KEPT = 16


def token_index(vocab: VocabInfo) -> TokenIndex:
    """The vocabulary's :class:`TokenIndex` (built on first use and kept on ``vocab``)."""
    index: TokenIndex | None = getattr(vocab, "_grammar_index", None)
    if index is None:
        if vocab.token_piece is None:
            raise ValueError("grammar: the vocabulary has no token_piece function")
        index = TokenIndex.from_function(vocab.n_vocab, vocab.token_piece, vocab.eog_ids)
        vocab._grammar_index = index  # type: ignore[attr-defined]
    return index


def compiled_grammar(vocab: VocabInfo, text: str) -> Grammar:
    """The compiled grammar for ``text`` (a few kept per vocabulary, with their cached transitions)."""
    cache: dict[str, Grammar] | None = getattr(vocab, "_grammar_cache", None)
    if cache is None:
        cache = {}
        vocab._grammar_cache = cache  # type: ignore[attr-defined]
    grammar = cache.pop(text, None) or Grammar(text)
    cache[text] = grammar
    while len(cache) > _GRAMMARS_KEPT:
        del cache[next(iter(cache))]
    return grammar


class GrammarSampler:
    """One request's grammar: the allowed-token check, the masking stage and the advance after a token.

    With ``kernels`` the vocabulary walk runs in C; without, in Python (same result)."""

    def __init__(self, text: str, vocab: VocabInfo, kernels: Any = None) -> None:
        self.kernels = kernels
        self.grammar = compiled_grammar(vocab, text)
        self.index = token_index(vocab)
        self.state = self.grammar.start
        self.stage = GrammarStage(self)

    def reset(self) -> None:
        """Back to the grammar's start."""
        self.state = self.grammar.start

    def allows(self, token: int) -> bool:
        """Whether ``token`` may come next."""
        return token_allowed(self.grammar, self.state, self.index, token)

    def ranges(self) -> list[tuple[int, int]]:
        """The index's key ranges of the tokens with text that may come next."""
        if self.kernels is not None:
            return allowed_ranges_c(self.grammar, self.state, self.index, self.kernels)
        return allowed_ranges(self.grammar, self.state, self.index)

    def allowed(self) -> list[int]:
        """Every token that may come next (ids in text order; EOG ones when the grammar is complete)."""
        ids = self.index.ids(self.ranges())
        if self.grammar.complete[self.state]:
            ids.extend(self.index.eog_ids)
        return ids

    def accept(self, token: int) -> None:
        """Advance by the chosen token (llama.cpp's ``accept``); a token the grammar rejects is an error."""
        if token in self.index.eog_ids:
            if not self.grammar.complete[self.state]:
                raise RuntimeError("grammar: end of generation before the grammar is complete")
            return
        if not token_allowed(self.grammar, self.state, self.index, token):
            raise RuntimeError(f"grammar: token {token} does not match the grammar")
        self.state = self.grammar.feed(self.state, self.index.pieces[token])


class GrammarStage(Stage):
    """The grammar applied to the candidates: every token it rejects is removed."""

    name = "grammar"

    def __init__(self, owner: GrammarSampler) -> None:
        self.owner = owner

    def __call__(self, c: Candidates, prev: Sequence[int]) -> Candidates:
        owner = self.owner
        index = owner.index
        ranges = owner.ranges()
        eog = list(index.eog_ids) if owner.grammar.complete[owner.state] else []
        n_allowed = index.count(ranges) + len(eog)
        if not n_allowed:
            raise GrammarDeadEndError("grammar: no token of the vocabulary can continue the grammar here")
        if isinstance(c, ListCands) or n_allowed <= LIST_LIMIT:
            keep = index.ids(ranges) + eog
            if isinstance(c, ListCands):
                allowed = set(keep)
                c._subset([i for i, tok in enumerate(c.ids) if tok in allowed])
                return c
            if isinstance(c, FullCands):
                view: Any = c.buf.view
                ids = sorted(tok for tok in keep if view[tok] != -INF)
                return ListCands(ids, [view[tok] * c.scale for tok in ids], False)
        if not isinstance(c, FullCands):
            raise TypeError(f"grammar: unexpected candidates {type(c).__name__}")
        buf = c.buf
        buf.to_work()
        if owner.kernels is not None:
            c.masked += mask_rejected_c(ranges, index, owner.kernels, buf.ptr)
            rejected = [] if eog else list(index.eog_ids)
        else:
            rejected = index.rejected(ranges) + ([] if eog else list(index.eog_ids))
        view = buf.view
        for tok in rejected:
            if view[tok] != -INF:
                view[tok] = -INF
                c.masked += 1
        return c
