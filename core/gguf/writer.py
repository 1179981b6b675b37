"""Writing GGUF files with gguf-py's ``GGUFWriter``: metadata values with llama.cpp's value types, tensors
as float32/float16 arrays or raw GGML blocks, streamed one at a time (``write_streaming``) so that converting
or quantizing a model never holds more than one tensor in memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from emberllm.gguf import types as ggml_types

VT = gguf.GGUFValueType
F32, F16 = 0, 1


def value_type(value: Any) -> Any:
    """The GGUF type llama.cpp uses for a Python value: unsigned 32-bit for non-negative ints (counts and
    token ids), signed 32-bit otherwise, float32 for floats."""
    if isinstance(value, bool):
        return VT.BOOL
    if isinstance(value, int):
        return VT.UINT32 if 0 <= value < 2**32 else VT.INT32
    if isinstance(value, float):
        return VT.FLOAT32
    if isinstance(value, str):
        return VT.STRING
    if isinstance(value, list | tuple | np.ndarray):
        return VT.ARRAY
    raise TypeError(f"no GGUF type for {type(value).__name__}")


def _element_type(values: Any) -> Any:
    """Array element type: ``token_type``-style int arrays are INT32, as llama.cpp's converter writes them."""
    if isinstance(values, np.ndarray):
        return VT.FLOAT32 if values.dtype.kind == "f" else VT.INT32
    if len(values) == 0:
        return VT.INT32
    first = values[0]
    if isinstance(first, bool):
        return VT.BOOL
    if isinstance(first, int):
        return VT.INT32
    if isinstance(first, float):
        return VT.FLOAT32
    return VT.STRING


def add_value(writer: gguf.GGUFWriter, key: str, value: Any) -> None:
    """Add one metadata key with the type inferred as llama.cpp's converter would write it."""
    vtype = value_type(value)
    if vtype == VT.ARRAY:
        sub = _element_type(value)
        items = value.tolist() if isinstance(value, np.ndarray) else list(value)
        writer.add_key_value(key, items, VT.ARRAY, sub_type=sub)
    else:
        writer.add_key_value(key, value, vtype)


@dataclass
class PendingTensor:
    """A tensor to write: its name, numpy-order shape, GGML type and a function producing its data (float32
    for F32, float16 for F16, uint8 blocks otherwise) when its turn comes."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    produce: Callable[[], np.ndarray]


def tensor_nbytes(shape: Sequence[int], ggml_type: int) -> int:
    """Bytes of a tensor of this numpy-order shape (last axis = row) stored as ``ggml_type``."""
    rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
    return rows * ggml_types.type_by_id(ggml_type).row_bytes(int(shape[-1]))


def _stored(data: np.ndarray, ggml_type: int) -> np.ndarray:
    if ggml_type == F32:
        return np.ascontiguousarray(data, dtype=np.float32)
    if ggml_type == F16 and data.dtype == np.float16:
        return np.ascontiguousarray(data)
    return np.ascontiguousarray(data).view(np.uint8)


def write_streaming(writer: gguf.GGUFWriter, path: str | Path, tensors: Sequence[PendingTensor]) -> None:
    """Write the metadata already added, the tensor table, then each tensor's data as it is produced."""
    for t in tensors:
        if t.ggml_type == F32:
            writer.add_tensor_info(t.name, t.shape, np.dtype(np.float32), tensor_nbytes(t.shape, F32))
        elif t.ggml_type == F16:
            writer.add_tensor_info(t.name, t.shape, np.dtype(np.float16), tensor_nbytes(t.shape, F16))
        else:  # a logical shape with a non-uint8 dtype: gguf-py keeps the shape as given
            writer.add_tensor_info(t.name, t.shape, np.dtype(np.float32), tensor_nbytes(t.shape, t.ggml_type),
                                   raw_dtype=gguf.GGMLQuantizationType(t.ggml_type))
    writer.write_header_to_file(path=Path(path))
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in tensors:
        data = _stored(t.produce(), t.ggml_type)
        if data.nbytes != tensor_nbytes(t.shape, t.ggml_type):
            raise ValueError(f"{t.name}: produced {data.nbytes} bytes, expected {tensor_nbytes(t.shape, t.ggml_type)}")
        writer.write_tensor_data(data)
    writer.close()
