"""Llama, Qwen2, Qwen3, Phi-3, Gemma, Gemma 2, Gemma 3, OLMo 2, Mixtral and Qwen3-MoE against Hugging Face transformers,
through ``emberllm convert``.

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
                            "rope_scaling": longrope(8)}),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM",
               {"head_dim": 32, "query_pre_attn_scalar": 32, "sliding_window": 512}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {"head_dim": 32}),
    # a window of 6 on layer 0 (of 16 prompt tokens); caps low enough to bend the scores and the logits
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               {"head_dim": 32, "query_pre_attn_scalar": 32, "sliding_window": 6, "attn_logit_softcapping": 2.0,
                "final_logit_softcapping": 0.5}),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", {"num_local_experts": 8, "num_experts_per_tok": 2}),
    "qwen3moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                 {"head_dim": 32, "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
                  "norm_topk_prob": True}),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {}),
    # HF's default: the top-k softmax weights used as they are (the converter says expert_weights_norm = false)
    "qwen3moe-unnormalised": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                              {"head_dim": 32, "num_experts": 8, "num_experts_per_tok": 3,
                               "moe_intermediate_size": 64, "norm_topk_prob": False}),
}
EXPECTED_ARCH = {"llama": "llama", "llama3-rope-tied": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "phi3": "phi3",
                 "phi3-longrope-short": "phi3", "phi3-longrope-long": "phi3", "gemma3": "gemma3", "gemma": "gemma",
                 "gemma2": "gemma2", "mixtral": "llama", "qwen3moe": "qwen3moe",
                 "qwen3moe-unnormalised": "qwen3moe", "olmo2": "olmo2"}
#: router weights scaled up so that the top experts are chosen by clear margins, not by float noise; expert
#: weights so that the experts' outputs move the logits (a wrong routing or weighting then shows)
ROUTER_GAIN = 8.0
EXPERT_GAIN = 3.0


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
            if name.endswith(("block_sparse_moe.gate.weight", "mlp.gate.weight")):
                p.mul_(ROUTER_GAIN)
            if ".experts." in name:
                p.mul_(EXPERT_GAIN)
            if name.endswith(("q_norm.weight", "k_norm.weight")) and case == "qwen3":
                p.add_(1.0)  # Gemma's (1 + w) norms already start at gain 1; its GELU table and F16 cache need room
    model.save_pretrained(out_dir)
    return model


def prompt_ids(seed: int = 1) -> list[int]:
    """16 token ids, none of them special."""
    return [int(t) for t in np.random.default_rng(seed).integers(3, VOCAB, N_PROMPT)]


def clear_prompt(model: Any, min_gap: float = 0.02, min_route_gap: float = 0.05) -> tuple[list[int], np.ndarray]:
    """The first seeded prompt whose transformers top-2 logit gap is at least ``min_gap`` (so that "same argmax"
    tests the model, not float noise), with its logits.  For a mixture of experts, every token's router logits
    also separate the chosen experts from the others by ``min_route_gap`` in every layer (a Q8_0 model then
    routes as transformers does)."""
    for seed in range(1, 80):
        ids = prompt_ids(seed)
        ref = hf_logits(model, ids)
        top2 = np.sort(ref)[-2:]
        if top2[1] - top2[0] >= min_gap and _route_gap(model, ids) >= min_route_gap:
            return ids, ref
    raise AssertionError("no prompt with a clear top token")


def _route_gap(model: Any, ids: list[int]) -> float:
    """The smallest gap between the k-th and (k+1)-th router logit over tokens and layers (inf without experts)."""
    k = getattr(model.config, "num_experts_per_tok", None)
    if not k:
        return float("inf")
    with torch.no_grad():
        routers = model(torch.tensor([ids]), output_router_logits=True).router_logits
    gaps = [np.diff(np.sort(r.reshape(-1, r.shape[-1]).double().numpy(), axis=1)[:, -k - 1 : -k + 1 or None]).min()
            for r in routers]
    return float(min(gaps))


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


def test_gemma2_soft_capping_and_window_are_exercised(
        families: dict[str, tuple[Path, list[int], np.ndarray]]) -> None:
    """Negative control: without the attention or final soft-capping or the sliding window, Gemma 2's logits are
    far off (so the F32 match above tests each of them)."""
    hf_dir, ids, ref = families["gemma2"]
    convert_hf.convert(hf_dir, hf_dir / "controls.gguf", "f32", vocab=stand_in_vocab)

    def off_by(change: Any) -> float:
        model = Model(hf_dir / "controls.gguf", n_ctx=64, n_threads=1, warmup=False)
        try:
            assert [L.window for L in model.decoder.layers] == [6, 0]  # llama.cpp's pattern: even layers slide
            change(model.decoder)
            model.eval_prompt(ids)
            return float(np.abs(np.array(model.last_logits(), dtype=np.float64) - ref).max())
        finally:
            model.close()

    assert off_by(lambda d: setattr(d, "attn_softcap", 0.0)) > 0.05
    assert off_by(lambda d: setattr(d, "final_softcap", 0.0)) > 0.05
    assert off_by(lambda d: [setattr(L, "window", 0) for L in d.layers]) > 0.05


@pytest.mark.parametrize("case", ["mixtral", "qwen3moe-unnormalised"])
def test_moe_weighting_is_exercised(families: dict[str, tuple[Path, list[int], np.ndarray]], case: str) -> None:
    """Negative control: renormalising the top-k weights when the family does not (or not when it does) moves the
    logits far beyond the F32 tolerance, and so does leaving the experts out."""
    import dataclasses

    hf_dir, ids, ref = families[case]
    convert_hf.convert(hf_dir, hf_dir / "controls.gguf", "f32", vocab=stand_in_vocab)

    def off_by(change: Any) -> float:
        model = Model(hf_dir / "controls.gguf", n_ctx=64, n_threads=1, warmup=False)
        try:
            for L in model.decoder.layers:
                change(L.moe)
            model.eval_prompt(ids)
            return float(np.abs(np.array(model.last_logits(), dtype=np.float64) - ref).max())
        finally:
            model.close()

    assert off_by(lambda moe: None) <= 1e-3
    assert off_by(lambda moe: setattr(moe, "cfg", dataclasses.replace(moe.cfg, norm_w=not moe.cfg.norm_w))) > 0.05
    assert off_by(lambda moe: setattr(moe, "forward", lambda ops, h, n, out: ops.write(out, bytes(4 * n * 64)))) > 0.1


def test_gemma2_query_scale_follows_llama_cpp() -> None:
    """llama.cpp scales Gemma 2's queries by 1/sqrt(n_embd / n_head) for the 27B (46 layers), else by
    1/sqrt(head_dim) (the 2B's and 9B's query_pre_attn_scalar is their head size)."""
    import math

    from emberllm.models.base import HParams
    from emberllm.models.spec import gemma2_query_scale

    def hp(n_layer: int, n_embd: int, n_head: int, head_dim: int) -> HParams:
        return HParams("gemma2", 256000, n_embd, n_layer, n_head, n_head // 2, head_dim, 4 * n_embd, 8192, 1e-6,
                       10000.0, 1.0, 4096)

    assert gemma2_query_scale(hp(46, 4608, 32, 128)) == 1.0 / math.sqrt(144.0)
    assert gemma2_query_scale(hp(42, 3584, 16, 256)) == 1.0 / math.sqrt(256.0)
    assert gemma2_query_scale(hp(26, 2304, 8, 256)) == 1.0 / math.sqrt(256.0)


@pytest.mark.parametrize("norm_w, w_scale", [(True, 0.0), (False, 0.0), (True, 2.5)])
def test_moe_routing_follows_llama_cpp(norm_w: bool, w_scale: float) -> None:
    """``moe.route``: softmax over all experts, the top k, renormalised (sum clamped at 2^-14) when the file says
    so, then scaled (llama.cpp's build_moe_ffn), against numpy."""
    import array

    from emberllm.models.moe import MoeConfig, route

    rng = np.random.default_rng(11)
    n, ne, k = 7, 16, 4
    logits = (rng.standard_normal((n, ne)) * 3).astype(np.float32)
    got = route(memoryview(array.array("f", logits.reshape(-1).tolist())), n, MoeConfig(ne, k, norm_w, w_scale))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    want: dict[int, list[tuple[int, float]]] = {}
    for t in range(n):
        top = np.argsort(-probs[t])[:k]
        w = probs[t, top]
        if norm_w:
            w = w / max(w.sum(), 6.103515625e-5)
        if w_scale not in (0.0, 1.0):
            w = w * w_scale
        for e, x in zip(top, w, strict=True):
            want.setdefault(int(e), []).append((t, float(x)))
    assert sorted(got) == sorted(want)
    for e, (rows, weights) in got.items():
        assert rows == [t for t, _ in want[e]]
        np.testing.assert_allclose(weights, [x for _, x in want[e]], rtol=1e-6)


class ExpertReads:
    """A counting wrapper of a real CPU backend's matmul ops: the expert matrices (``blk.N.expert.E.<kind>``
    views) each call reads, and their bytes."""

    def __init__(self, ops: Any) -> None:
        self.reads: list[tuple[int, int, str, int]] = []  # (layer, expert, kind, bytes)
        self._ops = ops
        matmul, matmul_group = ops.matmul, ops.matmul_group

        def counted_matmul(w: Any, x: Any, n: int, out: Any) -> None:
            self._note([w])
            matmul(w, x, n, out)

        def counted_group(g: Any, x: Any, n: int) -> None:
            self._note(g.weights)
            matmul_group(g, x, n)

        ops.matmul, ops.matmul_group = counted_matmul, counted_group

    def _note(self, weights: list[Any]) -> None:
        for w in weights:
            parts = w.name.split(".")
            if len(parts) == 5 and parts[2] == "expert":
                size = w.n_out * int(self._ops.lib.emb_row_size(w.type, w.n_in))
                self.reads.append((int(parts[1]), int(parts[3]), parts[4], size))


def _hf_routed(case: str, hf_dir: Path, ids: list[int], k: int) -> list[set[int]]:
    """Per layer, the experts transformers' router picks for the last token."""
    model = getattr(transformers, CASES[case][1]).from_pretrained(hf_dir).eval()
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_router_logits=True)
    return [set(torch.topk(r.reshape(-1, r.shape[-1])[-1], k).indices.tolist()) for r in out.router_logits]


