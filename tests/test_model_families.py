"""Llama, Qwen2, Qwen3, Phi-3 and Gemma 3 against Hugging Face transformers, through ``emberllm convert``.

Each test builds a tiny random model with transformers (CPU torch), saves it, converts it to GGUF and
compares our last-position logits for a 16-token prompt with transformers' own: F32 within 1e-3, Q8_0 with
the same argmax and cosine >= 0.999.  Q/K projections are scaled up so that attention is peaked: then a
wrong RoPE layout (no Llama Q/K permutation, missing Llama 3 frequency factors) moves the logits by > 0.05
instead of staying within the tolerance.

The tokenizer metadata is a stand-in (a byte-level SPM vocabulary): these tests are about the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from emberllm.convert import hf as convert_hf  # noqa: E402
from emberllm.runtime.model import Model  # noqa: E402

from . import llamacpp  # noqa: E402

VOCAB = 256
N_PROMPT = 16
QK_GAIN = 8.0

LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}

_ROPE_RNG = np.random.default_rng(5)
SHORT_FACTORS = [round(float(f), 3) for f in _ROPE_RNG.uniform(1.0, 2.0, 8)]
LONG_FACTORS = [round(float(f), 3) for f in _ROPE_RNG.uniform(2.0, 8.0, 8)]


def longrope(original: int) -> dict[str, Any]:
    """Phi-3 long-rope settings for head_dim 16 (8 factors each)."""
    return {"rope_type": "longrope", "short_factor": SHORT_FACTORS, "long_factor": LONG_FACTORS,
            "original_max_position_embeddings": original}


#: case -> (config class, model class, extra config)
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "llama3-rope-tied": ("LlamaConfig", "LlamaForCausalLM", {"rope_scaling": LLAMA3_ROPE, "tie_word_embeddings": True}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 32}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),
    # 16 prompt tokens <= 64 original positions (and our context of 64): short factors in both
    "phi3-longrope-short": ("Phi3Config", "Phi3ForCausalLM",
                            {"max_position_embeddings": 128, "original_max_position_embeddings": 64,
                             "rope_scaling": longrope(64)}),
    # 16 > 8 original positions (and a context of 64 > 8): long factors, attention factor sqrt(1 + ln 8 / ln 8)
    "phi3-longrope-long": ("Phi3Config", "Phi3ForCausalLM",
                           {"max_position_embeddings": 64, "original_max_position_embeddings": 8,
                            "rope_scaling": longrope(8), "qk_gain": 4.0}),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM",
               {"head_dim": 32, "query_pre_attn_scalar": 32, "sliding_window": 512}),
}
EXPECTED_ARCH = {"llama": "llama", "llama3-rope-tied": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "phi3": "phi3",
                 "phi3-longrope-short": "phi3", "phi3-longrope-long": "phi3", "gemma3": "gemma3"}


def stand_in_vocab(_hf_dir: Path) -> dict[str, Any]:
    """A byte-level SPM vocabulary of ``VOCAB`` tokens (ids given directly in these tests)."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(VOCAB - 3)]
    return {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": [0.0] * VOCAB,
        "tokenizer.ggml.token_type": [2, 3, 3] + [6] * (VOCAB - 3),
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
    }


def build_model(case: str, out_dir: Path, hidden: int = 64, ffn: int = 128, layers: int = 2,
                qk_gain: float = QK_GAIN, vocab: int = VOCAB) -> Any:
    """A seeded random transformers model, saved to ``out_dir``; returns the model."""
    cfg_name, model_name, extra = CASES[case]
    extra = dict(extra)
    qk_gain = extra.pop("qk_gain", qk_gain)
    torch.manual_seed(0)
    cfg = getattr(transformers, cfg_name)(
        hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=vocab, bos_token_id=1, eos_token_id=2, pad_token_id=0, **extra)
    model = getattr(transformers, model_name)(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.1)  # norms and biases away from their trivial init
            if "bias" in name:
                p.normal_(0.0, 0.1)
            if any(k in name for k in ("q_proj.weight", "k_proj.weight", "qkv_proj.weight")):
                p.mul_(qk_gain)
            if name.endswith(("q_norm.weight", "k_norm.weight")) and case == "qwen3":
                p.add_(1.0)  # Gemma's (1 + w) norms already start at gain 1; its GELU table and F16 cache need room
    model.save_pretrained(out_dir)
    return model


