"""The ctypes binding (what Pyodide uses) over a plain shared library gives the cffi binding's tokens."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = """
import sys
from emberllm.runtime.model import Model
from emberllm.backends.binding import load_kernels
k = load_kernels()
m = Model(sys.argv[1], n_ctx=64, n_threads=1)
ids = [s.token for s in m.generate("The capital of France is", n_predict=8, temperature=0)]
# models from read-only bytes (the Pyodide path pins them through the buffer protocol), several in one process
data = open(sys.argv[1], "rb").read()
for _ in range(2):
    other = Model(data, n_ctx=64, n_threads=1, warmup=False)
    assert [s.token for s in other.generate("The capital of France is", n_predict=2, temperature=0)] == ids[:2]
    other.close()
    del other
print(k.backend, *ids)
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_ctypes_binding_matches_cffi(tmp_path, gemma_path):
    lib = tmp_path / "libemberllm.so"
    sources = sorted(str(p) for p in (ROOT / "core" / "wasm_kernels").glob("*.c"))
    subprocess.run(["cc", "-std=c11", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(lib), *sources,
                    "-lm", "-lpthread"], check=True)
    outs = {}
    for binding in ("cffi", "ctypes"):
        env = dict(os.environ, EMBERLLM_BINDING=binding, EMBERLLM_KERNELS_LIB=str(lib))
        proc = subprocess.run([sys.executable, "-c", SCRIPT, str(gemma_path)], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "Exception ignored" not in proc.stderr, proc.stderr
        name, *ids = proc.stdout.split()
        assert name == binding
        outs[binding] = ids
    assert outs["ctypes"] == outs["cffi"]