@pytest.mark.parametrize("case", ["mixtral", "qwen3moe"])
def test_moe_decode_reads_only_the_routed_experts(families: dict[str, tuple[Path, list[int], np.ndarray]],
                                                   case: str) -> None:
    """A decode step runs exactly the experts transformers' router picks, reading k / n_expert of the expert
    bytes; a prompt runs each expert's matrices at most once per layer (tokens grouped by expert)."""
    hf_dir, ids, ref = families[case]
    n_expert, k = 8, 2
    convert_hf.convert(hf_dir, hf_dir / "moe.gguf", "q8_0", vocab=stand_in_vocab)
    all_bytes = sum(int(t.n_bytes) for name, t in _gguf_tensors(hf_dir / "moe.gguf").items() if "_exps." in name)
    model = Model(hf_dir / "moe.gguf", n_ctx=64, n_threads=1, warmup=False)
    try:
        counter = ExpertReads(model.decoder.host_ops)
        model.eval_prompt(ids[:-1])
        prompt = counter.reads
        assert len(prompt) == len({r[:3] for r in prompt})  # one call per (layer, expert, matrix)
        assert len({r[:2] for r in prompt}) > 2 * k  # the prompt's tokens spread over the experts
        counter.reads = []
        calls = model.kernel_calls
        model.eval_prompt(ids)  # one new token
        step = counter.reads
        logits = np.array(model.last_logits(), dtype=np.float64)
        step_calls = model.kernel_calls - calls
    finally:
        model.close()
    routed = _hf_routed(case, hf_dir, ids, k)
    for il, experts in enumerate(routed):
        for kind in ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"):
            assert sorted(e for layer, e, kd, _ in step if layer == il and kd == kind) == sorted(experts), (il, kind)
    assert sum(r[3] for r in step) * n_expert == all_bytes * k
    # per layer and routed expert: gather, gate/up, GLU, down, weighted add (plus the router and the rest)
    assert step_calls < len(routed) * (k * 5 + 20)
    assert int(logits.argmax()) == int(ref.argmax()) and cosine(logits, ref) >= 0.999


