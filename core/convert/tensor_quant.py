"""Whole-tensor conversion between float32 numpy arrays and GGML types, through our C kernels.

``emb_quantize_row`` holds ggml's reference quantizers (``quantize_row_*_ref``, what llama.cpp's
``llama-quantize`` uses without an importance matrix), so the bytes written here match llama.cpp's.
Native only (numpy); used by ``emberllm convert`` and ``emberllm quantize``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emberllm.backends.binding import Kernels, load_kernels
from emberllm.gguf import types as ggml_types

SCALAR_LEVEL = 0


def _float_ptr(k: Kernels, arr: np.ndarray) -> Any:
    """A ``float *`` for a contiguous float32 array (cffi needs the exact pointer type, ctypes an address)."""
    ptr = k.bytes_ptr(arr)
    ffi = getattr(getattr(k, "_b", None), "ffi", None)
    return ffi.cast("float *", ptr) if ffi is not None else ptr


def row_bytes(ggml_type: int, n: int, kernels: Kernels | None = None) -> int:
    """Bytes of one row of ``n`` values in ``ggml_type`` (-1 when ``n`` is not a multiple of its block)."""
    k = kernels or load_kernels()
    return int(k.lib.emb_row_size(int(ggml_type), int(n)))


def quantize(data: np.ndarray, ggml_type: int, kernels: Kernels | None = None) -> np.ndarray:
    """``data`` (any shape, last axis = row) in ``ggml_type`` as a uint8 array of shape (rows, row bytes)."""
    k = kernels or load_kernels()
    src = np.ascontiguousarray(data, dtype=np.float32)
    n = src.shape[-1] if src.ndim else 1
    rows = src.size // n
    rb = row_bytes(ggml_type, n, k)
    if rb <= 0:
        name = ggml_types.type_by_id(int(ggml_type)).name
        raise ValueError(f"rows of {n} values cannot be stored as {name}")
    out = np.empty((rows, rb), dtype=np.uint8)
    rc = k.lib.emb_quantize_row(SCALAR_LEVEL, int(ggml_type), _float_ptr(k, src), k.bytes_ptr(out), src.size)
    if rc != 0:
        raise ValueError(f"quantizing to {ggml_types.type_by_id(int(ggml_type)).name} is not supported")
    return out


def dequantize(raw: Any, ggml_type: int, n_elements: int, kernels: Kernels | None = None) -> np.ndarray:
    """The float32 values of ``n_elements`` stored as ``ggml_type`` in the bytes-like ``raw``."""
    k = kernels or load_kernels()
    src = np.ascontiguousarray(np.frombuffer(raw, dtype=np.uint8))
    out = np.empty(n_elements, dtype=np.float32)
    rc = k.lib.emb_dequantize_row(SCALAR_LEVEL, int(ggml_type), k.bytes_ptr(src), _float_ptr(k, out), n_elements)
    if rc != 0:
        raise ValueError(f"cannot convert type {ggml_types.type_by_id(int(ggml_type)).name} to float")
    return out
