"""The generation loop on the real model: sampling reproducibility, stop strings, context shift, cancel."""

from __future__ import annotations

import pytest

from emberllm.runtime.decoding import next_piece
from emberllm.runtime.model import Model, Step
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
    # as llama.cpp: the prompt and the generated tokens fill the context; the last one is never evaluated
    assert len(m.tokenize("Once upon a time")) + len(steps) == m.n_ctx
    assert m.sequence.n_past == m.n_ctx - 1


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


LONG_PROMPT = " ".join(f"Note {i}: the {w} crossed the river at dawn and counted {i * 7} stones."
                       for i, w in enumerate(["fox", "heron", "miller", "child", "otter", "priest", "weaver"] * 5))


@pytest.fixture(scope="module")
def batch_256_model(gemma_path):
    m = Model(gemma_path, n_ctx=1024, n_threads=2, n_batch=256)
    yield m
    m.close()


MIN_PROMPT_PIECE = 64  # the x86 kernels' batch-path floor (the float attention from 64 rows)


def prompt_pieces(n: int, n_batch: int, chunk: int | None = None, min_piece: int = MIN_PROMPT_PIECE) -> list[int]:
    """The pieces ``Model.generate`` reads ``n`` prompt tokens in with a fixed ``prompt_chunk`` (``next_piece``)."""
    pieces: list[int] = []
    while sum(pieces) < n:
        pieces.append(next_piece(sum(pieces), n, n_batch, n_batch if chunk is None else chunk, min_piece))
    return pieces


def test_prompt_pieces_cut_each_micro_batch(batch_256_model):
    assert prompt_pieces(1100, 512) == [512, 512, 76]
    assert prompt_pieces(1100, 512, 128) == [128] * 8 + [76]
    assert prompt_pieces(431, 256, 100) == [100, 156, 100, 75]  # 56 and 75 left: 56 joins the piece before it
    assert prompt_pieces(30, 512, 8) == [30]  # never below MIN_PROMPT_PIECE unless the micro-batch is
    assert prompt_pieces(300, 512, 1000) == [300]
    assert prompt_pieces(100, 512, 32, min_piece=4) == [32, 32, 36]  # WebAssembly kernels: the GEMM from 4 rows
    assert prompt_pieces(110, 512, 32, min_piece=4) == [32, 32, 46]  # no piece of 14 left: less than half of 32
    assert prompt_pieces(120, 512, 32, min_piece=4) == [32, 32, 32, 24]
    for n in (1, 63, 64, 65, 200, 511, 512, 513, 1500):
        for chunk in (None, 1, 64, 100, 128, 512, 4096):
            pieces = prompt_pieces(n, 512, chunk)
            assert sum(pieces) == n and max(pieces) <= 512
            assert all(p >= MIN_PROMPT_PIECE for p in pieces[:-1])
    with pytest.raises(ValueError, match="at least 1"):
        next(batch_256_model.generate("Hello", n_predict=1, prompt_chunk=0))


def _read(m: Model, chunk: int | None, n_predict: int = 8, **kw) -> tuple[list[int], bytes, list[dict]]:
    m.sequence.clear()
    steps = list(m.generate(LONG_PROMPT, n_predict=n_predict, temperature=0, ignore_eos=True, prompt_chunk=chunk,
                            prompt_progress=True, **kw))
    logits = bytes(m.last_logits()) if n_predict == 1 else b""
    return [s.token for s in steps if s.token >= 0], logits, [s.extra for s in steps if s.token < 0]


@pytest.mark.parametrize(("chunk", "chunk_ms"), [(64, None), (100, None), (128, None), (64, 30.0), (64, 1e6)])
def test_prompt_read_in_pieces_gives_the_same_logits_and_ids(batch_256_model, chunk, chunk_ms):
    m = batch_256_model
    n = len(m.tokenize(LONG_PROMPT))
    assert n > 300
    whole_ids, _, progress = _read(m, None)
    assert [p["prompt_done"] for p in progress] == [min(k, n) for k in range(256, n + 256, 256)]  # n_batch
    _, whole_logits, _ = _read(m, None, n_predict=1)
    ids, _, progress = _read(m, chunk, prompt_chunk_ms=chunk_ms)
    assert ids == whole_ids
    done = [p["prompt_done"] for p in progress]
    assert done == sorted(done) and done[-1] == n and all(p["prompt_total"] == n for p in progress)
    pieces = [b - a for a, b in zip([0, *done[:-1]], done, strict=True)]
    # 64 on x86: the half-precision attention
    assert pieces[0] == chunk and min(pieces) >= m.backend.batch_path_min_rows()
    if chunk_ms == 1e6:  # sized from the first piece's speed: the rest of each micro-batch at once
        assert pieces[1:] == [256 - chunk] + [min(256, n - k) for k in range(256, n, 256)]
    _, logits, _ = _read(m, chunk, n_predict=1, prompt_chunk_ms=chunk_ms)
    assert logits == whole_logits, f"logits moved with prompt_chunk={chunk}, prompt_chunk_ms={chunk_ms}"


def test_prompt_progress_is_off_by_default_and_prompt_ms_covers_the_read(batch_256_model):
    m = batch_256_model
    m.sequence.clear()
    steps = list(m.generate(LONG_PROMPT, n_predict=3, temperature=0, prompt_chunk=64))
    assert all(s.token >= 0 for s in steps)
    tm = m.timings
    assert tm.prompt_tokens == len(m.tokenize(LONG_PROMPT)) and tm.prompt_ms > 0


def test_cancel_during_the_prompt_read_keeps_the_evaluated_prefix(batch_256_model):
    m = batch_256_model
    tokens = m.tokenize(LONG_PROMPT)
    full_ids, _, _ = _read(m, 64)
    m.sequence.clear()
    seen: list[Step] = []
    steps = []
    for step in m.generate(LONG_PROMPT, n_predict=8, temperature=0, ignore_eos=True, prompt_chunk=64,
                           prompt_progress=True, cancel=lambda: bool(seen)):
        steps.append(step)
        if step.token < 0 and step.finish_reason is None:
            seen.append(step)
    assert [s.extra for s in steps[:-1]] == [{"prompt_done": 64, "prompt_total": len(tokens)}]
    assert steps[-1].finish_reason == "cancelled" and steps[-1].token == -1
    assert m.sequence.tokens == tokens[:64]
    assert m.timings.prompt_tokens == 64
    # the next request reuses what was read, and the rest is computed exactly as in one read
    ids = [s.token for s in m.generate(LONG_PROMPT, n_predict=8, temperature=0, ignore_eos=True)]
    assert m.timings.cached_tokens == 64 and m.timings.prompt_tokens == len(tokens) - 64
    assert ids == full_ids
