"""The per-request :class:`Sampler`: builds llama.cpp's sampler chain, runs it, reports probabilities."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from emberllm.backends.binding import Buffer, Kernels, load_kernels

from .buffer import LogitsBuffer
from .candidates import Candidates, Pairs
from .dry import Dry, dry_enabled, resolve_breakers
from .edits import LogitBias, Penalties, merged_bias, penalties_enabled
from .final import dist, mirostat_v1, mirostat_v2
from .full import FullCands
from .grammar_stage import GrammarSampler
from .params import SamplingParams
from .rng import mt19937, random_seed
from .stage import Stage
from .temperature import Temp, TempExt
from .truncation import MinP, TopK, TopNSigma, TopP, Typical
from .vocab import VocabInfo
from .xtc import Xtc


@dataclass
class SampleResult:
    """One sampled token and, when ``n_probs`` > 0, the probabilities llama-server reports.

    ``probs_before``: the ``n_probs`` most likely tokens of the softmax of the raw logits over the whole
    vocabulary (``post_sampling_probs: false``), ``prob_before`` the chosen token's probability there.
    ``probs_after``: the ``n_probs`` most likely surviving candidates after the whole chain, with the
    probabilities the final draw used (zeros left out; ``post_sampling_probs: true``), ``prob_after``
    the chosen token's.
    """

    token: int
    probs_before: list[tuple[int, float]] | None = None
    probs_after: list[tuple[int, float]] | None = None
    prob_before: float | None = None
    prob_after: float | None = None


class Sampler:
    """llama.cpp's sampler chain for one request.

    Build it once per request; call :meth:`sample` for every token with the logits and the token history.
    It keeps the random generators and Mirostat's state between calls.

    ``vocab``: a :class:`VocabInfo` (or just ``n_vocab``); its EOG ids are banned with ``ignore_eos`` and
    its text functions give DRY its sequence breakers (``dry_breakers`` overrides them with token-level
    breakers: head token -> tails).  ``kernels``: the loaded C kernels (default: :func:`load_kernels`).
    """

    def __init__(
        self,
        params: SamplingParams,
        vocab: VocabInfo | int,
        kernels: Kernels | None = None,
        dry_breakers: Mapping[int, Iterable[Sequence[int]]] | None = None,
    ) -> None:
        self.params = params
        self.vocab = vocab if isinstance(vocab, VocabInfo) else VocabInfo(int(vocab))
        self.n_vocab = self.vocab.n_vocab
        self.kernels = kernels or load_kernels()
        self.lib = self.kernels.lib
        self.seed = params.seed if params.seed is not None else random_seed()
        self._buf = LogitsBuffer(self.kernels, self.n_vocab)
        self._bias = merged_bias(params, self.vocab)
        self._dry_breakers = resolve_breakers(params, self.vocab, dry_breakers)
        self.grammar = GrammarSampler(params.grammar, self.vocab, self.kernels) if params.grammar else None
        self._start()
        self._stages = self._build_chain()

    # -- public -------------------------------------------------------------------------------------------
    @property
    def is_argmax(self) -> bool:
        """Whether every draw is the arg-max of the raw logits (greedy, nothing before it that can change it,
        no probabilities to report): a device holding the logits can then pick the token itself."""
        p = self.params
        return (p.temperature <= 0.0 and p.dynatemp_range <= 0.0 and not p.mirostat and p.n_probs == 0
                and not self._bias and self.grammar is None and len(self._stages) == 1
                and isinstance(self._stages[0], TempExt))

    def reset(self) -> None:
        """Back to the request's start: generators reseeded, Mirostat's mu = 2 * tau."""
        self._start()
        for stage in self._stages:
            stage.reset()
        if self.grammar is not None:
            self.grammar.reset()

    @property
    def stage_names(self) -> list[str]:
        """The active samplers in chain order (those that cannot change the result left out)."""
        return [stage.name for stage in self._stages]

    def sample(self, logits: Buffer | memoryview, prev_tokens: Sequence[int] = (), ptr: Any = None) -> SampleResult:
        """Pick the next token.

        ``logits``: a kernels :class:`Buffer` (its first ``n_vocab`` floats are used) or a float32
        memoryview together with ``ptr``, the kernel pointer to the same memory (a memoryview alone is
        copied first).  A few logits are patched while the chain runs; they are restored before returning.
        ``prev_tokens``: the sequence so far, prompt included (llama-server feeds the prompt to the sampler
        too): penalties and DRY look at its last ``repeat_last_n`` / ``dry_penalty_last_n`` tokens.
        With a grammar, a token it rejects is drawn again with the grammar applied first (llama.cpp's fast
        path), and the grammar then advances by the chosen token.
        """
        buf = self._buf
        buf.bind(logits, ptr)
        grammar = self.grammar
        try:
            token, after = self._run(FullCands(buf), prev_tokens)
            if grammar is not None and not grammar.allows(token):
                buf.restore()
                buf.bind(logits, ptr)
                token, after = self._run(grammar.stage(FullCands(buf), prev_tokens), prev_tokens)
        finally:
            buf.restore()
        if grammar is not None:
            grammar.accept(token)
        result = SampleResult(token)
        if self.params.n_probs > 0:
            self._report(result, after)
        return result

    def _run(self, c: Candidates, prev_tokens: Sequence[int]) -> tuple[int, Pairs]:
        for stage in self._stages:
            c = stage(c, prev_tokens)
        return self._finish(c)

    # -- construction -------------------------------------------------------------------------------------
    def _start(self) -> None:
        self._rng = mt19937(self.seed)
        self.mu = 2.0 * self.params.mirostat_tau

    def _build_chain(self) -> list[Stage]:
        p = self.params
        stages: list[Stage] = [LogitBias(self._bias)] if self._bias else []
        if p.mirostat:
            return [*stages, Temp(p)]
        enabled = {
            "penalties": penalties_enabled(p),
            "dry": dry_enabled(p),
            "top_n_sigma": p.top_n_sigma > 0.0,
            "top_k": p.top_k > 0,
            "typ_p": p.typical_p < 1.0,
            "top_p": p.top_p < 1.0,
            "min_p": p.min_p > 0.0,
            "xtc": p.xtc_probability > 0.0 and p.xtc_threshold <= 0.5,
            "temperature": True,
        }
        make: dict[str, Callable[[], Stage]] = {
            "penalties": lambda: Penalties(p, self.n_vocab),
            "dry": lambda: Dry(p, self._dry_breakers, self.kernels, self.n_vocab),
            "top_n_sigma": lambda: TopNSigma(p),
            "top_k": lambda: TopK(p),
            "typ_p": lambda: Typical(p),
            "top_p": lambda: TopP(p),
            "min_p": lambda: MinP(p),
            "xtc": lambda: Xtc(p, self.seed),
            "temperature": lambda: TempExt(p),
        }
        built: dict[str, Stage] = {}  # a sampler listed twice is one stage (one XTC generator)
        for name in _drop_before_greedy(p, [name for name in p.samplers if enabled[name]]):
            if name not in built:
                built[name] = make[name]()
            stages.append(built[name])
        return stages

    # -- the final draw and the probabilities -------------------------------------------------------------
    def _finish(self, c: Candidates) -> tuple[int, Pairs]:
        """Mirostat or the softmax draw: the token and the final candidates with their probabilities."""
        p = self.params
        if p.mirostat == 1:
            token, pairs, self.mu = mirostat_v1(c, p, self.mu, self._rng, self.n_vocab)
            return token, pairs
        if p.mirostat == 2:
            token, pairs, self.mu = mirostat_v2(c, p, self.mu, self._rng)
            return token, pairs
        return dist(c, self._rng, p.n_probs)

    def _report(self, result: SampleResult, after: Pairs) -> None:
        """llama-server's ``probs`` before sampling (raw logits, whole vocabulary) and after (final set)."""
        n = self.params.n_probs
        buf = self._buf
        top_ids, top_logits = buf.top(n, 1.0)
        lse = buf.lse(1.0)
        result.probs_before = [(tok, math.exp(v - lse)) for tok, v in zip(top_ids, top_logits, strict=True)]
        result.prob_before = math.exp(buf.view[result.token] - lse)
        ranked = sorted((pair for pair in after if pair[1] > 0.0), key=lambda pair: pair[1], reverse=True)
        result.probs_after = ranked[:n]
        result.prob_after = next((q for tok, q in after if tok == result.token), 0.0)


def _drop_before_greedy(p: SamplingParams, names: list[str]) -> list[str]:
    """With a fixed temperature <= 0 the chain ends in the arg-max: truncations before the temperature
    that always keep the arg-max (and draw no random numbers) cannot change the result."""
    if p.temperature > 0.0 or p.dynatemp_range > 0.0 or "temperature" not in names:
        return names
    cut = names.index("temperature")
    harmless = {"top_k", "top_p", "min_p", "top_n_sigma"}
    return [name for i, name in enumerate(names) if not (i < cut and name in harmless)]
