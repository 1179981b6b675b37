"""Context sizes as llama.cpp takes them: 0 means the model's trained context, a larger one is capped at it with a
warning on the ``emberllm`` logger (what a KV cache of that size needs is ``backends/memory.py``'s business)."""

from __future__ import annotations

import logging

#: The smallest context a sequence may have.
MIN_CTX = 8

log = logging.getLogger("emberllm")


def resolve_context(requested: int, n_ctx_train: int, n_seq: int = 1) -> int:
    """Positions per sequence for a context of ``requested`` tokens shared by ``n_seq`` sequences.

    ``0`` means the model's trained context (as llama.cpp's ``-c 0``); a share larger than the trained context
    is capped at it with a warning; ``ValueError`` for a negative size or a share under ``MIN_CTX``.
    """
    if requested < 0:
        raise ValueError(f"context size must be 0 (the model's trained context) or at least {MIN_CTX}, got {requested}")
    total = requested if requested > 0 else n_ctx_train
    if total <= 0:
        raise ValueError("the model does not state its trained context (context_length): give a context size")
    per_seq = total // max(n_seq, 1)
    if per_seq < MIN_CTX:
        share = f" ({per_seq} per sequence for {n_seq} sequences)" if n_seq > 1 else ""
        raise ValueError(f"context size {total}{share} is too small: each sequence needs at least {MIN_CTX} tokens "
                         "(0 = the model's trained context)")
    if 0 < n_ctx_train < per_seq:
        log.warning("context size %d%s is larger than the model's trained context (%d): capped at %d", per_seq,
                    " per sequence" if n_seq > 1 else "", n_ctx_train, n_ctx_train)
        per_seq = n_ctx_train
    return per_seq
