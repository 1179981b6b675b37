"""The F16 key/value cache of one sequence: per layer, ``n_ctx`` rows of K and of V."""

from __future__ import annotations

from typing import Any

from emberllm.backends.binding import Buffer, Kernels
from emberllm.backends.memory import KVCacheTooLargeError, ensure_kv_fits, kv_cache_bytes, too_large_message


class KVCache:
    """K and V rows per layer plus the tokens whose rows they hold (for prompt-prefix reuse).

    Layers run by a device backend keep their rows there (``layers[il]``, from ``device.kv_layer``); the others
    in host memory (``k_ptrs[il]`` / ``v_ptrs[il]`` for the C kernels).
    """

    def __init__(self, kernels: Kernels, n_layer: int, n_ctx: int, kv_dim: int, device: Any = None,
                 device_layers: range = range(0)) -> None:
        self.n_layer = n_layer
        self.n_ctx = n_ctx
        self.kv_dim = kv_dim
        host_layers = [il for il in range(n_layer) if il not in device_layers]
        ensure_kv_fits(kv_cache_bytes(len(host_layers), n_ctx, kv_dim), n_ctx)
        self.layers: list[Any] = [None] * n_layer
        self.k_ptrs: list[Any] = [None] * n_layer
        self.v_ptrs: list[Any] = [None] * n_layer
        self._keep: list[Buffer] = []
        try:
            for il in host_layers:
                k, v = kernels.u16(n_ctx * kv_dim), kernels.u16(n_ctx * kv_dim)
                self._keep += [k, v]
                self.k_ptrs[il], self.v_ptrs[il] = k.ptr, v.ptr
        except MemoryError as exc:
            raise KVCacheTooLargeError(too_large_message(self.nbytes, n_ctx)) from exc
        for il in device_layers:
            self.layers[il] = device.kv_layer(n_ctx, kv_dim)
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
