"""The Pyodide engine on WebGPU in headless Chromium: pyodide_pkg/emberllm.mjs + webgpu.mjs and
``emberllm.backends.webgpu.browser`` in a module Web Worker, real Pyodide, real ``navigator.gpu``.

With ``--enable-unsafe-webgpu`` headless Chromium's adapter is SwiftShader (a CPU implementation, no shader-f16:
the f32 kernels); every layer of Gemma goes there and the greedy ids must equal the native CPU engine's.
SwiftShader on 2 cores takes seconds per token, so the prompt is short and only a few tokens are generated.
Without the flag there is no adapter: asking for WebGPU gives the CPU path and a message saying why.
Needs what tests/test_pyodide.py needs (node/npm for Pyodide, the WASM toolchain, /usr/bin/chromium, Python
playwright); skips with the reason when one is missing.
"""

from __future__ import annotations

from pathlib import Path

from .test_pyodide import (  # noqa: F401 - the session fixtures of the Pyodide tests
    PROMPT,
    ROOT,
    chromium_worker,
    native_gemma,
)

WORKER = ROOT / "tests" / "pyodide" / "chromium_webgpu_worker.mjs"
#: Tokens generated on SwiftShader (3-5 s each on 2 cores, the prompt of 6 tokens 10-18 s).
N_GPU = 4


def _run(tmp_path: Path, pyodide: Path, wheel: Path, model: Path, flags: tuple[str, ...], **message: object) -> dict:
    """The worker's reply for ``message`` in a Chromium launched with ``flags``."""
    links = {"pyodide": pyodide, "pkg": ROOT / "pyodide_pkg", wheel.name: wheel, "model.gguf": model}
    out = chromium_worker(tmp_path / "site", links, WORKER,
                          {"wheel": f"/{wheel.name}", "model": "/model.gguf", "prompt": PROMPT, **message},
                          timeout_s=240, extra_flags=flags)
    assert out["ok"], out.get("error")
    return out


def test_all_layers_on_webgpu_match_native(pyodide_dir, pyodide_wheel, gemma_path, native_gemma, tmp_path):  # noqa: F811
    """Every layer (and the embeddings and output) on Chromium's WebGPU adapter: the native engine's greedy ids, one
    Python->JS call per plan and 8 bytes read back per generated token; then the same engine reloaded with device "cpu"
    (speed side by side)."""
    out = _run(tmp_path, pyodide_dir, pyodide_wheel, gemma_path, ("--enable-unsafe-webgpu",), nPredict=N_GPU,
               device="webgpu", cpuToo=True)
    info = out["info"]
    assert info["device"] == "webgpu", info
    assert info["nGpuLayers"] == info["nLayers"] == 18
    assert info["precision"] == "f32" or not info["software"]  # SwiftShader has no shader-f16
    assert out["tokens"] == native_gemma["tokens"]
    assert out["ids"] == native_gemma["ids"][:N_GPU]
    gpu, driver = out["gpu"], out["driver"]
    # per generated token two driver calls (one per plan): the step's forward pass, waited for as natively (the
    # timings are the GPU's), and the arg-max with its readback
    assert gpu["runs"] == driver["runs"] == 2 * N_GPU
    assert driver["decodes"] <= 3  # the prompt's, a decode step's and the arg-max's structures, each decoded once
    assert gpu["bytesRead"] == driver["bytesRead"] == 8 * N_GPU  # the arg-max (index, value), no logits
    cpu = out["cpu"]
    assert cpu["info"]["device"] == "cpu" and cpu["info"]["message"] == ""
    assert cpu["ids"] == native_gemma["ids"][:N_GPU]
    t, c = out["timings"], cpu["timings"]
    print(f"{info['adapter']} ({info['precision']}): load {out['loadMs'] / 1000:.1f} s, prompt "
          f"{t['promptMs'] / 1000:.1f} s, decode {t['evalTokens'] * 1000 / t['evalMs']:.2f} t/s; "
          f"CPU ({cpu['info']['kernels']}): load {cpu['loadMs'] / 1000:.1f} s, decode "
          f"{c['evalTokens'] * 1000 / c['evalMs']:.1f} t/s; JS calls in generation {gpu['jsCalls']}")


def test_webgpu_unusable_gives_the_cpu_with_a_message(pyodide_dir, pyodide_wheel, gemma_path, native_gemma,  # noqa: F811
                                                      tmp_path):
    """Chromium without --enable-unsafe-webgpu has navigator.gpu but no adapter: device "webgpu" loads the model on
    the CPU, says why, and gives the native ids."""
    out = _run(tmp_path, pyodide_dir, pyodide_wheel, gemma_path, (), nPredict=8, device="webgpu")
    info = out["info"]
    assert info["device"] == "cpu" and info["nGpuLayers"] == 0, info
    assert "WebGPU is not available" in info["message"] and "no adapter" in info["message"], info
    assert "running all layers on the CPU" in info["message"]
    assert info["kernels"].startswith("wasm")
    assert out["ids"] == native_gemma["ids"]


def test_partial_offload_in_the_browser(pyodide_dir, pyodide_wheel, gemma_path, native_gemma, tmp_path):  # noqa: F811
    """nGpuLayers 2: the last two layers on WebGPU, the rest, the embeddings and the output on the CPU; the residual
    stream crosses to the device (a queued write) and back (a readback) every step; the native ids."""
    out = _run(tmp_path, pyodide_dir, pyodide_wheel, gemma_path, ("--enable-unsafe-webgpu",), nPredict=8,
               device="auto", nGpuLayers=2)
    info = out["info"]
    assert info["device"] == "webgpu" and info["nGpuLayers"] == 2 and info["nLayers"] == 18, info
    assert "offloaded 2/18 layers" in info["message"]
    assert out["ids"] == native_gemma["ids"]
    assert out["gpu"]["runs"] == 8  # one call per step: the two layers and x read back for the CPU's output
    # x (640 floats) of every prompt token, then of the one token of each of the 7 decode steps
    assert out["gpu"]["bytesRead"] == (len(native_gemma["tokens"]) + 7) * 640 * 4
