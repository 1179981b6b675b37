"""Compare emberllm with llama.cpp and wllama on one machine, in one run, in one table.

    python bench/compare.py              # 5 repetitions of pp512, tg128 and pp256+tg64 at 1 and 2 threads
    python bench/compare.py --quick      # 2 repetitions
    python bench/compare.py --only llama.cpp,emberllm -t 2

Engines (in the order they run within each round): ``llama.cpp`` (its ``llama-bench``, built once from the
``llama-cpp-python`` sdist into the cache), ``emberllm`` (``emberllm bench`` in a subprocess),
``emberllm-webgpu`` (``emberllm bench -ngl 99``: every layer on WebGPU through wgpu-py),
``emberllm-pyodide-node`` and ``emberllm-pyodide-chromium`` (rows say "not built" until the Pyodide
package and its runners exist), ``emberllm-pyodide-chromium-webgpu`` (the same in Chromium with
``--enable-unsafe-webgpu`` and every layer on WebGPU) and ``wllama`` (npm ``@wllama/wllama`` in Debian's headless
Chromium).  Without a GPU the WebGPU rows run on a software adapter (lavapipe, SwiftShader): for information.
bench/gpu/ measures them on a GPU box, beside llama.cpp's Vulkan backend.
Rounds interleave the engines (A B C A B C …); every timed run holds ``/tmp/emberllm-bench.lock``.
The table goes to stdout, progress to stderr, the raw results to ``bench/results/``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import harness  # noqa: E402  (bench/ is not a package: compare.py runs as a script)

if str(ROOT / "build_scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "build_scripts"))
import build_llamacpp  # noqa: E402  (the one place that builds and finds llama.cpp)

NPM_PACKAGES = {"@wllama/wllama": "3.8.1", "playwright-core": "1.65.1", "pyodide": "314.0.7"}
NO_THREADS = "n/a: no threads in Pyodide"
#: Where ``pyodide_pkg/build_wheel.py`` writes the Pyodide wheel by default (relative to the repository).
PYODIDE_WHEEL_DIR = Path("build") / "pyodide"
ENGINES = ("llama.cpp", "emberllm", "emberllm-webgpu", "emberllm-pyodide-node", "emberllm-pyodide-chromium",
           "emberllm-pyodide-chromium-simd128", "emberllm-pyodide-chromium-webgpu", "wllama")
#: Seconds one timed run may take before it is killed (read at call time: bench/gpu/run.py lowers it).
RUN_TIMEOUT_S = 1200
#: Seconds an apt-get or npm install may take (a box without network fails instead of hanging).
INSTALL_TIMEOUT_S = 600
#: ``-ngl`` of the WebGPU rows: llama.cpp's usual "every layer" (more than any model here has).
WEBGPU_NGL = 99
#: What a WebGPU row skipped on a software adapter says to do (bench/gpu/run.py has its own flag).
SOFTWARE_HINT = "name the row with --only to run it"
#: Chromium flags of the WebGPU browser row, besides the runner's usual ones (``$EMBERLLM_CHROMIUM_WEBGPU_FLAGS``,
#: space-separated, replaces them): WebGPU on Linux over Vulkan, as Chrome's guide to testing WebGPU headless has it.
CHROMIUM_WEBGPU_FLAGS = ("--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-angle=vulkan",
                         "--disable-vulkan-surface", "--ignore-gpu-blocklist")
#: Tried by the runner when those flags give no adapter (no usable Vulkan GPU): SwiftShader, WebGPU on the CPU.
CHROMIUM_WEBGPU_FALLBACK_FLAGS = ("--disable-gpu", "--enable-unsafe-webgpu")


class Unavailable(Exception):
    """An engine cannot run here; the message goes in its rows ("not built", "needs chromium", …)."""


def log(message: str) -> None:
    """Progress on stderr (stdout carries only the table)."""
    print(message, file=sys.stderr, flush=True)


def cache_root() -> Path:
    """``$EMBERLLM_CACHE`` or ``~/.cache/emberllm`` (the same folder the model is assembled into)."""
    return build_llamacpp.cache_root()


@dataclass
class Measured:
    """A finished subprocess: exit code, output, wall time and its peak RSS."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    maxrss_bytes: int
    timed_out: bool = False  # killed after its time-out


def run_measured(cmd: list[str], timeout_s: float | None = None, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> Measured:
    """Run ``cmd`` to the end (killed after ``timeout_s``, default ``RUN_TIMEOUT_S``) and return its output, wall
    time and peak RSS (``wait4``'s ru_maxrss)."""
    timeout_s = RUN_TIMEOUT_S if timeout_s is None else timeout_s
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=cwd, env=env,
                                start_new_session=True)
        killed = threading.Event()
        timer = threading.Timer(timeout_s, lambda: (killed.set(), _kill_group(proc.pid)))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                        wall, usage.ru_maxrss * 1024, killed.is_set())