@pytest.mark.parametrize("case", ["gemma", "gemma2", "olmo2", "mixtral", "qwen3moe"])
def test_greedy_tokens_equal_llama_cpp(families: dict[str, tuple[Path, list[int], np.ndarray]], case: str) -> None:
    """llama.cpp's llama-completion runs our converted file to the same 24 greedy tokens as we do (byte tokens
    <0xNN> are ids NN + 3, printed as those bytes)."""
    import subprocess
    import time

    hf_dir = families[case][0]
    path = hf_dir / "greedy.gguf"
    convert_hf.convert(hf_dir, path, "q8_0", vocab=stand_in_vocab)
    prompt, n = "The quick brown fox, 42 times!", 24
    model = Model(path, n_ctx=128, n_threads=1, warmup=False)
    try:
        ours = [s.token for s in model.generate(prompt, n_predict=n, temperature=0) if s.token >= 0]
    finally:
        model.close()
    cmd = [str(llamacpp.binary("llama-completion")), "-m", str(path), "-p", prompt, "-n", str(n), "--temp", "0",
           "--top-k", "1", "-no-cnv", "--no-warmup", "-t", "1", "-c", "128", "--no-display-prompt", "--simple-io"]
    # Started from this process (which has loaded torch), llama-completion now and then stops after a few tokens with
    # status 0 and without printing its timings; such a run is not an answer, so it is run again.
    for _ in range(8):
        proc = subprocess.run(cmd, capture_output=True, timeout=120, check=True, input=b"", start_new_session=True)
        if b"total time" in proc.stderr:
            break
        time.sleep(0.5)
    theirs = [b + 3 for b in proc.stdout.rstrip(b"\n")]
    assert len(ours) == n and ours == theirs, (ours, theirs, proc.stderr[-1500:].decode(errors="replace"))


