"""Tokenizers, chosen by the GGUF metadata's ``tokenizer.ggml.model``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emberllm.tokenizers.base import StreamDecoder, Tokenizer
from emberllm.tokenizers.bpe import BPETokenizer
from emberllm.tokenizers.spm import SPMTokenizer
from emberllm.tokenizers.vocab import Vocab

__all__ = ["BPETokenizer", "SPMTokenizer", "StreamDecoder", "Tokenizer", "Vocab", "load_tokenizer", "SUPPORTED_MODELS"]

#: ``tokenizer.ggml.model`` values this package can tokenize, and how.
SUPPORTED_MODELS = {"llama": SPMTokenizer, "gpt2": BPETokenizer}

# Known to llama.cpp but not implemented here yet.
_KNOWN_UNSUPPORTED = {
    "bert": "WordPiece",
    "t5": "Unigram (UGM)",
    "rwkv": "RWKV",
    "plamo2": "PLaMo-2",
    "gemma4": "Gemma 4 BPE",
    "hybriddna": "HybridDNA BPE",
    "whitespace": "whitespace-split BPE",
    "no_vocab": "no vocabulary",
    "none": "no vocabulary",
}


def load_tokenizer(metadata: Mapping[str, Any]) -> Tokenizer:
    """The tokenizer described by a GGUF metadata mapping.

    Raises ``ValueError`` naming the ``tokenizer.ggml.model`` value and listing the supported ones when it is
    missing or not (yet) supported.
    """
    model = metadata.get("tokenizer.ggml.model")
    factory = SUPPORTED_MODELS.get(model)  # type: ignore[arg-type]
    if factory is not None:
        return factory.from_metadata(metadata)
    supported = ", ".join(repr(m) for m in SUPPORTED_MODELS)
    if model is None:
        raise ValueError(f"the file names no tokenizer model (tokenizer.ggml.model is missing); supported: "
                         f"{supported}")
    if model in _KNOWN_UNSUPPORTED:
        raise ValueError(f"tokenizer model {model!r} ({_KNOWN_UNSUPPORTED[model]}, tokenizer.ggml.model) is not "
                         f"supported yet; supported: {supported}")
    raise ValueError(f"unknown tokenizer model {model!r} (tokenizer.ggml.model); supported: {supported}")
