"""What the ``webgpu`` backend needs from a GPU, whoever provides it: wgpu-py natively, ``navigator.gpu`` in Pyodide.

A device makes storage buffers, writes them, builds compute pipelines from WGSL, and runs a *plan*: a list of
dispatches encoded into one compute pass, each with its own slot of a shared uniform buffer of parameters, then
reads a few buffer ranges back.  Bind groups are cached by (pipeline, buffers, slot), so a decode step that repeats
the previous step's dispatches costs one parameter upload, one pass and one readback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

#: Bytes of the parameter slot each dispatch gets (a multiple of every adapter's uniform offset alignment).
PARAM_SLOT = 256


class GpuUnavailableError(RuntimeError):
    """No usable GPU adapter (none, a missing feature or too-small limits): the caller falls back to the CPU."""


@dataclass(frozen=True)
class GpuLimits:
    """The adapter limits the backend plans around."""

    max_binding: int
    max_buffer: int
    max_storage_buffers: int


@dataclass
class GpuBuffer:
    """A device storage buffer of ``nbytes`` bytes (``handle`` is the device's own object)."""

    handle: Any
    nbytes: int
    label: str
    uid: int


@dataclass(frozen=True)
class Dispatch:
    """One compute dispatch: a pipeline, the buffers bound after the parameter slot, its parameters, its grid."""

    pipeline: str
    buffers: tuple[GpuBuffer, ...]
    params: bytes
    groups: tuple[int, int, int]


@dataclass(frozen=True)
class Readback:
    """``nbytes`` bytes of ``buffer`` from byte ``offset`` on, read after a plan ran."""

    buffer: GpuBuffer
    offset: int
    nbytes: int


class GpuDevice(Protocol):
    """A GPU that runs plans (see the module doc)."""

    adapter_name: str
    has_f16: bool
    #: a CPU implementation (lavapipe, SwiftShader): kernels are shaped for it (one thread per matrix row)
    is_software: bool
    limits: GpuLimits

    def buffer(self, nbytes: int, label: str) -> GpuBuffer:
        """A zeroed storage buffer (rounded up to 4 bytes)."""
        ...

    def write(self, buf: GpuBuffer, offset: int, data: Any) -> None:
        """Copy bytes-like ``data`` into ``buf`` at byte ``offset`` (a multiple of 4)."""
        ...

    def pipeline(self, key: str, code: str) -> None:
        """Compile WGSL ``code`` (entry point ``main``) once under ``key``."""
        ...

    def has_pipeline(self, key: str) -> bool:
        """Whether ``key`` was compiled."""
        ...

    def run(self, plan: list[Dispatch], reads: list[Readback]) -> list[memoryview]:
        """Encode ``plan`` in one compute pass, submit it, and return the bytes of each readback; without
        readbacks, return once the device has finished the plan (a synchronisation)."""
        ...

    def close(self) -> None:
        """Release the device and its buffers."""
        ...
