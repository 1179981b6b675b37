"""The engine inside Pyodide under Node 20: WASM kernels against their scalar twins, and Gemma's greedy ids.

Needs ``node``/``npm`` (the npm package ``pyodide@314.0.7`` is installed into ``$EMBERLLM_CACHE/npm-pyodide``
on first use, or taken from ``$EMBERLLM_PYODIDE_DIR``) and a WebAssembly toolchain for
``build_scripts/build_wasm.py`` (emcc, or Debian ``clang lld wasi-libc``).  Skips with the reason when one is
missing.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from .llamacpp import REFERENCE_JSON, reference_file
from .pyodide_fixtures import load_build_wasm, run_in_pyodide

ROOT = Path(__file__).resolve().parent.parent


def test_wasm_kernels_match_scalar(pyodide_dir, wasm_lib):
    """Every WASM SIMD kernel equals its scalar twin bit for bit on random blocks of every type."""
    out = run_in_pyodide(pyodide_dir, wasm_lib, ROOT / "tests" / "pyodide" / "check_kernels.py")
    summary = [line for line in out.splitlines() if line.startswith("SUMMARY")]
    assert summary, out
    assert "wasm-simd128" in summary[-1], summary[-1]
    assert summary[-1].endswith("failed=0"), out
    print(summary[-1])


PROMPT = "The capital of France is"
NATIVE_SCRIPT = """
import json, sys
from emberllm.runtime.model import Model
m = Model(sys.argv[1], n_ctx=64, n_threads=1)
ids = [s.token for s in m.generate(sys.argv[2], n_predict=8, temperature=0)]
print(json.dumps({"ids": ids, "tokens": m.tokenize(sys.argv[2])}))
"""


@pytest.fixture(scope="session")
def native_gemma(gemma_path) -> dict:
    """The native engine's greedy ids (8 tokens) and tokenization of PROMPT."""
    proc = subprocess.run([sys.executable, "-c", NATIVE_SCRIPT, str(gemma_path), PROMPT], capture_output=True,
                          text=True, timeout=300, check=True)
    return json.loads(proc.stdout)


def test_gemma_greedy_ids_match_native(pyodide_dir, pyodide_wheel, gemma_path, native_gemma):
    """The wheel installed in Pyodide, the model streamed into a bytearray: the native engine's greedy ids."""
    out = run_in_pyodide(pyodide_dir, pyodide_wheel, ROOT / "tests" / "pyodide" / "greedy_ids.py",
                         model=gemma_path)
    ids = next(line.split()[1:] for line in out.splitlines() if line.startswith("IDS"))
    print(*[line for line in out.splitlines() if line.startswith("TIMING")])
    assert [int(i) for i in ids] == native_gemma["ids"]


def test_greedy_ids_and_probabilities_match_llamacpp(pyodide_dir, pyodide_wheel, gemma_path, tmp_path):
    """Every reference prompt (32 steps) in Pyodide against llama.cpp's own outputs, by the native engine's rule
    (tests/test_engine_reference.py): ids equal up to llama.cpp's first step with a top-2 gap below 0.05, and
    llama.cpp's top-5 probabilities within 0.1 (mean within 0.02) of ours on those steps.  The WASM levels run
    attention on the float path, so this is what holds their numerics to llama.cpp's."""
    from .test_engine_reference import PROB_MAX_TOL, PROB_MEAN_TOL, first_close_step

    ref = json.loads(reference_file(REFERENCE_JSON).read_text())["prompts"]
    prompts = [[r["prompt_token_ids"], len(r["steps"])] for r in ref.values()]
    script = tmp_path / "reference_ids.py"
    body = (ROOT / "tests" / "pyodide" / "reference_ids.py").read_text()
    script.write_text(f"PROMPTS = {json.dumps(prompts)}\n" + body)
    out = run_in_pyodide(pyodide_dir, pyodide_wheel, script, model=gemma_path)
    results = json.loads(out.strip().splitlines()[-1])
    for (prompt, r), got in zip(ref.items(), results, strict=True):
        k = first_close_step(r["steps"])
        assert got["ids"][:k] == r["generated_token_ids"][:k], f"{prompt!r}: diverged before step {k}"
        # ours are our top 10: a reference top-5 id missing from them counts as probability 0 (a failure if big)
        diffs = [abs(got["probs"][i].get(str(e["id"]), 0.0) - e["prob"])
                 for i in range(k) for e in r["steps"][i]["top5"]]
        if diffs:
            mean = sum(diffs) / len(diffs)
            assert max(diffs) < PROB_MAX_TOL, f"{prompt!r}: a top-5 probability is off by {max(diffs):.4f}"
            assert mean < PROB_MEAN_TOL, f"{prompt!r}: top-5 probabilities off by {mean:.4f} on average"
        print(f"{prompt!r}: {k} steps checked, max |dp| {max(diffs, default=0):.4f}")


