"""What every transformer architecture shares: hyper-parameters, weight lookup and activation buffers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from emberllm.backends.binding import Buffer, Kernels, load_kernels
from emberllm.gguf import types as ggml_types
from emberllm.gguf.reader import GGUFFile
from emberllm.models import UnsupportedModelError


@dataclass
class HParams:
    """Hyper-parameters read from ``{arch}.*`` metadata keys."""

    arch: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_ctx_train: int
    norm_eps: float
    rope_base: float
    rope_scale: float
    sliding_window: int

    @property
    def kv_dim(self) -> int:
        """Width of one token's K (or V) row in the cache."""
        return self.n_head_kv * self.head_dim

    @property
    def q_dim(self) -> int:
        """Width of one token's query row."""
        return self.n_head * self.head_dim

    @classmethod
    def from_gguf(cls, gguf: GGUFFile) -> HParams:
        """Read the common keys; architectures adjust what differs afterwards."""
        md = gguf.metadata
        arch = md.get("general.architecture", "")

        def key(name: str, default: Any = None) -> Any:
            full = f"{arch}.{name}"
            if full in md:
                return md[full]
            if default is None:
                raise UnsupportedModelError(f"missing metadata key {full!r}")
            return default

        n_embd = int(key("embedding_length"))
        n_head = int(key("attention.head_count"))
        head_count_kv = key("attention.head_count_kv", n_head)
        if isinstance(head_count_kv, list):
            head_count_kv = head_count_kv[0]
        head_dim = int(key("attention.key_length", n_embd // n_head))
        tokens = md.get("tokenizer.ggml.tokens")
        n_vocab = int(key("vocab_size", len(tokens) if tokens is not None else 0))
        scaling = md.get(f"{arch}.rope.scaling.factor", 0.0) or 0.0
        scaling_type = md.get(f"{arch}.rope.scaling.type", "none")
        rope_scale = 1.0 / float(scaling) if scaling and scaling_type in ("linear",) else 1.0
        return cls(
            arch=arch,
            n_vocab=n_vocab,
            n_embd=n_embd,
            n_layer=int(key("block_count")),
            n_head=n_head,
            n_head_kv=int(head_count_kv),
            head_dim=head_dim,
            n_ff=int(key("feed_forward_length")) if not isinstance(key("feed_forward_length"), list)
            else int(key("feed_forward_length")[0]),
            n_ctx_train=int(key("context_length", 2048)),
            norm_eps=float(key("attention.layer_norm_rms_epsilon", 1e-6)),
            rope_base=float(key("rope.freq_base", 10000.0)),
            rope_scale=rope_scale,
            sliding_window=int(key("attention.sliding_window", 0) or 0),
        )


@dataclass
class Weight:
    """A tensor in the file: its pointer for the kernels, its GGML type and its 2-D shape (rows x cols)."""

    name: str
    ptr: Any
    type: int
    n_out: int
    n_in: int


@dataclass
class MatrixGroup:
    """Matrices applied to the same input (Q/K/V, gate/up), with the C arrays ``emb_matmul_multi`` takes."""

    weights: list[Weight]
    outputs: list[Any]
    ws: Any
    types: Any
    n_outs: Any
    ys: Any

    @classmethod
    def build(cls, kernels: Kernels, weights: list[Weight], outputs: list[Any]) -> MatrixGroup:
        """Arrays for ``weights`` writing into the ``outputs`` pointers."""
        if len({w.n_in for w in weights}) != 1:
            raise UnsupportedModelError("grouped matrices must share their input width")
        return cls(
            weights,
            outputs,
            kernels.array("void *", [w.ptr for w in weights]),
            kernels.array("int", [w.type for w in weights]),
            kernels.array("int64_t", [w.n_out for w in weights]),
            kernels.array("float *", outputs),
        )


def check_tensor_types(gguf: GGUFFile, kernels: Kernels | None = None) -> None:
    """``UnsupportedModelError`` naming the file's tensor types the kernels cannot run, and the supported ones."""
    k = kernels or load_kernels()
    unsupported = sorted({ggml_types.type_by_id(t.ggml_type).name for t in gguf.tensors.values()
                          if not k.weight_type_supported(t.ggml_type)})
    if unsupported:
        supported = ", ".join(t.name for t in ggml_types.all_types() if k.weight_type_supported(t.id))
        raise UnsupportedModelError(f"unsupported tensor type(s) {', '.join(unsupported)}; supported: {supported}")


class WeightStore:
    """Looks tensors up by name, checks types and shapes, and hands out kernel pointers."""

    def __init__(self, gguf: GGUFFile, kernels: Kernels) -> None:
        self.gguf = gguf
        self.k = kernels
        self._base = kernels.bytes_ref(gguf.buffer)
        self._f32_keep: list[Buffer] = []
        check_tensor_types(gguf, kernels)

    def has(self, name: str) -> bool:
        """Whether the file has a tensor of this name."""
        return name in self.gguf.tensors

    def matrix(self, name: str, n_in: int, n_out: int | None = None) -> Weight:
        """A 2-D weight of ``n_in`` columns (and ``n_out`` rows when given)."""
        info = self.gguf.tensors.get(name)
        if info is None:
            raise UnsupportedModelError(f"missing tensor {name!r}")
        shape = list(info.shape) + [1] * (2 - len(info.shape))
        rows = math.prod(shape[1:])
        if shape[0] != n_in or (n_out is not None and rows != n_out):
            raise UnsupportedModelError(
                f"tensor {name!r} has shape {list(info.shape)}, expected [{n_in}, {n_out if n_out else '*'}]"
            )
        return Weight(name, self._base.ptr + info.offset, info.ggml_type, rows, shape[0])

    def tensor_bytes(self, name: str) -> memoryview:
        """The raw GGUF bytes of a tensor (a view into the file)."""
        return memoryview(self.gguf.tensor_data(name)).cast("B")

    def vector_f32(self, name: str, n: int) -> Any:
        """A float32 pointer to a 1-D tensor of ``n`` elements (converted once if stored otherwise)."""
        return self.vector(name, n).ptr

    def vector(self, name: str, n: int) -> Buffer:
        """A 1-D tensor of ``n`` elements as a float32 host buffer (converted once if stored otherwise)."""
        info = self.gguf.tensors.get(name)
        if info is None:
            raise UnsupportedModelError(f"missing tensor {name!r}")
        if info.n_elements != n:
            raise UnsupportedModelError(f"tensor {name!r} has {info.n_elements} elements, expected {n}")
        buf = self.k.f32(n)
        rc = self.k.lib.emb_dequantize_row(0, info.ggml_type, self._base.ptr + info.offset, buf.ptr, n)
        if rc != 0:
            raise UnsupportedModelError(f"tensor {name!r}: cannot convert type {info.ggml_type} to float")
        self._f32_keep.append(buf)
        return buf
