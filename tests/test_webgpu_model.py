"""The Gemma model with every layer on WebGPU (natively: wgpu on Mesa's lavapipe in CI) against llama.cpp's
reference, under the CPU path's rule (``test_engine_reference``): ids equal up to the first step whose top-2 gap is
below 0.05, top-5 probabilities within the same band; both precisions of the matmul (f16 where the adapter has
``shader-f16``, f32).  Also: a partial offload, the command line's ``-ngl``, and the fallback without an adapter.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from emberllm.backends.webgpu.device import GpuUnavailableError
from emberllm.runtime.model import Model

from .test_engine_reference import check_greedy_against_reference, first_close_step, greedy_with_probs
from .test_model_families import families  # noqa: F401 - the fixture: tiny random models and transformers logits


def open_device(f16: bool):
    """The native WebGPU device (lavapipe here); a missing adapter skips locally and fails in CI."""
    from emberllm.backends.webgpu.native import NativeDevice

    try:
        return NativeDevice(use_f16=f16)
    except GpuUnavailableError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no WebGPU adapter: {exc}")


@pytest.fixture(scope="module", params=["f16", "f32"])
def gpu_model(request, gemma_path):
    device = open_device(request.param == "f16")
    if request.param == "f16" and not device.has_f16:
        device.close()
        pytest.skip("the adapter has no shader-f16")
    m = Model(gemma_path, n_ctx=256, n_threads=2, n_gpu_layers=99, gpu=device)
    assert m.gpu_backend is not None and m.gpu_backend.precision == request.param
    yield m
    m.close()


def test_greedy_ids_and_top5_match_llamacpp(gpu_model, reference):
    check_greedy_against_reference(gpu_model, reference)


def test_greedy_generation_reads_back_only_the_argmax(gpu_model, reference):
    ref = reference["prompts"]["def fibonacci(n):"]
    k = min(first_close_step(ref["steps"]), 8)
    backend = gpu_model.gpu_backend
    read0 = backend.bytes_read
    steps = list(gpu_model.generate(ref["prompt_token_ids"], n_predict=k, temperature=0.0))
    assert [s.token for s in steps] == ref["generated_token_ids"][:k]
    assert backend.bytes_read - read0 == 8 * k  # index and value of the arg-max per step, no logits


def test_embeddings_on_webgpu_match_llamacpp(gpu_model):
    """Model.embed with every layer on the device (its hidden rows read back together) within test_embeddings' bar
    of the recorded llama-embedding outputs, and reading back no logits."""
    import json

    from .test_embeddings import MIN_COSINE, REFERENCES, cosine

    recorded = json.loads(REFERENCES.read_text(encoding="utf-8"))
    texts = [t["text"] for t in recorded["texts"]][:3]
    backend = gpu_model.gpu_backend
    for pooling in ("mean", "last"):
        read0 = backend.bytes_read
        ours = gpu_model.embed(texts, pooling=pooling)
        assert backend.bytes_read - read0 < 4 * gpu_model.hp.n_vocab  # the vectors' rows, not a logits row
        for got, ref in zip(ours, recorded["embeddings"][f"{pooling}/fa-auto"][:3], strict=True):
            assert cosine(got, ref) >= MIN_COSINE, pooling


def test_partial_offload_matches_the_cpu(gemma_path, reference):
    ids = reference["prompts"]["Once upon a time, there was a little"]["prompt_token_ids"]
    steps = reference["prompts"]["Once upon a time, there was a little"]["steps"]
    k = min(first_close_step(steps), 6)
    device = open_device(False)
    m = Model(gemma_path, n_ctx=128, n_threads=2, n_gpu_layers=5, gpu=device)
    try:
        assert list(m.decoder.device_layers) == list(range(13, 18))
        assert m.decoder.ops is m.backend  # the embeddings and the output stay on the CPU
        got, _ = greedy_with_probs(m, ids, k)
    finally:
        m.close()
    assert got == reference["prompts"]["Once upon a time, there was a little"]["generated_token_ids"][:k]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emberllm.cli", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


def test_cli_run_offloads_and_prints_the_adapter(reference):
    open_device(False).close()
    prompt = "The capital of France is"
    ref = reference["prompts"][prompt]
    k = min(first_close_step(ref["steps"]), 6)
    gpu = run_cli("run", "-ngl", "99", "--temp", "0", "-n", str(k), "-c", "128", "-p", prompt)
    assert gpu.returncode == 0, gpu.stderr
    assert "offloaded 18/18 layers to webgpu (" in gpu.stderr
    cpu = run_cli("run", "--temp", "0", "-n", str(k), "-c", "128", "-p", prompt)
    assert gpu.stdout == cpu.stdout and gpu.stdout.strip()


def test_no_adapter_falls_back_to_the_cpu_with_a_message():
    # wgpu asked for a backend this Linux build does not have: no adapter at all
    res = run_cli("run", "-ngl", "99", "--temp", "0", "-n", "4", "-c", "64", "-p", "Hello",
                  env={"WGPU_BACKEND_TYPE": "D3D12"})
    assert res.returncode == 0, res.stderr
    assert "WebGPU is not available" in res.stderr and "running all layers on the CPU" in res.stderr
    assert "offloaded" not in res.stderr
    assert res.stdout.strip()


def test_device_cpu_and_env_override(gemma_path):
    m = Model(gemma_path, n_ctx=64, n_gpu_layers=99, device="cpu", warmup=False)
    try:
        assert m.gpu_backend is None
    finally:
        m.close()
    with pytest.raises(ValueError, match="unknown device"):
        Model(gemma_path, n_ctx=64, device="cuda", warmup=False)


def test_server_on_webgpu_serves_parallel_greedy_requests(gemma_path, reference, tmp_path):
    """``emberllm serve -ngl 99 -np 2``: two concurrent greedy completions (one decode batch of two sequences on
    the device) each give llama.cpp's ids."""
    import concurrent.futures

    import httpx

    from .server_fixtures import AUTH, run_server

    open_device(False).close()
    prompts = ["The capital of France is", "def fibonacci(n):"]
    ks = [min(first_close_step(reference["prompts"][p]["steps"]), 5) for p in prompts]
    with run_server(gemma_path, tmp_path, "-ngl", "99", "-np", "2", "-c", "512") as srv:
        def complete(i: int) -> list[int]:
            body = {"prompt": prompts[i], "n_predict": ks[i], "temperature": 0, "return_tokens": True}
            r = httpx.post(f"{srv.url}/completion", json=body, headers=AUTH, timeout=300)
            r.raise_for_status()
            return r.json()["tokens"]

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            got = list(pool.map(complete, range(2)))
        assert "offloaded 18/18 layers to webgpu (" in srv.log_path.read_text()
    for p, k, ids in zip(prompts, ks, got, strict=True):
        assert ids == reference["prompts"][p]["generated_token_ids"][:k], p


