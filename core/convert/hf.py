"""Hugging Face model directory (config.json + safetensors + tokenizer files) -> GGUF, as llama.cpp's converter
writes it: the same metadata keys, tensor names and tensor transforms, so llama.cpp loads our files.

Supported: Llama (Llama 2/3.x, Mistral, SmolLM2, TinyLlama; Llama 3 rope scaling as a ``rope_freqs`` tensor;
Mixtral's experts), Qwen2, Qwen3, Qwen3-MoE, Phi-3 (standard rope), Gemma, Gemma 2, Gemma 3 (text) and OLMo 2.
Transforms: Llama's Q/K row permutation (HF stores Q/K for rotate-half RoPE, llama.cpp's ``llama`` uses
interleaved pairs), Gemma's ``1 + w`` RMSNorm weights, tied output embeddings left out, each layer's experts
stacked into 3-D ``ffn_{gate,up,down}_exps`` tensors (expert-major), the router ``ffn_gate_inp`` kept F32.
Tokenizer metadata comes from ``emberllm.convert.hf_vocab.vocab_metadata``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from emberllm.convert import tensor_quant
from emberllm.convert.safetensors_read import iter_model_tensors
from emberllm.gguf import writer as gguf_write

#: HF ``architectures[0]`` -> GGUF ``general.architecture``.
HF_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Phi3ForCausalLM": "phi3",
    "Gemma3ForCausalLM": "gemma3",
    "Gemma2ForCausalLM": "gemma2",
    "GemmaForCausalLM": "gemma",
    "MixtralForCausalLM": "llama",
    "Qwen3MoeForCausalLM": "qwen3moe",
    "Olmo2ForCausalLM": "olmo2",
}
_MODEL_TYPES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "phi3": "phi3",
                "gemma3_text": "gemma3", "gemma2": "gemma2", "gemma": "gemma", "mixtral": "llama",
                "qwen3_moe": "qwen3moe", "olmo2": "olmo2"}
#: Gemma's RMSNorm multiplies by ``1 + w``: their converter stores ``1 + w`` (and ties the output by default).
_GEMMA_ARCHS = ("gemma", "gemma2", "gemma3")

#: ``--outtype`` -> (GGML type of 2-D weights, ``general.file_type`` (llama_ftype)).
OUTTYPES = {"f32": (0, 0), "f16": (1, 1), "bf16": (30, 32), "q8_0": (8, 7)}

#: HF name inside ``model.layers.N.`` -> GGUF name inside ``blk.N.`` (Gemma 3 overrides two of them).
_LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.qkv_proj": "attn_qkv",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "mlp.gate_up_proj": "ffn_up",
    "block_sparse_moe.gate": "ffn_gate_inp",  # Mixtral's router
    "mlp.gate": "ffn_gate_inp",  # Qwen3-MoE's router
}
_GEMMA3_LAYER_NAMES = {
    **_LAYER_NAMES,
    "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm",
    "post_feedforward_layernorm": "post_ffw_norm",
}
#: OLMo 2 has post-norms only (its Q/K norms span the whole row; same names).
_OLMO2_LAYER_NAMES = {
    **_LAYER_NAMES,
    "post_attention_layernorm": "post_attention_norm",
    "post_feedforward_layernorm": "post_ffw_norm",
}
_GLOBAL_NAMES = {"embed_tokens.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
                 "lm_head.weight": "output.weight"}
_LAYER_RE = re.compile(r"^layers\.(\d+)\.(.+)\.(weight|bias)$")
#: one expert's matrix: layer, expert, HF name (Mixtral's w1/w2/w3, Qwen3-MoE's *_proj)
_EXPERT_RE = re.compile(r"^layers\.(\d+)\.(?:block_sparse_moe|mlp)\.experts\.(\d+)\.(\w+)\.weight$")
_EXPERT_NAMES = {"w1": "ffn_gate_exps", "w2": "ffn_down_exps", "w3": "ffn_up_exps", "gate_proj": "ffn_gate_exps",
                 "up_proj": "ffn_up_exps", "down_proj": "ffn_down_exps"}


class ConvertError(ValueError):
    """The model directory cannot be converted (unknown architecture, missing files, unsupported options)."""


@dataclass
class ConvertResult:
    """What was written."""

    path: Path
    arch: str
    n_tensors: int
    types: dict[str, int] = field(default_factory=dict)


def load_config(hf_dir: Path) -> dict[str, Any]:
    """config.json (the text part for multimodal wrappers)."""
    path = hf_dir / "config.json"
    if not path.is_file():
        raise ConvertError(f"{hf_dir} has no config.json")
    config: dict[str, Any] = json.loads(path.read_text())
    return config


def gguf_arch(config: dict[str, Any]) -> str:
    """The GGUF architecture for a HF config."""
    for name in config.get("architectures") or []:
        if name in HF_ARCHITECTURES:
            return HF_ARCHITECTURES[name]
    model_type = config.get("model_type", "")
    if model_type in _MODEL_TYPES:
        return _MODEL_TYPES[model_type]
    supported = ", ".join(sorted(HF_ARCHITECTURES))
    raise ConvertError(f"unsupported model {config.get('architectures') or model_type!r}; supported: {supported}")


def rope_settings(config: dict[str, Any], layer_type: str = "full_attention") -> dict[str, Any]:
    """RoPE parameters from either ``rope_parameters`` (transformers 5) or ``rope_theta``/``rope_scaling``."""
    params = dict(config.get("rope_parameters") or {})
    if layer_type in params and isinstance(params[layer_type], dict):
        params = dict(params[layer_type])
    scaling = config.get("rope_scaling") or {}
    merged = {**scaling, **params}
    merged.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    rope_type = merged.get("rope_type", merged.get("type", "default")) or "default"
    merged["rope_type"] = rope_type
    return merged


def llama3_rope_factors(rope: dict[str, Any], head_dim: int) -> np.ndarray:
    """Per-frequency divisors of Llama 3 rope scaling (what llama.cpp stores as ``rope_freqs.weight``)."""
    base = float(rope["rope_theta"])
    factor = float(rope.get("factor", 8.0))
    low_freq_factor = float(rope.get("low_freq_factor", 1.0))
    high_freq_factor = float(rope.get("high_freq_factor", 4.0))
    old_context_len = int(rope.get("original_max_position_embeddings", 8192))
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / float(freq)
        if wavelen < high_freq_wavelen:
            factors.append(1.0)
        elif wavelen > low_freq_wavelen:
            factors.append(factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def hparams_metadata(arch: str, config: dict[str, Any]) -> dict[str, Any]:
    """``{arch}.*`` keys llama.cpp reads, from the HF config."""
    n_head = int(config["num_attention_heads"])
    n_embd = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or n_embd // n_head)
    rope = rope_settings(config)
    md: dict[str, Any] = {
        "context_length": int(config.get("max_position_embeddings", 2048)),
        "embedding_length": n_embd,
        "block_count": int(config["num_hidden_layers"]),
        "feed_forward_length": int(config["intermediate_size"]),
        "attention.head_count": n_head,
        "attention.head_count_kv": int(config.get("num_key_value_heads") or n_head),
        "attention.layer_norm_rms_epsilon": float(config.get("rms_norm_eps", 1e-6)),
        "rope.freq_base": float(rope["rope_theta"]),
    }
    if arch in ("llama", "qwen3", "gemma", "gemma2", "gemma3") or config.get("head_dim"):
        md["attention.key_length"] = head_dim
        md["attention.value_length"] = head_dim
    if arch == "llama":
        md["vocab_size"] = int(config["vocab_size"])
        md["rope.dimension_count"] = head_dim
    if arch == "phi3":
        partial = float(rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0)) or 1.0)
        md["rope.dimension_count"] = int(partial * head_dim)
        md["rope.scaling.original_context_length"] = int(
            rope.get("original_max_position_embeddings") or config.get("original_max_position_embeddings")
            or md["context_length"])
        md["attention.sliding_window"] = int(config.get("sliding_window") or 0)
    if arch == "gemma2":
        md["attention.sliding_window"] = int(config.get("sliding_window") or 4096)
        md["attn_logit_softcapping"] = float(config.get("attn_logit_softcapping") or 50.0)
        md["final_logit_softcapping"] = float(config.get("final_logit_softcapping") or 30.0)
    n_expert = config.get("num_local_experts") or config.get("num_experts")
    if n_expert:
        md["expert_count"] = int(n_expert)
        md["expert_used_count"] = int(config["num_experts_per_tok"])
        if config.get("moe_intermediate_size"):
            md["expert_feed_forward_length"] = int(config["moe_intermediate_size"])
        if arch == "qwen3moe" and not config.get("norm_topk_prob", True):
            # llama.cpp's qwen3moe renormalises whatever the file says; this key keeps HF's unnormalised weights
            md["expert_weights_norm"] = False
    if arch == "gemma3":
        md["attention.sliding_window"] = int(config.get("sliding_window") or 0)
        md["rope.freq_base"] = float(rope_settings(config, "full_attention")["rope_theta"])
        md["rope.freq_base_swa"] = float(rope_settings(config, "sliding_attention").get(
            "rope_theta", config.get("rope_local_base_freq", 10000.0)))
    rope_type = rope["rope_type"]
    if arch == "phi3" and rope_type in ("longrope", "su"):
        orig = md["rope.scaling.original_context_length"]
        scale = md["context_length"] / orig
        md["rope.scaling.attn_factor"] = math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1.0 else 1.0
    elif rope_type == "linear":
        md["rope.scaling.type"] = "linear"
        md["rope.scaling.factor"] = float(rope["factor"])
    elif rope_type not in ("default", "llama3"):
        raise ConvertError(f"rope scaling {rope_type!r} is not supported yet")
    if rope_type == "llama3" and arch != "llama":
        raise ConvertError("Llama 3 rope scaling is only supported for llama models")
    return {f"{arch}.{k}": v for k, v in md.items()}


def _permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's Q/K permutation: per head, rows (0, d/2, 1, d/2 + 1, ...) of rotate-half become pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def plan_tensors(arch: str, config: dict[str, Any], hf_dir: Path) -> list[tuple[str, tuple[int, ...], Any]]:
    """(GGUF name, numpy shape, loader) for every tensor llama.cpp's converter writes; each loader returns the
    float32 data transformed as llama.cpp's converter does (read only when called)."""
    names = (_GEMMA3_LAYER_NAMES if arch in ("gemma2", "gemma3") else _OLMO2_LAYER_NAMES if arch == "olmo2"
             else _LAYER_NAMES)
    tied = bool(config.get("tie_word_embeddings", arch in _GEMMA_ARCHS))
    n_head = int(config["num_attention_heads"])
    n_head_kv = int(config.get("num_key_value_heads") or n_head)
    plan: list[tuple[str, tuple[int, ...], Any]] = []
    experts: dict[str, dict[int, tuple[Any, str]]] = {}
    for hf_name, st in iter_model_tensors(hf_dir):
        name = hf_name
        for prefix in ("model.language_model.", "language_model.model.", "model."):
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        if name.startswith(("vision_tower.", "multi_modal_projector.")) or name.endswith("rotary_emb.inv_freq"):
            continue
        if name == "lm_head.weight" and tied:
            continue
        if name in _GLOBAL_NAMES:
            gguf_name = _GLOBAL_NAMES[name]
        elif (e := _EXPERT_RE.match(name)) is not None and e.group(3) in _EXPERT_NAMES:
            experts.setdefault(f"blk.{e.group(1)}.{_EXPERT_NAMES[e.group(3)]}.weight", {})[int(e.group(2))] = (
                st, hf_name)
            continue
        else:
            m = _LAYER_RE.match(name)
            if m is None or m.group(2) not in names:
                raise ConvertError(f"do not know where tensor {hf_name!r} goes")
            gguf_name = f"blk.{m.group(1)}.{names[m.group(2)]}.{m.group(3)}"
        permute_heads = 0
        if arch == "llama" and _is_layer_tensor(gguf_name, "attn_q"):
            permute_heads = n_head
        elif arch == "llama" and _is_layer_tensor(gguf_name, "attn_k"):
            permute_heads = n_head_kv
        plus_one = arch in _GEMMA_ARCHS and gguf_name.endswith("norm.weight")

        def load(st: Any = st, hf_name: str = hf_name, heads: int = permute_heads, plus_one: bool = plus_one) -> Any:
            data = st.get(hf_name).astype(np.float32, copy=False)
            if heads:
                data = _permute_rows(data, heads)
            return data + 1.0 if plus_one else data

        plan.append((gguf_name, tuple(int(d) for d in st.header[hf_name]["shape"]), load))
    plan.extend(_stacked_experts(experts, config))
    rope = rope_settings(config)
    if arch == "llama" and rope["rope_type"] == "llama3":
        head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // n_head)
        plan.append(("rope_freqs.weight", (head_dim // 2,), lambda: llama3_rope_factors(rope, head_dim)))
    if arch == "phi3" and rope["rope_type"] in ("longrope", "su"):
        for kind in ("long", "short"):
            factors = rope.get(f"{kind}_factor")
            if not factors:
                raise ConvertError(f"long-rope config without {kind}_factor")
            values = np.asarray(factors, dtype=np.float32)
            plan.append((f"rope_factors_{kind}.weight", values.shape, lambda v=values: v))
    return plan


def _stacked_experts(experts: dict[str, dict[int, tuple[Any, str]]],
                     config: dict[str, Any]) -> list[tuple[str, tuple[int, ...], Any]]:
    """One 3-D tensor (n_expert, rows, cols) per layer and kind from the per-expert HF matrices."""
    n_expert = int(config.get("num_local_experts") or config.get("num_experts") or 0)
    plan: list[tuple[str, tuple[int, ...], Any]] = []
    for gguf_name, parts in experts.items():
        if sorted(parts) != list(range(n_expert)):
            raise ConvertError(f"{gguf_name}: experts {sorted(parts)} found, expected 0..{n_expert - 1}")
        st, first = parts[0]
        shape = (n_expert, *(int(d) for d in st.header[first]["shape"]))

        def load(parts: dict[int, tuple[Any, str]] = parts) -> Any:
            return np.stack([parts[x][0].get(parts[x][1]).astype(np.float32, copy=False) for x in sorted(parts)])

        plan.append((gguf_name, shape, load))
    return plan


def _is_layer_tensor(gguf_name: str, kind: str) -> bool:
    """Whether ``blk.N.<kind>.weight|bias`` names this kind of tensor."""
    parts = gguf_name.split(".")
    return len(parts) == 4 and parts[0] == "blk" and parts[2] == kind


def tensor_type(name: str, shape: tuple[int, ...], weight_type: int) -> int:
    """llama.cpp's converter choice: 1-D tensors (norms, biases, rope factors) and expert routers F32, matrices
    ``weight_type``, falling back to F16 when a row does not fit Q8_0 blocks."""
    if len(shape) <= 1 or name.startswith(("rope_freqs.", "rope_factors_")) or name.endswith(".ffn_gate_inp.weight"):
        return 0
    if weight_type == 8 and shape[-1] % 32 != 0:
        return 1
    return weight_type


def encode_tensor(data: np.ndarray, ggml_type: int) -> np.ndarray:
    """The tensor in ``ggml_type``: float32/float16 arrays or uint8 blocks from our kernels."""
    if ggml_type == 0:
        return data.astype(np.float32)
    if ggml_type == 1:
        return data.astype(np.float16)
    return tensor_quant.quantize(data, ggml_type)


def default_vocab(hf_dir: Path) -> dict[str, Any]:
    """Tokenizer metadata from ``emberllm.convert.hf_vocab`` (tokenizer.json / tokenizer_config.json)."""
    try:
        from emberllm.convert import hf_vocab  # type: ignore[attr-defined]
    except ImportError as exc:
        raise ConvertError("tokenizer conversion (emberllm.convert.hf_vocab) is not available") from exc
    result: dict[str, Any] = hf_vocab.vocab_metadata(hf_dir)
    return result


def convert(
    hf_dir: str | Path,
    out_path: str | Path,
    outtype: str = "f16",
    vocab: Callable[[Path], dict[str, Any]] | dict[str, Any] | None = None,
    name: str | None = None,
) -> ConvertResult:
    """Convert ``hf_dir`` to the GGUF file ``out_path``.

    ``vocab`` is the tokenizer metadata (GGUF key -> value) or a function of the directory returning it;
    by default ``emberllm.convert.hf_vocab.vocab_metadata``.
    """
    hf_dir = Path(hf_dir)
    if outtype not in OUTTYPES:
        raise ConvertError(f"unknown --outtype {outtype!r}; choose from {', '.join(OUTTYPES)}")
    config = load_config(hf_dir)
    if "text_config" in config and "num_hidden_layers" not in config:
        config = {**config, **config["text_config"]}
    arch = gguf_arch(config)
    weight_type, file_type = OUTTYPES[outtype]
    tokenizer_md = vocab(hf_dir) if callable(vocab) else vocab if vocab is not None else default_vocab(hf_dir)

    writer = gguf.GGUFWriter(path=None, arch=arch)
    gguf_write.add_value(writer, "general.type", "model")
    gguf_write.add_value(writer, "general.name", name or hf_dir.name)
    for key, value in hparams_metadata(arch, config).items():
        gguf_write.add_value(writer, key, value)
    gguf_write.add_value(writer, "general.file_type", file_type)
    gguf_write.add_value(writer, "general.quantization_version", gguf.GGML_QUANT_VERSION)
    for key, value in tokenizer_md.items():
        gguf_write.add_value(writer, key, value)
    result = ConvertResult(Path(out_path), arch, 0)
    pending = []
    for gguf_name, shape, load in plan_tensors(arch, config, hf_dir):
        ttype = tensor_type(gguf_name, shape, weight_type)
        pending.append(gguf_write.PendingTensor(gguf_name, shape, ttype,
                                                lambda load=load, ttype=ttype: encode_tensor(load(), ttype)))
        result.types[gguf_name] = ttype
        result.n_tensors += 1
    gguf_write.write_streaming(writer, out_path, pending)
    return result
