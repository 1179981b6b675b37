"""Where a model's layers run: llama.cpp's ``-ngl`` / ``--device`` over the ``webgpu`` backend, with the CPU as the
fallback whenever the GPU cannot take them (no adapter, the wgpu package missing, a weight type without a kernel).

``EMBERLLM_DEVICE`` (``webgpu`` or ``cpu``) overrides the device a caller asked for; ``EMBERLLM_GPU_F16=0`` keeps
the f32 kernels on an adapter with ``shader-f16``.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

from emberllm.backends.binding import Kernels
from emberllm.gguf import types as ggml_types
from emberllm.gguf.reader import GGUFFile
from emberllm.models.base import HParams

log = logging.getLogger("emberllm")

#: Devices ``--device`` accepts.
DEVICES = ("auto", "webgpu", "cpu")


@dataclass
class Placement:
    """The device backend (``None``: CPU only) and how many of the last layers it runs."""

    backend: Any
    n_layers: int
    message: str


#: ``-ngl``'s words for "every layer" (llama.cpp accepts a large number too, e.g. 99).
ALL_LAYERS = 1 << 30


def parse_gpu_layers(value: str) -> int:
    """``-ngl``'s argument: a count >= 0, or ``all`` / ``auto`` for every layer (``ValueError`` otherwise)."""
    if value.strip().lower() in ("all", "auto", "max"):
        return ALL_LAYERS
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"-ngl/--n-gpu-layers: expected a layer count or 'all', got {value!r}") from None
    if n < 0:
        raise ValueError(f"-ngl/--n-gpu-layers must be >= 0, got {n}")
    return n


def gpu_layer_count(n_gpu_layers: int | None, device: str) -> int:
    """Layers to offload: the count given, else every layer when the device is ``webgpu``, none otherwise."""
    if device == "cpu":
        return 0
    if n_gpu_layers is None:
        return ALL_LAYERS if device == "webgpu" else 0
    return n_gpu_layers


def resolve_device(device: str | None) -> str:
    """The device asked for, ``EMBERLLM_DEVICE`` winning; ``ValueError`` for an unknown name."""
    name = (os.environ.get("EMBERLLM_DEVICE") or device or "auto").strip().lower()
    if name == "gpu":
        name = "webgpu"
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}: expected one of {', '.join(DEVICES)}")
    return name


def open_gpu_device(f16: bool = True) -> Any:
    """The WebGPU device of this platform: ``navigator.gpu`` in Pyodide, wgpu-py natively
    (``GpuUnavailableError`` when there is none)."""
    if sys.platform == "emscripten":
        from emberllm.backends.webgpu.browser import BrowserDevice

        return BrowserDevice(f16)
    from emberllm.backends.webgpu.native import NativeDevice

    return NativeDevice(f16)


def place_layers(gguf: GGUFFile, hp: HParams, kernels: Kernels, n_gpu_layers: int | None,
                 device: str | None = None, gpu: Any = None) -> Placement:
    """Open the device backend for ``n_gpu_layers`` (``-ngl``; >= the layer count: everything incl. the output;
    ``None``: all on ``webgpu``, none otherwise) or say why the CPU runs them; ``gpu``: an open device (tests)."""
    from emberllm.backends.webgpu.device import GpuUnavailableError

    name = resolve_device(device)
    n = min(gpu_layer_count(n_gpu_layers, name), hp.n_layer)
    if n <= 0:
        return Placement(None, 0, "")
    try:
        if gpu is None:
            gpu = open_gpu_device(f16=os.environ.get("EMBERLLM_GPU_F16", "1") != "0")
    except GpuUnavailableError as exc:
        msg = f"WebGPU is not available ({exc}): running all layers on the CPU"
        log.warning("%s", msg)
        return Placement(None, 0, msg)
    from emberllm.backends.webgpu.backend import WebGpuBackend

    backend = WebGpuBackend(gpu, kernels)
    missing = sorted({ggml_types.type_by_id(t.ggml_type).name for name_, t in gguf.tensors.items()
                      if _offloaded(name_, hp.n_layer - n, n == hp.n_layer) and not backend.supports(t.ggml_type)})
    if missing:
        backend.close()
        msg = f"no WebGPU kernel for tensor type(s) {', '.join(missing)}: running all layers on the CPU"
        log.warning("%s", msg)
        return Placement(None, 0, msg)
    msg = f"offloaded {n}/{hp.n_layer} layers to webgpu ({gpu.adapter_name}, {backend.precision})"
    print(msg, file=sys.stderr, flush=True)
    return Placement(backend, n, msg)


def _offloaded(tensor: str, first_layer: int, everything: bool) -> bool:
    """Whether a tensor goes to the device when layers ``first_layer..`` do (and the rest with ``everything``)."""
    if tensor.startswith("blk."):
        return int(tensor.split(".")[1]) >= first_layer
    return everything
