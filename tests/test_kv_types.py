"""KV cache types (llama.cpp's -ctk/-ctv: f16, q8_0, q4_0, f32): the kernels against a numpy model of llama.cpp's
flash attention over quantized caches, every level against the scalar one, the memory they take, and the Gemma
model against llama.cpp's recorded outputs with the same cache types (tests/references/llamacpp_kv_types.json,
made by build_scripts/record_kv_references.py).

Rule against llama.cpp: with q8_0 the reference rule of test_engine_reference (greedy ids equal up to the first
step whose top-2 gap is below 0.05, top-5 probabilities within 0.12, mean within 0.02: the quantized cache adds
its rounding to llama.cpp's own path variance, whose top-5 probabilities move by up to 0.078).  With q4_0 the
greedy tokens of this model follow every float rounding upstream (emberllm's AVX2, AVX-512 and scalar levels pick
different tokens from the second step on), so q4_0 is held to llama-perplexity's figure with the same cache
types (within 1 %), the comparison that is stable.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import quants

from emberllm.backends.binding import load_kernels
from emberllm.backends.memory import KV_CACHE_TYPES, kv_cache_bytes, kv_cache_type
from emberllm.cli.perplexity import perplexity
from emberllm.runtime.model import Model

from .conftest import PPL_TEXT
from .test_engine_reference import check_greedy_against_reference

K = load_kernels()
LIB = K.lib
LEVELS = K.supported_levels()
KV_REFERENCE = Path(__file__).parent / "references" / "llamacpp_kv_types.json"
TYPE_IDS = {name: t[0] for name, t in KV_CACHE_TYPES.items()}
GGUF_TYPE = {"q8_0": T.Q8_0, "q4_0": T.Q4_0}


@pytest.fixture(params=LEVELS, ids=lambda lv: K.level_name(lv))
def ctx(request):
    c = LIB.emb_ctx_new(1, request.param)
    yield c
    LIB.emb_ctx_free(c)


def f32_buf(arr: np.ndarray):
    """A kernel float buffer holding ``arr``; returns (buffer, numpy view)."""
    b = K.f32(arr.size)
    view = np.frombuffer(b.view, dtype=np.float32)
    view[:] = arr.ravel()
    return b, view


def fwht(x: np.ndarray, n: int) -> np.ndarray:
    """Rows of ``x`` times the orthonormal Sylvester-Hadamard matrix of size ``n``, chunk by chunk (float64)."""
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    shape = x.shape
    return (x.reshape(-1, n).astype(np.float64) @ (h / math.sqrt(n)).T).reshape(shape)


def rot_k(cache_type: str, hd: int) -> int:
    """llama.cpp's K rotation size: the largest power of two >= 64 dividing ``hd`` (quantized K, hd % 64 == 0)."""
    if cache_type not in GGUF_TYPE or hd % 64:
        return 0
    n = 64
    while hd % (2 * n) == 0:
        n *= 2
    return n


def rot_v(cache_type: str, hd: int) -> int:
    """llama.cpp's V rotation size: 64 (quantized V, hd % 64 == 0)."""
    return 64 if cache_type in GGUF_TYPE and hd % 64 == 0 else 0


def stored(cache_type: str, x: np.ndarray) -> np.ndarray:
    """What a cache of ``cache_type`` gives back for rows ``x`` (float64): gguf-py's quantize/dequantize, half."""
    if cache_type in GGUF_TYPE:
        q = quants.quantize(x.astype(np.float32), GGUF_TYPE[cache_type])
        return quants.dequantize(q, GGUF_TYPE[cache_type]).reshape(x.shape).astype(np.float64)
    return x.astype(np.float16).astype(np.float64)


def llamacpp_attention(q, k, v, tk: str, tv: str, pos0: int, window: int, scale: float) -> np.ndarray:
    """llama.cpp's flash attention over caches of ``tk``/``tv``, in float64: K and V rotated then stored in their
    type, the query rotated and converted to K's vec_dot type (q8_0 for a quantized K, half otherwise), softmax,
    the output rotated back with a quantized V."""
    n_tok, n_head, hd = q.shape
    n_kv = k.shape[1]
    rk, rv = rot_k(tk, hd), rot_v(tv, hd)
    kc = stored(tk, fwht(k, rk) if rk else k)
    vc = stored(tv, fwht(v, rv) if rv else v)
    qr = fwht(q, rk) if rk else q.astype(np.float64)
    qq = stored("q8_0" if tk in GGUF_TYPE else "f16", qr)
    out = np.zeros((n_tok, n_head, hd))
    for t in range(n_tok):
        p = pos0 + t
        lo = max(0, p - window + 1) if window > 0 else 0
        for h in range(n_head):
            kh = h // (n_head // n_kv)
            s = kc[lo : p + 1, kh] @ qq[t, h] * scale
            w = np.exp(s - s.max())
            out[t, h] = (w / w.sum()) @ vc[lo : p + 1, kh]
    return fwht(out, rv) if rv else out


