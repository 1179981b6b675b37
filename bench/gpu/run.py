"""emberllm on a real GPU, beside llama.cpp's Vulkan backend: pp512 and tg128, one markdown table, one JSON file.

    python bench/gpu/run.py                              # every row, 3 repetitions
    python bench/gpu/run.py -r 1 --json $OUT/gpu.json    # one repetition, the JSON where you want it
    python bench/gpu/run.py --only emberllm-webgpu-f16,emberllm-webgpu-f32 --skip-vulkan-build

Rows (each a fresh process per repetition, interleaved as bench/compare.py does, under its lock):

- ``llama.cpp-vulkan``: ``llama-bench -ngl 99`` built with ``-DGGML_VULKAN=ON`` from the llama.cpp sources the
  project builds (build_scripts/build_llamacpp.py: the ``llama-cpp-python`` sdist's ``vendor/llama.cpp`` in the
  cache, or ``$EMBERLLM_LLAMACPP_DIR``) into ``<sources>/build-vulkan``; needs cmake, glslc, the Vulkan headers and
  loader and SPIRV-Headers (installed with apt-get when missing and root; otherwise the row says what is missing);
- ``emberllm-webgpu-f16`` / ``emberllm-webgpu-f32``: ``emberllm bench -ngl 99`` with ``EMBERLLM_GPU_F16=1`` / ``0``
  (wgpu-py over Vulkan, Metal or D3D12; the f16 row is n/a on an adapter without ``shader-f16``);
- ``emberllm-pyodide-chromium-webgpu``: the Pyodide package in headless Chromium with ``--enable-unsafe-webgpu``
  and every layer on WebGPU (bench/compare.py's row; needs ``build/pyodide/emberllm-*.whl``, Node and Chromium);
- ``emberllm-cpu`` and ``llama.cpp-cpu``: the CPU, for scale (``llama.cpp-cpu`` only when already built).

A row that cannot run says why; a run that fails or passes ``--run-timeout`` is a row with its error; nothing stops
the others.  A software adapter (lavapipe, SwiftShader, llvmpipe) makes the GPU rows "skipped" unless
``--allow-software``.  Needs only the working tree and a venv (``pip install -e ".[gpu]"`` and the default model
package); see bench/gpu/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
ROOT = BENCH.parent
for _path in (BENCH, ROOT / "build_scripts"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import build_llamacpp  # noqa: E402  (the one place that finds llama.cpp's sources)
import compare  # noqa: E402  (the engines, the timed-run plumbing)
import harness  # noqa: E402  (medians, the lock, the results file)

ROWS = ("llama.cpp-vulkan", "emberllm-webgpu-f16", "emberllm-webgpu-f32", "emberllm-pyodide-chromium-webgpu",
        "emberllm-cpu", "llama.cpp-cpu")
REFERENCE = "llama.cpp-vulkan"
#: Debian packages llama.cpp's Vulkan backend builds with (glslc compiles its shaders).
VULKAN_PACKAGES = ("glslc", "libvulkan-dev", "spirv-headers")
SOFTWARE_ADAPTERS = ("llvmpipe", "lavapipe", "swiftshader", "software rasterizer", "warp")


def log(message: str) -> None:
    """Progress on stderr (stdout carries only the table)."""
    print(message, file=sys.stderr, flush=True)


def apt_install(packages: list[str], timeout_s: float = 300) -> bool:
    """Install Debian packages when root on a box with apt (False otherwise, or without network)."""
    if not packages or shutil.which("apt-get") is None or os.geteuid() != 0:
        return False
    log(f"installing {' '.join(packages)} with apt-get ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
            if subprocess.run(cmd, env=env, capture_output=True, timeout=timeout_s).returncode != 0:
                return False
    except (OSError, subprocess.TimeoutExpired):
        return False
    return True


def is_software(name: str) -> bool:
    """Whether an adapter / device name is a CPU rasterizer."""
    return any(word in name.lower() for word in SOFTWARE_ADAPTERS)


# -- llama.cpp with Vulkan -------------------------------------------------------------------------------
class LlamaCppVulkan(compare.Engine):
    """``llama-bench -ngl 99`` of a ``-DGGML_VULKAN=ON`` build (built once into ``<sources>/build-vulkan``)."""

    name = "llama.cpp-vulkan"

    def __init__(self, build_timeout_s: float, may_build: bool, software_ok: bool) -> None:
        self.src = build_llamacpp.source_dir()
        self.build_dir = self.src / "build-vulkan"
        self.bench = self.build_dir / "bin" / "llama-bench"
        self.build_timeout_s = build_timeout_s
        self.may_build = may_build
        self.software_ok = software_ok
        self.devices = ""

    def _glslc(self) -> str | None:
        sdk = os.environ.get("VULKAN_SDK")
        return shutil.which("glslc") or (str(Path(sdk) / "bin" / "glslc") if sdk and
                                         (Path(sdk) / "bin" / "glslc").is_file() else None)

    def _missing_tools(self) -> list[str]:
        """What the Vulkan build needs and this box lacks (SPIRV-Headers only cmake can tell)."""
        sdk = os.environ.get("VULKAN_SDK")
        headers = Path("/usr/include/vulkan/vulkan.h").is_file() or bool(sdk and (Path(sdk) / "include").is_dir())
        return [name for name, ok in (("cmake", shutil.which("cmake")), ("glslc", self._glslc()),
                                      ("the Vulkan headers", headers)) if not ok]

    def build(self) -> None:
        """Find the sources (fetching them as build_llamacpp does), the tools, then cmake; ``Unavailable`` why not."""
        if not (self.src / "CMakeLists.txt").is_file():
            if os.environ.get("EMBERLLM_LLAMACPP_DIR"):
                raise compare.Unavailable(f"$EMBERLLM_LLAMACPP_DIR={self.src} is not a llama.cpp source tree")
            try:
                build_llamacpp._fetch_source(log)  # pip download of the sdist the project builds, then unpack
            except Exception as exc:  # noqa: BLE001 - no network, no pip: the row says so
                raise compare.Unavailable(f"no llama.cpp sources at {self.src} and fetching them failed: "
                                          f"{compare.tail(str(exc), 200)}") from exc
        missing = self._missing_tools()
        if missing:
            apt_install(["cmake", *VULKAN_PACKAGES])  # when root with apt and a network; else a no-op
            missing = self._missing_tools()
        if missing:
            raise compare.Unavailable(f"needs {' and '.join(missing)} to build llama.cpp's Vulkan backend "
                                      f"(apt-get install cmake {' '.join(VULKAN_PACKAGES)}, or the LunarG Vulkan SDK)")
        self.build_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.build_dir / "emberllm-vulkan-build.log"
        deadline = time.monotonic() + self.build_timeout_s
        log(f"llama.cpp-vulkan: building llama-bench in {self.build_dir} (log: {log_file}; at most "
            f"{self.build_timeout_s:.0f} s)")
        steps = [["cmake", "-S", str(self.src), "-B", str(self.build_dir), *build_llamacpp.CMAKE_FLAGS,
                  "-DGGML_VULKAN=ON"],
                 ["cmake", "--build", str(self.build_dir), "--config", "Release", "-j", str(os.cpu_count() or 2),
                  "--target", "llama-bench"]]
        with log_file.open("w") as out, harness.bench_lock():
            for cmd in steps:
                left = deadline - time.monotonic()
                res = compare.run_measured(cmd, timeout_s=max(left, 1))  # kills the whole build on time-out
                out.write(f"$ {' '.join(cmd)}\n{res.stdout}\n{res.stderr}\n")
                if res.returncode != 0:
                    timed_out = time.monotonic() >= deadline
                    why = (f"timed out after {self.build_timeout_s:.0f} s" if timed_out else
                           compare.tail(res.stdout + res.stderr, 300))
                    raise compare.Unavailable(f"Vulkan build failed ({cmd[1]}): {why}")
        if not self.bench.is_file():
            raise compare.Unavailable(f"the Vulkan build made no {self.bench}")

    def prepare(self, settings: compare.Settings | None) -> None:
        """Build when needed and allowed, then list the Vulkan devices llama-bench sees."""
        if not self.bench.is_file():
            if not self.may_build:
                raise compare.Unavailable(f"not built ({self.bench}); run without --skip-vulkan-build")
            self.build()
        try:
            res = subprocess.run([str(self.bench), "--list-devices"], capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise compare.Unavailable("llama-bench --list-devices timed out") from None
        text = (res.stdout + res.stderr).strip()
        devices = [line.strip() for line in text.splitlines() if line.strip().startswith("Vulkan")]
        if not devices:
            raise compare.Unavailable(f"no Vulkan device: {compare.tail(text, 200)}")
        self.devices = "; ".join(devices)
        if is_software(self.devices) and not self.software_ok:
            raise compare.Unavailable(f"skipped: software Vulkan device ({self.devices}); --allow-software runs it")

    def versions(self) -> dict[str, Any]:
        """llama.cpp's version line and the Vulkan devices."""
        out = subprocess.run([str(self.bench), "--version"], capture_output=True, text=True, timeout=60)
        line = next((s for s in (out.stdout + out.stderr).splitlines() if s.startswith("version")), "")
        return {"llama.cpp-vulkan": line.removeprefix("version: ").strip(), "llama.cpp-vulkan devices": self.devices,
                "llama.cpp-vulkan build": str(self.build_dir)}

    def run(self, settings: compare.Settings, threads: int, rep: int) -> harness.RunRecord:
        """``llama-bench -ngl 99 -r 1 -o json``; rows that do not name Vulkan make it an error."""
        rec = harness.RunRecord(self.name, threads, rep)
        cmd = [str(self.bench), "-m", str(settings.model), "-t", str(threads), "-ngl", str(compare.WEBGPU_NGL),
               "-r", "1", "-o", "json", *compare._llama_bench_test_flags(settings.tests)]
        rows = compare._run_bench_json(rec, "llama-bench (Vulkan)", cmd)
        if rows is None:
            return rec
        rec.raw["llama_bench"] = [{k: r.get(k) for k in ("n_prompt", "n_gen", "avg_ns", "avg_ts", "backends",
                                                           "gpu_info", "n_gpu_layers", "build_commit")} for r in rows]
        if any("Vulkan" not in str(r.get("backends", "")) for r in rows):
            rec.error = f"llama-bench ran on {rows[0].get('backends')}, not Vulkan"
            rec.ts = {}
        else:
            rec.raw["device"] = f"Vulkan: {rows[0].get('gpu_info') or self.devices}"
        return rec


