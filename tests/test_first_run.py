"""What a newcomer meets first, run as a user runs it (subprocesses): the version, usage errors, the default model,
context sizes as llama.cpp takes them, and a server that refuses to start rather than answer 500s."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest

from tests.server_fixtures import free_port
from tests.test_model_errors import tiny_gguf

CLI = [sys.executable, "-m", "emberllm.cli"]
TRAINED_CTX = 32768  # gemma3.context_length of the default model


def cli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, **kw)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line a failed command printed (asserting there is nothing else)."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


# -- the command line ------------------------------------------------------------------------------------
def test_version_flag():
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"emberllm {metadata.version('emberllm')}"


@pytest.mark.parametrize("command", ["run", "serve", "info", "bench"])
def test_unknown_flag_prints_the_subcommands_usage(command):
    proc = cli(command, "--no-such-flag")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"usage: emberllm {command} ")
    assert proc.stderr.rstrip().endswith("error: unrecognized arguments: --no-such-flag")


def test_run_output_ends_with_a_newline(gemma_path):
    proc = cli("run", "-p", "The capital of France is", "-n", "4", "--temp", "0", "-t", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("The capital of France is") and proc.stdout.endswith("\n")


def test_conversation_replies_are_capped_by_default(gemma_path):
    proc = subprocess.run([*CLI, "run", "-cnv", "--temp", "0", "-t", "2"], input="Tell me a story.\n/exit\n",
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "n_predict = 256" in proc.stderr and "replies stop after 256 tokens" in proc.stderr


def test_missing_model_named_like_the_default_points_to_the_cache(tmp_path, gemma_path):
    line = one_error_line(cli("run", "-m", gemma_path.name, "-p", "hi", cwd=tmp_path))
    assert f"model file not found: {gemma_path.name}" in line and str(gemma_path) in line


def test_info_without_a_model_describes_the_default_model(gemma_path):
    proc = cli("info", "--json")
    assert proc.returncode == 0, proc.stderr
    assert Path(json.loads(proc.stdout)["path"]) == gemma_path


# -- context sizes ---------------------------------------------------------------------------------------
def test_context_beyond_the_trained_one_is_capped_with_a_warning(gemma_path):
    proc = cli("run", "-c", "10000000", "-p", "Hello", "-n", "1", "--temp", "0", "-t", "2")
    assert proc.returncode == 0, proc.stderr
    assert (f"warning: context size 10000000 is larger than the model's trained context ({TRAINED_CTX}): "
            f"capped at {TRAINED_CTX}") in proc.stderr
    assert f"n_ctx = {TRAINED_CTX}," in proc.stderr


def test_context_zero_is_the_trained_context_in_info_and_run(gemma_path):
    info = cli("info", "-c", "0", "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["memory"]["n_ctx"] == TRAINED_CTX
    run = cli("run", "-c", "0", "-p", "Hello", "-n", "1", "--temp", "0", "-t", "2")
    assert run.returncode == 0 and f"n_ctx = {TRAINED_CTX}," in run.stderr and "warning" not in run.stderr


@pytest.mark.parametrize("size", ["3", "-5"])
def test_info_and_run_refuse_the_same_context_sizes(gemma_path, size):
    info_line = one_error_line(cli("info", "-c", size))
    run_line = one_error_line(cli("run", "-c", size, "-p", "hi"))
    assert info_line == run_line and "context size" in run_line


def _address_space_limit(nbytes: int):
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))


def test_kv_cache_that_does_not_fit_is_refused_in_one_line(gemma_path):
    # 700 MB of address space holds Python, the kernels and the 253 MB mapped model, not a 576 MiB KV cache
    proc = cli("run", "-c", "0", "-p", "hi", "-n", "1", preexec_fn=_address_space_limit(700 << 20))
    line = one_error_line(proc)
    assert f"the KV cache for a context of {TRAINED_CTX} tokens needs 576.00 MiB" in line
    assert "give a smaller -c/--ctx-size" in line


# -- emberllm serve --------------------------------------------------------------------------------------
def test_serve_refuses_a_file_that_is_not_a_gguf(tmp_path):
    bad = tmp_path / "not-a-model.gguf"
    bad.write_text("hello, I am a text file\n")
    proc = cli("serve", "-m", str(bad), "--port", str(free_port()), timeout=60)
    assert "not a GGUF file" in one_error_line(proc)


def test_serve_refuses_an_unsupported_model_before_listening(tmp_path):
    path = tmp_path / "mamba.gguf"
    tiny_gguf(path, "mamba")
    proc = cli("serve", "-m", str(path), "--port", str(free_port()), timeout=60)
    assert "unsupported architecture 'mamba'" in one_error_line(proc)
    assert "Application startup" not in proc.stderr


def test_serve_exits_when_the_model_fails_to_load(tmp_path):
    # a valid header of a supported architecture whose tensors are missing: it fails only while loading
    path = tmp_path / "hollow.gguf"
    tiny_gguf(path, "gemma3")
    proc = cli("serve", "-m", str(path), "--port", str(free_port()), timeout=60)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: model failed to load: ") and "missing tensor" in last, proc.stderr


def test_serve_refuses_a_port_in_use(gemma_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_error_line(cli("serve", "--port", str(port), timeout=60))
    assert f"port {port} on 127.0.0.1 is already in use" in line


def serve_and_get(args: list[str], path: str) -> tuple[dict, str]:
    """Start ``emberllm serve ARGS --port FREE``, read ``path`` as JSON once it answers, stop it; (body, stderr)."""
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", *args, "--port", str(port), "-t", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    body = json.load(r)
                break
            except OSError:
                time.sleep(0.3)
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=60)
    return body, err


def test_serve_runs_a_pasted_llama_server_command_line(gemma_path):
    """A guide's ``llama-server --flash-attn on --ctx-size 0 -ngl 99 --jinja -a NAME -m ...`` line, run unchanged."""
    models, err = serve_and_get(["--flash-attn", "on", "--ctx-size", "0", "-ngl", "99", "--jinja", "-a", "gemma",
                                 "-m", str(gemma_path)], "/v1/models")
    assert models["data"][0]["id"] == "gemma" and models["data"][0]["meta"]["n_ctx"] == TRAINED_CTX
    assert "offloaded 18/18 layers to webgpu (" in err or "WebGPU is not available" in err  # -ngl is real
    assert "note: -fa on:" in err and "note: --jinja:" in err


def test_serve_caps_each_slot_at_the_trained_context(gemma_path):
    props, err = serve_and_get(["-c", "10000000", "-np", "2"], "/props")
    assert props["default_generation_settings"]["n_ctx"] == TRAINED_CTX
    assert props["total_slots"] == 2
    assert (f"context size 5000000 per sequence is larger than the model's trained context ({TRAINED_CTX}): "
            f"capped at {TRAINED_CTX}") in err