def run_attention(ctx, q, k, v, tk: str, tv: str, pos0: int, window: int, scale: float):
    """Store every row of ``k``/``v`` in caches of ``tk``/``tv`` and attend; returns (output, k bytes, v bytes)."""
    n_tok, n_head, hd = q.shape
    n_pos, n_kv, _ = k.shape
    kv_dim = n_kv * hd
    kc = K.u8(LIB.emb_row_size(TYPE_IDS[tk], kv_dim) * n_pos)
    vc = K.u8(LIB.emb_row_size(TYPE_IDS[tv], kv_dim) * n_pos)
    kb, _ = f32_buf(k)
    vb, _ = f32_buf(v)
    qb, _ = f32_buf(q)
    ob, out = f32_buf(np.zeros(q.size, dtype=np.float32))
    assert LIB.emb_kv_store_typed(ctx, kb.ptr, vb.ptr, kc.ptr, vc.ptr, TYPE_IDS[tk], TYPE_IDS[tv], n_pos, n_kv, hd,
                                  kv_dim, kv_dim, 0) == 0
    assert LIB.emb_attention_typed(ctx, qb.ptr, kc.ptr, vc.ptr, TYPE_IDS[tk], TYPE_IDS[tv], ob.ptr, n_tok, n_head,
                                   n_kv, hd, n_head * hd, pos0, window, scale, 0.0) == 0
    return out.reshape(q.shape).copy(), bytes(kc.view), bytes(vc.view)


def random_qkv(seed: int, n_tok: int, pos0: int, n_head: int, n_kv: int, hd: int):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_tok, n_head, hd)).astype(np.float32)
    k = rng.standard_normal((pos0 + n_tok, n_kv, hd)).astype(np.float32)
    v = rng.standard_normal((pos0 + n_tok, n_kv, hd)).astype(np.float32)
    return q, k, v


PAIRS = [("q8_0", "q8_0"), ("q4_0", "q4_0"), ("q8_0", "f16"), ("f16", "q4_0"), ("q4_0", "f32"), ("f32", "q8_0")]


@pytest.mark.parametrize(("tk", "tv"), PAIRS, ids=lambda t: t)
@pytest.mark.parametrize(("n_tok", "hd", "window"), [(1, 256, 0), (3, 64, 0), (70, 128, 20), (2, 96, 0)])
def test_typed_attention_matches_llamacpp_model(ctx, tk, tv, n_tok, hd, window):
    q, k, v = random_qkv(hd + n_tok, n_tok, 30, 4, 2, hd)
    scale = 1 / math.sqrt(hd)
    got, _, _ = run_attention(ctx, q, k, v, tk, tv, 30, window, scale)
    want = llamacpp_attention(q, k, v, tk, tv, 30, window, scale)
    # a value rounded the other way in one quantizer or the other moves the output by a few thousandths; a wrong
    # rotation, layout or accumulation by a tenth or more
    assert np.abs(got - want).max() < 0.02, np.abs(got - want).max()
    assert np.abs(got - want).mean() < 1e-3


@pytest.mark.parametrize(("tk", "tv"), [("q8_0", "q4_0"), ("q4_0", "q8_0")])
def test_stored_rows_are_rotated_then_quantized_like_gguf(ctx, tk, tv):
    q, k, v = random_qkv(11, 1, 5, 2, 1, 256)
    _, kbytes, vbytes = run_attention(ctx, q, k, v, tk, tv, 5, 0, 1 / 16)
    for raw, x, t, n in ((kbytes, k, tk, 256), (vbytes, v, tv, 64)):
        got = quants.dequantize(np.frombuffer(raw, dtype=np.uint8).reshape(len(x), -1), GGUF_TYPE[t])
        want = stored(t, fwht(x, n)).reshape(len(x), -1)
        # the rotation runs in float32 in the kernels: a value on a rounding edge may land one step away
        step = np.abs(want).max() / (127 if t == "q8_0" else 7)
        assert np.abs(got - want).max() <= step * 1.01
        assert np.mean(got != want.astype(np.float32)) < 0.01