class LlamaCppCpu(compare.LlamaCpp):
    """compare.py's llama.cpp row, only when already built (a GPU box is not the place to wait for it)."""

    name = "llama.cpp-cpu"

    def prepare(self, settings: compare.Settings | None) -> None:
        """Unavailable unless built."""
        if not self.built():
            raise compare.Unavailable("not built (python build_scripts/build_llamacpp.py)")

    def run(self, settings: compare.Settings, threads: int, rep: int) -> harness.RunRecord:
        """compare.py's run, under this row's name."""
        rec = super().run(settings, threads, rep)
        rec.engine = self.name
        rec.raw["device"] = "CPU"
        return rec


class EmberCpu(compare.EmberNative):
    """compare.py's emberllm row (the CPU kernels), under this table's name."""

    name = "emberllm-cpu"

    def run(self, settings: compare.Settings, threads: int, rep: int) -> harness.RunRecord:
        """compare.py's run; the device cell is the kernel level."""
        rec = super().run(settings, threads, rep)
        rows = rec.raw.get("emberllm_bench") or [{}]
        rec.raw["device"] = f"CPU ({rows[0].get('kernels')})"
        return rec


def make_engines(only: list[str], args: argparse.Namespace) -> list[compare.Engine]:
    """The rows asked for, in table order."""
    factories = {
        "llama.cpp-vulkan": lambda: LlamaCppVulkan(args.build_timeout, not args.skip_vulkan_build,
                                                   args.allow_software),
        "emberllm-webgpu-f16": lambda: compare.EmberWebGpu("emberllm-webgpu-f16", True, args.allow_software),
        "emberllm-webgpu-f32": lambda: compare.EmberWebGpu("emberllm-webgpu-f32", False, args.allow_software),
        "emberllm-pyodide-chromium-webgpu": lambda: compare.EmberPyodideWebGpu(software_ok=args.allow_software),
        "emberllm-cpu": EmberCpu,
        "llama.cpp-cpu": LlamaCppCpu,
    }
    return [factories[name]() for name in ROWS if name in only]


