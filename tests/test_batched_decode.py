"""Continuous batching in the engine: several sequences in one forward pass give each sequence's own logits."""

from __future__ import annotations

import numpy as np
import pytest

from emberllm.runtime.model import Model


@pytest.fixture(scope="module")
def model(gemma_path):
    m = Model(gemma_path, n_ctx=128, n_threads=2)
    yield m
    m.close()


def softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    p = np.exp(x - x.max())
    return p / p.sum()


def last_logits_alone(model: Model, kv, tokens: list[int]) -> np.ndarray:
    return np.frombuffer(model.decode([(kv, tokens)])[0], dtype=np.float32).copy()


def batch_logits(model: Model, batch) -> dict[int, np.ndarray]:
    rows = model.decode(batch)
    return {i: np.frombuffer(rows[i], dtype=np.float32).copy() for i in range(len(rows))}


def test_one_token_per_sequence_matches_single_decoding(model):
    prompts = ["The capital of France is", "def fibonacci(n):", "Once upon a time", "1, 2, 3, 4,",
               "The weather today", "import numpy as"]
    caches_a = [model.new_sequence(128) for _ in prompts]
    caches_b = [model.new_sequence(128) for _ in prompts]
    for p, ka, kb in zip(prompts, caches_a, caches_b, strict=True):
        ids = model.tokenize(p)
        model.decode([(ka, ids)])
        model.decode([(kb, ids)])
    nxt = [506, 236769, 236764, 236743, 563, 5920]
    got = batch_logits(model, [(kv, [t]) for kv, t in zip(caches_a, nxt, strict=True)])
    for i, (kv, t) in enumerate(zip(caches_b, nxt, strict=True)):
        alone = last_logits_alone(model, kv, [t])
        # one token per sequence keeps the per-row kernels of single decoding, even for 4+ sequences:
        # the results are identical
        np.testing.assert_array_equal(got[i], alone)
        assert caches_a[i].tokens == kv.tokens


def test_mixed_prompt_and_decode_rows(model):
    a, b = model.new_sequence(128), model.new_sequence(128)
    first = model.tokenize("The capital of France is")
    model.decode([(a, first)])
    second = model.tokenize("Once upon a time, there was a little")
    got = batch_logits(model, [(a, [506]), (b, second)])
    ref_a = model.new_sequence(128)
    model.decode([(ref_a, first)])
    alone_a = last_logits_alone(model, ref_a, [506])
    alone_b = last_logits_alone(model, model.new_sequence(128), second)
    # 11 rows go through the batched GEMM, another summation order (int8 activation rounding amplifies it on
    # unlikely tokens): same argmax and probabilities within 0.05
    for mine, ref in ((got[0], alone_a), (got[1], alone_b)):
        assert int(np.argmax(mine)) == int(np.argmax(ref))
        assert np.abs(softmax(mine) - softmax(ref)).max() < 0.05
    assert b.tokens == second and a.tokens == first + [506]


def test_identical_sequences_in_one_batch_get_identical_logits(model):
    first = model.tokenize("The capital of France is")
    caches = [model.new_sequence(128) for _ in range(5)]
    for kv in caches:
        model.decode([(kv, first)])
    got = batch_logits(model, [(kv, [506]) for kv in caches])
    for i in range(1, 5):  # 5 rows: a full 4-row tile and a partial one
        np.testing.assert_array_equal(got[0], got[i])


def test_decode_asks_for_any_rows_of_several_sequences(model):
    """Rows asked per entry come back in batch order and equal what each sequence gets decoded alone."""
    first, second = model.tokenize("The capital of France is"), model.tokenize("Once upon a time")
    a, b = model.new_sequence(128), model.new_sequence(128)
    rows = model.decode([(a, first, [0, len(first) - 1])])
    assert len(rows) == 2
    mid = np.frombuffer(rows[0], dtype=np.float32).copy()
    same_pass = batch_logits(model, [(model.new_sequence(128), first, [0])])  # the same micro-batch, row 0 only
    np.testing.assert_array_equal(mid, same_pass[0])
    got = batch_logits(model, [(a, [506], None), (b, second, [1, len(second) - 1])])
    assert len(got) == 3 and a.n_past == len(first) + 1 and b.n_past == len(second)
    ref_b = model.new_sequence(128)
    ref = batch_logits(model, [(ref_b, second, [1, len(second) - 1])])
    for mine, theirs in ((got[1], ref[0]), (got[2], ref[1])):
        assert int(np.argmax(mine)) == int(np.argmax(theirs))
        assert np.abs(softmax(mine) - softmax(theirs)).max() < 0.05


def test_logit_rows_live_until_the_next_decode(model):
    seq = model.new_sequence(128)
    ids = model.tokenize("1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20")
    assert len(ids) > 40
    rows = model.decode([(seq, ids, range(len(ids)))])  # more rows than one projection group of 16
    assert len(rows) == len(ids)
    firsts = [np.frombuffer(rows[i], dtype=np.float32).copy() for i in range(len(ids))]
    # reading rows out of order recomputes their group: the values do not change
    np.testing.assert_array_equal(np.frombuffer(rows[3], dtype=np.float32), firsts[3])
    np.testing.assert_array_equal(np.frombuffer(rows[-1], dtype=np.float32), firsts[-1])
    alone = model.new_sequence(128)
    model.decode([(alone, ids[:5])])
    with pytest.raises(RuntimeError, match="overwritten by a later decode"):
        rows[0]
    with pytest.raises(RuntimeError, match="overwritten"):
        rows.handle(0)
    with pytest.raises(IndexError):
        model.decode([(alone, [506])])[1]


def test_decode_refuses_what_does_not_fit(model):
    seq = model.new_sequence(16)
    with pytest.raises(ValueError, match="no tokens"):
        model.decode([(seq, [])])
    with pytest.raises(RuntimeError, match="do not fit in the context of 16"):
        model.decode([(seq, list(range(2, 20)))])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.decode([(seq, [model.hp.n_vocab])])
    assert seq.n_past == 0
