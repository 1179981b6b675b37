"""emberllm: local LLM inference with a Python core and C SIMD kernels.

``emberllm.Model`` (see ``emberllm.runtime.model``) loads a GGUF file and generates; it is imported on first use so
that ``import emberllm`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Model", "SamplingParams", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Model":
        from emberllm.runtime.model import Model

        return Model
    if name == "SamplingParams":
        from emberllm.sampling import SamplingParams

        return SamplingParams
    raise AttributeError(f"module 'emberllm' has no attribute {name!r}")