#: runs llama.cpp's convert_hf_to_gguf.py on (model folder, output) pairs in one process; its vocabulary code is
#: pointed at the byte-level BPE tokenizer trained here (no SentencePiece model, no known pre-tokenizer hash)
_LLAMACPP_CONVERT = """
import json, runpy, sys
src = sys.argv[1]
sys.path[:0] = [src, src + "/gguf-py"]
import conversion.base, conversion.gemma, conversion.llama
conversion.base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
for cls in (conversion.gemma.GemmaModel, conversion.gemma.Gemma2Model, conversion.llama.LlamaModel):
    cls.set_vocab = lambda self: self._set_vocab_gpt2()
main = runpy.run_path(src + "/convert_hf_to_gguf.py", run_name="llamacpp_convert")["main"]
for hf_dir, out in json.loads(sys.argv[2]):
    sys.argv = ["convert_hf_to_gguf.py", hf_dir, "--outfile", out, "--outtype", "f32"]
    main()
"""


def test_converter_writes_what_llama_cpp_convert_writes(tmp_path: Path) -> None:
    """llama.cpp's own convert_hf_to_gguf.py and ours give the same tensors (names, shapes, F32 data: stacked
    experts, Gemma's 1 + w norms) and the same values for every one of its architecture keys; its file's logits
    here are transformers' within 1e-3."""
    import json
    import subprocess
    import sys

    import gguf

    source = llamacpp.build.source_dir()
    if not (source / "convert_hf_to_gguf.py").is_file():
        llamacpp.unavailable(f"llama.cpp's convert_hf_to_gguf.py not found in {source}")
    cases = ["gemma2", "mixtral", "qwen3moe", "olmo2"]
    pairs, prompts = [], {}
    for case in cases:
        d = tmp_path / case
        prompts[case] = clear_prompt(build_model(case, d, vocab=len(_train_bpe_tokenizer(d))))
        convert_hf.convert(d, d / "ours.gguf", "f32")
        pairs.append((str(d), str(d / "theirs.gguf")))
    subprocess.run([sys.executable, "-c", _LLAMACPP_CONVERT, str(source), json.dumps(pairs)], check=True,
                   capture_output=True, timeout=300)
    for case in cases:
        ours, theirs = (gguf.GGUFReader(str(tmp_path / case / f"{w}.gguf")) for w in ("ours", "theirs"))
        mine = {t.name: t for t in ours.tensors}
        assert sorted(mine) == sorted(t.name for t in theirs.tensors), case
        for t in theirs.tensors:
            assert list(mine[t.name].shape) == list(t.shape), (case, t.name)
            assert np.array_equal(np.asarray(mine[t.name].data), np.asarray(t.data)), (case, t.name)
        arch = EXPECTED_ARCH[case]
        fields = {k: f.contents() for k, f in ours.fields.items()}
        for key, f in theirs.fields.items():
            if key.startswith(arch + "."):
                assert fields.get(key) == f.contents(), (case, key)
        ids, ref = prompts[case]  # and llama.cpp's file runs here as transformers does
        assert np.abs(our_logits(tmp_path / case / "theirs.gguf", ids) - ref).max() <= 1e-3, case


