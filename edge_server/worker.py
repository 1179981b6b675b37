"""The engine worker: one thread owns the model and runs the continuous-batching scheduler.

The engine is synchronous C driven from Python, so forward passes never run on the event loop.  Requests become
``Job``s: the scheduler (``scheduler.py``) gives each a slot, evaluates its prompt and batches its decode steps with
the other slots'; each event (``events.py``: a step, the end, an error) reaches the event loop through an
``asyncio.Queue``.  Setting ``Job.cancel``
(client gone) ends the generation before its next step and frees its slot.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from emberllm.backends.kv_cache import KVCache
from emberllm.edge_server.events import DoneEvent, ErrorEvent, Event, GenResult, ProgressEvent, StepEvent
from emberllm.edge_server.prompt_cache import PromptCache
from emberllm.edge_server.scheduler import QueueFullError, Scheduler, Slot, Stats, Task
from emberllm.runtime.decoding import DecodeState, Timings
from emberllm.runtime.model import Model
from emberllm.sampling import SamplingParams

__all__ = ["DoneEvent", "EngineWorker", "ErrorEvent", "Event", "GenRequest", "GenResult", "Job", "ProgressEvent",
           "QueueFullError", "Stats", "StepEvent"]


@dataclass
class GenRequest:
    """One generation: the prompt (text or ids, as the client sent it), its ``tokens`` (set once, by
    ``generation.prepare_prompt``, before ``EngineWorker.submit``) and how to run it."""

    prompt: str | list[int | str]
    params: SamplingParams
    n_predict: int = -1
    stop: list[str] = field(default_factory=list)
    n_keep: int = 0
    n_discard: int = 0
    cache_prompt: bool = True
    timeout_s: float = 600.0
    id_slot: int = -1
    tokens: list[int] | None = None
    truncated: bool = False
    #: llama-server's ``return_progress``: ``ProgressEvent``s while the prompt is evaluated
    return_progress: bool = False


def _log(line: str) -> None:
    """A verbose line of the engine (``serve -v``)."""
    print(f"emberllm: {line}", file=sys.stderr, flush=True)


class Job:
    """A generation running (or queued) on the worker; iterate ``events()`` on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.cancel = threading.Event()
        self.slot_id = -1  # set by the engine thread when the job gets a slot
        self.n_cached = 0  # prompt tokens its slot's cache already held (set with slot_id)
        self.timings: Timings | None = None  # the generation's timings so far (set with slot_id; engine-owned)
        self._loop = loop
        self._queue: asyncio.Queue[Event] = asyncio.Queue()

    def post(self, event: Event) -> None:
        """Called on the engine thread: hand an event to the loop."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:  # the loop is closed (shutdown): nobody listens any more
            pass

    async def next_event(self) -> Event:
        """The next ``StepEvent``, ``DoneEvent`` or ``ErrorEvent``."""
        return await self._queue.get()

    async def events(self) -> AsyncIterator[Event]:
        """Events until the job ends; leaving the loop early (client gone) cancels the generation."""
        try:
            while True:
                event = await self.next_event()
                yield event
                if isinstance(event, DoneEvent | ErrorEvent):
                    return
        finally:
            self.cancel.set()


class EngineWorker:
    """Owns the model, its slots and the engine thread."""

    def __init__(self, max_queue: int = 64, n_predict_max: int = -1, n_slots: int = 1,
                 context_shift: bool = False, kv_pool: int | None = None, prompt_cache_bytes: int = 0,
                 cache_idle_slots: bool = False, verbose: bool = False) -> None:
        self.max_queue = max_queue
        self.prompt_cache_bytes = prompt_cache_bytes  # --cache-ram (0: no host-RAM prompt cache)
        self.cache_idle_slots = cache_idle_slots
        self.verbose = verbose
        self.kv_pool = kv_pool  # --kv-unified: tokens all slots together may hold
        self.context_shift = context_shift  # llama-server's --context-shift: shift a full slot, or stop there
        self.n_predict_max = n_predict_max  # -n: tokens a request that sets no n_predict generates (-1: no limit)
        self.n_slots = max(1, n_slots)
        self.model: Model | None = None
        self.load_error: str | None = None
        self.stats = Stats()
        self.scheduler: Scheduler | None = None
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        """Whether any slot is generating."""
        return self.scheduler is not None and self.scheduler.n_busy > 0

    @property
    def slots(self) -> list[Slot]:
        """The slots (empty while loading)."""
        return self.scheduler.slots if self.scheduler is not None else []

    async def load(self, factory: Callable[[], Model]) -> None:
        """Load the model on its own thread, then start the engine thread (``/health`` answers 503 until then)."""
        try:
            model = await asyncio.to_thread(factory)
        except Exception as exc:  # noqa: BLE001 - any load failure is reported through /health
            self.load_error = f"{type(exc).__name__}: {exc}"
            return
        cache = PromptCache(self.prompt_cache_bytes) if self.prompt_cache_bytes > 0 else None
        self.scheduler = Scheduler(model, self.n_slots, self.max_queue, self.stats, self.kv_pool, cache,
                                   self.cache_idle_slots, log=_log if self.verbose else None)
        self._thread = threading.Thread(target=self.scheduler.loop, name="emberllm-engine", daemon=True)
        self._thread.start()
        self.model = model

    def submit(self, req: GenRequest) -> Job:
        """Queue a generation of ``req.tokens`` (``prepare_prompt`` tokenizes the prompt, once); its events arrive
        on the returned job.  ``QueueFullError`` when ``max_queue`` requests are already waiting."""
        assert self.model is not None and self.scheduler is not None
        if req.tokens is None:
            raise ValueError("GenRequest.tokens is not set: tokenize the prompt with prepare_prompt first")
        model = self.model
        tokens = req.tokens
        if req.n_predict < 0:  # -n: the length of a generation whose request sets none, as llama-server
            req.n_predict = self.n_predict_max
        job = Job(asyncio.get_running_loop())
        deadline = time.monotonic() + req.timeout_s

        def make_state(kv: KVCache) -> DecodeState:
            return model.decode_state(tokens, req.params, kv=kv, n_predict=req.n_predict, stop=req.stop,
                                      n_keep=req.n_keep, context_shift=self.context_shift, n_discard=req.n_discard)

        def cancelled() -> bool:
            return job.cancel.is_set() or time.monotonic() > deadline

        def on_start(slot: Slot) -> None:
            job.slot_id = slot.id
            job.n_cached = slot.state.timings.cached_tokens if slot.state is not None else 0
            job.timings = slot.state.timings if slot.state is not None else None

        def on_done(slot: Slot, state: DecodeState) -> None:
            job.post(DoneEvent(GenResult(len(tokens), state.timings, slot.id, state.shifted)))

        task = Task(tokens=tokens, make_state=make_state, post=job.post, cancelled=cancelled,
                    cache_prompt=req.cache_prompt, id_slot=req.id_slot, on_start=on_start, on_done=on_done,
                    progress=req.return_progress)
        self.scheduler.submit(task)
        return job

    def shutdown(self) -> None:
        """Stop the generations and the engine thread, free the model."""
        if self.scheduler is not None:
            self.scheduler.close()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.model is not None:
            self.model.close()
            self.model = None
