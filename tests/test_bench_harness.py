"""The benchmark harness's pure functions (``bench/harness.py``): no engine is started, nothing is timed."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


harness = _load("harness", BENCH / "harness.py")

# Two rows of real `llama-bench -o json` output (llama.cpp 0c1e570), trimmed of fields the harness ignores.
LLAMA_BENCH_JSON = """[
  {
    "build_commit": "0c1e570", "cpu_info": "AMD EPYC", "backends": "CPU",
    "model_type": "gemma3 270M Q4_K - Medium", "model_size": 246587904, "model_n_params": 268098176,
    "n_batch": 2048, "n_ubatch": 512, "n_threads": 1, "n_prompt": 512, "n_gen": 0, "n_depth": 0,
    "avg_ns": 951000000, "stddev_ns": 36556, "avg_ts": 538.4, "stddev_ts": 0.25,
    "samples_ns": [ 951000000 ], "samples_ts": [ 538.4 ]
  },
  {
    "build_commit": "0c1e570", "n_threads": 1, "n_prompt": 0, "n_gen": 128, "avg_ts": 91.8, "stddev_ts": 0.0
  },
  {
    "build_commit": "0c1e570", "n_threads": 1, "n_prompt": 256, "n_gen": 64, "avg_ts": 250.5, "stddev_ts": 0.0
  }
]
"""

# wllama's runner output (bench/wllama/run.mjs): logs first, the JSON result last; timings as wllama gives them.
WLLAMA_OUTPUT = "\n".join([
    "[page warning] load: control-looking token",
    json.dumps({
        "load_ms": 2000.5, "peak_rss_bytes": 518656000, "n_threads": 2, "multithread": True,
        "tests": [
            {"n_prompt": 512, "n_gen": 0, "prompt_n": 512, "prompt_ms": 8752.0, "predicted_n": 1,
             "predicted_ms": 0.001, "predicted_per_second": 0},
            {"n_prompt": 0, "n_gen": 128, "prompt_n": 1, "prompt_ms": 50.0, "predicted_n": 128,
             "predicted_ms": 5906.976, "predicted_per_second": 21.5},
            {"n_prompt": 256, "n_gen": 64, "prompt_n": 256, "prompt_ms": 4000.0, "predicted_n": 64,
             "predicted_ms": 3000.0, "predicted_per_second": 21.0},
        ],
    }),
])


def test_test_labels_follow_llama_bench():
    assert harness.test_label(512, 0) == "pp512"
    assert harness.test_label(0, 128) == "tg128"
    assert harness.test_label(256, 64) == "pp256+tg64"
    tests = harness.make_tests(512, 128, (256, 64))
    assert [t.label for t in tests] == ["pp512", "tg128", "pp256+tg64"]
    assert [t.label for t in harness.make_tests(0, 32, None)] == ["tg32"]


def test_parse_llama_bench_json():
    rows = harness.parse_bench_json(LLAMA_BENCH_JSON)
    assert harness.bench_rows_to_ts(rows) == {"pp512": 538.4, "tg128": 91.8, "pp256+tg64": 250.5}


def test_parse_bench_jsonl_and_errors():
    text = "\n".join(json.dumps({"n_prompt": p, "n_gen": g, "avg_ts": v}) for p, g, v in [(8, 0, 1.5), (0, 4, 2.5)])
    assert harness.bench_rows_to_ts(harness.parse_bench_json(text)) == {"pp8": 1.5, "tg4": 2.5}
    with pytest.raises(ValueError):
        harness.parse_bench_json("")
    with pytest.raises(ValueError):
        harness.parse_bench_json('[{"n_prompt": 1}]')


def test_emberllm_bench_json_parses_with_the_same_parser():
    """``emberllm bench -o json`` uses llama-bench's field names, so one parser reads both."""
    from emberllm.cli.bench import BenchResult

    row = BenchResult(build_commit="0.1.0", cpu_info="cpu", backends="CPU", model_filename="m.gguf",
                      model_type="gemma3 270M Q4_K - Medium", model_size=1, model_n_params=2, n_batch=512,
                      n_ubatch=512, n_threads=2, n_prompt=256, n_gen=64, n_depth=0, test_time="t", avg_ns=1,
                      stddev_ns=0, avg_ts=123.0, stddev_ts=0.0, load_ms=300.0)
    from dataclasses import asdict

    rows = harness.parse_bench_json(json.dumps([asdict(row)]))
    assert harness.bench_rows_to_ts(rows) == {"pp256+tg64": 123.0}
    assert rows[0]["load_ms"] == 300.0


