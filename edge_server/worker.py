"""The engine worker: one thread owns the model; every job (load, generation) runs there in turn.

The engine is synchronous C driven from Python, so generations never run on the event loop.  This first
slice serializes requests: ``-np`` is reported as the slot count but jobs run one after another through a
single-thread executor (its queue is the request queue).  Continuous batching over parallel slots is later
work (issue 6).  A streaming job hands each ``Step`` to the event loop through an ``asyncio.Queue``; setting
``Job.cancel`` (client gone, timeout) stops the generation before its next token.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from emberllm.engine import Model, Step, Timings
from emberllm.sampling import SamplingParams


@dataclass
class GenRequest:
    """One generation: the prompt (text or ids) and how to run it."""

    prompt: str | list[int]
    params: SamplingParams
    n_predict: int = -1
    stop: list[str] = field(default_factory=list)
    n_keep: int = 0
    cache_prompt: bool = True
    timeout_s: float = 600.0


@dataclass
class GenResult:
    """What is known once a generation has ended."""

    n_prompt: int
    timings: Timings


@dataclass
class Stats:
    """Counters for ``/metrics`` (updated on the worker thread, read on the loop: plain ints are fine)."""

    requests: int = 0
    prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    predicted_tokens: int = 0
    predicted_seconds: float = 0.0
    processing: int = 0
    deferred: int = 0


class QueueFullError(RuntimeError):
    """More requests are waiting than the queue allows (answered 503 with Retry-After)."""


class Job:
    """A generation running (or queued) on the worker; iterate ``events()`` on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.cancel = threading.Event()
        self._loop = loop
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def post(self, kind: str, value: Any) -> None:
        """Called on the worker thread: hand an event to the loop."""
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))

    async def next_event(self) -> tuple[str, Any]:
        """The next ``("step", Step)``, ``("done", GenResult)`` or ``("error", Exception)``."""
        return await self._queue.get()

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        """Events until the job ends; leaving the loop early (client gone) cancels the generation."""
        try:
            while True:
                kind, value = await self.next_event()
                yield kind, value
                if kind != "step":
                    return
        finally:
            self.cancel.set()


class EngineWorker:
    """Owns the model and the single engine thread."""

    def __init__(self, max_queue: int = 64, n_predict_max: int = -1) -> None:
        self.max_queue = max_queue
        self.n_predict_max = n_predict_max  # -n: no request generates more tokens (-1: no cap)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emberllm-engine")
        self.model: Model | None = None
        self.load_error: str | None = None
        self.stats = Stats()
        self.busy = False
        self._lock = threading.Lock()  # the queue counters change on both the loop and the engine thread
        self._closing = threading.Event()  # set at shutdown: running and queued generations stop

    async def load(self, factory: Callable[[], Model]) -> None:
        """Load the model on the engine thread (``/health`` answers 503 until it is ready)."""
        loop = asyncio.get_running_loop()
        try:
            self.model = await loop.run_in_executor(self._executor, factory)
        except Exception as exc:  # noqa: BLE001 - any load failure is reported through /health
            self.load_error = f"{type(exc).__name__}: {exc}"

    async def call(self, fn: Callable[[Model], Any]) -> Any:
        """Run ``fn(model)`` on the engine thread (after the jobs queued before it)."""
        assert self.model is not None
        model = self.model
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, model)

    def submit(self, req: GenRequest) -> Job:
        """Queue a generation; its events arrive on the returned job.  ``QueueFullError`` when ``max_queue``
        requests are already waiting."""
        assert self.model is not None
        cap = self.n_predict_max
        if cap >= 0 and (req.n_predict < 0 or req.n_predict > cap):
            req.n_predict = cap
        with self._lock:
            if self.stats.deferred >= self.max_queue:
                raise QueueFullError(f"the server is busy: {self.stats.deferred} requests are waiting")
            self.stats.deferred += 1
        job = Job(asyncio.get_running_loop())
        self._executor.submit(self._run, self.model, req, job)
        return job

    def _run(self, model: Model, req: GenRequest, job: Job) -> None:
        with self._lock:
            self.stats.deferred -= 1
        if job.cancel.is_set() or self._closing.is_set():
            job.post("error", RuntimeError("the request was cancelled before it started"))
            return
        self.stats.processing += 1
        self.busy = True
        deadline = time.monotonic() + req.timeout_s

        def cancelled() -> bool:
            return job.cancel.is_set() or self._closing.is_set() or time.monotonic() > deadline

        try:
            if not req.cache_prompt:
                model.kv.clear()
            n_prompt = len(model.tokenize(req.prompt)) if isinstance(req.prompt, str) else len(req.prompt)
            steps = model.generate(req.prompt, n_predict=req.n_predict, params=req.params, stop=req.stop,
                                   n_keep=req.n_keep, context_shift=False, cancel=cancelled)
            n_steps = 0
            for step in steps:
                n_steps += 1
                job.post("step", step)
            tm = model.timings
            st = self.stats
            st.requests += 1
            st.prompt_tokens += tm.prompt_tokens
            st.prompt_seconds += tm.prompt_ms / 1000.0
            st.predicted_tokens += n_steps
            st.predicted_seconds += (tm.eval_ms + tm.sample_ms) / 1000.0
            job.post("done", GenResult(n_prompt, tm))
        except Exception as exc:  # noqa: BLE001 - reported to the request, the worker keeps serving
            job.post("error", exc)
        finally:
            self.stats.processing -= 1
            self.busy = False

    def shutdown(self) -> None:
        """Stop the running generation and the engine thread (queued jobs are dropped), free the model."""
        self._closing.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self.model is not None:
            self.model.close()
            self.model = None


def is_final(step: Step) -> bool:
    """Whether ``step`` is the last of its generation."""
    return step.finish_reason is not None