def prompt_ids(seed: int = 1) -> list[int]:
    """16 token ids, none of them special."""
    return [int(t) for t in np.random.default_rng(seed).integers(3, VOCAB, N_PROMPT)]


def clear_prompt(model: Any, min_gap: float = 0.02) -> tuple[list[int], np.ndarray]:
    """The first seeded prompt whose transformers top-2 logit gap is at least ``min_gap`` (so that "same argmax"
    tests the model, not float noise), with its logits."""
    for seed in range(1, 50):
        ids = prompt_ids(seed)
        ref = hf_logits(model, ids)
        top2 = np.sort(ref)[-2:]
        if top2[1] - top2[0] >= min_gap:
            return ids, ref
    raise AssertionError("no prompt with a clear top token")


def hf_logits(model: Any, ids: list[int]) -> np.ndarray:
    """Transformers' last-position logits."""
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].double().numpy()


def our_logits(path: Path, ids: list[int]) -> np.ndarray:
    """Our last-position logits for the same ids."""
    model = Model(path, n_ctx=64, n_threads=1, warmup=False)
    try:
        model.eval_prompt(ids)
        return np.array(model.last_logits(), dtype=np.float64)
    finally:
        model.close()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity."""
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def families(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[int], np.ndarray]]:
    """case -> (HF directory, prompt ids, transformers logits) for every case."""
    out = {}
    for case in CASES:
        d = tmp_path_factory.mktemp(case)
        model = build_model(case, d)
        out[case] = (d, *clear_prompt(model))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_f32_logits_match_transformers(families: dict[str, tuple[Path, list[int], np.ndarray]], case: str) -> None:
    hf_dir, ids, ref = families[case]
    result = convert_hf.convert(hf_dir, hf_dir / "f32.gguf", "f32", vocab=stand_in_vocab)
    assert result.arch == EXPECTED_ARCH[case]
    ours = our_logits(hf_dir / "f32.gguf", ids)
    assert np.abs(ref).max() > 0.3  # not a degenerate model
    assert np.abs(ours - ref).max() <= 1e-3


@pytest.mark.parametrize("case", list(CASES))
def test_q8_0_logits_match_transformers(families: dict[str, tuple[Path, list[int], np.ndarray]], case: str) -> None:
    hf_dir, ids, ref = families[case]
    convert_hf.convert(hf_dir, hf_dir / "q8_0.gguf", "q8_0", vocab=stand_in_vocab)
    ours = our_logits(hf_dir / "q8_0.gguf", ids)
    assert int(ours.argmax()) == int(ref.argmax())
    assert cosine(ours, ref) >= 0.999


def test_rope_layout_errors_are_detected(families: dict[str, tuple[Path, list[int], np.ndarray]],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: without the Q/K permutation or the Llama 3 factors the logits are far off."""
    hf_dir, ids, ref = families["llama"]
    monkeypatch.setattr(convert_hf, "_permute_rows", lambda w, n_head: w)
    convert_hf.convert(hf_dir, hf_dir / "unpermuted.gguf", "f32", vocab=stand_in_vocab)
    assert np.abs(our_logits(hf_dir / "unpermuted.gguf", ids) - ref).max() > 0.05
    monkeypatch.undo()
    hf_dir, ids, ref = families["llama3-rope-tied"]
    monkeypatch.setattr(convert_hf, "llama3_rope_factors", lambda rope, d: np.ones(d // 2, np.float32))
    convert_hf.convert(hf_dir, hf_dir / "unscaled.gguf", "f32", vocab=stand_in_vocab)
    assert np.abs(our_logits(hf_dir / "unscaled.gguf", ids) - ref).max() > 0.05


def _gguf_tensors(path: Path) -> dict[str, Any]:
    import gguf

    return {t.name: t for t in gguf.GGUFReader(str(path)).tensors}


def _gguf_fields(path: Path) -> dict[str, Any]:
    import gguf

    return {k: f.contents() for k, f in gguf.GGUFReader(str(path)).fields.items()}


def test_tensor_names_and_metadata_follow_llama_cpp(families: dict[str, tuple[Path, list[int], np.ndarray]]) -> None:
    for case, must, must_not in (
        ("phi3", ["blk.0.attn_qkv.weight", "blk.1.ffn_up.weight", "output.weight"], ["blk.0.ffn_gate.weight"]),
        ("qwen2", ["blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias"], []),
        ("qwen3", ["blk.0.attn_q_norm.weight", "blk.0.attn_k_norm.weight"], ["blk.0.attn_q.bias"]),
        ("llama3-rope-tied", ["rope_freqs.weight", "token_embd.weight"], ["output.weight"]),
        ("gemma3", ["blk.0.post_attention_norm.weight", "blk.0.post_ffw_norm.weight"], ["output.weight"]),
    ):
        hf_dir = families[case][0]
        convert_hf.convert(hf_dir, hf_dir / "names.gguf", "f16", vocab=stand_in_vocab)
        tensors = _gguf_tensors(hf_dir / "names.gguf")
        assert all(n in tensors for n in must), (case, sorted(tensors))
        assert not any(n in tensors for n in must_not), case
        assert int(tensors["blk.0.attn_norm.weight"].tensor_type) == 0  # 1-D stays F32
        assert int(tensors["token_embd.weight"].tensor_type) == 1
    fields = _gguf_fields(families["phi3"][0] / "names.gguf")
    assert fields["general.architecture"] == "phi3" and fields["general.file_type"] == 1
    assert fields["phi3.attention.head_count_kv"] == 2 and fields["phi3.rope.dimension_count"] == 16
    # Gemma's RMSNorm multiplies by (1 + w): the converter stores 1 + w, as llama.cpp's does
    from safetensors.numpy import load_file

    hf = load_file(str(families["gemma3"][0] / "model.safetensors"))
    ours = _gguf_tensors(families["gemma3"][0] / "names.gguf")["blk.0.attn_norm.weight"].data
    np.testing.assert_allclose(ours, hf["model.layers.0.input_layernorm.weight"] + 1.0, rtol=0, atol=1e-6)


# -- emberllm quantize ---------------------------------------------------------------------------------------

Q6K_LAYERS_32 = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]

#: mix -> lower bound of the cosine between its logits and transformers' (8-layer, 256-wide random Llama)
#: (measured: 0.9998, 0.9987, 0.9965, 0.9950, 0.9843, 0.9864, 0.9911, 0.9629; IQ4_XS 0.972, IQ4_NL 0.970, Q3_K_L
#: 0.984, Q3_K_M 0.969, Q3_K_S 0.906, Q2_K 0.875; random weights quantize worse than trained ones)
MIX_COSINE = {"Q8_0": 0.999, "Q6_K": 0.997, "Q5_K_M": 0.99, "Q5_K_S": 0.99, "Q4_K_M": 0.97, "Q4_K_S": 0.97,
              "Q5_0": 0.98, "Q4_0": 0.95, "IQ4_XS": 0.96, "IQ4_NL": 0.96, "Q3_K_L": 0.97, "Q3_K_M": 0.95,
              "Q3_K_S": 0.88, "Q2_K": 0.85}


@pytest.fixture(scope="module")
def wide_llama(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int], np.ndarray]:
    """An 8-layer Llama with rows of 256 (whole K-quant blocks), converted to F32 and F16 (no Q/K gain: here
    attention is not what is under test)."""
    d = tmp_path_factory.mktemp("wide")
    model = build_model("llama", d, hidden=256, ffn=512, layers=8, qk_gain=1.0)
    ids, ref = clear_prompt(model)
    convert_hf.convert(d, d / "f32.gguf", "f32", vocab=stand_in_vocab)
    convert_hf.convert(d, d / "f16.gguf", "f16", vocab=stand_in_vocab)
    return d, ids, ref