@pytest.mark.parametrize("n_tok", [1, 70])
def test_f32_cache_reads_as_f16(ctx, n_tok):
    """llama.cpp casts an F32 cache to F16 for flash attention: the same outputs as an F16 cache, bit for bit."""
    q, k, v = random_qkv(3, n_tok, 9, 4, 1, 64)
    f32, kbytes, _ = run_attention(ctx, q, k, v, "f32", "f32", 9, 0, 0.125)
    f16, _, _ = run_attention(ctx, q, k, v, "f16", "f16", 9, 0, 0.125)
    np.testing.assert_array_equal(f32, f16)
    np.testing.assert_array_equal(np.frombuffer(kbytes, dtype=np.float32).reshape(k.shape), k)


@pytest.mark.parametrize(("tk", "tv"), PAIRS, ids=lambda t: t)
def test_levels_agree_with_scalar(tk, tv):
    q, k, v = random_qkv(21, 3, 40, 4, 1, 256)
    outs = []
    for level in LEVELS:
        c = LIB.emb_ctx_new(2, level)
        try:
            outs.append(run_attention(c, q, k, v, tk, tv, 40, 0, 1 / 16))
        finally:
            LIB.emb_ctx_free(c)
    for level, (out, kb, vb) in zip(LEVELS[1:], outs[1:], strict=True):
        assert kb == outs[0][1] and vb == outs[0][2], K.level_name(level)  # the quantizers are exact twins
        # dot products differ from the scalar ones in summation order only (a half V accumulator may round the
        # other way: one half step)
        np.testing.assert_allclose(out, outs[0][0], rtol=0, atol=5e-4, err_msg=K.level_name(level))
        assert np.abs(out - outs[0][0]).mean() < 2e-6, K.level_name(level)


