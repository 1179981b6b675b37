"""Llama 2/3.x, Mistral, SmolLM2, TinyLlama (``general.architecture = llama``).

RoPE NORMAL on Q/K rows that the converter permuted, optional ``rope_freqs`` (Llama 3 rope scaling),
tied or separate output projection.
"""

from __future__ import annotations

from emberllm.models.llama_block import ROPE_NORMAL, LlamaStyleModel


class Llama(LlamaStyleModel):
    """The shared Llama-style forward pass with RoPE NORMAL."""

    rope_mode = ROPE_NORMAL
