"""The WebGPU device in the browser: ``navigator.gpu`` from Pyodide, through the JS driver of
``pyodide_pkg/webgpu.mjs``.

Opening an adapter and a device is asynchronous in the browser, so the JS loader (``pyodide_pkg/emberllm.mjs``)
does it before the model loads and publishes the driver as the JS module ``_emberllm_webgpu`` (``driver`` and, when
there is none, ``reason``); this class only wraps it.  Python crosses into JS rarely: one call per buffer, weight
upload and pipeline at load, then **one call per** ``run()``.  The small writes made since the last plan (the
``ids``/``pos`` mirrors of a decode step) are queued here and go with the next plan, replayed in order before it,
so the queue sees the same writes and submits as natively.  A plan is sent as the id of its structure (pipeline
ids, grid and buffer ids per dispatch; the packed structure itself only the first time that id is used) plus its
parameter slots as one bytes object; the driver caches each decoded structure with its pipelines and bind groups,
so an identical dispatch sequence (every decode step) is not decoded again.  As natively, a run without readbacks
is a synchronisation (the decode's timings include the GPU's work): a greedy decode step is two calls, the step's
plan (waiting for the queue) and the arg-max (waiting for its 8 bytes: index and value).

Readback: mapping a buffer is asynchronous and a Web Worker cannot block on it, while the decoder that asks for the
arg-max or the logits is ordinary synchronous Python deep inside sampling (and the context shift).  We await the
promise with Pyodide's JSPI (``pyodide.ffi.run_sync``): the wasm stack is suspended at that one point and resumed
when the bytes are there, so the decoder, sampler and batch code run unchanged natively and in the browser.  This
needs the Python call to have been entered through ``callPromising`` / ``runPythonAsync`` (the loader calls
``open`` and each generation step that way when the model is on WebGPU) and an engine with JSPI
(``WebAssembly.Suspending``: Chrome/Edge 137+, Pyodide 314 uses it); the loader reports WebGPU unusable without it.
The alternative, a step loop driven from JS that returns to JS before every readback, would have meant turning the
decoder and sampler inside out into resumable steps, for no gain: one suspension costs far less than a GPU pass.
"""

from __future__ import annotations

from array import array
from typing import Any

from emberllm.backends.webgpu.device import (
    Dispatch,
    GpuBuffer,
    GpuLimits,
    GpuUnavailableError,
    Readback,
    buffer_size,
    pack_params,
    padded,
)

#: Writes up to this size are queued and sent with the next plan (one JS call); larger ones (weights) go at once.
SMALL_WRITE = 64 * 1024
#: Distinct plan structures remembered (prompt chunks of different lengths each make one); then the least recently
#: used one's id is reused.
MAX_PLANS = 64


def _driver_state() -> Any:
    """The JS module the loader registers: ``driver`` (or null) and ``reason`` (why there is none)."""
    try:
        import _emberllm_webgpu  # type: ignore[import-not-found]
    except ImportError as exc:
        raise GpuUnavailableError("the JS loader opened no WebGPU device (pyodide_pkg/webgpu.mjs)") from exc
    return _emberllm_webgpu


