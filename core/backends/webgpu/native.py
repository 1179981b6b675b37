"""The WebGPU device natively: PyPI ``wgpu`` (wgpu-native over Vulkan, Metal or D3D12)."""

from __future__ import annotations

import itertools
import os
import tempfile
from typing import Any

from emberllm.backends.webgpu.device import (
    PARAM_SLOT,
    Dispatch,
    GpuBuffer,
    GpuLimits,
    GpuUnavailableError,
    Readback,
    buffer_size,
    pack_params,
    padded,
)


def _import_wgpu() -> Any:
    # Mesa's software Vulkan (lavapipe) complains on stderr when XDG_RUNTIME_DIR is unset (a server, CI)
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    try:
        import wgpu
    except ImportError as exc:
        raise GpuUnavailableError("the wgpu package is not installed (pip install wgpu)") from exc
    return wgpu


class NativeDevice:
    """A wgpu-py adapter and device running plans (see ``device.GpuDevice``)."""

    def __init__(self, use_f16: bool = True) -> None:
        wgpu = self._wgpu = _import_wgpu()
        try:
            adapter = wgpu.gpu.request_adapter_sync(power_preference="high-performance")
        except Exception as exc:  # noqa: BLE001 - wgpu-native raises plain errors when no driver is present
            raise GpuUnavailableError(f"no WebGPU adapter: {exc}") from exc
        if adapter is None:
            raise GpuUnavailableError("no WebGPU adapter")
        info = adapter.info
        self.adapter_name = str(info.get("device") or info.get("description") or "unknown adapter")
        self.is_software = str(info.get("adapter_type", "")).upper() == "CPU"
        lim = adapter.limits
        self.limits = GpuLimits(
            max_binding=int(lim["max-storage-buffer-binding-size"]),
            max_buffer=int(lim["max-buffer-size"]),
            max_storage_buffers=int(lim["max-storage-buffers-per-shader-stage"]),
        )
        self.has_f16 = use_f16 and "shader-f16" in adapter.features
        features = ["shader-f16"] if self.has_f16 else []
        required = {
            "max-storage-buffer-binding-size": self.limits.max_binding,
            "max-buffer-size": self.limits.max_buffer,
            "max-storage-buffers-per-shader-stage": self.limits.max_storage_buffers,
        }
        try:
            self._device = adapter.request_device_sync(required_features=features, required_limits=required)
        except Exception as exc:  # noqa: BLE001
            raise GpuUnavailableError(f"cannot open the WebGPU device on {self.adapter_name}: {exc}") from exc
        self._queue = self._device.queue
        self._pipelines: dict[str, Any] = {}
        self._bind_groups: dict[tuple[Any, ...], Any] = {}
        self._params: Any = None
        self._params_slots = 0
        self._uid = itertools.count()
        self._sync = self.buffer(4, "sync").handle

    # -- buffers -------------------------------------------------------------------------------------------
    def buffer(self, nbytes: int, label: str) -> GpuBuffer:
        """A zeroed storage buffer (rounded up to 4 bytes)."""
        size = buffer_size(nbytes)
        usage = self._wgpu.BufferUsage
        handle = self._device.create_buffer(size=size, usage=usage.STORAGE | usage.COPY_SRC | usage.COPY_DST,
                                            label=label)
        return GpuBuffer(handle, size, label, next(self._uid))

    def write(self, buf: GpuBuffer, offset: int, data: Any) -> None:
        """Copy bytes-like ``data`` into ``buf`` at byte ``offset``; a ragged tail is padded to 4 bytes."""
        mv = padded(memoryview(data).cast("B"))
        if len(mv):
            self._queue.write_buffer(buf.handle, offset, mv)

    # -- pipelines and plans -------------------------------------------------------------------------------
    def pipeline(self, key: str, code: str) -> None:
        """Compile WGSL ``code`` (entry point ``main``) once under ``key``."""
        if key in self._pipelines:
            return
        module = self._device.create_shader_module(code=code, label=key)
        self._pipelines[key] = self._device.create_compute_pipeline(
            layout="auto", compute={"module": module, "entry_point": "main"}, label=key)

    def has_pipeline(self, key: str) -> bool:
        """Whether ``key`` was compiled."""
        return key in self._pipelines

    def _params_buffer(self, n_slots: int) -> Any:
        if n_slots > self._params_slots:
            self._params_slots = max(n_slots, 2 * self._params_slots, 64)
            usage = self._wgpu.BufferUsage
            self._params = self._device.create_buffer(size=self._params_slots * PARAM_SLOT,
                                                      usage=usage.UNIFORM | usage.COPY_DST, label="params")
            self._bind_groups.clear()
        return self._params

    def _bind_group(self, d: Dispatch, slot: int) -> Any:
        key = (d.pipeline, slot, *(b.uid for b in d.buffers))
        group = self._bind_groups.get(key)
        if group is None:
            pipe = self._pipelines[d.pipeline]
            entries = [{"binding": 0, "resource": {"buffer": self._params, "offset": slot * PARAM_SLOT,
                                                   "size": PARAM_SLOT}}]
            entries += [{"binding": i + 1, "resource": {"buffer": b.handle, "offset": 0, "size": b.nbytes}}
                        for i, b in enumerate(d.buffers)]
            group = self._device.create_bind_group(layout=pipe.get_bind_group_layout(0), entries=entries)
            self._bind_groups[key] = group
        return group

    def run(self, plan: list[Dispatch], reads: list[Readback]) -> list[memoryview]:
        """Encode ``plan`` in one compute pass, submit it, and return the bytes of each readback."""
        if plan:
            params = self._params_buffer(len(plan))
            self._queue.write_buffer(params, 0, pack_params(plan))
            encoder = self._device.create_command_encoder()
            cpass = encoder.begin_compute_pass()
            for i, d in enumerate(plan):
                cpass.set_pipeline(self._pipelines[d.pipeline])
                cpass.set_bind_group(0, self._bind_group(d, i))
                cpass.dispatch_workgroups(*d.groups)
            cpass.end()
            self._queue.submit([encoder.finish()])
        if not reads:  # a flush without readbacks is a synchronisation: reading any buffer waits for the queue
            self._queue.read_buffer(self._sync, 0, 4)
        return [memoryview(self._queue.read_buffer(r.buffer.handle, r.offset, r.nbytes)).cast("B") for r in reads]

    def close(self) -> None:
        """Release the device and its buffers."""
        self._bind_groups.clear()
        self._pipelines.clear()
        if self._device is not None:
            self._device.destroy()
            self._device = None
