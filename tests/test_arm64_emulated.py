"""The whole engine and server on aarch64, under qemu-aarch64 user emulation (build_scripts/arm64.sh).

A Raspberry Pi runs the Python core, the cffi extension, the tokenizer, the sampler and the server on aarch64; here
they run on Debian's arm64 CPython 3.11 under qemu at the Pi 5 core (cortex-a76: NEON + dotprod) and the Pi 4 core
(cortex-a72: NEON, no dotprod):

- the kernel level each emulated core picks (cortex-a53, Pi 3 / Zero 2, too);
- llama.cpp's reference check of tests/test_engine_reference.py (tokenization, greedy ids and top-5 probabilities
  under its rule, on the first 16 of the 32 steps), run by pytest under emulation at the Pi 5 and Pi 4 levels
  (tests/arm/emulated_reference.py);
- ``emberllm serve`` under emulation: ``/health``, a streamed ``/v1/chat/completions`` and ``/completion`` giving
  llama.cpp's greedy ids at temperature 0.

Skips with the reason without qemu-aarch64, aarch64-linux-gnu-gcc or arm64 packages in apt (fails under ``CI=true``,
where build_scripts/test.sh installs them).  The arm64 environment is set up once into the cache (arm64_setup.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from .llamacpp import in_ci
from .server_fixtures import free_port, stop, wait_healthy
from .test_engine_reference import first_close_step

ROOT = Path(__file__).resolve().parent.parent
ARM64_SH = ROOT / "build_scripts" / "arm64.sh"
#: the emulated cores and the kernel level each must pick (emb_kernel_level_best via getauxval's HWCAP_ASIMDDP)
CPU_LEVELS = {"cortex-a76": "neon-dotprod", "cortex-a72": "neon", "cortex-a53": "neon"}
#: the cores the reference and server checks run at: Raspberry Pi 5 and Pi 4
PI_CPUS = ["cortex-a76", "cortex-a72"]
#: reference steps checked under emulation (of 32; $EMBERLLM_ARM64_REF_STEPS overrides): 40 decoded tokens in all
#: instead of 72, at a few tokens/s
REFERENCE_STEPS = 16
EMULATED_TIMEOUT_S = 600
pytestmark = pytest.mark.slow


def _setup_module() -> ModuleType:
    """build_scripts/arm64_setup.py (not a package)."""
    spec = importlib.util.spec_from_file_location("arm64_setup", ROOT / "build_scripts" / "arm64_setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail with it under ``CI=true`` (CI must run the emulated checks)."""
    if in_ci():
        pytest.fail(f"{reason} [CI=true: the aarch64 checks must run, not skip]", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def arm64_env() -> dict[str, str]:
    """The arm64 environment in the cache, set up (or found up to date) once per session."""
    setup = _setup_module()
    missing = setup.missing_tools()
    if missing:
        _unavailable(f"no {', '.join(missing)} (apt-get install qemu-user gcc-aarch64-linux-gnu "
                     "libc6-dev-arm64-cross)")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(ROOT / "build_scripts" / "arm64_setup.py"), "--print-env"],
                          capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        _unavailable(f"the arm64 environment could not be set up: {proc.stderr.strip()[-1500:]}")
    print(f"\narm64 environment ready in {time.monotonic() - t0:.1f} s{': ' if proc.stderr else ''}{proc.stderr}")
    return dict(shlex.split(line)[0].split("=", 1) for line in proc.stdout.splitlines() if line)