def test_llama_load_time_from_perf_print():
    stderr = ("0.01.414.989 I common_perf_print:        load time =      28.26 ms\n"
              "0.01.415.034 I common_perf_print:       total time =      30.51 ms /     3 tokens\n")
    assert harness.parse_llama_perf_total_ms(stderr) == pytest.approx(30.51)
    assert harness.llama_load_ms(1500.0, stderr) == pytest.approx(1469.49)
    assert harness.llama_load_ms(1500.0, "no perf lines") is None


def test_parse_wllama_output():
    ts, load, peak, notes, result = harness.parse_runner_output(WLLAMA_OUTPUT)
    assert ts["pp512"] == pytest.approx(512 * 1000 / 8752.0)
    assert ts["tg128"] == pytest.approx(21.5)  # wllama's own predicted_per_second
    # pg: prompt tokens plus the 63 decodes after the first sampled token, over both times
    assert ts["pp256+tg64"] == pytest.approx((256 + 63) * 1000 / 7000.0)
    assert load == 2000.5 and peak == 518656000 and notes == [] and result["n_threads"] == 2


def test_runner_notes_a_wrong_prompt_length():
    out = json.dumps({"tests": [{"n_prompt": 512, "n_gen": 0, "prompt_n": 510, "prompt_ms": 1000.0,
                                 "predicted_n": 1, "predicted_ms": 0.0}]})
    ts, load, peak, notes, _ = harness.parse_runner_output("log line\n" + out)
    assert ts == {"pp512": pytest.approx(510.0)}
    assert load is None and peak is None
    assert notes == ["pp512: the prompt was 510 tokens"]
    with pytest.raises(ValueError):
        harness.parse_runner_output("no json here")


def test_tg_without_per_second_counts_decodes():
    test = {"n_prompt": 0, "n_gen": 8, "prompt_n": 1, "prompt_ms": 10.0, "predicted_n": 8, "predicted_ms": 700.0}
    assert harness.runner_test_ts(test) == pytest.approx(10.0)


def test_make_prompt_text_exact_length():
    def tokenize(text: str) -> list[int]:  # BOS + one token per word, two for words longer than 6 letters
        ids = [2]
        for word in text.split():
            ids += [1, 1] if len(word) > 6 else [1]
        return ids

    for n in (1, 2, 17, 64, 512):
        assert len(tokenize(harness.make_prompt_text(tokenize, n))) == n
    with pytest.raises(ValueError):
        harness.make_prompt_text(tokenize, 0)


def test_median_and_ratio():
    assert harness.median([3.0, None, 1.0, 2.0]) == 2.0
    assert harness.median([1.0, 2.0]) == 1.5
    assert harness.median([None, float("nan")]) is None
    assert harness.ratio(50.0, 100.0) == 0.5
    assert harness.ratio(None, 100.0) is None
    assert harness.ratio(1.0, 0.0) is None


def _records():
    rec = harness.RunRecord
    return [
        rec("llama.cpp", 1, 0, {"pp8": 100.0, "tg4": 50.0}, load_ms=1000.0, peak_rss_bytes=300 * 2**20),
        rec("emberllm", 1, 0, {"pp8": 50.0, "tg4": 40.0}, load_ms=400.0, peak_rss_bytes=320 * 2**20),
        rec("llama.cpp", 1, 1, {"pp8": 120.0, "tg4": 60.0}, load_ms=1200.0, peak_rss_bytes=310 * 2**20),
        rec("emberllm", 1, 1, {"pp8": 70.0, "tg4": 44.0}, load_ms=600.0, peak_rss_bytes=330 * 2**20),
        rec("emberllm", 1, 2, error="crashed"),
        rec("wllama", 1, 0, error="wllama exit 1: boom"),
    ]


