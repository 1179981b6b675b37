"""``emberllm quantize``: F32/F16/BF16 GGUF -> a quantized GGUF with llama.cpp's per-tensor type choices.

The choice of each tensor's type restates llama.cpp's ``llama_tensor_get_type`` (llama-quant.cpp) for the
mixes offered here, without an importance matrix: 1-D tensors and norms keep their type; the output
projection (or the token embeddings when they are tied to it) gets Q6_K; in the ``_M`` mixes ``attn_v`` /
``attn_qkv`` and ``ffn_down`` of the first and last eighth of the layers, and of every third layer between,
get Q6_K; in ``Q4_K_S`` the first four ``attn_v`` get Q5_K and the first eighth of ``ffn_down`` too.  The
low-bit mixes: ``Q2_K`` puts ``attn_v`` in Q3_K (Q4_K with 4 or more query heads per KV head), ``ffn_down`` and
``attn_output`` in Q3_K; ``Q3_K_M`` the first two ``attn_v`` in Q5_K and the rest in Q4_K, ``ffn_down`` in Q4_K
(Q5_K in the first sixteenth), ``attn_output`` in Q4_K; ``Q3_K_L`` all three in Q5_K; ``IQ4_NL`` / ``IQ4_XS``
``attn_v`` in Q5_K with 4 or more query heads per KV head and the first eighth of ``ffn_down`` in Q5_K.  Rows whose
length is not a multiple of the block size fall back (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K ->
Q4_0, IQ4_XS -> IQ4_NL, then F16).  Tensors are visited in llama.cpp's order (by layer, then name), which is what
its layer counters count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from emberllm.convert import tensor_quant
from emberllm.gguf import types as ggml_types
from emberllm.gguf import writer as gguf_write

F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 = 0, 1, 2, 3, 6, 7, 8
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16 = 10, 11, 12, 13, 14, 30
IQ4_NL, IQ4_XS = 20, 23

#: mix name -> (default GGML type, llama_ftype written as ``general.file_type``).
FTYPES: dict[str, tuple[int, int]] = {
    "Q4_0": (Q4_0, 2),
    "Q4_1": (Q4_1, 3),
    "Q8_0": (Q8_0, 7),
    "Q5_0": (Q5_0, 8),
    "Q5_1": (Q5_1, 9),
    "Q2_K": (Q2_K, 10),
    "Q3_K_S": (Q3_K, 11),
    "Q3_K_M": (Q3_K, 12),
    "Q3_K_L": (Q3_K, 13),
    "Q4_K_S": (Q4_K, 14),
    "Q4_K_M": (Q4_K, 15),
    "Q5_K_S": (Q5_K, 16),
    "Q5_K_M": (Q5_K, 17),
    "Q6_K": (Q6_K, 18),
    "IQ4_NL": (IQ4_NL, 25),
    "IQ4_XS": (IQ4_XS, 30),
}
_FALLBACK = {Q2_K: Q4_0, Q3_K: Q4_0, Q4_K: Q5_0, Q5_K: Q5_1, Q6_K: Q8_0, IQ4_XS: IQ4_NL}
_IQ4 = ("IQ4_NL", "IQ4_XS")
#: llama-quantize's grid I-quant mixes: the kernels compute with these types, but their quantizers search the grids
#: weighted by an importance matrix (llama-quantize --imatrix), which is not done here.  llama.cpp refuses IQ1_*, IQ2_*
#: and IQ3_XXS tensors without one; IQ3_S (the IQ3_S and IQ3_M mixes) it quantizes without one, at lower quality.
IMATRIX_MIXES = ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M")
_IMATRIX_OPTIONAL = ("IQ3_S", "IQ3_M")
_LAYER_RE = re.compile(r"^blk\.(\d+)\.")


class QuantizeError(ValueError):
    """The input cannot be quantized as asked."""


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    """llama.cpp's rule for which layers of a ``_M`` mix get more bits."""
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def category(name: str) -> str:
    """llama.cpp's broad tensor category (``tensor_get_category``)."""
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for key, cat in (("attn_qkv.weight", "attn_qkv"), ("attn_kv_b.weight", "attn_kv_b"), ("attn_v.weight", "attn_v"),
                     ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"),
                     ("attn_output.weight", "attn_output"), ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"),
                     ("ffn_down", "ffn_down")):
        if key in name:
            return cat
    return "other"


def allows_quantization(name: str, n_dims: int) -> bool:
    """Matrices named ``*weight`` other than norms, expert gates and positional embeddings."""
    if n_dims < 2 or not name.endswith("weight") or "_norm.weight" in name:
        return False
    return not any(s in name for s in ("ffn_gate_inp.weight", "position_embd", "token_types", "ssm_conv1d"))


def block_size(ggml_type: int) -> int:
    """Elements per block of a GGML type."""
    return ggml_types.type_by_id(ggml_type).block_size