def _kill_group(pid: int) -> None:
    """Kill a timed-out run and the processes it started (its own session)."""
    try:
        os.killpg(pid, 9)
    except ProcessLookupError:
        pass


def check_output(cmd: list[str], timeout: float = 60) -> str:
    """stdout of a short informational command, or "" when it fails."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def loadavg() -> float | None:
    """The 1-minute load average (how busy the shared machine was; 0 to 2 on 2 cores is normal here)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def tail(text: str, n: int = 400) -> str:
    """The last ``n`` characters of a process's output, for error messages."""
    text = text.strip()
    return text if len(text) <= n else "…" + text[-n:]


@dataclass
class Settings:
    """What every engine runs: the model, the tests and the prompt texts for text-only engines."""

    model: Path
    tests: list[harness.TestSpec]
    threads: list[int]
    reps: int
    prompts: dict[str, str] = field(default_factory=dict)  # test label -> text of exactly n_prompt tokens

    @property
    def n_ctx(self) -> int:
        """A context that holds the longest test (with room for the tg test's BOS)."""
        return max(t.n_prompt + t.n_gen for t in self.tests) + 16


class Engine:
    """One row group of the table. ``prepare`` runs once, untimed; ``run`` is one timed repetition."""

    name = ""

    def prepare(self, settings: Settings) -> None:
        """Build or find what the engine needs; raise ``Unavailable`` when it cannot run."""

    def versions(self) -> dict[str, Any]:
        """Versions to record with the results."""
        return {}

    def run(self, settings: Settings, threads: int, rep: int) -> harness.RunRecord:
        """One repetition of every test at ``threads`` (the caller holds the lock)."""
        raise NotImplementedError


# -- llama.cpp -------------------------------------------------------------------------------------------
class LlamaCpp(Engine):
    """llama.cpp's ``llama-bench`` (built by build_scripts/build_llamacpp.py into the cache), plus a load-time run."""

    name = "llama.cpp"

    def __init__(self) -> None:
        self.bin = build_llamacpp.bin_dir()

    def built(self) -> bool:
        """Whether llama.cpp is in the cache already."""
        return build_llamacpp.built()

    def prepare(self, settings: Settings | None) -> None:
        """Reuse the cached build, or build it (≈ 4 minutes on 2 cores, installing cmake with apt when we may)."""
        if self.built():
            return
        if shutil.which("cmake") is None and not apt_install("cmake"):
            raise Unavailable("needs cmake to build llama.cpp")
        try:
            self.bin = build_llamacpp.build(log=log, lock_path=harness.LOCK_PATH)
        except build_llamacpp.BuildError as exc:
            raise Unavailable(f"llama.cpp build failed: {exc}") from exc

    def versions(self) -> dict[str, Any]:
        """llama.cpp's version line and where it was built."""
        out = subprocess.run([str(self.bin / "llama-bench"), "--version"], capture_output=True, text=True)
        line = next((s for s in (out.stdout + out.stderr).splitlines() if s.startswith("version")), "")
        return {"llama.cpp": line.removeprefix("version: ").strip(),
                "llama-cpp-python sdist": build_llamacpp.LLAMA_CPP_PYTHON, "llama.cpp build": str(self.bin)}

    def run(self, settings: Settings, threads: int, rep: int) -> harness.RunRecord:
        """``llama-bench -r 1`` for the t/s and peak RSS, ``llama-completion -n 1`` for the load time."""
        rec = harness.RunRecord(self.name, threads, rep)
        cmd = [str(self.bin / "llama-bench"), "-m", str(settings.model), "-t", str(threads), "-r", "1", "-o", "json"]
        rows = _run_bench_json(rec, "llama-bench", cmd + _llama_bench_test_flags(settings.tests))
        if rows is None:
            return rec
        rec.raw["llama_bench"] = [{k: r.get(k) for k in ("n_prompt", "n_gen", "avg_ns", "avg_ts", "samples_ts",
                                                           "build_commit", "n_batch", "n_ubatch", "flash_attn")}
                                  for r in rows]
        load = run_measured([str(self.bin / "llama-completion"), "-m", str(settings.model), "-t", str(threads),
                             "-c", str(settings.n_ctx), "-n", "1", "-p", "Hello", "-no-cnv", "--no-warmup",
                             "--temp", "0"], timeout_s=300)
        if load.returncode == 0:
            rec.load_ms = harness.llama_load_ms(load.wall_s * 1000.0, load.stderr)
        else:
            rec.notes.append(f"llama-completion exit {load.returncode}: {tail(load.stderr, 200)}")
        return rec


