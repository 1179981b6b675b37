"""``emberllm quantize`` against llama.cpp's ``llama-quantize``: the same file, byte for byte.

A tiny random Llama-architecture GGUF (F16 weights, 16 layers so that every layer rule of the mixes has a layer
to act on, grouped-query attention with 4 query heads per KV head, 288-wide FFN rows that no 256-block fits so
the fallbacks are taken) is quantized by both to each mix; the outputs must be identical files.  Skips without
the llama.cpp build (fails under ``CI=true``); build_scripts/build_llamacpp.py builds ``llama-quantize``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from emberllm.convert.quantize import quantize_file  # noqa: E402

from . import llamacpp  # noqa: E402

N_LAYER, N_EMBD, N_FF, N_HEAD, N_HEAD_KV, N_VOCAB = 16, 256, 288, 4, 1, 256
MIXES = ["Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "IQ4_NL", "IQ4_XS"]


def _tiny_llama(path: Path) -> None:
    """A random F16 Llama GGUF (no tokenizer: llama-quantize does not read one)."""
    rng = np.random.default_rng(3)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(N_LAYER)
    w.add_context_length(128)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_vocab_size(N_VOCAB)
    w.add_file_type(1)
    kv = N_EMBD // N_HEAD * N_HEAD_KV

    def mat(name: str, rows: int, cols: int) -> None:
        scale = rng.uniform(0.01, 0.2)
        data = (rng.standard_normal((rows, cols)) * scale).astype(np.float16)
        data[0, :64] = 0  # a partly zero row and an all-zero 32-block
        w.add_tensor(name, data)

    mat("token_embd.weight", N_VOCAB, N_EMBD)
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    for i in range(N_LAYER):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        mat(f"blk.{i}.attn_q.weight", N_EMBD, N_EMBD)
        mat(f"blk.{i}.attn_k.weight", kv, N_EMBD)
        mat(f"blk.{i}.attn_v.weight", kv, N_EMBD)
        mat(f"blk.{i}.attn_output.weight", N_EMBD, N_EMBD)
        mat(f"blk.{i}.ffn_gate.weight", N_FF, N_EMBD)
        mat(f"blk.{i}.ffn_up.weight", N_FF, N_EMBD)
        mat(f"blk.{i}.ffn_down.weight", N_EMBD, N_FF)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def tiny_f16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("quantize") / "tiny-f16.gguf"
    _tiny_llama(path)
    return path


def test_mix_choices(tiny_f16: Path) -> None:
    """The per-tensor types llama.cpp's rules give this model (no llama.cpp needed)."""
    q2k, q3k, q4k, q5k, q6k, q40, q50, q51, iq4nl, iq4xs = 10, 11, 12, 13, 14, 2, 6, 7, 20, 23
    c = quantize_file(tiny_f16, tiny_f16.with_name("q2k.gguf"), "Q2_K").choices
    assert c["token_embd.weight"] == q6k and c["blk.3.attn_q.weight"] == q2k
    assert c["blk.3.attn_v.weight"] == q4k  # 4 query heads per KV head
    assert c["blk.3.attn_output.weight"] == q3k and c["blk.3.ffn_down.weight"] == q40  # Q3_K rows of 288 -> Q4_0
    c = quantize_file(tiny_f16, tiny_f16.with_name("q3km.gguf"), "Q3_K_M").choices
    assert [c[f"blk.{i}.attn_v.weight"] for i in range(4)] == [q5k, q5k, q4k, q4k]
    assert c["blk.0.ffn_down.weight"] == q51 and c["blk.1.ffn_down.weight"] == q50  # Q5_K, Q4_K falling back
    assert c["blk.5.attn_output.weight"] == q4k and c["blk.5.ffn_up.weight"] == q3k
    c = quantize_file(tiny_f16, tiny_f16.with_name("iq4xs.gguf"), "IQ4_XS").choices
    assert c["blk.0.attn_v.weight"] == q5k and c["blk.0.attn_q.weight"] == iq4xs
    assert c["blk.1.ffn_down.weight"] == q51 and c["blk.2.ffn_down.weight"] == iq4nl  # IQ4_XS -> IQ4_NL


@pytest.mark.parametrize("mix", MIXES)
def test_bytes_equal_llama_quantize(tiny_f16: Path, mix: str) -> None:
    binary = llamacpp.build.binary("llama-quantize")
    if not binary.is_file():
        llamacpp.unavailable(f"llama-quantize not found at {binary} (python build_scripts/build_llamacpp.py)")
    ours, theirs = tiny_f16.with_name(f"ours-{mix}.gguf"), tiny_f16.with_name(f"llamacpp-{mix}.gguf")
    quantize_file(tiny_f16, ours, mix)
    proc = subprocess.run([str(binary), str(tiny_f16), str(theirs), mix, "2"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ours.read_bytes() == theirs.read_bytes()
