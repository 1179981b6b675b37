"""The logits buffer of one :meth:`Sampler.sample` call and the whole-vocabulary C helpers over it.

The caller's logits are used in place: a few ids may be patched (the originals are put back by
:meth:`LogitsBuffer.restore`); masking works on a private copy (:meth:`LogitsBuffer.to_work`).  Thresholds
and values are in the buffer's units; ``scale`` turns them into current logits (a pending temperature).
"""

from __future__ import annotations

from typing import Any

from emberllm.backends.binding import Buffer, Kernels

from .floats import FLT_MAX, INF, bisect_floats, next_up


class LogitsBuffer:
    """The logits being sampled (the caller's or a private copy) and scratch buffers for the C helpers."""

    def __init__(self, kernels: Kernels, n_vocab: int) -> None:
        self.kernels = kernels
        self.lib = kernels.lib
        self.n = n_vocab
        self._cap = 0
        self._ids: Buffer = kernels.i32(1)
        self._vals: Buffer = kernels.f32(1)
        self._stat: Buffer = kernels.f32(4)
        self._work: Buffer | None = None
        self._own_logits: Buffer | None = None
        self._src_view: memoryview = memoryview(b"")
        self._src_ptr: Any = None
        self.view: memoryview = self._src_view
        self.ptr: Any = None
        self._on_work = False
        self._saved: dict[int, float] = {}

    # -- binding ------------------------------------------------------------------------------------------
    def bind(self, logits: Buffer | memoryview, ptr: Any) -> None:
        """Point at the caller's logits (a memoryview without ``ptr`` is copied first)."""
        if isinstance(logits, Buffer):
            view, ptr = logits.view, logits.ptr
        elif ptr is not None:
            view = logits
        else:
            if self._own_logits is None:
                self._own_logits = self.kernels.f32(self.n)
            self._own_logits.view[: self.n] = logits[: self.n]
            view, ptr = self._own_logits.view, self._own_logits.ptr
        if len(view) < self.n:
            raise ValueError(f"logits hold {len(view)} values, the vocabulary has {self.n}")
        self._src_view, self._src_ptr = view, ptr
        self.view, self.ptr, self._on_work = view, ptr, False

    def restore(self) -> None:
        """Undo the patches on the caller's logits and point back at them."""
        view = self._src_view
        for tok, value in self._saved.items():
            view[tok] = value
        self._saved.clear()
        self.view, self.ptr, self._on_work = self._src_view, self._src_ptr, False

    def to_work(self) -> None:
        """Continue on a private copy of the (patched) logits, which may then be masked."""
        if self._on_work:
            return
        if self._work is None:
            self._work = self.kernels.f32(self.n)
        self._work.view[: self.n] = self.view[: self.n]
        self.view, self.ptr, self._on_work = self._work.view, self._work.ptr, True

    def patch(self, tok: int, value: float) -> float:
        """Set one logit (buffer units), remembering the caller's value; returns the previous value."""
        old = self.view[tok]
        if not self._on_work and tok not in self._saved:
            self._saved[tok] = old
        self.view[tok] = value
        return old

    # -- C helpers ----------------------------------------------------------------------------------------
    def _ensure(self, k: int) -> None:
        if k > self._cap:
            self._cap = max(k, 2 * self._cap, 64)
            self._ids = self.kernels.i32(self._cap)
            self._vals = self.kernels.f32(self._cap)

    def top(self, k: int, scale: float) -> tuple[list[int], list[float]]:
        """The k highest current logits (-inf left out), sorted; ties: lower id first."""
        k = min(k, self.n)
        self._ensure(k)
        got = self.lib.emb_top_k_sorted(self.ptr, self.n, k, self._ids.ptr, self._vals.ptr)
        return self._fetch(got, scale)

    def nearest(self, center: float, k: int, scale: float) -> tuple[list[int], list[float]]:
        """The k tokens whose current logits are nearest ``center`` (current units), nearest first."""
        k = min(k, self.n)
        self._ensure(k)
        got = self.lib.emb_nearest_k(self.ptr, self.n, center / scale, k, self._ids.ptr, self._vals.ptr)
        return self._fetch(got, scale)

    def _fetch(self, got: int, scale: float) -> tuple[list[int], list[float]]:
        ids = self._ids.view[:got].tolist()
        vals = self._vals.view[:got].tolist()
        while vals and vals[-1] == -INF:  # masked tokens sort last
            vals.pop()
            ids.pop()
        if scale != 1.0:
            vals = [v * scale for v in vals]
        return ids, vals

    def count_ge(self, threshold: float) -> int:
        """How many logits are >= threshold."""
        return int(self.lib.emb_count_ge(self.ptr, self.n, threshold))

    def lse(self, scale: float) -> float:
        """log(sum(exp(current logits))) over the buffer (current units)."""
        return float(self.lib.emb_logsumexp(self.ptr, self.n, scale, self.kernels.null))

    def lse_entropy(self, scale: float) -> tuple[float, float]:
        """Log-sum-exp and entropy (nats) of the softmax of the current logits."""
        lse = float(self.lib.emb_logsumexp(self.ptr, self.n, scale, self._stat.ptr))
        return lse, float(self._stat.view[0])

    def mass(self, scale: float, lse: float, lo: float, hi: float) -> float:
        """Probability of the tokens with lo <= logit <= hi."""
        return float(self.lib.emb_sum_exp_between(self.ptr, self.n, scale, lse, lo, hi))

    def max_and_std(self) -> tuple[float, float]:
        """The largest logit and the standard deviation of the finite ones."""
        self.lib.emb_logit_stats(self.ptr, self.n, self._stat.ptr)
        return self._stat.view[0], self._stat.view[2]

    def kth_value(self, k: int) -> float:
        """The k-th largest logit: the largest t with at least k logits >= t."""
        _, top = self.top(1, 1.0)
        return bisect_floats(-FLT_MAX, next_up(top[0]), lambda t: self.count_ge(t) >= k)

    def mask(self, lo: float, hi: float) -> int:
        """Keep only the logits in [lo, hi] (on the private copy); returns how many are left."""
        self.to_work()
        return int(self.lib.emb_mask_outside(self.ptr, self.n, lo, hi))

    def sample_softmax(self, scale: float, u: float) -> int:
        """A draw from the softmax of the current logits with the uniform u (-1: nothing to draw)."""
        return int(self.lib.emb_sample_softmax(self.ptr, self.n, scale, u))