def test_use_more_bits_layers() -> None:
    """The `_M` mixes give 16 of 32 layers more bits: the first and last 4 and every third between."""
    from emberllm.convert.quantize import use_more_bits

    assert [i for i in range(32) if use_more_bits(i, 32)] == Q6K_LAYERS_32


def test_mix_types_follow_llama_cpp(wide_llama: tuple[Path, list[int], np.ndarray]) -> None:
    from emberllm.convert.quantize import quantize_file

    d = wide_llama[0]
    more_bits = {0, 3, 6, 7}  # use_more_bits(i, 8)
    st = quantize_file(d / "f16.gguf", d / "Q4_K_M.gguf", "Q4_K_M")
    c = st.choices
    assert c["output.weight"] == 14 and c["token_embd.weight"] == 12  # Q6_K; untied token_embd keeps Q4_K
    assert c["blk.0.attn_norm.weight"] == 0 and c["blk.5.attn_q.weight"] == 12
    assert {i for i in range(8) if c[f"blk.{i}.attn_v.weight"] == 14} == more_bits
    assert {i for i in range(8) if c[f"blk.{i}.ffn_down.weight"] == 14} == more_bits
    assert all(c[f"blk.{i}.{n}.weight"] == 12 for i in range(8) for n in ("attn_k", "attn_output", "ffn_up"))
    c = quantize_file(d / "f16.gguf", d / "Q4_K_S.gguf", "Q4_K_S").choices
    assert [c[f"blk.{i}.attn_v.weight"] for i in range(8)] == [13] * 4 + [12] * 4
    assert [c[f"blk.{i}.ffn_down.weight"] for i in range(8)] == [13] + [12] * 7
    c = quantize_file(d / "f16.gguf", d / "Q4_0.gguf", "Q4_0").choices
    assert c["output.weight"] == 14 and c["blk.0.attn_v.weight"] == 2 and c["blk.0.ffn_down.weight"] == 2


