"""Model architectures: one small module per family, registered here by GGUF ``general.architecture``."""

from __future__ import annotations

import importlib
from typing import Any

#: GGUF architecture name -> "module:Class" of its ``transformer.TransformerModel`` subclass.
ARCHITECTURES: dict[str, str] = {
    "gemma3": "emberllm.models.gemma3:Gemma3",
    "llama": "emberllm.models.llama:Llama",
    "qwen2": "emberllm.models.qwen2:Qwen2",
    "qwen3": "emberllm.models.qwen3:Qwen3",
    "phi3": "emberllm.models.phi3:Phi3",
}


class UnsupportedModelError(ValueError):
    """The file's architecture or one of its tensor types is not supported."""


def model_class(architecture: str) -> Any:
    """The model class for a GGUF architecture name, or ``UnsupportedModelError`` listing the supported ones."""
    target = ARCHITECTURES.get(architecture)
    if target is None:
        raise UnsupportedModelError(
            f"unsupported architecture {architecture!r}; supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)