@pytest.mark.parametrize("precision", ["f16", "f32"])
def test_every_family_on_webgpu_matches_transformers(families, precision):  # noqa: F811 - the imported fixture
    """Each architecture (Llama 3 rope factors, Qwen2 biases, Qwen3 QK-norm, Phi-3 fused tensors and long-rope,
    Gemma, Gemma 2's soft-capping, Gemma 3, OLMo 2) with every layer on WebGPU: F32 logits within 1e-3 of
    transformers', Q8_0 with its arg-max.  Mixture-of-experts layers are refused with a clear error (CPU only)."""
    from emberllm.convert import hf as convert_hf
    from emberllm.models import UnsupportedModelError

    from .test_model_families import CASES, stand_in_vocab

    for case in CASES:
        hf_dir, ids, ref = families[case]
        if "moe" in case or case == "mixtral":
            path = hf_dir / "f32.gguf"
            if not path.exists():
                convert_hf.convert(hf_dir, path, "f32", vocab=stand_in_vocab)
            with pytest.raises(UnsupportedModelError, match="mixture-of-experts layers run on the CPU only"):
                Model(path, n_ctx=64, n_threads=1, warmup=False, n_gpu_layers=99, gpu=open_device(False))
            continue
        for outtype, check in (("f32", "close"), ("q8_0", "argmax")):
            path = hf_dir / f"{outtype}.gguf"
            if not path.exists():
                convert_hf.convert(hf_dir, path, outtype, vocab=stand_in_vocab)
            m = Model(path, n_ctx=64, n_threads=1, warmup=False, n_gpu_layers=99, gpu=open_device(precision == "f16"))
            try:
                assert m.gpu_backend is not None and m.decoder.ops is m.gpu_backend
                m.eval_prompt(ids)
                ours = np.array(m.last_logits(), dtype=np.float64)
            finally:
                m.close()
            if check == "close":
                assert np.abs(ours - ref).max() <= 1e-3, (case, precision)
            else:
                assert int(ours.argmax()) == int(ref.argmax()), (case, precision)


def test_quantized_kv_cache_with_offloaded_layers_is_refused(gemma_path):
    """Layers on WebGPU keep an f16 cache: a q8_0 cache with -ngl is one clear error, not a silent f16 cache."""
    device = open_device(False)
    try:
        with pytest.raises(ValueError, match="not supported with layers on WebGPU"):
            Model(gemma_path, n_ctx=64, n_threads=1, n_gpu_layers=2, gpu=device, cache_type_k="q8_0",
                  cache_type_v="q8_0")
    finally:
        device.close()