def test_mix_fallbacks_for_narrow_rows(families: dict[str, tuple[Path, list[int], np.ndarray]]) -> None:
    """Rows of 64 (not a multiple of 256): Q4_K -> Q5_0, Q6_K -> Q8_0; Phi-3's attn_qkv counts as attn_v."""
    from emberllm.convert.quantize import quantize_file

    d = families["phi3"][0]
    c = quantize_file(d / "f32.gguf", d / "Q4_K_M.gguf", "Q4_K_M").choices
    assert c["blk.0.attn_qkv.weight"] == 6 and c["blk.1.attn_qkv.weight"] == 8  # use_more_bits(1, 2)
    assert c["output.weight"] == 8 and c["blk.0.ffn_up.weight"] == 6
    assert c["blk.1.ffn_down.weight"] == 8  # 128-wide rows: Q6_K -> Q8_0


@pytest.mark.parametrize("mix", list(MIX_COSINE))
def test_quantized_logits_close_to_transformers(wide_llama: tuple[Path, list[int], np.ndarray], mix: str) -> None:
    from emberllm.convert.quantize import quantize_file

    d, ids, ref = wide_llama
    quantize_file(d / "f16.gguf", d / f"{mix}.gguf", mix)
    ours = our_logits(d / f"{mix}.gguf", ids)
    assert cosine(ours, ref) >= MIX_COSINE[mix]


def test_q8_0_and_q4_0_bytes_equal_gguf_py(wide_llama: tuple[Path, list[int], np.ndarray]) -> None:
    """Our Q8_0 (convert) and Q4_0 (quantize) blocks are byte for byte gguf-py's reference quantizers."""
    import gguf
    from gguf.quants import quantize as gguf_quantize

    from emberllm.convert.quantize import quantize_file

    d = wide_llama[0]
    convert_hf.convert(d, d / "q8_0.gguf", "q8_0", vocab=stand_in_vocab)
    quantize_file(d / "f32.gguf", d / "pure_q4_0.gguf", "Q4_0")
    f32 = _gguf_tensors(d / "f32.gguf")
    for path, qtype in ((d / "q8_0.gguf", gguf.GGMLQuantizationType.Q8_0),
                        (d / "pure_q4_0.gguf", gguf.GGMLQuantizationType.Q4_0)):
        checked = 0
        for name, t in _gguf_tensors(path).items():
            if int(t.tensor_type) != int(qtype):
                continue
            expected = gguf_quantize(np.asarray(f32[name].data, dtype=np.float32), qtype)
            assert np.array_equal(np.asarray(t.data).reshape(-1).view(np.uint8), expected.reshape(-1)), name
            checked += 1
        assert checked >= 8 * 6