def arm64(cpu: str, *args: str, timeout: float = EMULATED_TIMEOUT_S,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``EMBERLLM_QEMU_CPU=cpu build_scripts/arm64.sh ARGS...`` (``env`` added), its output captured."""
    return subprocess.run(["bash", str(ARM64_SH), *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                          env={**os.environ, **(env or {}), "EMBERLLM_QEMU_CPU": cpu})


LEVEL_SCRIPT = """
import json, platform
from emberllm import _kernels
from emberllm.backends.binding import load_kernels
k = load_kernels()
print(json.dumps({"machine": platform.machine(), "extension": _kernels.__file__, "best": k.level_name(k.best_level()),
                  "supported": [k.level_name(lv) for lv in k.supported_levels()]}))
"""


@pytest.mark.parametrize("cpu", list(CPU_LEVELS))
def test_emulated_core_picks_its_kernel_level(arm64_env, cpu):
    proc = arm64(cpu, "python", "-c", LEVEL_SCRIPT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.splitlines()[-1])
    assert info["machine"] == "aarch64"
    assert info["extension"].startswith(arm64_env["ARM64_KERNELS"]), info  # the cross-built one, not the host's
    assert info["best"] == CPU_LEVELS[cpu], info
    assert ("neon-dotprod" in info["supported"]) == (cpu == "cortex-a76"), info


@pytest.mark.parametrize("cpu", PI_CPUS)
def test_llamacpp_reference_under_emulation(arm64_env, gemma_path, reference, cpu):
    """tests/test_engine_reference.py's tokenization and greedy/top-5 checks (the first REFERENCE_STEPS steps), run
    by pytest on emulated aarch64 at the level the core must pick (tests/arm/emulated_reference.py)."""
    t0 = time.monotonic()
    proc = arm64(cpu, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/arm/emulated_reference.py",
                 env={"EMBERLLM_ARM64_EXPECT_LEVEL": CPU_LEVELS[cpu],
                      "EMBERLLM_ARM64_REF_STEPS": os.environ.get("EMBERLLM_ARM64_REF_STEPS", str(REFERENCE_STEPS))})
    wall = time.monotonic() - t0
    print(f"\n{cpu}: emulated reference test {wall:.1f} s wall\n{proc.stdout[-600:]}")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "3 passed" in proc.stdout, proc.stdout[-2000:]  # all ran: none skipped


@pytest.fixture(scope="module", params=PI_CPUS)
def emulated_server(request, arm64_env, gemma_path, tmp_path_factory) -> Iterator[str]:
    """``emberllm serve`` under emulation at the Pi 5 or Pi 4 core, until healthy."""
    cpu = request.param
    port = free_port()
    log_path = tmp_path_factory.mktemp(f"serve-{cpu}") / "server.log"
    env = {**os.environ, "EMBERLLM_QEMU_CPU": cpu}
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["bash", str(ARM64_SH), "emberllm", "serve", "-m", str(gemma_path), "--host",
                                 "127.0.0.1", "--port", str(port), "-c", "1024", "-t", "2", "--log-level", "warning"],
                                stdout=log, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, proc, log_path, timeout_s=300)
            print(f"\n{cpu}: emulated server healthy after {time.monotonic() - t0:.1f} s")
            yield url
        finally:
            stop(proc)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]


def test_emulated_server_health(emulated_server):
    r = httpx.get(f"{emulated_server}/health", timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text


def test_emulated_server_streams_a_chat(emulated_server):
    """A streamed chat reply: role first, content deltas, a finish reason and [DONE]; the same text unstreamed."""
    body = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 4,
            "temperature": 0}
    with httpx.stream("POST", f"{emulated_server}/v1/chat/completions", json={**body, "stream": True},
                      timeout=300) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]", lines[-3:]
    chunks = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0].get("role") == "assistant"
    streamed = "".join(d.get("content") or "" for d in deltas)
    assert streamed.strip()
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    whole = httpx.post(f"{emulated_server}/v1/chat/completions", json=body, timeout=300).json()
    assert whole["choices"][0]["message"]["content"] == streamed
    assert whole["usage"]["completion_tokens"] == 4


def test_emulated_server_completion_gives_reference_greedy_ids(emulated_server, reference):
    ref = reference["prompts"]["def fibonacci(n):"]  # llama.cpp's top-2 gap stays wide for its 32 steps
    n = min(first_close_step(ref["steps"]), 8)
    body = {"prompt": "def fibonacci(n):", "n_predict": n, "temperature": 0, "cache_prompt": False}
    r = httpx.post(f"{emulated_server}/completion", json=body, timeout=300)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["tokens"] == ref["generated_token_ids"][:n], out
    assert out["tokens_evaluated"] == len(ref["prompt_token_ids"]), out