def _run_bench_json(rec: harness.RunRecord, label: str, cmd: list[str], cwd: Path | None = None,
                    env: dict[str, str] | None = None, keep_stderr: bool = False) -> list[dict] | None:
    """Run a llama-bench-style ``-o json`` command into ``rec`` (wall time, peak RSS, t/s); its rows, or None
    with ``rec.error`` set when it failed.  ``keep_stderr``: the end of its stderr in ``rec.raw["stderr_tail"]``."""
    res = run_measured(cmd, cwd=cwd, env=env)
    rec.wall_s, rec.peak_rss_bytes = res.wall_s, res.maxrss_bytes
    if res.returncode != 0:
        how = f"timed out after {res.wall_s:.0f} s" if res.timed_out else f"exit {res.returncode}"
        rec.error = f"{label} {how}: {tail(res.stderr)}"
        return None
    if keep_stderr:
        rec.raw["stderr_tail"] = tail(res.stderr, 1000)
    rows = harness.parse_bench_json(res.stdout)
    rec.ts = harness.bench_rows_to_ts(rows)
    return rows


def _llama_bench_test_flags(tests: list[harness.TestSpec]) -> list[str]:
    """``-p``/``-n``/``-pg`` flags (shared by llama-bench and ``emberllm bench``) for exactly ``tests``."""
    pp = [t.n_prompt for t in tests if t.n_prompt and not t.n_gen]
    tg = [t.n_gen for t in tests if t.n_gen and not t.n_prompt]
    flags = ["-p", ",".join(map(str, pp)) if pp else "0", "-n", ",".join(map(str, tg)) if tg else "0"]
    for t in tests:
        if t.n_prompt and t.n_gen:
            flags += ["-pg", f"{t.n_prompt},{t.n_gen}"]
    return flags


