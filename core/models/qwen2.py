"""Qwen2 / Qwen2.5 (``general.architecture = qwen2``): the Llama-style block with Q/K/V biases, RoPE NEOX.
"""

from __future__ import annotations

from emberllm.models.llama_block import ROPE_NEOX, LlamaStyleModel


class Qwen2(LlamaStyleModel):
    """The shared Llama-style forward pass with RoPE NEOX."""

    rope_mode = ROPE_NEOX
