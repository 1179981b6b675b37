"""The key/value cache of one sequence: per layer, ``n_ctx`` rows of K and of V in the cache types (llama.cpp's
``-ctk``/``-ctv``: f16 by default, or f32, q8_0, q4_0)."""

from __future__ import annotations

from typing import Any

from emberllm.backends.binding import Buffer, Kernels
from emberllm.backends.memory import (
    DEFAULT_KV_TYPE,
    KV_CACHE_TYPES,
    KVCacheTooLargeError,
    ensure_kv_fits,
    kv_cache_bytes,
    kv_cache_type,
    kv_row_bytes,
    too_large_message,
)


class KVCache:
    """K and V rows per layer plus the tokens whose rows they hold (for prompt-prefix reuse).

    Layers run by a device backend keep their rows there (``layers[il]``, from ``device.kv_layer``, always f16);
    the others in host memory (``k_ptrs[il]`` / ``v_ptrs[il]`` for the C kernels), one row of
    ``kv_row_bytes(type_k, kv_dim)`` (``type_v``) bytes per position.
    """

    def __init__(self, kernels: Kernels, n_layer: int, n_ctx: int, kv_dim: int, device: Any = None,
                 device_layers: range = range(0), type_k: str = DEFAULT_KV_TYPE,
                 type_v: str = DEFAULT_KV_TYPE) -> None:
        self.n_layer = n_layer
        self.n_ctx = n_ctx
        self.kv_dim = kv_dim
        self.type_k = kv_cache_type(type_k, "K")
        self.type_v = kv_cache_type(type_v, "V")
        if len(device_layers) and (self.type_k, self.type_v) != (DEFAULT_KV_TYPE, DEFAULT_KV_TYPE):
            raise ValueError(f"KV cache types other than f16 (-ctk {self.type_k} -ctv {self.type_v}) are not "
                             "supported with layers on WebGPU (-ngl): offloaded layers keep an f16 cache")
        host_layers = [il for il in range(n_layer) if il not in device_layers]
        ensure_kv_fits(kv_cache_bytes(len(host_layers), n_ctx, kv_dim, 1, self.type_k, self.type_v), n_ctx)
        self.layers: list[Any] = [None] * n_layer
        self.k_ptrs: list[Any] = [None] * n_layer
        self.v_ptrs: list[Any] = [None] * n_layer
        self._keep: list[Buffer] = []
        k_bytes, v_bytes = kv_row_bytes(self.type_k, kv_dim) * n_ctx, kv_row_bytes(self.type_v, kv_dim) * n_ctx
        try:
            for il in host_layers:
                k, v = kernels.u8(k_bytes), kernels.u8(v_bytes)
                self._keep += [k, v]
                self.k_ptrs[il], self.v_ptrs[il] = k.ptr, v.ptr
        except MemoryError as exc:
            raise KVCacheTooLargeError(too_large_message(self.nbytes, n_ctx)) from exc
        for il in device_layers:
            self.layers[il] = device.kv_layer(n_ctx, kv_dim)
        #: token ids whose K/V rows are in the cache, in position order
        self.tokens: list[int] = []

    @property
    def type_ids(self) -> tuple[int, int]:
        """The GGML type ids of K and V (what the kernels take)."""
        return KV_CACHE_TYPES[self.type_k][0], KV_CACHE_TYPES[self.type_v][0]

    @property
    def is_f16(self) -> bool:
        """Whether K and V are both f16 (the default cache)."""
        return self.type_k == self.type_v == DEFAULT_KV_TYPE

    @property
    def n_past(self) -> int:
        """Number of positions filled."""
        return len(self.tokens)

    @property
    def nbytes(self) -> int:
        """Memory held by the cache."""
        return kv_cache_bytes(self.n_layer, self.n_ctx, self.kv_dim, 1, self.type_k, self.type_v)

    @property
    def host_nbytes(self) -> int:
        """Bytes of the host buffers actually allocated for the rows."""
        return sum(b.n * b.itemsize for b in self._keep)

    def clear(self) -> None:
        """Forget every position (the memory is reused)."""
        self.tokens.clear()

    def truncate(self, n: int) -> None:
        """Keep only the first ``n`` positions."""
        del self.tokens[n:]

    def _row_sizes(self) -> tuple[int, int] | None:
        """Bytes of one K row and one V row, or None when some layers live on a device."""
        if any(layer is not None for layer in self.layers):
            return None
        return kv_row_bytes(self.type_k, self.kv_dim), kv_row_bytes(self.type_v, self.kv_dim)

    def export_rows(self, n: int) -> list[bytes] | None:
        """A copy of the first ``n`` positions' K and V rows of every layer (None when some layers live on a
        device)."""
        sizes = self._row_sizes()
        if sizes is None:
            return None
        return [bytes(buf.view[: n * sizes[i % 2]]) for i, buf in enumerate(self._keep)]

    def import_rows(self, rows: list[bytes], tokens: list[int]) -> bool:
        """Make ``tokens`` the cache's positions, their rows the first of ``export_rows``' copy (False, nothing
        changed, when the copy does not fit this cache's layout)."""
        sizes = self._row_sizes()
        n = len(tokens)
        if sizes is None or len(rows) != len(self._keep) or n > self.n_ctx \
                or any(len(r) < n * sizes[i % 2] for i, r in enumerate(rows)):
            return False
        for i, (buf, data) in enumerate(zip(self._keep, rows, strict=True)):
            size = n * sizes[i % 2]
            buf.view[:size] = data[:size]
        self.tokens[:] = tokens
        return True
