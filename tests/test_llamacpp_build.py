"""build_scripts/build_llamacpp.py's paths, and what a missing llama.cpp or reference does in and out of CI."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from . import llamacpp

ROOT = Path(__file__).resolve().parent.parent


def test_paths_follow_the_cache_and_the_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    build = llamacpp.build
    monkeypatch.delenv("EMBERLLM_LLAMACPP_DIR", raising=False)
    monkeypatch.setenv("EMBERLLM_CACHE", str(tmp_path))
    src = tmp_path / "llamacpp" / f"llama_cpp_python-{build.LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp"
    assert build.source_dir() == src
    assert build.library("llama") == src / "build" / "bin" / "libllama.so"
    assert build.binary("llama-server") == src / "build" / "bin" / "llama-server"
    assert build.vocab("llama-spm") == src / "models" / "ggml-vocab-llama-spm.gguf"
    assert not build.built() and build.library("ggml-base") in build.missing()
    assert build.main(["--check"]) == 1
    monkeypatch.setenv("EMBERLLM_LLAMACPP_DIR", str(tmp_path / "tree"))
    assert build.bin_dir() == tmp_path / "tree" / "build" / "bin"
    assert build.models_dir() == tmp_path / "tree" / "models"


def test_targets_cover_what_the_tests_and_bench_load() -> None:
    build = llamacpp.build
    assert {"llama", "ggml-base"} <= set(build.TARGETS)
    assert {"llama-bench", "llama-server", "llama-completion", "llama-perplexity", "llama-tokenize"} <= set(
        build.TARGETS)
    assert {"llama-spm", "phi-3", "llama-bpe", "qwen2"} <= set(build.VOCABS)


def test_missing_skips_outside_ci_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMBERLLM_LLAMACPP_DIR", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="libllama.so not found"):
        llamacpp.library("llama")
    with pytest.raises(pytest.skip.Exception, match="reference outputs not found"):
        llamacpp.reference_file(tmp_path / "llamacpp_reference.json")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="ggml-vocab-phi-3.gguf not found.*CI=true"):
        llamacpp.vocab("phi-3")
    with pytest.raises(pytest.fail.Exception, match="reference outputs not found.*CI=true"):
        llamacpp.reference_file(tmp_path / "ppl_text.txt")
    monkeypatch.setenv("CI", "false")
    assert not llamacpp.in_ci()


def test_bench_uses_the_same_build() -> None:
    """bench/compare.py's llama.cpp engine looks where build_llamacpp.py builds (no second copy of the recipe)."""
    spec = importlib.util.spec_from_file_location("bench_compare_llamacpp", ROOT / "bench" / "compare.py")
    assert spec is not None and spec.loader is not None
    compare = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = compare
    spec.loader.exec_module(compare)
    assert compare.build_llamacpp.bin_dir() == llamacpp.build.bin_dir()
    assert compare.LlamaCpp().bin == llamacpp.build.bin_dir()
    assert not hasattr(compare, "LLAMA_CMAKE_FLAGS")