# -- emberllm native -------------------------------------------------------------------------------------
class EmberNative(Engine):
    """``emberllm bench`` in a fresh Python process (so its peak RSS is its own)."""

    name = "emberllm"

    def prepare(self, settings: Settings) -> None:
        """The package must import with its native kernels built (``pip install -e .``)."""
        res = subprocess.run([sys.executable, "-c", "import emberllm.backends.binding as k; k.load_kernels()"],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise Unavailable(f"emberllm does not import: {tail(res.stderr, 200)}")

    def versions(self) -> dict[str, Any]:
        """emberllm's version and kernel level."""
        code = ("import emberllm, emberllm.backends.binding as k; ks = k.load_kernels(); "
                "print(emberllm.__version__, ks.level_name(ks.best_level()))")
        out = check_output([sys.executable, "-c", code]).split()
        return {"emberllm": out[0] if out else "", "emberllm kernels": out[1] if len(out) > 1 else ""}

    #: Flags added to ``emberllm bench`` (the WebGPU row adds ``-ngl 99``).
    extra_flags: tuple[str, ...] = ()

    def run_env(self, threads: int | None) -> dict[str, str] | None:
        """The environment of a run: this process's with ``EMBERLLM_DEVICE=cpu`` (the CPU row stays on the CPU)."""
        return dict(os.environ, EMBERLLM_DEVICE="cpu")

    def run(self, settings: Settings, threads: int, rep: int) -> harness.RunRecord:
        """``python -m emberllm.cli bench … -r 1 -o json``."""
        rec = harness.RunRecord(self.name, threads, rep)
        cmd = [sys.executable, "-m", "emberllm.cli", "bench", "-m", str(settings.model), "-t", str(threads),
               "-r", "1", "-o", "json", *self.extra_flags, *_llama_bench_test_flags(settings.tests)]
        rows = _run_bench_json(rec, " ".join(["emberllm bench", *self.extra_flags]), cmd, cwd=ROOT,
                               env=self.run_env(threads), keep_stderr=bool(self.extra_flags))
        if rows is None:
            return rec
        rec.load_ms = harness.median([r.get("load_ms") for r in rows])
        rec.raw["emberllm_bench"] = [{k: r.get(k) for k in ("n_prompt", "n_gen", "avg_ns", "avg_ts", "backends",
                                                              "kernels", "load_ms", "n_batch")} for r in rows]
        self.check_rows(rec, rows)
        return rec

    def check_rows(self, rec: harness.RunRecord, rows: list[dict]) -> None:
        """Turn a run whose rows are not what this engine measures into an error (the CPU row takes them all)."""


# -- emberllm on WebGPU, natively ------------------------------------------------------------------------
#: Opens the WebGPU device as ``emberllm bench -ngl`` does and prints what it got (or why not) as one JSON line.
WEBGPU_PROBE = """
import json, os
from emberllm.backends.webgpu.device import GpuUnavailableError
from emberllm.runtime.offload import open_gpu_device
try:
    d = open_gpu_device(f16=os.environ.get("EMBERLLM_GPU_F16", "1") != "0")
except GpuUnavailableError as exc:
    print(json.dumps({"error": str(exc)}))
else:
    print(json.dumps({"adapter": d.adapter_name, "software": d.is_software, "f16": d.has_f16}))
    d.close()
"""


class EmberWebGpu(EmberNative):
    """``emberllm bench -ngl 99`` in a fresh process: every layer (and the output) on WebGPU through wgpu-py.

    ``f16``: None leaves ``EMBERLLM_GPU_F16`` as it is (f16 kernels where the adapter has ``shader-f16``); True or
    False sets it (bench/gpu/run.py runs both).  On a software adapter (lavapipe) ``LP_NUM_THREADS`` is set to the
    run's thread count unless it is set already, so that the threads column bounds the adapter too.  A run that
    fell back to the CPU (its rows do not say "WebGPU") is an error, never a CPU figure under this name.
    """

    extra_flags = ("-ngl", str(WEBGPU_NGL))

    def __init__(self, name: str = "emberllm-webgpu", f16: bool | None = None, software_ok: bool = True) -> None:
        self.name = name
        self.f16 = f16
        self.software_ok = software_ok  # False: a software adapter (lavapipe) makes the row "skipped"
        self.adapter: dict[str, Any] = {}  # the probe's {adapter, software, f16}

    def run_env(self, threads: int | None) -> dict[str, str]:
        """``EMBERLLM_DEVICE=webgpu`` (a CPU override in the caller's environment must not turn the row into a CPU
        one), ``EMBERLLM_GPU_F16`` when forced, ``LP_NUM_THREADS`` on a software adapter."""
        env = dict(os.environ, EMBERLLM_DEVICE="webgpu")
        if self.f16 is not None:
            env["EMBERLLM_GPU_F16"] = "1" if self.f16 else "0"
        if threads is not None and self.adapter.get("software") and "LP_NUM_THREADS" not in os.environ:
            env["LP_NUM_THREADS"] = str(threads)
        return env

    def prepare(self, settings: Settings | None) -> None:
        """emberllm imports, and a WebGPU adapter opens (with ``shader-f16`` when the row forces f16)."""
        super().prepare(settings)
        try:
            res = subprocess.run([sys.executable, "-c", WEBGPU_PROBE], capture_output=True, text=True, timeout=180,
                                 env=self.run_env(None), cwd=ROOT)
        except subprocess.TimeoutExpired:
            raise Unavailable("opening the WebGPU adapter timed out (180 s)") from None
        try:
            probe = harness.last_json_object(res.stdout)
        except ValueError:
            raise Unavailable(f"WebGPU probe exit {res.returncode}: {tail(res.stderr, 200)}") from None
        if probe.get("error"):
            raise Unavailable(str(probe["error"]))
        if self.f16 and not probe.get("f16"):
            raise Unavailable(f"n/a: {probe.get('adapter')} has no shader-f16")
        if probe.get("software") and not self.software_ok:
            raise Unavailable(f"skipped: software adapter ({probe.get('adapter')}); {SOFTWARE_HINT}")
        self.adapter = probe
        log(f"{self.name}: {probe.get('adapter')}"
            + (" (a software adapter: figures for information)" if probe.get("software") else ""))

    def check_rows(self, rec: harness.RunRecord, rows: list[dict]) -> None:
        """Every row must say backends "WebGPU" (else the run fell back to the CPU: an error with the reason)."""
        off = sorted({str(r.get("backends")) for r in rows if r.get("backends") != "WebGPU"})
        if off:
            why = next((line.strip() for line in str(rec.raw.get("stderr_tail", "")).splitlines()
                        if "WebGPU" in line or "webgpu" in line), "")
            rec.error = f"ran on {', '.join(off)}, not WebGPU" + (f": {why}" if why else "")
            rec.ts = {}
        elif rows:
            rec.raw["device"] = rows[0].get("kernels")

    def versions(self) -> dict[str, Any]:
        """emberllm's version, wgpu's, and the adapter."""
        out = super().versions()
        out["wgpu"] = check_output([sys.executable, "-c", "import wgpu; print(wgpu.__version__)"])
        out[f"{self.name} adapter"] = self.adapter
        return out


# -- browser and Node runners (wllama now, emberllm in Pyodide later) -------------------------------------
def apt_install(package: str) -> bool:
    """Install a Debian package when we are root on a machine with apt (a fresh box); False otherwise."""
    if shutil.which("apt-get") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    print(f"installing {package} with apt-get ...", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        update = subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True,
                                timeout=INSTALL_TIMEOUT_S)
        install = subprocess.run(["apt-get", "install", "-y", "-qq", package], env=env, capture_output=True,
                                 timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False
    return update.returncode == 0 and install.returncode == 0


def chromium_path() -> str | None:
    """Debian's Chromium (installed with apt-get when missing and we may), or ``$EMBERLLM_CHROMIUM``."""
    path = os.environ.get("EMBERLLM_CHROMIUM") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK) and not os.environ.get("EMBERLLM_CHROMIUM"):
        apt_install("chromium")
    return path if os.access(path, os.X_OK) else None


def npm_dir() -> Path:
    """Where the npm packages the runners need are installed (outside the repository)."""
    return cache_root() / "npm-bench"


def ensure_npm_packages() -> Path:
    """Install ``NPM_PACKAGES`` (pinned) into ``npm_dir()`` unless they are there already."""
    target = npm_dir()
    modules = target / "node_modules"
    if all((modules / name / "package.json").is_file() and
           json.loads((modules / name / "package.json").read_text()).get("version") == version
           for name, version in NPM_PACKAGES.items()):
        return target
    if shutil.which("npm") is None:
        raise Unavailable("needs node and npm")
    target.mkdir(parents=True, exist_ok=True)
    (target / "package.json").write_text(json.dumps(
        {"private": True, "description": "emberllm bench runners' packages", "dependencies": NPM_PACKAGES},
        indent=2) + "\n")
    log(f"npm: installing {', '.join(f'{k}@{v}' for k, v in NPM_PACKAGES.items())} into {target}")
    try:
        res = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=target,
                             capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"npm install timed out ({INSTALL_TIMEOUT_S} s): no network?") from None
    if res.returncode != 0:
        raise Unavailable(f"npm install failed: {tail(res.stderr, 200)}")
    return target


