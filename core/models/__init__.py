"""Model architectures: one registry entry per GGUF ``general.architecture``, each stating only how the family
differs from the shared decoder block (``models/decoder.py``)."""

from __future__ import annotations

from emberllm.models.spec import ACT_GELU_TANH, ROPE_NEOX, ROPE_NORMAL, ArchSpec, gemma2_query_scale


class UnsupportedModelError(ValueError):
    """The file's architecture or one of its tensor types is not supported."""


#: GGUF architecture name -> what the family does differently from the shared block.
ARCHITECTURES: dict[str, ArchSpec] = {spec.name: spec for spec in (
    # Gemma 3: pre- and post-norms, QK-norm, GeGLU (tanh), embeddings scaled by sqrt(n_embd), 5 sliding-window
    # layers (local RoPE base 1e4) then 1 global, output tied to the embeddings
    ArchSpec("gemma3", rope_mode=ROPE_NEOX, act=ACT_GELU_TANH, scale_embeddings=True, post_norms=True, qk_norm=True,
             swa_pattern=6, swa_rope_base=10000.0, rope_full_head=True),
    # Gemma 2: Gemma 3's block without QK-norm, sliding window on every other layer (the first), attention and
    # final logit soft-capping, llama.cpp's query scale
    ArchSpec("gemma2", rope_mode=ROPE_NEOX, act=ACT_GELU_TANH, scale_embeddings=True, post_norms=True,
             swa_pattern=2, swa_rope_base=0.0, softcap=True, query_scale=gemma2_query_scale),
    # Gemma (1): GeGLU (tanh), embeddings scaled by sqrt(n_embd), output tied to the embeddings
    ArchSpec("gemma", rope_mode=ROPE_NEOX, act=ACT_GELU_TANH, scale_embeddings=True),
    # Llama 2/3.x, Mistral, SmolLM2, TinyLlama: RoPE NORMAL on the converter's permuted Q/K, optional rope_freqs;
    # Mixtral: the same with mixture-of-experts FFNs (layers with ffn_gate_inp, models/moe.py)
    ArchSpec("llama", rope_mode=ROPE_NORMAL),
    # Qwen2 / 2.5: Q/K/V biases (used when present), RoPE NEOX
    ArchSpec("qwen2", rope_mode=ROPE_NEOX),
    # Qwen3: per-head QK-norm before RoPE NEOX
    ArchSpec("qwen3", rope_mode=ROPE_NEOX),
    # Qwen3-MoE: Qwen3's attention, mixture-of-experts FFNs (models/moe.py)
    ArchSpec("qwen3moe", rope_mode=ROPE_NEOX),
    # OLMo 2: no pre-norms, post-norms into the residual, RMSNorm of each token's whole Q and K rows, RoPE NEOX
    ArchSpec("olmo2", rope_mode=ROPE_NEOX, post_norms=True, qk_norm=True, qk_norm_whole=True, pre_norms=False),
    # Phi-3: fused attn_qkv and gate/up, RoPE NEOX, long-rope factors
    ArchSpec("phi3", rope_mode=ROPE_NEOX),
)}


def arch_spec(architecture: str) -> ArchSpec:
    """The ``ArchSpec`` of a GGUF architecture name, or ``UnsupportedModelError`` listing the supported ones."""
    spec = ARCHITECTURES.get(architecture)
    if spec is None:
        raise UnsupportedModelError(
            f"unsupported architecture {architecture!r}; supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    return spec