def test_summarize_medians_and_ratios():
    tests = harness.make_tests(8, 4, None)
    rows = harness.summarize(_records(), ["llama.cpp", "emberllm", "wllama", "emberllm-pyodide-node"], [1], tests,
                             unavailable={"emberllm-pyodide-node": "not built"})
    by = {r.engine: r for r in rows}
    assert by["llama.cpp"].ts == {"pp8": 110.0, "tg4": 55.0}
    assert by["llama.cpp"].ratio == {"pp8": 1.0, "tg4": 1.0}
    assert by["emberllm"].ts == {"pp8": 60.0, "tg4": 42.0}
    assert by["emberllm"].ratio["pp8"] == pytest.approx(60 / 110)
    assert by["emberllm"].load_ms == 500.0 and by["emberllm"].peak_rss_bytes == 330 * 2**20
    assert (by["emberllm"].n_ok, by["emberllm"].n_runs) == (2, 3)
    assert by["wllama"].status == "failed: wllama exit 1: boom"
    assert by["emberllm-pyodide-node"].status == "not built"


def test_summarize_without_reference_has_no_ratios():
    tests = harness.make_tests(8, 0, None)
    rows = harness.summarize([harness.RunRecord("emberllm", 2, 0, {"pp8": 5.0})], ["emberllm"], [2], tests)
    assert rows[0].ratio == {"pp8": None}


def test_format_table():
    tests = harness.make_tests(8, 4, None)
    rows = harness.summarize(_records(), ["llama.cpp", "emberllm", "wllama", "emberllm-pyodide-node"], [1], tests,
                             unavailable={"emberllm-pyodide-node": "not built"})
    lines = harness.format_table(rows, tests).splitlines()
    assert lines[0] == "| engine | threads | pp8 t/s | tg4 t/s | load s | peak MiB | runs |"
    assert lines[1] == "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    assert lines[2] == "| llama.cpp | 1 | 110.0 | 55.00 | 1.10 | 310 | 2/2 |"
    assert lines[3] == "| emberllm | 1 | 60.00 (0.55×) | 42.00 (0.76×) | 0.50 | 330 | 2/3 |"
    assert lines[4] == "| wllama | 1 | failed: wllama exit 1: boom | – | – | – | 0/1 |"
    assert lines[5] == "| emberllm-pyodide-node | 1 | not built | – | – | – | 0/0 |"
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_short_status_is_one_table_safe_line():
    status = "failed: emberllm bench exit 1: Traceback\n  File x\nAttributeError: no | thing"
    assert harness.short_status(status) == "failed: AttributeError: no / thing"
    assert len(harness.short_status("x" * 200)) == 70


def test_parse_cpuinfo():
    text = ("processor\t: 0\nmodel name\t: AMD EPYC 9B45\nflags\t\t: fpu sse4_2 avx avx2 avx512f avx512_vnni\n\n"
            "processor\t: 1\nmodel name\t: AMD EPYC 9B45\nflags\t\t: fpu sse4_2 avx avx2 avx512f avx512_vnni\n")
    info = harness.parse_cpuinfo(text)
    assert info == {"cpu_model": "AMD EPYC 9B45", "logical_cpus": 2,
                    "simd_flags": ["sse4_2", "avx", "avx2", "avx512f", "avx512_vnni"]}


