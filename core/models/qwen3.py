"""Qwen3 (``general.architecture = qwen3``): the Llama-style block with per-head QK-norm before RoPE NEOX.
"""

from __future__ import annotations

from emberllm.models.llama_block import ROPE_NEOX, LlamaStyleModel


class Qwen3(LlamaStyleModel):
    """The shared Llama-style forward pass with RoPE NEOX."""

    rope_mode = ROPE_NEOX