def test_js_loader(pyodide_dir, pyodide_wheel, gemma_path, native_gemma):
    """pyodide_pkg/emberllm.mjs under Node: greedy ids and tokens as native (and llama.cpp when its reference
    outputs are there), progress, abort, jsonSchema (sampled texts validate; errors name the keyword), the wasm32
    size check, unload."""
    proc = subprocess.run(["node", str(ROOT / "tests" / "pyodide" / "loader_check.mjs"), str(pyodide_dir),
                           str(pyodide_wheel), str(gemma_path), PROMPT], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(out["timings"], "tg t/s", out["tgTps"])
    assert out["ids"] == native_gemma["ids"]
    assert out["tokens"] == native_gemma["tokens"]
    if REFERENCE_JSON.is_file():
        ref = json.loads(REFERENCE_JSON.read_text())["tokenize"][PROMPT]["add_special=True,parse_special=True"]
        assert out["tokens"] == ref["ids"]
    assert out["progressCalls"] >= 2
    assert out["abortReason"] == "cancelled" and out["abortSteps"] < 50
    for text, reason in out["schemaTexts"]:
        assert reason == "stop", text
        jsonschema.validate(json.loads(text), out["schema"])
    assert "uniqueItems" in out["schemaErrors"][0]
    assert "grammar, jsonSchema" in out["schemaErrors"][1]
    assert "does not fit in wasm32" in out["tooLarge"]
    assert "no model loaded" in out["afterUnload"]


def test_js_embed_matches_native_and_llamacpp(pyodide_dir, pyodide_wheel, gemma_path):
    """engine.embed under Node (tests/pyodide/embed_check.mjs): mean and last pooling of the recorded texts as the
    native Model.embed gives them and llama-embedding's, both within test_embeddings' bar (WebAssembly's kernels
    round differently: to native, cosines 0.9973-0.9999, the scale of llama.cpp's own spread); a lone string gives
    one vector, pooling "none" one per token, an unknown pooling an error naming it."""
    from emberllm.runtime.model import Model

    from .test_embeddings import MIN_COSINE, REFERENCES, cosine

    recorded = json.loads(REFERENCES.read_text(encoding="utf-8"))
    texts = [t["text"] for t in recorded["texts"]]
    proc = subprocess.run(["node", str(ROOT / "tests" / "pyodide" / "embed_check.mjs"), str(pyodide_dir),
                           str(pyodide_wheel), str(gemma_path), json.dumps(texts)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"engine.embed of {len(texts)} texts (mean): {out['embedMs']:.0f} ms")
    with Model(gemma_path, n_ctx=256, n_threads=1) as native:
        for pooling in ("mean", "last"):
            want = native.embed(texts, pooling=pooling)
            ref = recorded["embeddings"][f"{pooling}/fa-auto"]
            to_native = [cosine(got, exp) for got, exp in zip(out[pooling], want, strict=True)]
            to_llama = [cosine(got, lc) for got, lc in zip(out[pooling], ref, strict=True)]
            print(pooling, "to native", " ".join(f"{c:.5f}" for c in to_native), "to llama.cpp",
                  " ".join(f"{c:.5f}" for c in to_llama))
            for text, cn, cl in zip(texts, to_native, to_llama, strict=True):
                assert cn >= MIN_COSINE, f"{pooling} {text!r}: {cn:.6f} to native"
                assert cl >= MIN_COSINE, f"{pooling} {text!r}: {cl:.5f} to llama.cpp"
        assert len(out["single"]) == native.hp.n_embd
        assert len(out["none"]) == len(native.tokenize(texts[0]))
        assert cosine(out["none"][-1], out["lastAlone"]) > 0.99999
    assert "rank" in out["badPooling"]


NATIVE_CHAT_SCRIPT = """
import json, sys
from emberllm.runtime.model import Model
m = Model(sys.argv[1], n_ctx=2048, n_threads=1)
steps = list(m.chat([{"role": "user", "content": sys.argv[2]}], n_predict=8, temperature=0, n_probs=2))
print(json.dumps([[s.token, s.extra["probs"][0][1] - s.extra["probs"][1][1]] for s in steps]))
"""


def test_js_chat_reads_long_conversations_in_pieces(pyodide_dir, pyodide_wheel, gemma_path, native_gemma):
    """engine.chat under Node (tests/pyodide/chat_fit_check.mjs, one model load for (a)-(c) and a reload): (a) a
    ~1,500-token conversation gives progress steps increasing to promptTotal, (b) abort() right after the first
    one ends the stream as "cancelled" before another piece is read and the next request reuses that piece, (c) a
    conversation longer than nCtx 512 is answered with its oldest turns dropped, and too long a last message is a
    clear error; (d) short prompts give the native engine's greedy ids (complete and chat)."""
    native_chat = json.loads(subprocess.run([sys.executable, "-c", NATIVE_CHAT_SCRIPT, str(gemma_path), PROMPT],
                                            capture_output=True, text=True, timeout=300, check=True).stdout)
    # up to the first near tie (top-2 gap below 0.05), where the x86 half-precision attention and WebAssembly's float
    # one may part (as in test_greedy_ids_and_probabilities_match_llamacpp)
    close = next((i for i, (_, gap) in enumerate(native_chat) if gap < 0.05), len(native_chat))
    chat_ids = [t for t, _ in native_chat[:close]]
    proc = subprocess.run(["node", str(ROOT / "tests" / "pyodide" / "chat_fit_check.mjs"), str(pyodide_dir),
                           str(pyodide_wheel), str(gemma_path), PROMPT], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # (d)
    assert out["completeIds"] == native_gemma["ids"]
    assert len(chat_ids) >= 4 and out["chatIds"][: len(chat_ids)] == chat_ids
    assert out["shortProgress"][-1][0] == out["shortProgress"][-1][1]
    # (b): the stream ends at the next step, no further piece read; what was read stays cached
    aborted, chunk = out["aborted"], out["promptChunk"]
    assert aborted["finishReason"] == "cancelled" and aborted["tokens"] == 1
    assert aborted["progress"][-1] <= aborted["progress"][0] + chunk
    assert aborted["timings"]["promptTokens"] == chunk
    first = aborted["progress"][0]
    assert first == aborted["timings"]["cachedTokens"] + chunk
    print(f"Stop during the prompt read: the stream ended {aborted['stopMs']:.1f} ms after abort()")
    # (a)
    full = out["full"]
    done = [d for d, _ in full["progress"]]
    total = aborted["total"]
    assert total >= 1400 and all(t == total for _, t in full["progress"])
    assert done == sorted(set(done)) and done[-1] == total and len(done) >= 3
    assert full["timings"]["cachedTokens"] == first  # the piece read before the abort is reused
    assert full["timings"]["promptTotal"] == total and full["timings"]["droppedMessages"] == 0
    assert full["finishReason"] in ("stop", "length")
    t = full["timings"]
    print(f"read {t['promptTokens']} tokens in {len(done)} pieces: {t['promptTokens'] / t['promptMs'] * 1000:.1f} t/s, "
          f"pieces of {min(full['gapsMs']):.0f}-{max(full['gapsMs']):.0f} ms")
    # (c)
    small = out["small"]
    assert small["finishReason"] in ("stop", "length") and small["ids"]
    assert small["timings"]["droppedMessages"] > 0
    assert small["timings"]["promptTotal"] + 8 <= 512 and small["progress"][-1] == [small["timings"]["promptTotal"]] * 2
    assert "ValueError: the last message and system prompt take" in out["tooLong"]
    assert out["tooLong"].rstrip().endswith("the context holds 2048: shorten it or raise Context")
    assert "does not fit in the context of 512" in out["unfitted"]


def test_web_worker_and_engine_client_plumbing():
    """web/worker.js against a fake engine and web/engine-client.js under Node (tests/pyodide/web_engine_check.mjs):
    "prompt" messages at most every 100 ms and always the last, tokens, done with droppedMessages; errors as a kind
    and their last line without the Python exception's class; onPrompt(done, total) and onToken(text)."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    proc = subprocess.run(["node", str(ROOT / "tests" / "pyodide" / "web_engine_check.mjs"), str(ROOT / "web")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    prompt = [(m["done"], m["total"]) for m in out["posted"] if m["type"] == "prompt"]
    assert prompt == [(32, 330), (192, 330), (330, 330)]  # the first, the one after a slow piece, the last
    assert [m["text"] for m in out["posted"] if m["type"] == "token"] == ["Hi", "!"]
    done = out["posted"][-1]
    assert done["type"] == "done" and done["finishReason"] == "stop"
    assert done["timings"]["droppedMessages"] == 3 and done["timings"]["generatedTokens"] == 2
    assert out["describe"] == [
        {"kind": "context", "message": "the last message and system prompt take 2979 tokens (+8 kept for the reply); "
                                       "the context holds 2048: shorten it or raise Context"},
        {"kind": "context", "message": "prompt of 994 tokens does not fit in the context of 512"},
        {"kind": "not-gguf", "message": "not a GGUF file (bad magic b'abcd')"},
        {"kind": "engine", "message": "WebGPU: the device was lost"},
        {"kind": "too-large", "message": "MemoryError"},
    ]
    client = out["client"]
    assert client["sent"] == "chat"
    assert client["calls"] == [["prompt", 32, 64], ["prompt", 64, 64], ["token", "Hello"]]
    assert client["reply"]["timings"]["droppedMessages"] == 2


def test_bench_node_runner_contract(pyodide_dir, pyodide_wheel, gemma_path):
    """bench/pyodide/run_node.mjs on tiny tests prints what bench/README.md's runner contract promises."""
    spec = {"npm_dir": str(pyodide_dir.parent.parent), "model": str(gemma_path), "threads": 1, "n_ctx": 32,
            "timeout_s": 300, "extra": {"wheel": str(pyodide_wheel), "pyodide_dir": str(pyodide_dir)},
            "tests": [{"n_prompt": 4, "n_gen": 0, "prompt": "The capital of"},
                      {"n_prompt": 0, "n_gen": 3, "prompt": ""}]}
    proc = subprocess.run(["node", str(ROOT / "bench" / "pyodide" / "run_node.mjs"), json.dumps(spec)],
                          capture_output=True, text=True, timeout=360)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["load_ms"] > 0 and out["kernels"].startswith("wasm")
    pp, tg = out["tests"]
    assert pp["prompt_n"] == 4 and pp["prompt_ms"] > 0  # BOS + 3 tokens
    assert tg["predicted_n"] == 3 and tg["predicted_ms"] > 0 and tg["predicted_per_second"] > 0
    assert tg["kernel_calls_per_token"] > 0
    two = subprocess.run(["node", str(ROOT / "bench" / "pyodide" / "run_node.mjs"), json.dumps({**spec, "threads": 2})],
                         capture_output=True, text=True, timeout=60)
    assert two.returncode == 2 and "no threads in Pyodide" in two.stderr


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_worker(site: Path, links: dict[str, Path], worker: Path, message: dict, timeout_s: int = 300,
                    extra_flags: tuple[str, ...] = ()) -> dict:
    """Serve ``links`` (URL path -> file or directory) from ``site``, start ``worker`` as a module Web Worker in a
    headless Chromium page (launched with ``extra_flags`` too, e.g. ``--enable-unsafe-webgpu``), post it
    ``message`` and return its reply.  Skips without Chromium or Python playwright."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium (/usr/bin/chromium) is not installed")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Python playwright is not installed")
    import functools
    import http.server
    import threading

    site.mkdir(parents=True, exist_ok=True)
    for name, target in {**links, "worker.mjs": worker}.items():
        (site / name).symlink_to(target, target_is_directory=target.is_dir())
    (site / "index.html").write_text("<!doctype html><meta charset=utf-8><title>emberllm test</title>\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                          ".wasm": "application/wasm"}

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_api.sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(str(site.parent / "chromium-profile"), headless=True,
                                                        executable_path=str(CHROMIUM),
                                                        args=[*CHROMIUM_FLAGS, *extra_flags])
            try:
                page = ctx.pages[0] if ctx.pages else ctx.new_page()
                page.set_default_timeout(timeout_s * 1000)
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
                return page.evaluate("""(message) => new Promise((resolve) => {
                    const w = new Worker('/worker.mjs', { type: 'module' });
                    w.onerror = (e) => resolve({ ok: false, out: '', error: 'worker error: ' + e.message });
                    w.onmessage = (e) => { w.terminate(); resolve(e.data); };
                    w.postMessage(message);
                })""", message)
            finally:
                ctx.close()
    finally:
        server.shutdown()
        server.server_close()


def run_in_chromium(pyodide_dir: Path, lib: Path, script: Path, site: Path) -> str:
    """Run ``script`` in Pyodide in a Chromium Web Worker (tests/pyodide/chromium_worker.mjs) with emberllm's
    sources and ``lib``; returns its stdout."""
    files = sorted(str(f.relative_to(ROOT / "core")) for f in (ROOT / "core").rglob("*")
                   if f.is_file() and "__pycache__" not in f.parts
                   and (f.suffix in (".py", ".json") or f.name == "ember.h"))
    result = chromium_worker(site, {"pyodide": pyodide_dir, "core": ROOT / "core", "lib.so": lib, "script.py": script},
                             ROOT / "tests" / "pyodide" / "chromium_worker.mjs",
                             {"files": files, "lib": "/lib.so", "script": "/script.py"})
    assert result["ok"], f"{result.get('error')}\n{result['out'][-3000:]}"
    return result["out"]


@pytest.fixture(scope="session")
def relaxed_lib(tmp_path_factory) -> Path:
    """``libemberllm_relaxed.so`` (needs a compiler with -mrelaxed-simd: emcc, a newer clang, or PyPI ziglang)."""
    bw = load_build_wasm()
    try:
        tc = bw.find_relaxed_toolchain()
    except bw.ToolchainError as exc:
        pytest.skip(str(exc))
    return bw.build(tmp_path_factory.mktemp("wasm_relaxed"), relaxed=True, tc=tc)


def test_wasm_relaxed_build_matches_scalar(pyodide_dir, relaxed_lib, tmp_path):
    """The relaxed-SIMD kernels against the scalar twins, bit for bit, in headless Chromium: Node 20's V8 11.3 runs
    i32x4.relaxed_dot_i8x16_i7x16_add_s with pre-standard semantics (first operand unsigned, eight products per
    lane), so it cannot check them."""
    out = run_in_chromium(pyodide_dir, relaxed_lib, ROOT / "tests" / "pyodide" / "check_kernels.py", tmp_path / "site")
    summary = [line for line in out.splitlines() if line.startswith("SUMMARY")]
    assert summary and "wasm-relaxed" in summary[-1] and "wasm-simd128" in summary[-1], out
    assert summary[-1].endswith("failed=0"), out
    print(summary[-1])


def test_js_loader_relaxed_in_chromium(pyodide_dir, wasm_lib, relaxed_lib, gemma_path, native_gemma, tmp_path):
    """pyodide_pkg/emberllm.mjs in a Chromium Web Worker with a wheel holding both modules: it detects relaxed SIMD,
    loads the relaxed module, and Gemma's greedy ids and tokens equal the native engine's."""
    spec = importlib.util.spec_from_file_location("_emb_build_wheel", ROOT / "pyodide_pkg" / "build_wheel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    whl = module.build_wheel(wasm_lib, tmp_path / "wheel", relaxed_lib)
    links = {"pyodide": pyodide_dir, "pkg": ROOT / "pyodide_pkg", whl.name: whl, "model.gguf": gemma_path}
    out = chromium_worker(tmp_path / "site", links, ROOT / "tests" / "pyodide" / "chromium_loader_worker.mjs",
                          {"wheel": f"/{whl.name}", "model": "/model.gguf", "prompt": PROMPT, "kernels": "auto"})
    assert out["ok"], out.get("error")
    assert out["relaxedWorks"] and out["level"] == "wasm-relaxed", out
    assert out["ids"] == native_gemma["ids"]
    assert out["tokens"] == native_gemma["tokens"]


NATIVE_KV_SCRIPT = """
import json, sys
from emberllm.runtime.model import Model
m = Model(sys.argv[1], n_ctx=64, n_threads=1, cache_type_k=sys.argv[3], cache_type_v=sys.argv[3])
print(json.dumps([s.token for s in m.generate(sys.argv[2], n_predict=8, temperature=0)]))
"""


def test_js_quantized_kv_cache(pyodide_dir, pyodide_wheel, gemma_path):
    """load({cacheTypeK: "q8_0", cacheTypeV: "q8_0"}) under Node: the native engine's greedy ids with that cache
    (the WebAssembly level accumulates V unfused, the native one fused: equal on this prompt), the smaller estimate
    the 4 GiB check uses, an unknown type and a quantized cache asked onto WebGPU refused naming why."""
    proc = subprocess.run(["node", str(ROOT / "tests" / "pyodide" / "kv_cache_check.mjs"), str(pyodide_dir),
                           str(pyodide_wheel), str(gemma_path), PROMPT, "q8_0"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    native = subprocess.run([sys.executable, "-c", NATIVE_KV_SCRIPT, str(gemma_path), PROMPT, "q8_0"],
                            capture_output=True, text=True, timeout=300, check=True)
    assert out["ids"] == json.loads(native.stdout)
    assert out["types"] == ["f16", "q8_0", "q4_0", "f32"] and out["device"] == "cpu"
    assert out["kvCache"] == ["q8_0", "q8_0"]
    assert out["kvBytes"] == {"q8_0": 18 * 4096 * 2 * 256 // 32 * 34, "f16": 18 * 4096 * 2 * 256 * 2}
    assert "valid types are f16, q8_0, q4_0, f32" in out["badType"]
    assert "runs on the CPU only" in out["onGpu"]