def test_write_results(tmp_path):
    tests = harness.make_tests(8, 4, None)
    records = _records()
    rows = harness.summarize(records, ["llama.cpp", "emberllm"], [1], tests)
    payload = harness.results_payload(
        started="2026-11-22T00:40:00Z", finished="2026-11-22T00:45:00Z", argv=["compare.py", "--quick"],
        settings={"reps": 2}, machine={"cpu_model": "x"}, versions={"llama.cpp": "0c1e570"},
        engines={"llama.cpp": "ok", "emberllm": "ok"}, records=records, rows=rows,
        table=harness.format_table(rows, tests))
    name = harness.result_filename("2026-11-22T00:40:00Z", "bdd7406")
    assert name == "20261122T004000Z-bdd7406.json"
    first = harness.write_results(tmp_path / "results", payload, name)
    second = harness.write_results(tmp_path / "results", payload, name)
    assert first.name == name and second.name == "20261122T004000Z-bdd7406-1.json"
    assert not list((tmp_path / "results").glob("*.tmp"))
    data = json.loads(first.read_text())
    assert data["schema"] == 1 and data["versions"] == {"llama.cpp": "0c1e570"}
    assert data["runs"][0]["ts"] == {"pp8": 100.0, "tg4": 50.0}
    assert data["summary"][1]["engine"] == "emberllm" and "| emberllm | 1 |" in data["table"]


def test_bench_lock_serializes(tmp_path):
    lock = str(tmp_path / "bench.lock")
    events: list[str] = []
    waited = threading.Event()

    def other() -> None:
        with harness.bench_lock(lock, on_wait=waited.set):
            events.append("other")

    with harness.bench_lock(lock):
        thread = threading.Thread(target=other)
        thread.start()
        assert waited.wait(5)
        time.sleep(0.05)
        events.append("first")
    thread.join(5)
    assert events == ["first", "other"]


def test_compare_imports_without_side_effects(tmp_path):
    """compare.py only defines things on import; its argument parsing is checked here too."""
    compare = _load("bench_compare", BENCH / "compare.py")
    args = compare.parse_args(["--quick", "--only", "llama.cpp,emberllm", "-t", "2"])
    assert args.reps == 2 and args.only == ["llama.cpp", "emberllm"] and args.threads == [2]
    assert args.pg == (256, 64)
    assert [e.name for e in compare.make_engines(args.only)] == ["llama.cpp", "emberllm"]
    assert compare.parse_args([]).reps == 5
    with pytest.raises(SystemExit):
        compare.parse_args(["--only", "nope"])
    flags = compare._llama_bench_test_flags(harness.make_tests(512, 128, (256, 64)))
    assert flags == ["-p", "512", "-n", "128", "-pg", "256,64"]
    assert compare._llama_bench_test_flags(harness.make_tests(0, 16, None)) == ["-p", "0", "-n", "16"]


def test_pyodide_rows_say_not_built_until_the_package_exists(tmp_path, monkeypatch):
    compare = _load("bench_compare", BENCH / "compare.py")
    monkeypatch.setattr(compare, "ROOT", tmp_path)
    engine = compare.EmberPyodide("node")
    engine.script = tmp_path / "run_node.mjs"
    settings = compare.Settings(model=tmp_path / "m.gguf", tests=harness.make_tests(8, 4, None), threads=[1], reps=1)
    with pytest.raises(compare.Unavailable, match="not built"):
        engine.prepare(settings)
    (tmp_path / "build" / "pyodide").mkdir(parents=True)  # pyodide_pkg/build_wheel.py's default --out
    (tmp_path / "build" / "pyodide" / "emberllm-0.1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl").write_bytes(b"")
    with pytest.raises(compare.Unavailable, match="not built"):
        engine.prepare(settings)  # the wheel alone is not enough: the runner script is missing too
    assert engine.name == "emberllm-pyodide-node" and not engine.needs_chromium
    assert compare.EmberPyodide("chromium").needs_chromium


