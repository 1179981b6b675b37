"""One sequence being generated: its cache, sampler, stop strings and text decoder, independent of how the
forward passes are scheduled.

``Model.generate`` drives one ``DecodeState`` with single-sequence forward passes; the server's scheduler drives
several at once, batching their decode steps.  Either way a state is used as::

    todo = state.prefill_tokens()        # reuse the cached prefix, tokens still to evaluate (>= 1)
    ... evaluate ``todo`` into ``state.kv`` ...
    step = state.sample(logits, ptr)     # one Step; ``state.finished`` tells whether it was the last
    while not state.finished:
        ... evaluate [state.next_token] ...
        step = state.sample(logits, ptr)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from emberllm.backends.kv_cache import KVCache
from emberllm.models.decoder import ContextFullError
from emberllm.runtime.stop_strings import StopMatcher
from emberllm.sampling import Sampler, SamplingParams
from emberllm.tokenizers.base import Tokenizer


@dataclass
class Timings:
    """Wall-clock figures of a generation, llama.cpp style."""

    load_ms: float = 0.0
    prompt_ms: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    eval_ms: float = 0.0
    eval_tokens: int = 0
    sample_ms: float = 0.0
    kernel_calls: int = 0

    def per_second(self, ms: float, n: int) -> float:
        """Tokens per second for ``n`` tokens in ``ms`` milliseconds."""
        return 1000.0 * n / ms if ms > 0 else 0.0


@dataclass
class Step:
    """One generated token: its id, the text it completes (possibly empty), and on the last step why
    generation ended (``stop``, ``length``, ``context`` or ``cancelled``; ``stop_word`` names a matched stop
    string).  ``extra`` holds probabilities when ``n_probs`` was asked for."""

    token: int
    text: str
    finish_reason: str | None = None
    stop_word: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def common_prefix(cached: Sequence[int], tokens: Sequence[int]) -> int:
    """How many leading ``tokens`` the cache already holds, leaving at least the last token to evaluate."""
    n = 0
    limit = min(len(cached), len(tokens) - 1)
    while n < limit and cached[n] == tokens[n]:
        n += 1
    return n


def next_piece(done: int, n: int, n_batch: int, want: int, min_piece: int) -> int:
    """The size of the prompt piece after ``done`` of ``n`` tokens: ``want`` tokens, at least ``min_piece``, within
    the decoder's micro-batch of ``n_batch`` that holds token ``done``, and the rest of that micro-batch when less
    than ``min_piece`` (so every token is computed exactly as in the whole micro-batch) or half a piece would be
    left (a short piece costs nearly as much as a long one).  ``min_piece``: the kernels' batch-path floor
    (``CpuBackend.batch_path_min_rows``: the int8 GEMM from 4 rows, on x86 the float attention from 64; within a
    path a row's result does not depend on the batch, so a prompt read in such pieces gives bit-identical logits)."""
    left = min(n_batch - done % n_batch, n - done)
    size = min(max(want, min_piece, 1), left)
    return left if left - size < max(min_piece, size // 2) else size


def truncate_prompt(tokens: list[int], n_ctx: int, n_keep: int) -> list[int]:
    """llama-server's prompt truncation: keep the first ``n_keep`` tokens (``-1``: as many as possible) and
    drop whole blocks of half the remaining context after them until the prompt fits."""
    if len(tokens) < n_ctx:
        return tokens
    keep = len(tokens) if n_keep < 0 else n_keep
    keep = max(0, min(n_ctx - 4, keep))
    block = max(1, (n_ctx - keep) // 2)
    erased = (len(tokens) - keep - block) // block
    return tokens[:keep] + tokens[keep + erased * block :]


class DecodeState:
    """The generation of one sequence into ``kv``.

    ``shift`` is called with ``(kv, n_keep, n_discard)`` when the cache is full and context shifting is allowed
    (``n_keep`` < 0 resolved to the prompt's length); it must discard tokens from the cache (``Model.shift_cache``).
    As in llama.cpp, "full" means the next token would take the context's last row; ``shifted`` tells whether it
    happened (llama-server's ``truncated``).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        sampler: Sampler,
        kv: KVCache,
        tokens: list[int],
        n_predict: int = 128,
        stop: Sequence[str] = (),
        n_keep: int = 0,
        context_shift: bool = True,
        shift: Callable[[KVCache, int, int], Any] | None = None,
        n_discard: int = 0,
    ) -> None:
        if not tokens:
            raise ValueError("empty prompt")
        if len(tokens) >= kv.n_ctx:
            raise ValueError(f"prompt of {len(tokens)} tokens does not fit in the context of {kv.n_ctx}")
        self.tokenizer = tokenizer
        self.sampler = sampler
        self.params: SamplingParams = sampler.params
        self.kv = kv
        self.prompt = tokens
        self.n_predict = n_predict
        self.n_keep = len(tokens) if n_keep < 0 else n_keep
        self.n_discard = n_discard
        self.shifted = False
        self.context_shift = context_shift and shift is not None
        self._shift = shift
        self.history = list(tokens)
        self.produced = 0
        self.finished = False
        self.next_token = -1
        self.timings = Timings()
        self._decoder = tokenizer.stream_decoder()
        self._stops = StopMatcher(stop)

    def prefill_tokens(self, whole: bool = False) -> list[int]:
        """Keep the longest cached prefix of the prompt in ``kv``; return the tokens still to evaluate.

        ``whole``: the caller holds the logits of the prompt's last token, so a prompt the cache holds entirely
        is kept entirely (nothing to evaluate) instead of re-evaluating its last token."""
        n = len(self.prompt)
        if whole and n and list(self.kv.tokens[:n]) == list(self.prompt):
            self.kv.truncate(n)
            self.timings.cached_tokens, self.timings.prompt_tokens = n, 0
            return []
        n_common = common_prefix(self.kv.tokens, self.prompt)
        self.kv.truncate(n_common)
        self.timings.cached_tokens = n_common
        self.timings.prompt_tokens = len(self.prompt) - n_common
        return self.prompt[n_common:]

    def sample(self, logits: Any, ptr: Any = None) -> Step:
        """Sample the next token from ``logits`` (of the last evaluated token) and return its step.

        Afterwards either ``finished`` is set or ``next_token`` is the token to evaluate next (the cache has
        room for it: it was shifted if needed)."""
        if self.finished:
            raise RuntimeError("the generation has ended")
        tm = self.timings
        ts = time.perf_counter()
        res = self.sampler.sample(logits, self.history, ptr=ptr)
        tm.sample_ms += (time.perf_counter() - ts) * 1000.0
        extra: dict[str, Any] = {}
        if self.params.n_probs > 0:
            extra = {"probs": res.probs_before, "prob": res.prob_before, "probs_after": res.probs_after,
                     "prob_after": res.prob_after}
        return self._advance(res.token, extra)

    def sample_row(self, rows: Any, i: int) -> Step:
        """``sample`` on row ``i`` of a decode's ``LogitRows``; a plain greedy draw asks the rows for their
        arg-max instead (on a device backend: a few bytes read back instead of the whole row)."""
        if self.finished or not self.sampler.is_argmax:
            return self.sample(rows[i], rows.handle(i))
        ts = time.perf_counter()
        token = rows.argmax(i)
        self.timings.sample_ms += (time.perf_counter() - ts) * 1000.0
        return self._advance(token, {})

    def _advance(self, token: int, extra: dict[str, Any]) -> Step:
        """Count ``token``, feed it to the stop strings and the text, and end or continue the generation."""
        self.produced += 1
        stops, decoder = self._stops, self._decoder
        if self.tokenizer.is_eog(token) and not self.params.ignore_eos:
            return self._end(Step(token, stops.flush() + decoder.flush(), "stop", extra=extra))
        text, stopped = stops.feed(decoder.feed(token))
        if stopped:
            return self._end(Step(token, text, "stop", stop_word=stops.matched, extra=extra))
        if 0 <= self.n_predict <= self.produced:
            return self._end(Step(token, text + stops.feed(decoder.flush())[0] + stops.flush(), "length",
                                  extra=extra))
        if self.kv.n_past + 1 >= self.kv.n_ctx:
            if not self.context_shift:
                return self._end(Step(token, text + stops.flush(), "context", extra=extra))
            assert self._shift is not None
            self._shift(self.kv, self.n_keep, self.n_discard)
            self.shifted = True
        self.history.append(token)
        self.next_token = token
        return Step(token, text, extra=extra)

    def cancel(self) -> Step:
        """End the generation now (the step carries the text held back for stop strings)."""
        return self._end(Step(-1, self._stops.flush(), "cancelled"))

    def _end(self, step: Step) -> Step:
        self.finished = True
        self.next_token = -1
        return step


def shift_amount(kv: KVCache, n_keep: int, add_bos: bool, n_discard: int = 0) -> tuple[int, int]:
    """llama-server's context shift for a full cache: ``(keep, n_discard)``, keeping ``n_keep`` tokens (plus BOS,
    at most ``n_ctx - 4``) and dropping ``n_discard`` of the rest (0: half of them; never all of them)."""
    n_past = kv.n_past
    keep = min(kv.n_ctx - 4, max(n_keep, 0) + (1 if add_bos else 0), n_past - 1)
    n_left = n_past - keep
    n_discard = min(max(n_discard or n_left // 2, 0), max(0, n_left - 1))
    if n_discard <= 0:
        raise ContextFullError("the context is full and nothing can be discarded")
    return keep, n_discard
