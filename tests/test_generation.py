"""The generation loop on the real model: sampling reproducibility, stop strings, context shift, cancel."""

from __future__ import annotations

import pytest

from emberllm.runtime.model import Model
from emberllm.runtime.stop_strings import StopMatcher


def test_stop_matcher_holds_back_partial_matches():
    m = StopMatcher(["</end>", "STOP"])
    assert m.feed("hello <") == ("hello ", False)
    assert m.feed("/e") == ("", False)
    assert m.feed("nd> tail") == ("", True)
    assert m.matched == "</end>"
    m = StopMatcher(["STOP"])
    assert m.feed("ST") == ("", False)
    assert m.feed("AR") == ("STAR", False)
    assert m.feed("S") == ("", False)
    assert m.flush() == "S"
    assert StopMatcher([]).feed("abc") == ("abc", False)


def test_stop_matcher_earliest_stop_wins():
    m = StopMatcher(["bb", "ab"])
    assert m.feed("xxabb") == ("xx", True)
    assert m.matched == "ab"


@pytest.fixture(scope="module")
def small_ctx_model(gemma_path):
    m = Model(gemma_path, n_ctx=96, n_threads=2)
    yield m
    m.close()


def sample_run(m: Model, seed: int) -> list[int]:
    m.sequence.clear()  # a reused prompt prefix is evaluated in another batch split, which moves the logits slightly
    return [s.token for s in m.generate("Once upon a time", n_predict=24, temperature=1.0, seed=seed)]


def test_seeded_sampling_is_reproducible(small_ctx_model):
    m = small_ctx_model
    assert sample_run(m, 7) == sample_run(m, 7)
    assert sample_run(m, 8) != sample_run(m, 7)


def test_context_shift_generates_three_times_the_context(small_ctx_model):
    m = small_ctx_model
    steps = list(m.generate("Once upon a time", n_predict=3 * m.n_ctx, temperature=0.8, seed=1, ignore_eos=True))
    assert len(steps) == 3 * m.n_ctx
    assert steps[-1].finish_reason == "length"
    assert m.sequence.n_past <= m.n_ctx


def test_without_context_shift_generation_stops_at_the_context(small_ctx_model):
    m = small_ctx_model
    steps = list(m.generate("Once upon a time", n_predict=-1, temperature=0.8, seed=1, ignore_eos=True,
                            context_shift=False))
    assert steps[-1].finish_reason == "context"
    assert m.sequence.n_past == m.n_ctx


def test_stop_string_ends_generation_without_emitting_it(small_ctx_model):
    m = small_ctx_model
    full = "".join(s.text for s in m.generate("The capital of France is", n_predict=20, temperature=0))
    word = full.split()[3]
    steps = list(m.generate("The capital of France is", n_predict=20, temperature=0, stop=[word]))
    text = "".join(s.text for s in steps)
    assert steps[-1].finish_reason == "stop" and steps[-1].stop_word == word
    assert word not in text and full.startswith(text)


def test_cancel_stops_before_the_next_token(small_ctx_model):
    m = small_ctx_model
    seen = []
    steps = list(m.generate("Once upon a time", n_predict=50, temperature=0, cancel=lambda: len(seen) >= 3
                            or seen.append(1) is not None))
    assert steps[-1].finish_reason == "cancelled"
    assert len(steps) == 4


def test_n_probs_reports_top_tokens(small_ctx_model):
    m = small_ctx_model
    step = next(iter(m.generate("The capital of France is", n_predict=1, temperature=0, n_probs=5)))
    probs = step.extra["probs"]
    assert len(probs) == 5 and probs[0][0] == step.token
    assert all(probs[i][1] >= probs[i + 1][1] for i in range(4))


def test_prompt_cache_reuses_a_shared_200_token_prefix(gemma_path):
    m = Model(gemma_path, n_ctx=512, n_threads=2)
    try:
        prefix = " ".join(f"Line {i}: the quick brown fox jumps over the lazy dog." for i in range(20))
        assert len(m.tokenize(prefix)) >= 200
        list(m.generate(prefix + " First question?", n_predict=4, temperature=0))
        first = m.timings
        list(m.generate(prefix + " A different second question?", n_predict=4, temperature=0))
        second = m.timings
        assert second.cached_tokens >= 200
        assert second.prompt_tokens < first.prompt_tokens
        print(f"prompt phase: {first.prompt_ms:.1f} ms for {first.prompt_tokens} tokens, then "
              f"{second.prompt_ms:.1f} ms for {second.prompt_tokens} (reused {second.cached_tokens})")
    finally:
        m.close()


def test_complete_streaming_and_collected_agree(small_ctx_model):
    m = small_ctx_model
    m.sequence.clear()
    streamed = list(m.complete("The capital of France is", stream=True, n_predict=8, temperature=0))
    m.sequence.clear()
    whole = m.complete("The capital of France is", n_predict=8, temperature=0)
    assert whole.text == "".join(s.text for s in streamed)
    assert whole.tokens == [s.token for s in streamed]
    assert whole.finish_reason == "length" and whole.timings.eval_tokens == 7


def test_chat_completion_uses_the_gemma_template(small_ctx_model):
    m = small_ctx_model
    prompt = m.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert prompt == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    reply = m.chat_completion([{"role": "user", "content": "Hi"}], n_predict=8, temperature=0)
    assert reply.finish_reason in ("stop", "length") and reply.tokens