@dataclass
class MixState:
    """The counters and facts llama.cpp's type choice depends on."""

    mix: str
    n_attention_wv: int
    n_layer: int
    tied_embeddings: bool
    is_70b: bool = False
    n_gqa: int = 1
    n_expert: int = 0
    is_falcon: bool = False
    i_attention_wv: int = 0
    i_ffn_down: int = 0
    choices: dict[str, int] = field(default_factory=dict)


def _ffn_down_layer(st: MixState, name: str) -> int:
    """The layer llama.cpp counts an ``ffn_down`` tensor in: its running count, or the name's with experts."""
    if st.n_expert > 1:
        m = _LAYER_RE.match(name)
        if m is None or not 0 <= int(m.group(1)) < st.n_layer:
            raise QuantizeError(f"cannot tell the layer of {name}")
        return int(m.group(1))
    return st.i_ffn_down


def _mix_type(st: MixState, name: str, ne0: int, new_type: int) -> int:
    """``llama_tensor_get_type_impl`` for the mixes in ``FTYPES`` (no imatrix)."""
    cat = category(name)
    mix = st.mix
    if cat == "output" or (st.tied_embeddings and cat == "token_embd"):
        if st.is_falcon or ne0 % block_size(new_type) != 0:
            return Q8_0
        return new_type if new_type == Q8_0 else Q6_K
    if cat == "token_embd":
        return new_type
    if cat in ("attn_v", "attn_qkv", "attn_kv_b"):
        if mix == "Q2_K":
            new_type = Q4_K if st.n_gqa >= 4 else Q3_K
        elif mix == "Q3_K_M":
            new_type = Q5_K if st.i_attention_wv < 2 else Q4_K
        elif mix == "Q3_K_L":
            new_type = Q5_K
        elif mix in _IQ4 and st.n_gqa >= 4:
            new_type = Q5_K
        elif mix in ("Q4_K_M", "Q5_K_M") and use_more_bits(st.i_attention_wv, st.n_attention_wv):
            new_type = Q6_K
        elif mix == "Q4_K_S" and st.i_attention_wv < 4:
            new_type = Q5_K
        if st.is_70b and new_type in (Q3_K, Q4_K):
            new_type = Q5_K
        if st.n_expert == 8:
            new_type = Q8_0
        st.i_attention_wv += 1
    elif cat == "attn_k":
        if st.n_expert == 8:
            new_type = Q8_0
    elif cat == "ffn_down":
        i_layer, n_layer = _ffn_down_layer(st, name), st.n_layer
        if mix == "Q2_K":
            new_type = Q3_K
        elif mix == "Q3_K_M":
            if i_layer < n_layer // 16:
                new_type = Q5_K
            else:
                new_type = Q4_K if not st.is_falcon or use_more_bits(i_layer, n_layer) else Q3_K
        elif mix == "Q3_K_L":
            new_type = Q4_K if st.is_falcon else Q5_K
        elif mix == "Q4_K_M":
            if st.is_falcon:
                new_type = Q6_K if i_layer < n_layer // 16 else Q5_K if use_more_bits(i_layer, n_layer) else Q4_K
            elif use_more_bits(i_layer, n_layer):
                new_type = Q6_K
        elif i_layer < n_layer // 8 and mix in _IQ4:
            new_type = Q5_K
        elif mix == "Q5_K_M" and use_more_bits(i_layer, n_layer):
            new_type = Q6_K
        elif mix == "Q4_K_S" and not st.is_falcon and i_layer < n_layer // 8:
            new_type = Q5_K
        st.i_ffn_down += 1
    elif cat == "attn_output":
        if st.is_falcon:
            if mix == "Q3_K_L":
                new_type = Q4_K
        elif st.n_expert == 8:
            if mix in ("Q2_K", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ4_XS"):
                new_type = Q5_K
        else:
            new_type = {"Q2_K": Q3_K, "Q3_K_M": Q4_K, "Q3_K_L": Q5_K}.get(mix, new_type)
    return new_type


def choose_type(st: MixState, name: str, shape: list[int], cur_type: int) -> int:
    """The type llama.cpp's ``llama-quantize`` gives the tensor ``name`` (GGUF shape ``ne0, ne1, ...``)."""
    n_dims = max([i + 1 for i, d in enumerate(shape) if d > 1] or [1])  # ggml_n_dims: trailing 1s do not count
    if not allows_quantization(name, n_dims):
        return cur_type
    ne0 = int(shape[0])
    new_type = _mix_type(st, name, ne0, FTYPES[st.mix][0])
    if ne0 % block_size(new_type) != 0:
        new_type = _FALLBACK.get(new_type, new_type)
        if ne0 % block_size(new_type) != 0:
            new_type = F16
    return new_type


def _layer_order(name: str) -> tuple[int, str]:
    m = _LAYER_RE.match(name)
    return (int(m.group(1)) if m else -1, name)


def _int_field(reader: Any, key: str, default: int) -> int:
    """An integer metadata value (a per-layer array's first entry, as llama.cpp's layer-0 hyper-parameters)."""
    f = reader.fields.get(key)
    if f is None:
        return default
    value = f.contents()
    if isinstance(value, list):
        return int(value[0]) if value else default
    return int(value)


def _field_value(f: Any) -> tuple[Any, Any, Any]:
    """(value, type, element type) of a GGUFReader field."""
    main = gguf.GGUFValueType(f.types[0])
    sub = gguf.GGUFValueType(f.types[-1]) if main == gguf.GGUFValueType.ARRAY else None
    return f.contents(), main, sub


def quantize_file(in_path: str | Path, out_path: str | Path, mix: str, allow_requantize: bool = False) -> MixState:
    """Quantize ``in_path`` to ``out_path`` with the mix ``mix`` (a key of ``FTYPES``)."""
    mix = mix.upper()
    if mix in IMATRIX_MIXES:
        why = (f"{mix} is made by llama-quantize's I-quant grid search, best with an importance matrix (--imatrix), "
               "which emberllm quantize does not implement" if mix in _IMATRIX_OPTIONAL else
               f"{mix} needs an importance matrix (llama-quantize --imatrix), which emberllm quantize does not compute")
        raise QuantizeError(f"{why}; models in {mix} load and run, so make them with llama.cpp. "
                            f"emberllm quantize can produce: {', '.join(FTYPES)}")
    if mix not in FTYPES:
        raise QuantizeError(f"unknown type {mix!r}; choose from {', '.join(FTYPES)}")
    reader = gguf.GGUFReader(str(in_path))
    arch_field = reader.fields.get("general.architecture")
    if arch_field is None:
        raise QuantizeError(f"{in_path}: no general.architecture")
    arch = str(arch_field.contents())
    tensors = sorted(reader.tensors, key=lambda t: _layer_order(t.name))
    names = [t.name for t in tensors]
    n_layer = _int_field(reader, f"{arch}.block_count", 0)
    n_head = _int_field(reader, f"{arch}.attention.head_count", 0)
    n_head_kv = _int_field(reader, f"{arch}.attention.head_count_kv", n_head)
    st = MixState(
        mix=mix,
        n_attention_wv=sum(category(n) in ("attn_v", "attn_qkv", "attn_kv_b") for n in names),
        n_layer=n_layer,
        tied_embeddings="output.weight" not in names,
        is_70b=arch == "llama" and n_layer == 80,
        n_gqa=n_head // n_head_kv if n_head_kv > 0 else 1,
        n_expert=_int_field(reader, f"{arch}.expert_count", 0),
        is_falcon=arch == "falcon",
    )
    writer = gguf.GGUFWriter(path=None, arch=arch)
    for key, f in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type",
                                              "general.quantization_version"):
            continue
        value, vtype, sub = _field_value(f)
        writer.add_key_value(key, value, vtype, sub_type=sub)
    writer.add_key_value("general.quantization_version", gguf.GGML_QUANT_VERSION, gguf.GGUFValueType.UINT32)
    writer.add_key_value("general.file_type", FTYPES[mix][1], gguf.GGUFValueType.UINT32)
    pending = []
    for t in tensors:
        cur_type = int(t.tensor_type)
        shape = [int(d) for d in t.shape]
        new_type = choose_type(st, t.name, shape, cur_type)
        st.choices[t.name] = new_type
        if new_type != cur_type and cur_type not in (F32, F16, BF16) and not allow_requantize:
            raise QuantizeError(f"{t.name} is already {ggml_types.type_by_id(cur_type).name}; "
                                "quantize from an F32/F16/BF16 file (or allow requantizing)")
        pending.append(gguf_write.PendingTensor(t.name, tuple(reversed(shape)), new_type,
                                                lambda t=t, cur=cur_type, new=new_type: _convert(t, cur, new)))
    gguf_write.write_streaming(writer, out_path, pending)
    return st


def _convert(t: Any, cur_type: int, new_type: int) -> np.ndarray:
    """The data of reader tensor ``t`` (stored as ``cur_type``) in ``new_type``."""
    raw = np.ascontiguousarray(t.data).view(np.uint8).reshape(-1)
    if new_type == cur_type:
        return _as_stored(raw, cur_type)
    values = tensor_quant.dequantize(raw, cur_type, int(t.n_elements))
    values = values.reshape(tuple(reversed([int(d) for d in t.shape])))
    return values.astype(np.float16) if new_type == F16 else tensor_quant.quantize(values, new_type)


def _as_stored(raw: np.ndarray, ggml_type: int) -> np.ndarray:
    """Bytes of an unchanged tensor in the form ``gguf_write.write_streaming`` takes for its type."""
    if ggml_type == F32:
        return raw.view(np.float32)
    if ggml_type == F16:
        return raw.view(np.float16)
    return raw
