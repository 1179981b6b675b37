"""``emberllm bench``: llama-bench's flags, table and JSON field names (tiny sizes: a smoke test, not a benchmark)."""

from __future__ import annotations

import json
import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emberllm.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_bench_json_has_llama_bench_fields(gemma_path):
    proc = run_cli("bench", "-m", str(gemma_path), "-p", "8", "-n", "2", "-pg", "4,2", "-t", "1", "-r", "2",
                   "-o", "json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["n_prompt"], r["n_gen"]) for r in rows] == [(8, 0), (0, 2), (4, 2)]
    for r in rows:
        for key in ("model_type", "model_size", "model_n_params", "n_threads", "avg_ns", "stddev_ns", "avg_ts",
                    "stddev_ts", "samples_ns", "samples_ts", "backends", "load_ms"):
            assert key in r, key
        assert r["n_threads"] == 1 and len(r["samples_ts"]) == 2 and r["avg_ts"] > 0
    assert rows[0]["model_type"] == "gemma3 270M Q4_K - Medium"
    assert rows[0]["model_n_params"] == 268098176


def test_bench_markdown_table(gemma_path):
    proc = run_cli("bench", "-m", str(gemma_path), "-p", "4", "-n", "0", "-t", "1,2", "-r", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "| model | size | params | backend | threads | test | t/s |"
    assert len(lines) == 4
    assert lines[2].startswith("| gemma3 270M Q4_K - Medium | 235.16 MiB | 268.10 M | CPU (")
    assert "| 1 | pp4 |" in lines[2] and "| 2 | pp4 |" in lines[3] and " ± " in lines[2]


def test_bench_bad_flags_are_one_line_errors(gemma_path):
    proc = run_cli("bench", "-m", str(gemma_path), "-p", "0", "-n", "0")
    assert proc.returncode == 1 and proc.stderr.startswith("error: nothing to run")
    proc = run_cli("bench", "-m", str(gemma_path), "-r", "0")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