def threads_for(engine: compare.Engine, threads: int) -> int:
    """Pyodide has one thread; every other row runs at ``-t``."""
    return 1 if isinstance(engine, compare.EmberPyodide) else threads


def device_of(records: list[harness.RunRecord], engine: str) -> str:
    """What ran the row: the adapter and precision ("NVIDIA H200, f16, ngl 19"), the Vulkan device, the CPU."""
    for rec in reversed([r for r in records if r.engine == engine]):
        device = rec.raw.get("device") or (rec.raw.get("runner") or {}).get("kernels")
        if device:
            return str(device)
    return "–"


def format_table(rows: list[harness.SummaryRow], tests: list[harness.TestSpec], devices: dict[str, str]) -> str:
    """engine | device | threads | t/s (× llama.cpp-vulkan) | load s | peak MiB | runs."""
    labels = [t.label for t in tests]
    head = ["engine", "device", "threads", *[f"{label} t/s" for label in labels], "load s", "peak MiB", "runs"]
    out = ["| " + " | ".join(head) + " |", "| --- | --- | ---: | " + " | ".join("---:" for _ in head[3:]) + " |"]
    for row in rows:
        device = harness.short_status(devices.get(row.engine, "–"), 60)
        if row.status != "ok":
            cells = [harness.short_status(row.status, 90)] + ["–"] * (len(labels) - 1) + ["–", "–",
                                                                                          f"{row.n_ok}/{row.n_runs}"]
        else:
            show = row.engine != REFERENCE
            cells = [harness.format_ts(row.ts.get(lb), row.ratio.get(lb) if show else None) for lb in labels]
            cells += ["–" if row.load_ms is None else f"{row.load_ms / 1000:.2f}",
                      "n/a" if row.peak_rss_bytes is None else f"{row.peak_rss_bytes / 2**20:.0f}",
                      f"{row.n_ok}/{row.n_runs}"]
        out.append(f"| {row.engine} | {device} | {row.threads} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def gpu_facts() -> dict[str, Any]:
    """nvidia-smi's and vulkaninfo's summaries, when those tools are there."""
    facts: dict[str, Any] = {}
    if shutil.which("nvidia-smi"):
        facts["nvidia-smi"] = compare.check_output(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"])
    if shutil.which("vulkaninfo"):
        text = compare.check_output(["vulkaninfo", "--summary"])
        facts["vulkaninfo"] = [line.strip() for line in text.splitlines()
                               if line.strip().startswith(("deviceName", "driverName", "apiVersion", "deviceType"))]
    return facts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    doc = __doc__ or ""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog=doc.split("\n\n", 1)[-1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-r", "--reps", type=int, default=3, help="repetitions (default: 3)")
    p.add_argument("--only", default=",".join(ROWS), help=f"rows, comma-separated (default: {', '.join(ROWS)})")
    p.add_argument("-t", "--threads", type=int, default=min(os.cpu_count() or 1, 8),
                   help="CPU threads of the native rows (default: the cores, at most 8; Pyodide: 1)")
    p.add_argument("-m", "--model", help="GGUF model (default: the Gemma 3 270M Q4_K_M package's model)")
    p.add_argument("-p", "--n-prompt", type=int, default=512, help="prompt test size (default: 512)")
    p.add_argument("-n", "--n-gen", type=int, default=128, help="generation test size (default: 128)")
    p.add_argument("--run-timeout", type=float, default=300, help="seconds one run may take (default: 300)")
    p.add_argument("--build-timeout", type=float, default=1200,
                   help="seconds the llama.cpp Vulkan build may take (default: 1200)")
    p.add_argument("--skip-vulkan-build", action="store_true", help="use an existing Vulkan build only")
    p.add_argument("--allow-software", action="store_true",
                   help="run the GPU rows on a software adapter too (lavapipe, SwiftShader: slow)")
    p.add_argument("--json", type=Path, default=None,
                   help="where the results go (default: bench/gpu/results/<UTC time>-<commit>.json)")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in args.only if s not in ROWS]
    if unknown:
        p.error(f"unknown row(s) {', '.join(unknown)}; known: {', '.join(ROWS)}")
    if args.reps < 1 or args.threads < 1:
        p.error("-r and -t must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Prepare each row, run the interleaved repetitions, print the table, write the JSON.  Never raises."""
    args = parse_args(argv)
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    compare.RUN_TIMEOUT_S = args.run_timeout
    compare.SOFTWARE_HINT = "--allow-software runs it"
    compare.INSTALL_TIMEOUT_S = min(compare.INSTALL_TIMEOUT_S, 300)
    tests = harness.make_tests(args.n_prompt, args.n_gen, None)
    engines = make_engines(args.only, args)
    unavailable: dict[str, str] = {}
    model: Path | None = None
    prompts: dict[str, str] = {}
    try:
        if args.model:
            model = Path(args.model)
        else:
            from emberllm.runtime.model_store import default_model_path

            model = default_model_path()
        if not model.is_file():
            raise FileNotFoundError(f"no model at {model}")
        prompts = compare.build_prompts(model, tests)
    except Exception as exc:  # noqa: BLE001 - every row then says why
        for engine in engines:
            unavailable[engine.name] = f"unavailable: no model ({type(exc).__name__}: {exc})"
    settings = compare.Settings(model=model or Path("missing.gguf"), tests=tests, threads=[args.threads],
                                reps=args.reps, prompts=prompts)

    ready: list[compare.Engine] = []
    for engine in engines:
        if engine.name in unavailable:
            continue
        t0 = time.monotonic()
        try:
            engine.prepare(settings)
            ready.append(engine)
            log(f"{engine.name}: ready ({time.monotonic() - t0:.0f} s)")
        except compare.Unavailable as exc:
            unavailable[engine.name] = str(exc)
            log(f"{engine.name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - one row's set-up must not stop the others
            unavailable[engine.name] = f"set-up failed: {type(exc).__name__}: {exc}"
            log(f"{engine.name}: set-up failed:\n{traceback.format_exc()}")

    records: list[harness.RunRecord] = []
    n_total = args.reps * len(ready)
    for rep in range(args.reps):
        for engine in ready:
            n_threads = threads_for(engine, args.threads)
            with harness.bench_lock(on_wait=lambda: log(f"waiting for {harness.LOCK_PATH}")):
                load_before = compare.loadavg()
                try:
                    rec = engine.run(settings, n_threads, rep)
                except Exception as exc:  # noqa: BLE001 - a crash is this row's error, not the run's end
                    rec = harness.RunRecord(engine.name, n_threads, rep, error=f"{type(exc).__name__}: {exc}")
            rec.raw["loadavg_before"] = load_before
            records.append(rec)
            figures = ", ".join(f"{k} {v:.1f}" for k, v in rec.ts.items())
            log(f"[{len(records)}/{n_total}] {engine.name} rep {rep + 1}: "
                + (f"error: {rec.error}" if rec.error else f"{figures} t/s, {rec.wall_s:.1f} s"))

    rows: list[harness.SummaryRow] = []
    for engine in engines:  # each row at its own thread count
        n_threads = threads_for(engine, args.threads)
        rows += harness.summarize(records, [engine.name], [n_threads], tests, unavailable, reference=REFERENCE)
    ref = {label: v for r in rows if r.engine == REFERENCE for label, v in r.ts.items()}
    for row in rows:
        row.ratio = {label: harness.ratio(v, ref.get(label)) for label, v in row.ts.items()}
    devices = {e.name: device_of(records, e.name) for e in engines}
    table = format_table(rows, tests, devices)
    print(table)
    print(f"\nMedians of {args.reps} interleaved run(s); (×) = t/s relative to {REFERENCE}. "
          f"Model: {model.name if model else '?'}. Native rows at -t {args.threads}.")
    sys.stdout.flush()

    versions: dict[str, Any] = {}
    for engine in ready:
        try:
            versions.update(engine.versions())
        except Exception as exc:  # noqa: BLE001
            versions[engine.name] = f"unknown ({exc})"
    git = compare.git_info()
    payload = harness.results_payload(
        started=started, finished=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), argv=sys.argv,
        settings={"model": str(model), "tests": [t.label for t in tests], "threads": args.threads, "reps": args.reps,
                  "run_timeout_s": args.run_timeout, "ngl": compare.WEBGPU_NGL, "lock": harness.LOCK_PATH},
        machine=harness.machine_info() | {"git": git, "gpu": gpu_facts()}, versions=versions,
        engines={e.name: unavailable.get(e.name, "ok") for e in engines}, records=records, rows=rows, table=table)
    payload["devices"] = devices
    try:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(payload, indent=1) + "\n")
            path = args.json
        else:
            path = harness.write_results(HERE / "results", payload, harness.result_filename(started, git["commit"]))
        log(f"results: {path}")
    except OSError as exc:
        log(f"could not write the results: {exc}")
    return 0 if any(r.error is None for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