def test_pyodide_rows_at_two_threads_say_no_threads(tmp_path, monkeypatch):
    """Pyodide has no threads: a 2-thread run is an "n/a" record (no Node started), shown as such, not "failed"."""
    compare = _load("bench_compare", BENCH / "compare.py")
    engine = compare.EmberPyodide("node")
    monkeypatch.setattr(compare, "run_measured", lambda *a, **k: pytest.fail("no runner may start for 2 threads"))
    settings = compare.Settings(model=tmp_path / "m.gguf", tests=harness.make_tests(8, 4, None), threads=[2], reps=1)
    rec = engine.run(settings, 2, 0)
    assert rec.error == compare.NO_THREADS
    rows = harness.summarize([rec], ["emberllm-pyodide-node"], [2], harness.make_tests(8, 4, None))
    assert rows[0].status == "n/a: no threads in Pyodide" and rows[0].n_ok == 0


# -- the WebGPU rows (compare.py) and bench/gpu/run.py: no GPU, no browser, nothing timed -------------------------
class _Done:
    """A finished ``subprocess.run`` with this stdout."""

    def __init__(self, stdout: str = "", returncode: int = 0, stderr: str = "") -> None:
        self.stdout, self.returncode, self.stderr = stdout, returncode, stderr


def test_webgpu_rows_are_engines_and_skip_a_software_adapter_unless_named():
    compare = _load("bench_compare", BENCH / "compare.py")
    assert {"emberllm-webgpu", "emberllm-pyodide-chromium-webgpu"} <= set(compare.ENGINES)
    args = compare.parse_args([])
    assert not args.named and "emberllm-webgpu" in args.only
    engines = {e.name: e for e in compare.make_engines(args.only)}
    assert not engines["emberllm-webgpu"].software_ok
    assert not engines["emberllm-pyodide-chromium-webgpu"].software_ok
    args = compare.parse_args(["--only", "emberllm-webgpu"])
    (engine,) = compare.make_engines(args.only, software_ok=args.only)
    assert args.named and engine.software_ok and isinstance(engine, compare.EmberWebGpu)


def _probe_with(compare, monkeypatch, probe: dict):
    """``subprocess.run`` answering the import check, then the WebGPU probe with ``probe``."""
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append((cmd, kwargs))
        return _Done(json.dumps(probe) + "\n" if compare.WEBGPU_PROBE in cmd else "")

    monkeypatch.setattr(compare.subprocess, "run", fake_run)
    return calls


def test_webgpu_native_prepare_says_why_not(tmp_path, monkeypatch):
    compare = _load("bench_compare", BENCH / "compare.py")
    settings = compare.Settings(model=tmp_path / "m.gguf", tests=harness.make_tests(8, 4, None), threads=[1], reps=1)
    _probe_with(compare, monkeypatch, {"error": "no WebGPU adapter"})
    with pytest.raises(compare.Unavailable, match="no WebGPU adapter"):
        compare.EmberWebGpu().prepare(settings)
    _probe_with(compare, monkeypatch, {"adapter": "llvmpipe (LLVM 15)", "software": True, "f16": True})
    with pytest.raises(compare.Unavailable, match="skipped: software adapter"):
        compare.EmberWebGpu(software_ok=False).prepare(settings)
    compare.EmberWebGpu(software_ok=True).prepare(settings)  # named: runs on lavapipe, for information
    _probe_with(compare, monkeypatch, {"adapter": "Some GPU", "software": False, "f16": False})
    with pytest.raises(compare.Unavailable, match="no shader-f16"):
        compare.EmberWebGpu("emberllm-webgpu-f16", f16=True).prepare(settings)
    calls = _probe_with(compare, monkeypatch, {"adapter": "Some GPU", "software": False, "f16": False})
    compare.EmberWebGpu("emberllm-webgpu-f32", f16=False).prepare(settings)
    assert calls[-1][1]["env"]["EMBERLLM_GPU_F16"] == "0" and calls[-1][1]["env"]["EMBERLLM_DEVICE"] == "webgpu"


def _bench_rows(backends: str, kernels: str) -> str:
    return json.dumps([{"n_prompt": 8, "n_gen": 0, "avg_ts": 100.0, "backends": backends, "kernels": kernels,
                        "load_ms": 12.0}, {"n_prompt": 0, "n_gen": 4, "avg_ts": 50.0, "backends": backends,
                                           "kernels": kernels, "load_ms": 12.0}])


