"""Reading ``*.safetensors`` files into numpy arrays (float32 for every float dtype, BF16 included).

The format is an 8-byte little-endian header length, a JSON header (name -> dtype, shape, data offsets) and
the raw data; reading it directly avoids needing torch for BF16, which numpy has no dtype for.
"""

from __future__ import annotations

import json
import mmap
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


class SafetensorsFile:
    """One memory-mapped safetensors file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        (n_header,) = struct.unpack("<Q", self._map[:8])
        header: dict[str, Any] = json.loads(self._map[8 : 8 + n_header])
        self.metadata = header.pop("__metadata__", {}) or {}
        self.header = header
        self._data_start = 8 + n_header

    def names(self) -> list[str]:
        """Tensor names in file order."""
        return list(self.header)

    def get(self, name: str) -> np.ndarray:
        """The tensor as a float32 array (float types) or its own integer dtype."""
        info = self.header[name]
        start, end = info["data_offsets"]
        raw = np.frombuffer(self._map, dtype=np.uint8, count=end - start, offset=self._data_start + start)
        shape = tuple(info["shape"])
        dtype = info["dtype"]
        if dtype == "BF16":
            return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
        if dtype not in _DTYPES:
            raise ValueError(f"{self.path.name}: tensor {name!r} has unsupported dtype {dtype}")
        arr = raw.view(_DTYPES[dtype]).reshape(shape)
        return arr.astype(np.float32) if arr.dtype.kind == "f" else arr.copy()

    def dtype_of(self, name: str) -> str:
        """The safetensors dtype string of a tensor (``F32``, ``BF16``, ...)."""
        return str(self.header[name]["dtype"])


def iter_model_tensors(model_dir: str | Path) -> Iterator[tuple[str, SafetensorsFile]]:
    """(name, file) for every tensor of a Hugging Face model directory (single or sharded safetensors)."""
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors files in {model_dir}")
    for path in files:
        st = SafetensorsFile(path)
        for name in st.names():
            yield name, st
