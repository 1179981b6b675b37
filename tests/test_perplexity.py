"""Perplexity with llama-perplexity's method against llama.cpp's figure (within 1 %)."""

from __future__ import annotations

import pytest

from emberllm.cli.perplexity import perplexity
from emberllm.runtime.model import Model

from .conftest import PPL_TEXT


@pytest.mark.slow
def test_perplexity_matches_llamacpp(gemma_path, reference):
    ref = reference["perplexity"]
    model = Model(gemma_path, n_ctx=256, n_threads=2)
    try:
        res = perplexity(model, PPL_TEXT.read_text(), 256)
    finally:
        model.close()
    assert res.n_chunks == 19 and res.n_scored == 127 * 19
    assert abs(res.ppl - ref["ppl"]) / ref["ppl"] < 0.01, (res.ppl, ref["ppl"])
    assert abs(res.stderr - ref["ppl_stderr"]) / ref["ppl_stderr"] < 0.05