def test_webgpu_native_run_passes_ngl_and_refuses_a_cpu_fallback(tmp_path, monkeypatch):
    compare = _load("bench_compare", BENCH / "compare.py")
    settings = compare.Settings(model=tmp_path / "m.gguf", tests=harness.make_tests(8, 4, None), threads=[2], reps=1)
    engine = compare.EmberWebGpu(f16=True)
    engine.adapter = {"adapter": "llvmpipe", "software": True, "f16": True}
    seen = {}

    def fake_measured(cmd, timeout_s=None, cwd=None, env=None):
        seen.update(cmd=cmd, env=env)
        return compare.Measured(0, _bench_rows("WebGPU", "NVIDIA H200, f16, ngl 18"), "offloaded 18/18", 1.0, 1 << 20)

    monkeypatch.setattr(compare, "run_measured", fake_measured)
    monkeypatch.delenv("LP_NUM_THREADS", raising=False)
    rec = engine.run(settings, 2, 0)
    assert rec.error is None and rec.ts == {"pp8": 100.0, "tg4": 50.0}
    assert seen["cmd"][seen["cmd"].index("-ngl") + 1] == "99"
    assert seen["env"]["EMBERLLM_GPU_F16"] == "1" and seen["env"]["LP_NUM_THREADS"] == "2"
    assert rec.raw["device"] == "NVIDIA H200, f16, ngl 18"

    fallback = "WebGPU is not available (no WebGPU adapter): running all layers on the CPU"
    monkeypatch.setattr(compare, "run_measured", lambda *a, **k: compare.Measured(
        0, _bench_rows("CPU", "avx2"), f"warning\n{fallback}\n", 1.0, 1 << 20))
    rec = engine.run(settings, 2, 0)
    assert rec.ts == {} and rec.error.startswith("ran on CPU, not WebGPU") and fallback in rec.error

    monkeypatch.setattr(compare, "run_measured", lambda *a, **k: compare.Measured(-9, "", "offloaded", 4.0, 0, True))
    assert "timed out after 4 s" in engine.run(settings, 2, 0).error
    # the CPU row stays on the CPU whatever EMBERLLM_DEVICE says
    monkeypatch.setenv("EMBERLLM_DEVICE", "webgpu")
    assert compare.EmberNative().run_env(1)["EMBERLLM_DEVICE"] == "cpu"


def test_webgpu_browser_row_needs_the_loader_option_and_a_wheel_with_the_backend(tmp_path, monkeypatch):
    import zipfile

    compare = _load("bench_compare", BENCH / "compare.py")
    monkeypatch.setattr(compare, "ROOT", tmp_path)
    monkeypatch.setattr(compare.RunnerEngine, "prepare", lambda self, settings: None)  # node, chromium, npm
    settings = compare.Settings(model=tmp_path / "m.gguf", tests=harness.make_tests(8, 4, None), threads=[1], reps=1)
    engine = compare.EmberPyodideWebGpu(software_ok=False)
    assert engine.name == "emberllm-pyodide-chromium-webgpu" and engine.needs_chromium
    assert engine.script == BENCH / "pyodide" / "run_chromium.mjs" and engine.script.is_file()
    (tmp_path / "pyodide_pkg").mkdir()
    (tmp_path / "pyodide_pkg" / "emberllm.mjs").write_text("async load(source, { nCtx = 2048 } = {}) {}")
    with pytest.raises(compare.Unavailable, match="unavailable: the Pyodide loader .* has no nGpuLayers"):
        engine.prepare(settings)
    (tmp_path / "pyodide_pkg" / "emberllm.mjs").write_text("load(source, { device, nGpuLayers }) {}  info() {}")
    wheel = tmp_path / "build" / "pyodide" / "emberllm-0.1.0-py3-none-pyemscripten_2026_0_wasm32.whl"
    wheel.parent.mkdir(parents=True)
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("emberllm/__init__.py", "")
    with pytest.raises(compare.Unavailable, match="has no WebGPU backend"):
        engine.prepare(settings)
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(compare.WHEEL_WEBGPU_FILE, "")
    engine.prepare(settings)
    assert engine.extra["n_gpu_layers"] == 99 and engine.extra["device"] == "webgpu"
    assert engine.extra["fallback_flags"] == []  # SwiftShader would be skipped anyway
    assert "--enable-unsafe-webgpu" in engine.extra["chromium_flags"] and not engine.extra["software_ok"]