def test_k_quants_bit_identical_to_ggml() -> None:
    """Our Q4_K/Q5_K/Q6_K (and Q4_0/Q5_0/Q8_0) blocks equal ggml's quantize_row_*_ref from llama.cpp's build."""
    import ctypes

    from emberllm.convert import tensor_quant

    lib = ctypes.CDLL(str(llamacpp.library("ggml-base")))
    rng = np.random.default_rng(7)
    for name, qtype in (("q4_K", 12), ("q5_K", 13), ("q6_K", 14), ("q4_0", 2), ("q5_0", 6), ("q8_0", 8)):
        for trial in range(6):
            x = (rng.standard_normal(256 * 8) * rng.uniform(1e-3, 10)).astype(np.float32)
            if trial == 1:
                x[:300] = 0.0
            if trial == 2:
                x = np.abs(x)
            ours = tensor_quant.quantize(x, qtype).reshape(-1)
            theirs = ctypes.create_string_buffer(ours.size)
            getattr(lib, f"quantize_row_{name}_ref")(x.ctypes.data_as(ctypes.c_void_p), theirs, ctypes.c_int64(x.size))
            assert ours.tobytes() == theirs.raw, (name, trial)


def test_quantize_cli(wide_llama: tuple[Path, list[int], np.ndarray], capsys: pytest.CaptureFixture[str]) -> None:
    from emberllm.cli import main

    d = wide_llama[0]
    assert main(["quantize", str(d / "f16.gguf"), str(d / "cli.gguf"), "q5_k_m"]) == 0
    assert "Q5_K_M" in capsys.readouterr().out
    fields = _gguf_fields(d / "cli.gguf")
    assert fields["general.file_type"] == 17 and fields["general.quantization_version"] == 2
    assert main(["quantize", str(d / "cli.gguf"), str(d / "again.gguf"), "q4_0"]) == 1  # already quantized


# -- emberllm convert end to end, with the tokenizer from tokenizer.json -------------------------------------


def _train_bpe_tokenizer(out_dir: Path) -> Any:
    """A small byte-level BPE tokenizer (GPT-2 pre-tokenizer) trained here and saved as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["The quick brown fox jumps over the lazy dog. 12345 def main(): return 0",
              "Hello world! Привет мир 你好  tabs\tand\nnewlines"] * 20
    tok.train_from_iterator(corpus, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                                eos_token="<|endoftext|>")
    fast.save_pretrained(out_dir)
    return fast


def test_convert_cli_with_bpe_tokenizer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``emberllm convert`` on a folder with tokenizer.json: our tokenization and logits equal transformers'."""
    from emberllm.cli import main

    pytest.importorskip("emberllm.convert.hf_vocab")
    fast = _train_bpe_tokenizer(tmp_path)
    model = build_model("qwen2", tmp_path, vocab=len(fast))
    assert main(["convert", str(tmp_path), "-o", str(tmp_path / "m.gguf"), "--outtype", "f32"]) == 0
    assert "qwen2" in capsys.readouterr().out
    text = "The lazy fox says: hello world 42!  Привет 你好"
    ours = Model(tmp_path / "m.gguf", n_ctx=64, n_threads=1, warmup=False)
    try:
        ids = ours.tokenize(text, add_special=False)
        assert ids == fast.encode(text, add_special_tokens=False)
        assert len(ids) >= 8
        ours.eval_prompt(ids)
        logits = np.array(ours.last_logits(), dtype=np.float64)
    finally:
        ours.close()
    assert np.abs(logits - hf_logits(model, ids)).max() <= 1e-3