class RunnerEngine(Engine):
    """An engine driven by a Node script that prints one JSON result (see bench/README.md, "Runners").

    The script gets one JSON argument: ``npm_dir``, ``model``, ``threads``, ``n_ctx``, ``chromium``,
    ``warmup_prompt`` and ``tests`` (each ``n_prompt``, ``n_gen`` and ``prompt``, a text of exactly
    ``n_prompt`` tokens with BOS), plus ``extra``; it prints ``{load_ms, peak_rss_bytes, tests: [{n_prompt,
    n_gen, prompt_n, prompt_ms, predicted_n, predicted_ms, predicted_per_second}], …}`` as its last line.
    """

    script: Path
    needs_chromium = True

    def __init__(self) -> None:
        self.npm: Path | None = None
        self.chromium: str | None = None
        self.extra: dict[str, Any] = {}

    def prepare(self, settings: Settings) -> None:
        """Node, the npm packages and (for browser rows) Chromium."""
        if shutil.which("node") is None:
            raise Unavailable("needs node")
        if self.needs_chromium:
            self.chromium = chromium_path()
            if self.chromium is None:
                raise Unavailable("needs chromium (apt-get install chromium)")
        self.npm = ensure_npm_packages()

    def run(self, settings: Settings, threads: int, rep: int) -> harness.RunRecord:
        """Run the script once and parse its JSON."""
        rec = harness.RunRecord(self.name, threads, rep)
        spec = {
            "npm_dir": str(self.npm), "model": str(settings.model), "threads": threads, "n_ctx": settings.n_ctx,
            "chromium": self.chromium, "warmup_prompt": "Hello",
            "timeout_s": max(RUN_TIMEOUT_S - 60, 0.8 * RUN_TIMEOUT_S),  # the runner's own clock, before ours
            "tests": [{"n_prompt": t.n_prompt, "n_gen": t.n_gen, "prompt": settings.prompts.get(t.label, "")}
                      for t in settings.tests],
            "extra": self.extra,
        }
        res = run_measured(["node", str(self.script), json.dumps(spec)], cwd=ROOT)
        rec.wall_s = res.wall_s
        if res.returncode != 0:
            how = f"timed out after {res.wall_s:.0f} s" if res.timed_out else f"exit {res.returncode}"
            rec.error = f"{self.script.name} {how}: {tail(res.stderr)}"
            return rec
        try:
            rec.ts, rec.load_ms, rec.peak_rss_bytes, rec.notes, result = harness.parse_runner_output(res.stdout)
        except (ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
            rec.error = f"bad runner output ({exc}): {tail(res.stdout + res.stderr)}"
            return rec
        rec.raw["runner"] = {k: result.get(k) for k in ("n_threads", "multithread", "cross_origin_isolated",
                                                         "libllama", "n_ctx", "fetch_ms", "boot_ms", "install_ms",
                                                         "kernels")}
        rec.raw["runner"].update({k: result[k] for k in ("device", "gpu_stats", "chromium", "chromium_flags",
                                                         "first_attempt") if k in result})
        if result.get("unavailable"):  # the runner could not measure what the row is for (e.g. no WebGPU adapter)
            rec.error = f"n/a: {result['unavailable']}"
            rec.ts = {}
            return rec
        rec.raw["tests"] = [{k: t.get(k) for k in ("n_prompt", "n_gen", "prompt_n", "prompt_ms", "predicted_n",
                                                   "predicted_ms", "predicted_per_second", "kernel_calls_per_token")}
                            for t in result.get("tests", [])]
        return rec


class Wllama(RunnerEngine):
    """npm ``@wllama/wllama`` (llama.cpp compiled to WASM) in headless Chromium, CPU only."""

    name = "wllama"
    script = HERE / "wllama" / "run.mjs"

    def versions(self) -> dict[str, Any]:
        """wllama, playwright-core, Chromium and Node versions."""
        out: dict[str, Any] = {"node": check_output(["node", "--version"])}
        if self.npm:
            for name in NPM_PACKAGES:
                pkg = self.npm / "node_modules" / name / "package.json"
                if pkg.is_file():
                    out[name] = json.loads(pkg.read_text()).get("version")
        if self.chromium:
            out["chromium"] = check_output([self.chromium, "--version"])
        return out


class EmberPyodide(RunnerEngine):
    """emberllm inside Pyodide, under Node or in headless Chromium: the hook for the Pyodide package.

    It runs once ``build/pyodide/`` (``pyodide_pkg/build_wheel.py``'s default output) holds an emberllm wheel for
    Pyodide and ``bench/pyodide/run_<runtime>.mjs`` exists (same JSON contract as ``bench/wllama/run.mjs``; the
    wheel's path arrives as ``extra.wheel``).  Until then its rows say "not built".
    """

    def __init__(self, runtime: str, kernels: str = "auto") -> None:
        super().__init__()
        self.runtime = runtime
        self.kernels = kernels  # the loader's choice: "auto" (relaxed SIMD where it works) or "simd128"
        self.name = f"emberllm-pyodide-{runtime}" + ("" if kernels == "auto" else f"-{kernels}")
        self.script = HERE / "pyodide" / f"run_{runtime}.mjs"
        self.needs_chromium = runtime == "chromium"

    def prepare(self, settings: Settings) -> None:
        """Find the wheel and the runner; then what every runner needs."""
        wheels = sorted((ROOT / PYODIDE_WHEEL_DIR).glob("emberllm-*.whl"))
        if not wheels or not self.script.is_file():
            raise Unavailable("not built")
        self.extra = {"wheel": str(wheels[-1]), "kernels": self.kernels}
        super().prepare(settings)

    def run(self, settings: Settings, threads: int, rep: int) -> harness.RunRecord:
        """One run of the runner; Pyodide has no threads, so more than one gives an "n/a" record at once."""
        if threads > 1:
            return harness.RunRecord(self.name, threads, rep, error=NO_THREADS)
        return super().run(settings, threads, rep)

    def versions(self) -> dict[str, Any]:
        """The wheel that ran."""
        return {f"{self.name} wheel": Path(self.extra["wheel"]).name} if self.extra.get("wheel") else {}


#: What the WebGPU browser row needs of the JS loader (pyodide_pkg/emberllm.mjs) and of the wheel.
LOADER_WEBGPU_API = ("nGpuLayers", "info()")
WHEEL_WEBGPU_FILE = "emberllm/backends/webgpu/browser.py"


class EmberPyodideWebGpu(EmberPyodide):
    """emberllm in Pyodide in headless Chromium with WebGPU: ``engine.load(model, { device: "webgpu", nGpuLayers: 99
    })`` in a Web Worker, Chromium started with ``--enable-unsafe-webgpu`` (``CHROMIUM_WEBGPU_FLAGS``).

    Runner: the other Chromium rows' ``bench/pyodide/run_chromium.mjs``, ``extra`` adding ``device`` (which makes it
    a WebGPU run), ``n_gpu_layers``, ``gpu_f16``, ``chromium_flags``, ``fallback_flags`` (SwiftShader, tried when the
    first flags give no adapter and ``software_ok``), ``software_ok`` and ``software_hint``.  Its rows say
    "unavailable: …" when the loader has no ``nGpuLayers``/``info()`` or the wheel has no WebGPU backend, and
    "n/a: …" (the page's or the loader's reason) when Chromium gives no usable WebGPU adapter, so the CPU never
    answers under this name.  ``gpu_f16``: the loader's ``gpuF16`` (None: its default, f16 where the adapter has
    ``shader-f16``).
    """

    def __init__(self, gpu_f16: bool | None = None, name: str = "emberllm-pyodide-chromium-webgpu",
                 software_ok: bool = True) -> None:
        super().__init__("chromium")
        self.name = name  # the runner is EmberPyodide's bench/pyodide/run_chromium.mjs
        self.gpu_f16 = gpu_f16
        self.software_ok = software_ok  # False: the runner answers "skipped" on SwiftShader or lavapipe
        self.skip: str | None = None  # once a run said WebGPU is not usable here, the later ones say so at once

    def prepare(self, settings: Settings) -> None:
        """The loader's WebGPU options, then the wheel and the runner (``EmberPyodide``), then the wheel's WebGPU
        backend."""
        loader = ROOT / "pyodide_pkg" / "emberllm.mjs"
        text = loader.read_text(errors="replace") if loader.is_file() else ""
        lacking = [name for name in LOADER_WEBGPU_API if name not in text]
        if lacking:
            raise Unavailable(f"unavailable: the Pyodide loader (pyodide_pkg/emberllm.mjs) has no {', '.join(lacking)}"
                              " for WebGPU yet")
        super().prepare(settings)
        wheel = Path(self.extra["wheel"])
        try:
            with zipfile.ZipFile(wheel) as zf:
                has_gpu = WHEEL_WEBGPU_FILE in zf.namelist()
        except (OSError, zipfile.BadZipFile) as exc:
            raise Unavailable(f"unavailable: cannot read {wheel.name}: {exc}") from exc
        if not has_gpu:
            raise Unavailable(f"unavailable: {wheel.name} has no WebGPU backend (rebuild it: "
                              "python pyodide_pkg/build_wheel.py)")
        flags = os.environ.get("EMBERLLM_CHROMIUM_WEBGPU_FLAGS")
        self.extra.update({"n_gpu_layers": WEBGPU_NGL, "device": "webgpu", "gpu_f16": self.gpu_f16,
                           "software_ok": self.software_ok, "software_hint": SOFTWARE_HINT,
                           "chromium_flags": flags.split() if flags else list(CHROMIUM_WEBGPU_FLAGS),
                           # SwiftShader is a software adapter: no use trying it when the row would skip it
                           "fallback_flags": list(CHROMIUM_WEBGPU_FALLBACK_FLAGS) if self.software_ok else []})

    def run(self, settings: Settings, threads: int, rep: int) -> harness.RunRecord:
        """One run of the runner; after a run that found no usable WebGPU, the same answer without starting one."""
        if self.skip and threads == 1:
            return harness.RunRecord(self.name, threads, rep, error=self.skip)
        rec = super().run(settings, threads, rep)
        if threads == 1 and rec.error and rec.error.startswith("n/a:"):
            self.skip = rec.error
        return rec


def make_engines(only: list[str], software_ok: Sequence[str] = ()) -> list[Engine]:
    """The engines to run, in the fixed interleaving order; the WebGPU ones in ``software_ok`` run on a software
    adapter too (the others say it was skipped)."""
    factories = {"llama.cpp": LlamaCpp, "emberllm": EmberNative, "wllama": Wllama,
                 "emberllm-webgpu": EmberWebGpu,
                 "emberllm-pyodide-node": lambda: EmberPyodide("node"),
                 "emberllm-pyodide-chromium": lambda: EmberPyodide("chromium"),
                 "emberllm-pyodide-chromium-simd128": lambda: EmberPyodide("chromium", "simd128"),
                 "emberllm-pyodide-chromium-webgpu": EmberPyodideWebGpu}
    engines = [factories[name]() for name in ENGINES if name in only]
    for engine in engines:
        if isinstance(engine, (EmberWebGpu, EmberPyodideWebGpu)):
            engine.software_ok = engine.name in software_ok
    return engines


# -- the comparison --------------------------------------------------------------------------------------
def git_info() -> dict[str, Any]:
    """The repository's commit, branch and whether the tree has changes."""
    commit = check_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    return {"commit": commit or None,
            "branch": check_output(["git", "-C", str(ROOT), "rev-parse", "--abbrev-ref", "HEAD"]) or None,
            "dirty": bool(check_output(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"]))}


def build_prompts(model: Path, tests: list[harness.TestSpec]) -> dict[str, str]:
    """Texts of exactly each test's prompt length, tokenized by emberllm (which matches llama.cpp)."""
    from emberllm.gguf.reader import GGUFFile
    from emberllm.tokenizers import load_tokenizer

    gguf = GGUFFile.open(model)
    try:
        tokenizer = load_tokenizer(gguf.metadata)
        return {t.label: harness.make_prompt_text(tokenizer.encode, t.n_prompt) if t.n_prompt else ""
                for t in tests}
    finally:
        gguf.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    doc = __doc__ or ""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog=doc.split("\n\n", 1)[-1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 repetitions instead of 5")
    p.add_argument("-r", "--reps", type=int, default=None, help="repetitions (default: 5, or 2 with --quick)")
    p.add_argument("--only", default=None,
                   help=f"engines, comma-separated (default: all: {', '.join(ENGINES)}; the WebGPU rows then skip a "
                        "software adapter, which runs them only when named here)")
    p.add_argument("-t", "--threads", default="1,2", help="thread counts (default: 1,2)")
    p.add_argument("-m", "--model", help="GGUF model (default: the Gemma 3 270M Q4_K_M package's model)")
    p.add_argument("-p", "--n-prompt", type=int, default=512, help="prompt test size (default: 512)")
    p.add_argument("-n", "--n-gen", type=int, default=128, help="generation test size (default: 128)")
    p.add_argument("-pg", default="256,64", help="prompt+generation test PROMPT,GEN (default: 256,64; 0 = none)")
    p.add_argument("--results-dir", type=Path, default=HERE / "results", help="where the JSON goes")
    p.add_argument("--no-save", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    args.named = args.only is not None  # engines named with --only run on a software adapter too
    args.only = [s.strip() for s in (args.only or ",".join(ENGINES)).split(",") if s.strip()]
    unknown = [s for s in args.only if s not in ENGINES]
    if unknown:
        p.error(f"unknown engine(s) {', '.join(unknown)}; known: {', '.join(ENGINES)}")
    try:
        args.threads = [int(s) for s in args.threads.split(",") if s.strip()]
        pg = [int(s) for s in args.pg.split(",") if s.strip()]
    except ValueError:
        p.error("-t and -pg take comma-separated integers")
    if not args.threads or min(args.threads) < 1:
        p.error("-t needs thread counts of at least 1")
    args.pg = (pg[0], pg[1]) if len(pg) == 2 else None
    if pg and pg != [0] and args.pg is None:
        p.error("-pg takes PROMPT,GEN")
    args.reps = args.reps or (2 if args.quick else 5)
    if args.reps < 1:
        p.error("-r must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Prepare every engine, run the interleaved rounds under the lock, print the table, save the JSON."""
    args = parse_args(argv)
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    machine = harness.machine_info()
    if args.model:
        model = Path(args.model)
    else:
        from emberllm.runtime.model_store import default_model_path

        model = default_model_path()
    tests = harness.make_tests(args.n_prompt, args.n_gen, args.pg)
    if not tests:
        log("nothing to run: all test sizes are 0")
        return 1
    settings = Settings(model=model, tests=tests, threads=args.threads, reps=args.reps,
                        prompts=build_prompts(model, tests))
    engines = make_engines(args.only, software_ok=args.only if args.named else ())
    unavailable: dict[str, str] = {}
    ready: list[Engine] = []
    for engine in engines:
        try:
            engine.prepare(settings)
            ready.append(engine)
        except Unavailable as exc:
            unavailable[engine.name] = str(exc)
            log(f"{engine.name}: {exc}")
        except (OSError, subprocess.CalledProcessError) as exc:
            unavailable[engine.name] = f"unavailable: {exc}"
            log(f"{engine.name}: set-up failed: {exc}")

    records: list[harness.RunRecord] = []
    n_total = args.reps * len(args.threads) * len(ready)
    for rep in range(args.reps):
        for n_threads in args.threads:
            for engine in ready:
                with harness.bench_lock(on_wait=lambda: log(f"waiting for {harness.LOCK_PATH}")):
                    load_before = loadavg()
                    try:
                        rec = engine.run(settings, n_threads, rep)
                    except Exception as exc:  # one engine's crash must not lose the others' data
                        rec = harness.RunRecord(engine.name, n_threads, rep, error=f"{type(exc).__name__}: {exc}")
                rec.raw["loadavg_before"] = load_before
                records.append(rec)
                figures = ", ".join(f"{k} {v:.1f}" for k, v in rec.ts.items())
                log(f"[{len(records)}/{n_total}] {engine.name} t={n_threads} rep {rep + 1}: "
                    + (f"error: {rec.error}" if rec.error else f"{figures} t/s, load "
                       + (f"{rec.load_ms / 1000:.2f} s" if rec.load_ms is not None else "?")
                       + f", {rec.wall_s:.1f} s") + "".join(f"\n  note: {n}" for n in rec.notes))

    names = [e.name for e in engines]
    rows = harness.summarize(records, names, args.threads, tests, unavailable)
    table = harness.format_table(rows, tests)
    print(table)
    print(f"\nMedians of {args.reps} interleaved run(s); (×) = t/s relative to llama.cpp at the same threads. "
          f"Model: {model.name}.")
    sys.stdout.flush()

    if not args.no_save:
        versions: dict[str, Any] = {}
        for engine in ready:
            try:
                versions.update(engine.versions())
            except (OSError, subprocess.SubprocessError, ValueError) as exc:
                versions[engine.name] = f"unknown ({exc})"
        git = git_info()
        payload = harness.results_payload(
            started=started, finished=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), argv=sys.argv,
            settings={"model": str(model), "model_bytes": model.stat().st_size, "tests": [t.label for t in tests],
                      "threads": args.threads, "reps": args.reps, "quick": args.quick, "lock": harness.LOCK_PATH},
            machine=machine | {"git": git}, versions=versions,
            engines={e.name: unavailable.get(e.name, "ok") for e in engines}, records=records, rows=rows,
            table=table)
        path = harness.write_results(args.results_dir, payload, harness.result_filename(started, git["commit"]))
        log(f"results: {path}")
    return 0 if any(r.error is None for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
