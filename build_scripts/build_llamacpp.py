"""Build (or find) llama.cpp, the oracle the tests and bench/ compare emberllm against.

    python build_scripts/build_llamacpp.py            # build once into the cache (≈ 4 min on 2 cores), print where
    python build_scripts/build_llamacpp.py --check    # say what is there or missing; exit 1 when not built

llama.cpp comes from the ``llama-cpp-python==0.3.36`` sdist (commit 0c1e570, the one ../shared/reference was made
with), downloaded with pip and unpacked under ``$EMBERLLM_CACHE/llamacpp`` (default ``~/.cache/emberllm``, outside
the repository); its ``vendor/llama.cpp`` is built with cmake into ``vendor/llama.cpp/build``.  An existing build
is reused.  ``$EMBERLLM_LLAMACPP_DIR`` names another llama.cpp tree (with its build in ``build/bin``) instead.

Used by build_scripts/test.sh (before pytest), bench/compare.py and bench/server_load.py, and, for paths only,
by tests/llamacpp.py.  Importing it has no side effects.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LLAMA_CPP_PYTHON = "0.3.36"
#: cmake targets: the tools bench/ and the tests run and the shared libraries the tests load with ctypes
#: (libllama.so: tests/test_sampling.py; libggml-base.so: tests/test_model_families.py; llama-quantize:
#: tests/test_quantize_llamacpp.py).
BINARIES = ("llama-bench", "llama-server", "llama-completion", "llama-perplexity", "llama-tokenize", "llama-embedding",
            "llama-quantize")
LIBRARIES = ("llama", "ggml-base")
TARGETS = (*LIBRARIES, *BINARIES)
CMAKE_FLAGS = ("-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
               "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_OPENSSL=OFF")
#: llama.cpp's vocab-only test models (with their ``.inp``/``.out`` cases) that the tokenizer tests read from
#: ``models/``; they ship in the sdist, so unpacking is enough.
VOCABS = ("llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2", "deepseek-llm", "starcoder", "refact", "mpt",
          "command-r", "falcon", "deepseek-coder", "qwen35")
#: Held while building: bench/harness.py's LOCK_PATH, so that a build neither overlaps a timed run nor another build.
LOCK_PATH = "/tmp/emberllm-bench.lock"


class BuildError(Exception):
    """llama.cpp could not be built here; the message says why."""


def cache_root() -> Path:
    """``$EMBERLLM_CACHE`` or ``~/.cache/emberllm`` (as ``emberllm.runtime.model_store.cache_dir``)."""
    root = os.environ.get("EMBERLLM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "emberllm")
    return Path(root)


def download_dir() -> Path:
    """Where the sdist is downloaded and unpacked: ``<cache>/llamacpp``."""
    return cache_root() / "llamacpp"


def source_dir() -> Path:
    """The llama.cpp source tree: ``$EMBERLLM_LLAMACPP_DIR`` or the sdist's ``vendor/llama.cpp`` in the cache."""
    forced = os.environ.get("EMBERLLM_LLAMACPP_DIR")
    if forced:
        return Path(forced)
    return download_dir() / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp"


def bin_dir() -> Path:
    """Where the build puts the binaries and the shared libraries."""
    return source_dir() / "build" / "bin"


def binary(name: str) -> Path:
    """One of ``BINARIES`` (e.g. ``llama-server``)."""
    return bin_dir() / name


def library(name: str) -> Path:
    """One of ``LIBRARIES`` as a shared library (``library("llama")`` is ``…/build/bin/libllama.so``)."""
    return bin_dir() / f"lib{name}.so"


def models_dir() -> Path:
    """llama.cpp's ``models/`` folder (the ``ggml-vocab-*.gguf`` test vocabularies)."""
    return source_dir() / "models"


def vocab(name: str) -> Path:
    """One of llama.cpp's vocab-only test models, ``models/ggml-vocab-NAME.gguf``."""
    return models_dir() / f"ggml-vocab-{name}.gguf"


def missing() -> list[Path]:
    """Every file the tests and bench/ need that is not on disk (empty when llama.cpp is ready)."""
    needed = [binary(b) for b in BINARIES] + [library(lib) for lib in LIBRARIES] + [vocab(v) for v in VOCABS]
    return [p for p in needed if not p.is_file()]


