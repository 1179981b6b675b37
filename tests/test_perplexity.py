"""Perplexity with llama-perplexity's method against llama.cpp's figure (within 1 %)."""

from __future__ import annotations

import pytest

from emberllm.cli.perplexity import perplexity
from emberllm.engine import Model

from .conftest import PPL_TEXT


@pytest.mark.slow
def test_perplexity_matches_llamacpp(gemma_path, reference):
    ref = reference["perplexity"]
    model = Model(gemma_path, n_ctx=256, n_threads=2)
    try:
        n_chunks = 6
        res = perplexity(model, PPL_TEXT.read_text(), 256, max_chunks=n_chunks)
    finally:
        model.close()
    expected = ref["chunk_running_ppl"][n_chunks - 1]
    assert res.n_scored == 127 * n_chunks
    assert abs(res.ppl - expected) / expected < 0.01, (res.ppl, expected)
