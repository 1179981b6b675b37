"""The F16 key/value cache of one sequence: per layer, ``n_ctx`` rows of K and of V."""

from __future__ import annotations

from typing import Any

from emberllm.backends.binding import Buffer, Kernels
from emberllm.backends.memory import KVCacheTooLargeError, ensure_kv_fits, kv_cache_bytes, too_large_message


class KVCache:
    """K and V rows per layer plus the tokens whose rows they hold (for prompt-prefix reuse)."""

    def __init__(self, kernels: Kernels, n_layer: int, n_ctx: int, kv_dim: int) -> None:
        self.n_layer = n_layer
        self.n_ctx = n_ctx
        self.kv_dim = kv_dim
        ensure_kv_fits(self.nbytes, n_ctx)
        try:
            self._k: list[Buffer] = [kernels.u16(n_ctx * kv_dim) for _ in range(n_layer)]
            self._v: list[Buffer] = [kernels.u16(n_ctx * kv_dim) for _ in range(n_layer)]
        except MemoryError as exc:
            raise KVCacheTooLargeError(too_large_message(self.nbytes, n_ctx)) from exc
        self.k_ptrs: list[Any] = [b.ptr for b in self._k]
        self.v_ptrs: list[Any] = [b.ptr for b in self._v]
        #: token ids whose K/V rows are in the cache, in position order
        self.tokens: list[int] = []

    @property
    def n_past(self) -> int:
        """Number of positions filled."""
        return len(self.tokens)

    @property
    def nbytes(self) -> int:
        """Memory held by the cache."""
        return kv_cache_bytes(self.n_layer, self.n_ctx, self.kv_dim)

    def clear(self) -> None:
        """Forget every position (the memory is reused)."""
        self.tokens.clear()

    def truncate(self, n: int) -> None:
        """Keep only the first ``n`` positions."""
        del self.tokens[n:]