def test_webgpu_browser_row_reports_the_runners_unavailable_once(tmp_path, monkeypatch):
    compare = _load("bench_compare", BENCH / "compare.py")
    settings = compare.Settings(model=tmp_path / "m.gguf", tests=harness.make_tests(8, 4, None), threads=[1], reps=1)
    engine = compare.EmberPyodideWebGpu()
    engine.npm, engine.extra = tmp_path, {"wheel": "w.whl"}
    out = json.dumps({"tests": [], "no_adapter": True, "unavailable": "navigator.gpu gave no adapter"})
    starts = []
    monkeypatch.setattr(compare, "run_measured", lambda *a, **k: starts.append(1) or compare.Measured(
        0, out + "\n", "", 3.0, 0))
    rec = engine.run(settings, 1, 0)
    assert rec.error == "n/a: navigator.gpu gave no adapter" and rec.ts == {}
    assert engine.run(settings, 1, 1).error == rec.error and len(starts) == 1  # no second browser
    rows = harness.summarize([rec], [engine.name], [1], settings.tests)
    assert rows[0].status == "n/a: navigator.gpu gave no adapter"


def test_gpu_run_script_imports_without_side_effects_and_formats_its_table():
    run = _load("bench_gpu_run", BENCH / "gpu" / "run.py")
    args = run.parse_args(["-r", "1", "--only", "emberllm-webgpu-f16,llama.cpp-vulkan"])
    assert args.reps == 1 and args.only == ["emberllm-webgpu-f16", "llama.cpp-vulkan"]
    engines = run.make_engines(args.only, args)
    assert [e.name for e in engines] == ["llama.cpp-vulkan", "emberllm-webgpu-f16"]
    assert engines[1].f16 is True and not engines[1].software_ok
    with pytest.raises(SystemExit):
        run.parse_args(["--only", "nope"])
    assert run.is_software("llvmpipe (LLVM 15.0.6, 256 bits)") and not run.is_software("NVIDIA H200")
    tests = harness.make_tests(512, 128, None)
    rows = [harness.SummaryRow("llama.cpp-vulkan", 8, "ok", {"pp512": 1000.0, "tg128": 100.0},
                               {"pp512": 1.0, "tg128": 1.0}, 1500.0, 2**30, 3, 3),
            harness.SummaryRow("emberllm-webgpu-f16", 8, "ok", {"pp512": 500.0, "tg128": 50.0},
                               {"pp512": 0.5, "tg128": 0.5}, 900.0, 2**29, 3, 3),
            harness.SummaryRow("emberllm-pyodide-chromium-webgpu", 1, "not built", n_runs=0)]
    table = run.format_table(rows, tests, {"emberllm-webgpu-f16": "NVIDIA H200, f16, ngl 18",
                                           "llama.cpp-vulkan": "Vulkan: NVIDIA H200"})
    lines = table.splitlines()
    assert lines[0] == "| engine | device | threads | pp512 t/s | tg128 t/s | load s | peak MiB | runs |"
    assert lines[2] == "| llama.cpp-vulkan | Vulkan: NVIDIA H200 | 8 | 1000.0 | 100.0 | 1.50 | 1024 | 3/3 |"
    assert lines[3].startswith("| emberllm-webgpu-f16 | NVIDIA H200, f16, ngl 18 | 8 | 500.0 (0.50×) | 50.00 (0.50×)")
    assert lines[4] == "| emberllm-pyodide-chromium-webgpu | – | 1 | not built | – | – | – | 0/0 |"