def built() -> bool:
    """Whether the build and the vocab files are all there."""
    return not missing()


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked(path: str, log: Callable[[str], None]) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``, waiting for it (and saying so) when someone else holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"llama.cpp: waiting for {path} (a timed run or another build holds it)")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _run(cmd: list[str], log_file: Path) -> None:
    """Run one build step with its output appended to ``log_file``; ``BuildError`` with the tail on failure."""
    with log_file.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, check=False)
    if res.returncode != 0:
        text = log_file.read_text(errors="replace").strip()
        raise BuildError(f"`{' '.join(cmd[:3])} …` exit {res.returncode} (log: {log_file}):\n…{text[-1500:]}")


def _fetch_source(log: Callable[[str], None]) -> None:
    """Download the sdist with pip (unless it is there) and unpack it (unless it is unpacked)."""
    root = download_dir()
    root.mkdir(parents=True, exist_ok=True)
    sdist = root / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if not sdist.is_file():
        log(f"llama.cpp: downloading the llama-cpp-python {LLAMA_CPP_PYTHON} sdist into {root}")
        res = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                              "--no-binary", ":all:", "--no-deps", "-d", str(root),
                              f"llama-cpp-python=={LLAMA_CPP_PYTHON}"], capture_output=True, text=True, check=False)
        if res.returncode != 0 or not sdist.is_file():
            raise BuildError(f"pip download llama-cpp-python=={LLAMA_CPP_PYTHON} failed: {res.stderr.strip()[-800:]}")
    log(f"llama.cpp: unpacking {sdist.name}")
    with tarfile.open(sdist) as tar:
        tar.extractall(root, filter="data")


def build(log: Callable[[str], None] = _log, lock_path: str = LOCK_PATH, jobs: int | None = None) -> Path:
    """Make llama.cpp ready (download, unpack, cmake) unless it is already; return ``bin_dir()``.

    Holds ``lock_path`` while building and looks again once it has it, so concurrent callers build once.
    Raises ``BuildError`` (no cmake or compiler, no network for pip, a failed build) with the reason.
    """
    if built():
        return bin_dir()
    t0 = time.monotonic()
    with _locked(lock_path, log):
        if built():
            return bin_dir()
        src = source_dir()
        if not (src / "CMakeLists.txt").is_file() or any(not vocab(v).is_file() for v in VOCABS):
            if os.environ.get("EMBERLLM_LLAMACPP_DIR"):
                raise BuildError(f"$EMBERLLM_LLAMACPP_DIR={src} is not a llama.cpp source tree with models/")
            _fetch_source(log)
        if shutil.which("cmake") is None:
            raise BuildError("cmake is not installed (apt-get install cmake)")
        build_dir = src / "build"
        build_dir.mkdir(parents=True, exist_ok=True)
        log_file = build_dir / "emberllm-build.log"
        log_file.write_text("")
        log(f"llama.cpp: building {' '.join(TARGETS)} in {build_dir} (≈ 4 minutes on 2 cores; log: {log_file})")
        _run(["cmake", "-S", str(src), "-B", str(build_dir), *CMAKE_FLAGS], log_file)
        _run(["cmake", "--build", str(build_dir), "--config", "Release", "-j", str(jobs or os.cpu_count() or 2),
              "--target", *TARGETS], log_file)
        if not built():
            raise BuildError(f"the llama.cpp build did not produce {', '.join(map(str, missing()))}")
    log(f"llama.cpp: built in {bin_dir()} ({time.monotonic() - t0:.0f} s)")
    return bin_dir()


def main(argv: list[str] | None = None) -> int:
    """Build llama.cpp into the cache (or, with ``--check``, report what is missing)."""
    import argparse

    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="do not build: list what is missing, exit 1 if anything is")
    p.add_argument("-j", "--jobs", type=int, default=None, help="parallel compile jobs (default: every core)")
    args = p.parse_args(argv)
    if args.check:
        gone = missing()
        for path in gone:
            print(f"missing: {path}")
        print(f"llama.cpp {'not built' if gone else 'ready'} in {source_dir()}")
        return 1 if gone else 0
    try:
        print(build(jobs=args.jobs))
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