# -- kernels added for these families ------------------------------------------------------------------------


def _rope_reference(x: np.ndarray, pos: np.ndarray, base: float, ff: np.ndarray, neox: bool) -> np.ndarray:
    """RoPE in float64: pair i of each head turns by pos * base^(-2i/d) / ff[i]."""
    n_tok, n_head, d = x.shape
    half = d // 2
    out = x.astype(np.float64).copy()
    angles = pos[:, None] * base ** (-2.0 * np.arange(half) / d) / ff[None, :]
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
    i0 = np.arange(half) if neox else 2 * np.arange(half)
    i1 = i0 + half if neox else i0 + 1
    x0, x1 = out[..., i0].copy(), out[..., i1].copy()
    out[..., i0] = x0 * cos - x1 * sin
    out[..., i1] = x0 * sin + x1 * cos
    return out


@pytest.mark.parametrize("mode", [0, 2])
def test_rope_with_frequency_factors_and_its_context_shift(mode: int) -> None:
    from emberllm.backends.binding import load_kernels

    k = load_kernels()
    ffi = k._b.ffi
    rng = np.random.default_rng(3)
    n_tok, n_head, d, base = 12, 2, 32, 10000.0
    ff = np.concatenate([np.ones(4), np.linspace(1.3, 8.0, 12)]).astype(np.float32)
    x = rng.standard_normal((n_tok, n_head, d)).astype(np.float32)
    pos = np.arange(n_tok, dtype=np.int32) + 40
    ctx = k.lib.emb_ctx_new(1, 0)
    try:
        got = x.copy()
        k.lib.emb_rope_ff(ctx, ffi.from_buffer("float[]", got), n_tok, n_head, d, d,
                          ffi.from_buffer("int32_t[]", pos), base, 1.0, mode, ffi.from_buffer("float[]", ff))
        np.testing.assert_allclose(got, _rope_reference(x, pos, base, ff, mode == 2), atol=2e-5)
        # context shift: keys stored at positions 40.. and shifted back by 5 equal keys rotated at 35..
        cache = got.astype(np.float16).view(np.uint16).reshape(-1).copy()
        values = np.zeros_like(cache)
        n_keep, n_discard = 2, 5
        k.lib.emb_kv_shift_ff(ctx, ffi.from_buffer("uint16_t[]", cache), ffi.from_buffer("uint16_t[]", values),
                              n_tok, n_keep, n_discard, n_head, d, d, base, 1.0, mode, ffi.from_buffer("float[]", ff))
        moved = cache.view(np.float16).astype(np.float32).reshape(n_tok, n_head, d)[n_keep : n_tok - n_discard]
        expect = _rope_reference(x[n_keep + n_discard :], pos[n_keep + n_discard :] - n_discard, base, ff, mode == 2)
        np.testing.assert_allclose(moved, expect, atol=1e-2, rtol=2e-3)
    finally:
        k.lib.emb_ctx_free(ctx)


def test_bf16_checkpoint_converts_losslessly(tmp_path: Path) -> None:
    """A BF16 safetensors checkpoint (read without torch) gives the same BF16 bits with ``--outtype bf16``."""
    model = build_model("qwen3", tmp_path / "f32")
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    convert_hf.convert(tmp_path / "bf16", tmp_path / "bf16.gguf", "bf16", vocab=stand_in_vocab)
    tensors = _gguf_tensors(tmp_path / "bf16.gguf")
    state = model.state_dict()
    w = tensors["blk.1.ffn_down.weight"]
    assert int(w.tensor_type) == 30
    expected = state["model.layers.1.mlp.down_proj.weight"].view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(np.asarray(w.data).reshape(-1).view(np.uint16), expected.reshape(-1))
    norm = np.asarray(tensors["blk.0.attn_q_norm.weight"].data)  # 1-D: F32, exactly the BF16 values
    np.testing.assert_array_equal(norm, state["model.layers.0.self_attn.q_norm.weight"].float().numpy())
