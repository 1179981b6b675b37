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


def buffer_size(nbytes: int) -> int:
    """The size of a storage buffer holding ``nbytes``: a multiple of 4 bytes, at least 4."""
    return max(4, (nbytes + 3) // 4 * 4)


def padded(data: memoryview) -> memoryview:
    """``data`` with a ragged tail padded with zeros to a multiple of 4 bytes (what a buffer write takes)."""
    pad = -len(data) % 4
    return memoryview(bytes(data) + bytes(pad)) if pad else data


def pack_params(plan: list[Dispatch]) -> bytes:
    """The parameters of every dispatch of a plan, each in its own ``PARAM_SLOT``-byte slot, end to end."""
    return b"".join(d.params.ljust(PARAM_SLOT, b"\0") for d in plan)


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
