"""Backends: where a model's named ops run and its buffers live.

``cpu`` (``backends/cpu.py``) runs the C kernels of ``wasm_kernels/`` on host memory, bound with cffi natively and
with ctypes in Pyodide.  A backend offers buffers (``f32``, ``i32``, a KV cache), row views of them, matrix groups,
and the ops of ``models/decoder.py`` (``get_rows``, ``rms_norm``, ``matmul``, ``rope``, ``glu``, ``attention``,
``kv_shift``...).  Each decoder layer holds the backend that runs it (``Layer.ops``), the seam for a device backend
(WebGPU) or a per-layer split.
"""
