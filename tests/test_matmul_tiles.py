"""Small batches (decoding, batched decoding) through the row-by-row matmul: tile kernels (2 rows x 1..4 tokens) must
give bit-identical results to one vec_dot per (row, token), at every kernel level, for the types that have tiles and
for those that fall back, with partial row pairs and token groups."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from .test_ops import LIB, K, buf, random_weights
from .test_ops import ctx as ctx  # noqa: F401 - the per-level kernel context fixture

# n_in values: multiples of 256 (K-quant tiles), of 128 but not 256, and of 32 only (no Q8_0/Q5_0 tile)
CASES = [(T.Q8_0, 640), (T.Q8_0, 96), (T.Q5_0, 640), (T.Q5_0, 1024), (T.Q4_K, 1024), (T.Q6_K, 2048),
         (T.Q4_K, 256), (T.Q4_0, 512), (T.Q6_K, 512), (T.IQ4_NL, 96), (T.IQ4_XS, 512), (T.TQ2_0, 256)]


@pytest.mark.parametrize(("qtype", "n_in"), CASES, ids=lambda v: getattr(v, "name", str(v)))
def test_small_batches_equal_one_token_at_a_time(ctx, qtype, n_in):  # noqa: F811
    rng = np.random.default_rng(int(qtype) * 7 + n_in)
    n_out = 37  # odd: a row left over after the pairs, and more than one row block
    raw = random_weights(qtype, n_out, n_in, rng)
    wbuf = bytearray(raw.tobytes())
    w_ptr = K.bytes_ptr(wbuf)
    n_max = 9
    x = rng.standard_normal((n_max, n_in)).astype(np.float32)
    xb, _ = buf(x)
    yb, y = buf(np.zeros((n_max, n_out), dtype=np.float32))
    # the reference: one emb_vec_dot per (row, token) at the context's level, on activations quantized as the
    # matmul does (to the type's vec_dot type)
    level = LIB.emb_ctx_level(ctx)
    vdt = LIB.emb_type_vec_dot_type(int(qtype))
    row_bytes = LIB.emb_row_size(int(qtype), n_in)
    xq_bytes = LIB.emb_row_size(vdt, n_in)
    single = np.zeros((n_max, n_out), dtype=np.float32)
    out = K.f32(1)
    for t in range(n_max):
        xq = bytearray(xq_bytes)
        assert LIB.emb_quantize_row(level, vdt, K.at(xb, t * n_in), K.bytes_ptr(xq), n_in) == 0
        for r in range(n_out):
            assert LIB.emb_vec_dot(level, int(qtype), n_in, K.bytes_ptr(wbuf, r * row_bytes), K.bytes_ptr(xq),
                                   out.ptr) == 0
            single[t, r] = out.view[0]
    old = LIB.emb_ctx_set_gemm_min_tokens(ctx, 1000)  # keep every batch on the row-by-row kernels
    try:
        for n_tok in range(1, n_max + 1):
            assert LIB.emb_matmul(ctx, w_ptr, int(qtype), n_out, n_in, xb.ptr, n_tok, yb.ptr) == 0
            np.testing.assert_array_equal(y[: n_tok * n_out].reshape(n_tok, n_out), single[:n_tok],
                                          err_msg=f"{n_tok} tokens")
    finally:
        LIB.emb_ctx_set_gemm_min_tokens(ctx, old)
    assert LIB.emb_ctx_set_gemm_min_tokens(ctx, old) == old