@pytest.mark.parametrize("tk", ["q8_0", "q4_0", "f32", "f16"])
def test_kv_shift_re_ropes_quantized_keys(ctx, tk):
    """llama.cpp's context shift of a quantized K: dequantize, undo the rotation, rope, rotate, quantize."""
    rng = np.random.default_rng(8)
    n_past, n_keep, n_discard, n_kv, hd = 12, 2, 4, 1, 256
    raw = rng.standard_normal((n_past, n_kv, hd)).astype(np.float32)

    def roped(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
        b, view = f32_buf(x)
        pb = K.i32(len(pos))
        np.frombuffer(pb.view, dtype=np.int32)[:] = pos
        LIB.emb_rope(ctx, b.ptr, len(pos), n_kv, hd, hd, pb.ptr, 10000.0, 1.0, 2)
        return view.reshape(x.shape).copy()

    keys = roped(raw, np.arange(n_past))
    kv_dim, tid = n_kv * hd, TYPE_IDS[tk]
    kc, vc = K.u8(LIB.emb_row_size(tid, kv_dim) * n_past), K.u8(LIB.emb_row_size(tid, kv_dim) * n_past)
    kb, _ = f32_buf(keys)
    vb, _ = f32_buf(raw)
    assert LIB.emb_kv_store_typed(ctx, kb.ptr, vb.ptr, kc.ptr, vc.ptr, tid, tid, n_past, n_kv, hd, kv_dim, kv_dim,
                                  0) == 0
    v_before = bytes(vc.view)
    assert LIB.emb_kv_shift_typed(ctx, kc.ptr, vc.ptr, tid, tid, n_past, n_keep, n_discard, n_kv, hd, hd, 10000.0,
                                  1.0, 2, K.null) == 0
    keep = np.r_[0:n_keep, n_keep + n_discard : n_past]
    want = roped(raw[keep], np.arange(len(keep)))
    row = LIB.emb_row_size(tid, kv_dim)
    out = K.f32(kv_dim)
    got = np.zeros((len(keep), kv_dim))
    for i in range(len(keep)):
        assert LIB.emb_dequantize_row(0, tid, K.at(kc, i * row), out.ptr, kv_dim) == 0
        got[i] = np.frombuffer(out.view, dtype=np.float32)
    rk = rot_k(tk, hd)
    if rk:
        got = fwht(got, rk)
    tol = {"f32": 1e-5, "f16": 2e-3, "q8_0": 0.05, "q4_0": 0.6}[tk]  # two roundings to the cache type
    assert np.abs(got - want.reshape(len(keep), -1)).max() < tol
    # values move down untouched
    assert bytes(vc.view)[: n_keep * row] == v_before[: n_keep * row]
    assert bytes(vc.view)[n_keep * row : len(keep) * row] == v_before[(n_keep + n_discard) * row : n_past * row]


def test_invalid_cache_type_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid types are f32, f16, q8_0, q4_0"):
        kv_cache_type("q5_1", "K")
    assert kv_cache_type("Q8_0") == "q8_0"
    assert not LIB.emb_kv_type_supported(int(T.Q5_1)) and LIB.emb_kv_type_supported(int(T.Q4_0))


def test_memory_per_token_shrinks_at_4096(gemma_path):
    """The Gemma model at -c 4096: the cache buffers the allocator hands out, per type (18 layers x 256 K and V
    values per position): f16 2 bytes a value, q8_0 34 bytes a block of 32, q4_0 18."""
    sizes = {}
    for t in ("f16", "q8_0", "q4_0", "f32"):
        model = Model(gemma_path, n_ctx=4096, n_threads=1, warmup=False, cache_type_k=t, cache_type_v=t)
        try:
            seq = model.new_sequence()
            assert seq.host_nbytes == seq.nbytes == kv_cache_bytes(18, 4096, 256, 1, t, t)
            sizes[t] = seq.host_nbytes / 4096
        finally:
            model.close()
    assert sizes["f16"] == 18 * 2 * 256 * 2
    assert sizes["q8_0"] == sizes["f16"] * 34 / 64
    assert sizes["q4_0"] == sizes["f16"] * 18 / 64
    assert sizes["f32"] == sizes["f16"] * 2
    mixed = kv_cache_bytes(18, 4096, 256, 1, "q8_0", "f16")
    assert mixed == (sizes["q8_0"] + sizes["f16"]) / 2 * 4096


@pytest.fixture(scope="module")
def kv_reference() -> dict:
    """llama.cpp's outputs with quantized caches (recorded into the repo)."""
    return json.loads(KV_REFERENCE.read_text())


def test_q8_0_greedy_ids_and_top5_match_llamacpp(gemma_path, kv_reference):
    rec = kv_reference["types"]["q8_0"]
    model = Model(gemma_path, n_ctx=256, n_threads=2, cache_type_k="q8_0", cache_type_v="q8_0")
    try:
        for prompt, ref in rec["prompts"].items():
            assert model.tokenize(prompt) == ref["prompt_token_ids"]
        # the reference rule; llama.cpp's q8_0 cache moves its own top-5 by up to ~0.1, hence the wider band
        check_greedy_against_reference(model, rec, max_tol=0.12, mean_tol=0.02)
    finally:
        model.close()


@pytest.mark.slow
@pytest.mark.parametrize("cache_type", ["q8_0", "q4_0"])
def test_perplexity_matches_llamacpp_with_quantized_cache(gemma_path, kv_reference, cache_type):
    ref = kv_reference["types"][cache_type]["perplexity"]
    model = Model(gemma_path, n_ctx=256, n_threads=2, cache_type_k=cache_type, cache_type_v=cache_type)
    try:
        res = perplexity(model, PPL_TEXT.read_text(), 256)
    finally:
        model.close()
    assert res.n_chunks == len(ref["chunk_running_ppl"])
    assert abs(res.ppl - ref["ppl"]) / ref["ppl"] < 0.01, (res.ppl, ref["ppl"])


@pytest.mark.parametrize("cache_type", ["q8_0", "q4_0"])
def test_context_shift_with_quantized_cache(gemma_path, cache_type):
    """A generation three times the context runs through llama.cpp's context shift with a quantized K (re-roped
    through dequantize/rotate/quantize) and stays on the text it shifted from."""
    model = Model(gemma_path, n_ctx=64, n_threads=2, cache_type_k=cache_type, cache_type_v=cache_type)
    try:
        steps = list(model.generate("1, 2, 3, 4, 5,", n_predict=160, temperature=0, n_keep=4))
    finally:
        model.close()
    assert len(steps) == 160 and steps[-1].finish_reason == "length"
    text = "".join(s.text for s in steps)
    assert text.count(",") > 40  # still counting after several shifts


def test_serve_takes_cache_types_as_llama_server(monkeypatch, tmp_path):
    """``serve -ctk/-ctv`` and ``LLAMA_ARG_CACHE_TYPE_K/V`` reach the server config; a quantized V with ``-fa off``
    is refused as llama-server refuses it."""
    import argparse

    from emberllm.edge_server.cli import add_parser, config_from_args

    def parse(*argv: str) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        add_parser(parser.add_subparsers())
        return parser.parse_args(["serve", *argv])

    model = tmp_path / "m.gguf"
    model.write_bytes(b"")
    cfg = config_from_args(parse("-m", str(model), "-ctk", "q8_0", "--cache-type-v", "q4_0", "-fa", "on"))
    assert (cfg.cache_type_k, cfg.cache_type_v) == ("q8_0", "q4_0")
    with pytest.raises(ValueError, match="requires flash attention"):
        config_from_args(parse("-m", str(model), "-ctv", "q8_0", "-fa", "off"))
    monkeypatch.setenv("LLAMA_ARG_CACHE_TYPE_K", "q4_0")
    cfg = config_from_args(parse("-m", str(model)))
    assert (cfg.cache_type_k, cfg.cache_type_v) == ("q4_0", "f16")
