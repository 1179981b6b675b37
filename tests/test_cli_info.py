"""``emberllm info`` as a user runs it (a subprocess): a report on stdout, or one ``error:`` line, exit 1."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from emberllm.cli.info import kv_cache_bytes


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emberllm.cli", "info", *args], capture_output=True,
                          text=True, timeout=120)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def test_info_text_report(gemma_path):
    proc = run_cli(str(gemma_path), "-c", "4096")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "GGUF version:  3" in out and "architecture:  gemma3" in out
    assert "name:          Gemma 3 270m" in out
    assert "tokenizer.ggml.tokens" in out and "[262144 items]" in out and '"[262144' not in out
    assert "parameters:    268.10 M (268,098,176)" in out
    assert f"file size:     {gemma_path.stat().st_size:,} bytes" in out
    assert "Q8_0" in out and "Q4_K" in out and "F32 " in out
    # 18 layers x 4096 tokens x 1 KV head x (256 + 256) dims x 2 bytes = 72 MiB
    assert "KV cache (f16)  75,497,472 bytes (72.00 MiB)" in out
    assert len(out.splitlines()) < 80


def test_info_json(gemma_path):
    proc = run_cli(str(gemma_path), "--json", "-c", "1024")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["version"] == 3 and info["architecture"] == "gemma3" and info["n_tensors"] == 236
    assert info["metadata"]["tokenizer.ggml.tokens"] == "[262144 items]"
    assert info["metadata"]["general.tags"] == ["gemma3", "gemma", "google", "text-generation"]
    assert info["metadata_types"]["tokenizer.ggml.scores"] == "arr[f32]"
    assert info["parameters"] == 268_098_176 and info["file_size"] == gemma_path.stat().st_size
    hist = info["tensor_types"]
    assert sum(e["count"] for e in hist.values()) == 236
    mem = info["memory"]
    assert mem["weights_bytes"] == sum(e["bytes"] for e in hist.values())
    assert mem["kv_cache_bytes"] == 2 * 18 * 1024 * 1 * 256 * 2
    assert mem["total_bytes"] == mem["weights_bytes"] + mem["kv_cache_bytes"]


def test_info_zero_byte_file(tmp_path):
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    assert_one_line_error(run_cli(str(empty)), "empty file")


@pytest.mark.parametrize(("n_bytes", "fragment"), [(1000, "left in the file"), (10**7, "outside the file")])
def test_info_truncated_copies(tmp_path, gemma_path, n_bytes, fragment):
    cut = tmp_path / "cut.gguf"
    with open(gemma_path, "rb") as src:
        cut.write_bytes(src.read(n_bytes))
    assert_one_line_error(run_cli(str(cut)), fragment, "truncated")


def test_info_missing_and_corrupt_files(tmp_path):
    assert_one_line_error(run_cli(str(tmp_path / "nope.gguf")), "model file not found")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04" + bytes(100))
    assert_one_line_error(run_cli(str(junk)), "bad magic")
    assert_one_line_error(run_cli(str(tmp_path)), "is a directory")
    assert_one_line_error(run_cli(str(junk), "-c", "0"), "bad magic")  # -c 0 (the trained context) is valid


def test_kv_cache_estimate_variants():
    md = {"general.architecture": "x", "x.block_count": 2, "x.embedding_length": 64,
          "x.attention.head_count": 4}
    assert kv_cache_bytes(md, 10) == 2 * 10 * 4 * (16 + 16) * 2  # head_kv defaults to head_count
    md["x.attention.head_count_kv"] = [1, 2]  # per-layer
    assert kv_cache_bytes(md, 10) == 10 * (1 + 2) * 32 * 2
    md["x.attention.key_length"], md["x.attention.value_length"] = 8, 4
    assert kv_cache_bytes(md, 10) == 10 * 3 * 12 * 2
    assert kv_cache_bytes({"general.architecture": "x"}, 10) is None
    assert kv_cache_bytes({**md, "x.attention.head_count_kv": "two"}, 10) is None


def test_info_estimates_the_kv_cache_of_the_cache_types(gemma_path):
    proc = run_cli(str(gemma_path), "-c", "4096", "-ctk", "q8_0", "-ctv", "q8_0")
    assert proc.returncode == 0, proc.stderr
    # q8_0: 34 bytes per 32 values, 18 layers x 4096 tokens x (256 + 256) values
    assert "KV cache (q8_0) 40,108,032 bytes (38.25 MiB)" in proc.stdout
    mixed = json.loads(run_cli(str(gemma_path), "--json", "-c", "4096", "-ctk", "q4_0", "-ctv", "f16").stdout)
    assert mixed["memory"]["kv_cache_bytes"] == 18 * 4096 * (256 // 32 * 18 + 256 * 2)
    assert (mixed["memory"]["cache_type_k"], mixed["memory"]["cache_type_v"]) == ("q4_0", "f16")
    bad = run_cli(str(gemma_path), "-ctk", "q5_1")
    assert bad.returncode == 2 and "valid types are f32, f16, q8_0, q4_0" in bad.stderr
