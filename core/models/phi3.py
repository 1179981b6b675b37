"""Phi-3 (``general.architecture = phi3``): the Llama-style block with fused ``attn_qkv`` and fused gate/up
(``ffn_up``), RoPE NEOX.
"""

from __future__ import annotations

from emberllm.models.llama_block import ROPE_NEOX, LlamaStyleModel


class Phi3(LlamaStyleModel):
    """The shared Llama-style forward pass with RoPE NEOX."""

    rope_mode = ROPE_NEOX
