"""``emberllm run`` as a user runs it: a subprocess, text on stdout, timings on stderr, one-line errors."""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emberllm.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_run_greedy_prints_llamacpp_continuation(gemma_path, reference):
    ref = reference["prompts"]["def fibonacci(n):"]
    proc = run_cli("run", "-m", str(gemma_path), "-p", "def fibonacci(n):", "-n", "16", "--temp", "0", "-t", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("def fibonacci(n):")
    generated = proc.stdout[len("def fibonacci(n):"):].rstrip("\n")
    assert ref["generated_text"].startswith(generated) and len(generated) > 10
    assert "prompt eval time" in proc.stderr and "eval time" in proc.stderr


def test_run_on_zero_byte_file_is_one_line_error(tmp_path):
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    proc = run_cli("run", "-m", str(empty), "-p", "hi", "-n", "1")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:")


def test_run_on_truncated_file_is_one_line_error(tmp_path, gemma_path):
    cut = tmp_path / "cut.gguf"
    with open(gemma_path, "rb") as src:
        cut.write_bytes(src.read(20_000_000))
    proc = run_cli("run", "-m", str(cut), "-p", "hi", "-n", "1")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:")


def test_run_on_missing_file_is_one_line_error(tmp_path):
    proc = run_cli("run", "-m", str(tmp_path / "nope.gguf"), "-p", "hi")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and proc.stderr.startswith("error:")


def test_run_with_a_seed_is_reproducible_across_processes(gemma_path):
    args = ("run", "-m", str(gemma_path), "-p", "Once upon a time", "-n", "12", "--temp", "1.0", "-s", "42", "-t", "2")
    first, second = run_cli(*args), run_cli(*args)
    assert first.returncode == 0 and second.returncode == 0
    assert first.stdout == second.stdout


def test_run_with_a_grammar_or_json_schema_is_constrained(gemma_path, tmp_path):
    """``--grammar`` gives exactly one of its strings; ``-jf`` a JSON value of the schema; bad GBNF is a one-line
    error naming the flag."""
    import json

    base = ("run", "-m", str(gemma_path), "--no-display-prompt", "-n", "64", "-s", "7", "-t", "2")
    proc = run_cli(*base, "-p", "Is the sky blue? Answer: ", "--grammar", 'root ::= "yes" | "no"')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in ("yes", "no")
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
              "required": ["n"], "additionalProperties": False}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    proc = run_cli(*base, "-p", "A digit as JSON: ", "-jf", str(tmp_path / "schema.json"))
    assert proc.returncode == 0, proc.stderr
    value = json.loads(proc.stdout)
    assert set(value) == {"n"} and 0 <= value["n"] <= 9
    proc = run_cli(*base, "-p", "x", "--grammar", 'root ::= ("a"')
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: --grammar: grammar error at line 1")
    proc = run_cli(*base, "-p", "x", "-j", '{"not": {}}')
    assert proc.returncode != 0 and "'not'" in proc.stderr and proc.stderr.startswith("error: --json-schema:")