def test_convert_refuses_unknown_architectures(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"architectures": ["MambaForCausalLM"], "model_type": "mamba"}')
    with pytest.raises(convert_hf.ConvertError, match=r"unsupported model.*Mamba.*supported: .*Gemma2ForCausalLM"):
        convert_hf.convert(tmp_path, tmp_path / "m.gguf", "f32", vocab=stand_in_vocab)


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
        ("gemma2", ["blk.0.post_attention_norm.weight", "blk.0.post_ffw_norm.weight"], ["output.weight"]),
        ("gemma", ["blk.0.ffn_norm.weight"], ["output.weight", "blk.0.post_attention_norm.weight"]),
        ("mixtral", ["blk.0.ffn_gate_inp.weight", "blk.1.ffn_gate_exps.weight", "blk.1.ffn_up_exps.weight",
                     "blk.1.ffn_down_exps.weight"], ["blk.0.ffn_gate.weight", "blk.0.ffn_up.weight"]),
        ("qwen3moe", ["blk.0.ffn_gate_inp.weight", "blk.0.ffn_down_exps.weight", "blk.0.attn_q_norm.weight"],
         ["blk.0.ffn_down.weight"]),
        ("olmo2", ["blk.0.post_attention_norm.weight", "blk.0.post_ffw_norm.weight", "blk.0.attn_k_norm.weight"],
         ["blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"]),
    ):
        hf_dir = families[case][0]
        convert_hf.convert(hf_dir, hf_dir / "names.gguf", "f16", vocab=stand_in_vocab)
        tensors = _gguf_tensors(hf_dir / "names.gguf")
        assert all(n in tensors for n in must), (case, sorted(tensors))
        assert not any(n in tensors for n in must_not), case
        norm = "blk.0.attn_q_norm.weight" if case == "olmo2" else "blk.0.attn_norm.weight"
        assert int(tensors[norm].tensor_type) == 0  # 1-D stays F32
        assert int(tensors["token_embd.weight"].tensor_type) == 1
    moe = _gguf_tensors(families["mixtral"][0] / "names.gguf")
    assert list(moe["blk.0.ffn_gate_exps.weight"].shape) == [64, 128, 8]  # GGML order: n_embd, n_ff, n_expert
    assert list(moe["blk.0.ffn_down_exps.weight"].shape) == [128, 64, 8]
    assert int(moe["blk.0.ffn_gate_inp.weight"].tensor_type) == 0  # the router stays F32
    fields = _gguf_fields(families["mixtral"][0] / "names.gguf")
    assert fields["llama.expert_count"] == 8 and fields["llama.expert_used_count"] == 2
    fields = _gguf_fields(families["qwen3moe"][0] / "names.gguf")
    assert fields["qwen3moe.expert_feed_forward_length"] == 64 and "qwen3moe.expert_weights_norm" not in fields
    fields = _gguf_fields(families["gemma2"][0] / "names.gguf")
    assert fields["gemma2.attn_logit_softcapping"] == 2.0 and fields["gemma2.final_logit_softcapping"] == 0.5
    assert fields["gemma2.attention.sliding_window"] == 6
    olmo2 = _gguf_tensors(families["olmo2"][0] / "names.gguf")
    assert [int(olmo2[f"blk.0.attn_{x}_norm.weight"].n_elements) for x in "qk"] == [64, 32]  # whole rows
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
