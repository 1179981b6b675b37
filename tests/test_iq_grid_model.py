"""Models whose matrices are grid I-quants (IQ2_XXS/XS/S, IQ3_XXS/S, IQ1_S/M) load and run through the generic
weight path; ``emberllm quantize`` to an I-quant mix says it needs an importance matrix.

A tiny Llama is written twice: its matrices as random valid blocks of the seven types (one type per matrix, the
token embeddings and the output too), and as F32 holding gguf-py's dequantization of the same blocks.  Their
logits differ only by the Q8_K rounding of the activations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import GGUFWriter  # noqa: E402

from emberllm.runtime.model import Model  # noqa: E402

from .test_quants import IQ_GRID, random_weights  # noqa: E402

N_EMBD, N_FF, N_VOCAB, N_HEAD, N_KV = 256, 512, 32, 4, 2
# (tensor name, (rows, columns), type): every grid I-quant at least once
MATRICES = [
    ("token_embd.weight", (N_VOCAB, N_EMBD), T.IQ3_S),
    ("output.weight", (N_VOCAB, N_EMBD), T.IQ2_XXS),
    ("blk.0.attn_q.weight", (N_EMBD, N_EMBD), T.IQ2_XS),
    ("blk.0.attn_k.weight", (N_EMBD // 2, N_EMBD), T.IQ2_S),
    ("blk.0.attn_v.weight", (N_EMBD // 2, N_EMBD), T.IQ3_XXS),
    ("blk.0.attn_output.weight", (N_EMBD, N_EMBD), T.IQ1_S),
    ("blk.0.ffn_gate.weight", (N_FF, N_EMBD), T.IQ1_M),
    ("blk.0.ffn_up.weight", (N_FF, N_EMBD), T.IQ2_XXS),
    ("blk.0.ffn_down.weight", (N_EMBD, N_FF), T.IQ3_S),
]


def _write(path: Path, quantized: bool) -> None:
    """The tiny Llama: matrices as grid I-quant blocks, or as F32 holding their dequantized values."""
    rng = np.random.default_rng(7)
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("llama")
    tokens = ["<unk>", "<s>", "</s>"] + [chr(ord("a") + i) for i in range(N_VOCAB - 3)]
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 3 + [-float(i) for i in range(N_VOCAB - 3)])
    w.add_token_types([2, 3, 3] + [1] * (N_VOCAB - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    for name in ("output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"):
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(N_EMBD)).astype(np.float32))
    for name, (rows, cols), qtype in MATRICES:
        raw = np.frombuffer(random_weights(qtype, rows * cols, rng), dtype=np.uint8).reshape(rows, -1)
        if quantized:
            w.add_tensor(name, raw, raw_dtype=qtype)
        else:
            vals = np.asarray(gguf.quants.dequantize(raw, qtype), dtype=np.float32).reshape(rows, cols)
            w.add_tensor(name, vals)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _logits(path: Path, ids: list[int]) -> np.ndarray:
    """Last-position logits after the prompt ``ids``."""
    model = Model(path, n_ctx=64, n_threads=1, warmup=False)
    try:
        model.eval_prompt(ids)
        return np.array(model.last_logits(), dtype=np.float64)
    finally:
        model.close()


def test_every_grid_iquant_is_used() -> None:
    assert {t for _, _, t in MATRICES} == set(IQ_GRID)


@pytest.mark.parametrize("n_prompt", [1, 6], ids=["decode", "batch"])
def test_grid_iquant_model_matches_its_f32_twin(tmp_path: Path, n_prompt: int) -> None:
    _write(tmp_path / "iq.gguf", quantized=True)
    _write(tmp_path / "f32.gguf", quantized=False)
    ids = [1, 5, 9, 3, 17, 30][:n_prompt]
    ours, ref = _logits(tmp_path / "iq.gguf", ids), _logits(tmp_path / "f32.gguf", ids)
    cos = float(ours @ ref / (np.linalg.norm(ours) * np.linalg.norm(ref)))
    assert cos > 0.999, cos
    assert int(np.argmax(ours)) == int(np.argmax(ref))


def test_quantize_to_an_iquant_needs_an_importance_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from emberllm.cli import main
    from emberllm.convert.quantize import FTYPES

    for mix in ("iq2_xxs", "IQ3_S", "IQ1_M", "IQ3_M"):
        assert main(["quantize", str(tmp_path / "missing.gguf"), str(tmp_path / "out.gguf"), mix]) == 1
        err = capsys.readouterr().err
        assert mix.upper() in err and "importance matrix" in err and "llama-quantize" in err, err
        assert all(t in err for t in FTYPES), err
    assert not (tmp_path / "out.gguf").exists()
