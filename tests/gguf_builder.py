"""Hand-built GGUF bytes for tests: any version, any value (valid or not), any tensor-table layout.

Values are given with their type: ``(vtype, value)``; an array value is ``(item_type, items)`` and nested
arrays are ``(ARRAY, [(item_type, items), ...])``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from emberllm.gguf.reader import GGUFValueType as V

SCALAR_FORMATS = {
    V.UINT8: "<B", V.INT8: "<b", V.UINT16: "<H", V.INT16: "<h", V.UINT32: "<I", V.INT32: "<i",
    V.FLOAT32: "<f", V.BOOL: "<?", V.UINT64: "<Q", V.INT64: "<q", V.FLOAT64: "<d",
}


def enc_str(s: str | bytes) -> bytes:
    """A GGUF string: u64 length and the bytes."""
    raw = s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s
    return struct.pack("<Q", len(raw)) + raw


def enc_value(vtype: int, value: Any) -> bytes:
    """The encoding of ``value`` as type ``vtype`` (without the type tag)."""
    if vtype in SCALAR_FORMATS:
        return struct.pack(SCALAR_FORMATS[vtype], value)
    if vtype == V.STRING:
        return enc_str(value)
    if vtype == V.ARRAY:
        sub, items = value
        return struct.pack("<IQ", sub, len(items)) + b"".join(enc_value(sub, v) for v in items)
    raise ValueError(f"cannot encode value type {vtype}")


def enc_kv(key: str | bytes, vtype: int, value: Any) -> bytes:
    """One metadata pair."""
    return enc_str(key) + struct.pack("<I", vtype) + enc_value(vtype, value)


def enc_tensor_info(name: str | bytes, shape: tuple[int, ...], type_id: int, rel: int) -> bytes:
    """One tensor-info record (``shape`` in GGUF order, ne0 first)."""
    return (enc_str(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
            + struct.pack("<IQ", type_id, rel))


def pad(n: int, align: int) -> int:
    return -(-n // align) * align


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    type_id: int
    data: bytes
    rel: int | None = None  # default: packed one after another, aligned


@dataclass
class GGUFBuilder:
    """Collects kvs and tensors and produces the file bytes (``build``) with its layout (``layout``)."""

    version: int = 3
    alignment: int = 32
    magic: bytes = b"GGUF"
    kvs: list[tuple[str | bytes, int, Any]] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)
    n_tensors: int | None = None  # override the counts to lie
    n_kv: int | None = None

    def kv(self, key: str | bytes, vtype: int, value: Any) -> GGUFBuilder:
        self.kvs.append((key, vtype, value))
        return self

    def tensor(self, name: str, shape: tuple[int, ...], type_id: int, data: bytes,
               rel: int | None = None) -> GGUFBuilder:
        self.tensors.append(Tensor(name, shape, type_id, data, rel))
        return self

    def header(self) -> bytes:
        """Everything up to the end of the tensor table."""
        n_t = len(self.tensors) if self.n_tensors is None else self.n_tensors
        n_kv = len(self.kvs) if self.n_kv is None else self.n_kv
        out = bytearray(self.magic + struct.pack("<I", self.version) + struct.pack("<QQ", n_t, n_kv))
        for key, vtype, value in self.kvs:
            out += enc_kv(key, vtype, value)
        for t, rel in zip(self.tensors, self.offsets(), strict=True):
            out += enc_tensor_info(t.name, t.shape, t.type_id, rel)
        return bytes(out)

    def offsets(self) -> list[int]:
        rels, cur = [], 0
        for t in self.tensors:
            rel = cur if t.rel is None else t.rel
            rels.append(rel)
            cur = pad(rel + len(t.data), self.alignment)
        return rels

    def build(self) -> bytes:
        """The whole file: header, padding, tensor data at the offsets."""
        head = self.header()
        start = pad(len(head), self.alignment)
        out = bytearray(head) + bytes(start - len(head))
        for t, rel in zip(self.tensors, self.offsets(), strict=True):
            end = start + rel + len(t.data)
            if len(out) < end:
                out += bytes(end - len(out))
            out[start + rel:end] = t.data
        return bytes(out)


def write_vocab_gguf(metadata: dict[str, Any], path: Path) -> None:
    """A vocabulary-only GGUF file (no tensors) holding ``metadata``, written with PyPI gguf's writer."""
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(path), "llama")
    for key, value in metadata.items():
        if key == "tokenizer.ggml.scores":
            writer.add_array(key, [float(s) for s in value])
        elif key == "tokenizer.ggml.token_type":
            writer.add_array(key, [int(t) for t in value])
        elif isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_array(key, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
