"""GGML tensor types: ids as stored in GGUF files, block sizes and bytes per block.

Every type GGUF may name is listed so that sizes can be checked for any file; which of them the kernels compute
with is the kernels' answer (``emb_weight_type_supported``), not a list kept here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GGMLType:
    """One tensor type: ``block_size`` elements are stored in ``block_bytes`` bytes."""

    id: int
    name: str
    block_size: int
    block_bytes: int

    def row_bytes(self, n: int) -> int:
        """Bytes taken by a row of ``n`` elements (``n`` must be a multiple of the block size)."""
        if n % self.block_size:
            raise ValueError(f"{self.name}: row of {n} elements is not a multiple of {self.block_size}")
        return n // self.block_size * self.block_bytes


_QK_K = 256
_TYPES = [
    GGMLType(0, "F32", 1, 4),
    GGMLType(1, "F16", 1, 2),
    GGMLType(2, "Q4_0", 32, 18),
    GGMLType(3, "Q4_1", 32, 20),
    GGMLType(6, "Q5_0", 32, 22),
    GGMLType(7, "Q5_1", 32, 24),
    GGMLType(8, "Q8_0", 32, 34),
    GGMLType(9, "Q8_1", 32, 36),
    GGMLType(10, "Q2_K", _QK_K, 84),
    GGMLType(11, "Q3_K", _QK_K, 110),
    GGMLType(12, "Q4_K", _QK_K, 144),
    GGMLType(13, "Q5_K", _QK_K, 176),
    GGMLType(14, "Q6_K", _QK_K, 210),
    GGMLType(15, "Q8_K", _QK_K, 292),
    GGMLType(16, "IQ2_XXS", _QK_K, 66),
    GGMLType(17, "IQ2_XS", _QK_K, 74),
    GGMLType(18, "IQ3_XXS", _QK_K, 98),
    GGMLType(19, "IQ1_S", _QK_K, 50),
    GGMLType(20, "IQ4_NL", 32, 18),
    GGMLType(21, "IQ3_S", _QK_K, 110),
    GGMLType(22, "IQ2_S", _QK_K, 82),
    GGMLType(23, "IQ4_XS", _QK_K, 136),
    GGMLType(24, "I8", 1, 1),
    GGMLType(25, "I16", 1, 2),
    GGMLType(26, "I32", 1, 4),
    GGMLType(27, "I64", 1, 8),
    GGMLType(28, "F64", 1, 8),
    GGMLType(29, "IQ1_M", _QK_K, 56),
    GGMLType(30, "BF16", 1, 2),
    GGMLType(34, "TQ1_0", _QK_K, 54),
    GGMLType(35, "TQ2_0", _QK_K, 66),
    GGMLType(39, "MXFP4", 32, 17),
]

BY_ID: dict[int, GGMLType] = {t.id: t for t in _TYPES}
BY_NAME: dict[str, GGMLType] = {t.name: t for t in _TYPES}

def type_by_id(type_id: int) -> GGMLType:
    """The type with GGUF id ``type_id``; ``KeyError`` if no such type exists."""
    return BY_ID[type_id]


def all_types() -> list[GGMLType]:
    """Every GGML type GGUF may name, by id."""
    return list(_TYPES)


#: llama.cpp's names of ``general.file_type`` values (``llama_model_ftype_name``).
FTYPE_NAMES = {
    0: "all F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K - Medium",
    11: "Q3_K - Small", 12: "Q3_K - Medium", 13: "Q3_K - Large", 14: "Q4_K - Small", 15: "Q4_K - Medium",
    16: "Q5_K - Small", 17: "Q5_K - Medium", 18: "Q6_K", 32: "BF16",
    25: "IQ4_NL - 4.5 bpw", 30: "IQ4_XS - 4.25 bpw", 36: "TQ1_0 - 1.69 bpw ternary",
    37: "TQ2_0 - 2.06 bpw ternary",
}
#: the grid I-quant mixes (llama-quantize needs an importance matrix for them; emberllm loads them)
FTYPE_NAMES.update({
    19: "IQ2_XXS - 2.0625 bpw", 20: "IQ2_XS - 2.3125 bpw", 22: "IQ3_XS - 3.3 bpw", 23: "IQ3_XXS - 3.0625 bpw",
    24: "IQ1_S - 1.5625 bpw", 26: "IQ3_S - 3.4375 bpw", 27: "IQ3_S mix - 3.66 bpw", 28: "IQ2_S - 2.5 bpw",
    29: "IQ2_M - 2.7 bpw", 31: "IQ1_M - 1.75 bpw",
})


def file_type_name(ftype: object, tensors: Iterable[Any] = ()) -> str | None:
    """A file's quant type: ``general.file_type``'s llama.cpp name, else the type holding most tensor bytes."""
    if isinstance(ftype, int) and not isinstance(ftype, bool):
        return FTYPE_NAMES.get(ftype, f"ftype {ftype}")
    totals: dict[str, int] = {}
    for t in tensors:
        totals[t.type_name] = totals.get(t.type_name, 0) + t.nbytes
    return max(totals, key=totals.__getitem__) if totals else None