class BrowserDevice:
    """``navigator.gpu`` through the JS driver (see ``device.GpuDevice`` and the module doc)."""

    def __init__(self, use_f16: bool = True, driver: Any = None) -> None:
        if driver is None:
            state = _driver_state()
            driver = getattr(state, "driver", None)
            if not driver:
                raise GpuUnavailableError(str(getattr(state, "reason", "") or "no WebGPU device was opened"))
        if getattr(driver, "destroyed", False):
            raise GpuUnavailableError("the WebGPU device was closed")
        self._driver = driver
        self.adapter_name = str(driver.adapterName)
        self.is_software = bool(driver.isSoftware)
        lim = driver.limits
        self.limits = GpuLimits(max_binding=int(lim.maxBinding), max_buffer=int(lim.maxBuffer),
                                max_storage_buffers=int(lim.maxStorageBuffers))
        self.has_f16 = use_f16 and bool(driver.hasF16)
        self._pipelines: dict[str, int] = {}
        self._plans: dict[tuple[Any, ...], int] = {}
        self._next_plan = 0
        #: small writes ``(buffer, offset, bytes)`` not sent yet
        self._queue: list[tuple[int, int, bytes]] = []
        self.js_calls = 0
        self.runs = 0

    # -- buffers -------------------------------------------------------------------------------------------
    def buffer(self, nbytes: int, label: str) -> GpuBuffer:
        """A zeroed storage buffer (rounded up to 4 bytes)."""
        size = buffer_size(nbytes)
        self.js_calls += 1
        handle = int(self._driver.buffer(size, label))
        return GpuBuffer(handle, size, label, handle)

    def write(self, buf: GpuBuffer, offset: int, data: Any) -> None:
        """Copy bytes-like ``data`` into ``buf`` at byte ``offset``; a ragged tail is padded to 4 bytes.  Small
        writes are queued for the next plan's call (replayed in order before it), large ones (weights) go now."""
        mv = memoryview(data).cast("B")
        if not len(mv):
            return
        if len(mv) <= SMALL_WRITE:
            self._queue.append((buf.handle, offset, bytes(padded(mv))))
            return
        self._send()
        self.js_calls += 1
        self._driver.write(buf.handle, offset, mv)

    # -- pipelines and plans -------------------------------------------------------------------------------
    def pipeline(self, key: str, code: str) -> None:
        """Compile WGSL ``code`` (entry point ``main``) once under ``key``."""
        if key in self._pipelines:
            return
        self.js_calls += 1
        self._pipelines[key] = int(self._driver.pipeline(code, key))

    def has_pipeline(self, key: str) -> bool:
        """Whether ``key`` was compiled."""
        return key in self._pipelines

    def _plan_id(self, plan: list[Dispatch]) -> tuple[int, array | None]:
        """The driver's id of this dispatch sequence, and its packed structure when the driver has not seen it."""
        key = tuple((d.pipeline, d.groups, *(b.uid for b in d.buffers)) for d in plan)
        pid = self._plans.pop(key, None)
        if pid is not None:
            self._plans[key] = pid  # most recently used last
            return pid, None
        if len(self._plans) >= MAX_PLANS:
            pid = self._plans.pop(next(iter(self._plans)))  # the least recently used; the driver overwrites it
        else:
            pid, self._next_plan = self._next_plan, self._next_plan + 1
        self._plans[key] = pid
        desc = array("i")
        for d in plan:
            desc.extend((self._pipelines[d.pipeline], len(d.buffers), *d.groups, *(b.uid for b in d.buffers)))
        return pid, desc

    def run(self, plan: list[Dispatch], reads: list[Readback]) -> list[memoryview]:
        """Encode ``plan`` in one compute pass, submit it, and return the bytes of each readback; without
        readbacks, return once the device has finished the plan (a synchronisation).  One JS call, then a JSPI wait
        for the driver's promise (the mapped bytes, or the queue's submitted work done)."""
        if not plan and not reads:
            return []  # nothing is in flight: every earlier run waited for its plan
        data = self._send(plan, reads)
        out, pos = [], 0
        for r in reads:
            out.append(data[pos : pos + r.nbytes])
            pos += r.nbytes
        return out

    def _send(self, plan: list[Dispatch] | None = None, reads: list[Readback] | None = None) -> memoryview:
        """One driver call: the queued writes, then ``plan`` and ``reads``; waits when there is a plan or reads and
        returns the read bytes end to end."""
        if not plan and not reads and not self._queue:
            return memoryview(b"")
        ops, blob = array("i"), []
        for handle, offset, data in self._queue:
            ops.extend((handle, offset, len(data)))
            blob.append(data)
        self._queue.clear()
        pid, desc = self._plan_id(plan) if plan else (-1, None)
        params = pack_params(plan) if plan else b""
        rmeta = array("i")
        for r in reads or ():
            rmeta.extend((r.buffer.handle, r.offset, r.nbytes))
        self.js_calls += 1
        self.runs += 1
        try:
            pending = self._driver.run(ops.tobytes(), b"".join(blob), pid, desc.tobytes() if desc else None, params,
                                       rmeta.tobytes())
        except Exception as exc:  # noqa: BLE001 - a JsException carries the driver's message
            if desc is not None:  # the driver may not have kept it: send the structure again next time
                self._plans = {k: v for k, v in self._plans.items() if v != pid}
            raise RuntimeError(f"WebGPU: {_js_message(exc)}") from exc
        return _await(pending) if pending else memoryview(b"")

    def close(self) -> None:
        """Release the device and its buffers."""
        self._queue.clear()
        self._plans.clear()
        self._pipelines.clear()
        if self._driver is not None:
            self._driver.destroy()
            self._driver = None


def _await(promise: Any) -> memoryview:
    """The bytes a driver promise resolves to, waiting with JSPI."""
    from pyodide.ffi import can_run_sync, run_sync

    if not can_run_sync():
        raise RuntimeError("WebGPU readback needs JSPI: enter Python through callPromising or runPythonAsync "
                           "(pyodide_pkg/emberllm.mjs does) in an engine with WebAssembly.Suspending")
    try:
        result = run_sync(promise)
    except Exception as exc:  # noqa: BLE001 - a JsException carries the driver's message
        raise RuntimeError(f"WebGPU: {_js_message(exc)}") from exc
    return memoryview(result.to_bytes())


def _js_message(exc: BaseException) -> str:
    """The first line of a JS error's message."""
    text = str(getattr(exc, "message", "") or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
