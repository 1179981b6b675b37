"""llama.cpp's reference check, run by pytest on emulated aarch64 (tests/test_arm64_emulated.py runs this file).

Its name keeps pytest's collection of tests/ from running it natively.  The checks are tests/test_engine_reference.py's
(tokenization; greedy ids up to the first close step and top-5 probabilities within its band) on the first
``$EMBERLLM_ARM64_REF_STEPS`` steps of each reference prompt (default 16 of 32: emulation decodes at a few tokens per
second), at the kernel level the emulated core picks, which must be ``$EMBERLLM_ARM64_EXPECT_LEVEL`` when set.
"""

from __future__ import annotations

import os
import platform

import pytest

from emberllm.runtime.model import Model
from tests.test_engine_reference import check_greedy_against_reference

STEPS = int(os.environ.get("EMBERLLM_ARM64_REF_STEPS", "16"))


@pytest.fixture(scope="module")
def model(gemma_path):
    m = Model(gemma_path, n_ctx=256, n_threads=2)
    yield m
    m.close()


def test_runs_on_aarch64_at_the_expected_level(model):
    assert platform.machine() == "aarch64"
    expected = os.environ.get("EMBERLLM_ARM64_EXPECT_LEVEL")
    assert expected is None or model.kernel_level_name == expected, model.kernel_level_name


def test_prompt_tokens_match(model, reference):
    for prompt, ref in reference["prompts"].items():
        assert model.tokenize(prompt) == ref["prompt_token_ids"], prompt


def test_greedy_ids_and_top5_match_llamacpp(model, reference):
    first = {"prompts": {prompt: {**ref, "steps": ref["steps"][:STEPS],
                                  "generated_token_ids": ref["generated_token_ids"][:STEPS]}
                         for prompt, ref in reference["prompts"].items()}}
    check_greedy_against_reference(model, first)
