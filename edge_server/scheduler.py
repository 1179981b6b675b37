"""Continuous batching over parallel slots, on the one engine thread.

Each slot owns a KV cache of ``n_ctx / n_slots`` positions (as llama-server splits ``-c`` over ``-np``) and keeps
its last sequence for prompt-prefix reuse.  One iteration of the loop:

1. queued requests take free slots (the one named by ``id_slot``, else the free slot whose cache shares the
   longest prefix with the prompt, else the least recently used);
2. cancelled or timed-out generations end and free their slots;
3. at most one micro-batch (``n_batch`` tokens) of one waiting prompt is evaluated, so a long new prompt stalls
   the running streams for one micro-batch at a time, never for its whole length;
4. every generating slot's next token goes through **one** batched forward pass (``Model.decode``), and each
   slot samples its next token from its own logits;
5. one step (one forward pass) of the oldest other work queued with ``submit_work`` (embeddings).

Prompts are evaluated in the same micro-batches as ``Model.generate`` and a decode step gives every sequence
exactly its single-sequence logits, so a request's output does not depend on what else is running.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from emberllm.backends.kv_cache import KVCache
from emberllm.edge_server.events import ErrorEvent, Event, ProgressEvent, StepEvent
from emberllm.edge_server.prompt_cache import PromptCache, PromptLogits
from emberllm.runtime.decoding import DecodeState, Step, Timings, common_prefix
from emberllm.runtime.model import LogitRows, Model


class QueueFullError(RuntimeError):
    """More requests are waiting than the queue allows (answered 503 with Retry-After)."""


class KVPoolExceededError(RuntimeError):
    """``--kv-unified``: the busy slots together need more than the shared pool (llama-server aborts them all)."""


@dataclass
class Stats:
    """Counters for ``/metrics`` (updated on the engine thread, read on the loop: plain numbers are fine)."""

    requests: int = 0
    prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    predicted_tokens: int = 0
    predicted_seconds: float = 0.0
    processing: int = 0
    deferred: int = 0
    decode_steps: int = 0
    decode_rows: int = 0
    #: prompt tokens reused from a slot's cache (no decode), generation steps (the first token of each request is
    #: free: it comes from the prompt's last logits) and the longest sequence seen, as llama-server counts them
    prompt_cached: int = 0
    predicted_steps: int = 0
    n_tokens_max: int = 0


@dataclass
class Slot:
    """One parallel sequence: its cache and, while busy, the generation it runs."""

    id: int
    kv: KVCache
    task: Any = None  # the scheduler's task (a ``Task``) while busy
    state: DecodeState | None = None
    todo: list[int] = field(default_factory=list)  # prompt tokens still to evaluate
    last_used: float = 0.0
    #: the last prompt this slot evaluated and the logits of its last token: the same prompt again (all of it in
    #: the cache) samples from them instead of re-evaluating that token in a batch of one, whose rounding differs
    #: from the prompt batch's, so the same request gives the same tokens (as llama-server's do)
    prompt_logits: PromptLogits | None = None

    @property
    def busy(self) -> bool:
        return self.task is not None


@dataclass
class Task:
    """What the scheduler needs from a request; ``post(event)`` delivers events to its client."""

    tokens: list[int]
    make_state: Callable[[KVCache], DecodeState]
    post: Callable[[Event], None]
    cancelled: Callable[[], bool]
    cache_prompt: bool = True
    id_slot: int = -1
    on_start: Callable[[Slot], Any] | None = None
    #: post a ``ProgressEvent`` before the prompt and after each of its micro-batches (``return_progress``)
    progress: bool = False
    on_done: Callable[[Slot, DecodeState], Any] | None = None


class Scheduler:
    """Owns the model's forward passes: run ``loop()`` on the engine thread."""

    def __init__(self, model: Model, n_slots: int, max_queue: int, stats: Stats, kv_pool: int | None = None,
                 prompt_cache: PromptCache | None = None, cache_idle_slots: bool = False,
                 log: Callable[[str], None] | None = None) -> None:
        self.model = model
        self.kv_pool = kv_pool  # --kv-unified: tokens all slots together may hold
        self.prompt_cache = prompt_cache  # --cache-ram
        self.cache_idle_slots = cache_idle_slots and prompt_cache is not None
        self.log = log or (lambda line: None)
        self.max_queue = max_queue
        self.stats = stats
        caches = [model.new_sequence() for _ in range(n_slots)]
        self.slots = [Slot(i, kv) for i, kv in enumerate(caches)]
        self._queue: deque[Task] = deque()
        self._work: deque[Iterator[Any]] = deque()  # other engine work (embeddings), one step per loop turn
        self._cv = threading.Condition()
        self._closing = False

    # -- called from other threads -----------------------------------------------------------------------
    def submit(self, task: Task) -> None:
        """Queue a generation (``QueueFullError`` when ``max_queue`` are already waiting)."""
        with self._cv:
            if len(self._queue) >= self.max_queue:
                raise QueueFullError(f"the server is busy: {len(self._queue)} requests are waiting")
            self._queue.append(task)
            self.stats.deferred = len(self._queue)
            self._cv.notify()

    def submit_work(self, work: Iterator[Any]) -> None:
        """Queue engine work that is not a generation (embeddings): each loop turn advances the oldest one step
        (``next(work)``: one forward pass, between the generations' steps) until it is exhausted; the work reports
        its own results and errors, and is closed (``work.close()``) if the server stops first.  ``QueueFullError``
        as ``submit``."""
        with self._cv:
            if len(self._queue) + len(self._work) >= self.max_queue:
                raise QueueFullError(f"the server is busy: {len(self._queue) + len(self._work)} requests are waiting")
            self._work.append(work)
            self._cv.notify()

    def close(self) -> None:
        """Stop the loop: running and queued generations end as cancelled."""
        with self._cv:
            self._closing = True
            self._cv.notify()

    @property
    def n_busy(self) -> int:
        return sum(1 for s in self.slots if s.busy)

    # -- the engine thread -------------------------------------------------------------------------------
    def loop(self) -> None:
        """Serve until ``close()``."""
        while True:
            with self._cv:
                while not self._closing and not self._queue and not self.n_busy and not self._work:
                    self._cv.wait()
                if self._closing:
                    break
            self._assign()
            self._end_cancelled()
            self._prefill()
            self._decode()
            self._step_work()
        self._shutdown()

    def _assign(self) -> None:
        while True:
            with self._cv:
                if not self._queue:
                    return
                task = self._queue[0]
                slot = self._pick_slot(task)
                if slot is None:
                    return
                self._queue.popleft()
                self.stats.deferred = len(self._queue)
            self._start(slot, task)

    def _pick_slot(self, task: Task) -> Slot | None:
        free = [s for s in self.slots if not s.busy]
        if 0 <= task.id_slot < len(self.slots):
            wanted = self.slots[task.id_slot]
            return None if wanted.busy else wanted
        if not free:
            return None
        return max(free, key=lambda s: (common_prefix(s.kv.tokens, task.tokens), -s.last_used))

    def _start(self, slot: Slot, task: Task) -> None:
        if task.cancelled() or self._closing:
            task.post(ErrorEvent(RuntimeError("the request was cancelled before it started")))
            return
        try:
            if not task.cache_prompt:
                slot.kv.clear()
            elif self.prompt_cache is not None:
                self._use_prompt_cache(slot, task.tokens)
            state = task.make_state(slot.kv)
            saved = slot.prompt_logits
            reuse = saved is not None and saved[0] == list(state.prompt)
            slot.todo = state.prefill_tokens(whole=reuse)
        except Exception as exc:  # noqa: BLE001 - reported to the request, the server keeps serving
            task.post(ErrorEvent(exc))
            return
        slot.task, slot.state = task, state
        if task.on_start is not None:
            task.on_start(slot)
        slot.last_used = time.monotonic()
        state.timings.prompt_ms = 0.0
        self.stats.processing += 1
        self._progress(slot)
        if self.cache_idle_slots:
            self._cache_idle_slots()
        if reuse and not slot.todo:
            assert saved is not None
            try:
                task.post(StepEvent(state.sample(saved[1])))
            except Exception as exc:  # noqa: BLE001 - reported to the request, the server keeps serving
                task.post(ErrorEvent(exc))
                self._finish(slot, ok=False)
                return
            if state.finished:
                self._finish(slot)

    def _end_cancelled(self) -> None:
        for slot in self.slots:
            if slot.busy and (slot.task.cancelled() or self._closing):
                assert slot.state is not None
                slot.task.post(StepEvent(slot.state.cancel()))
                self._finish(slot)

    def _prefill(self) -> None:
        """One micro-batch of the prompt of the slot that started first."""
        waiting = [s for s in self.slots if s.busy and s.todo]
        if not waiting:
            return
        slot = min(waiting, key=lambda s: s.last_used)
        state = slot.state
        assert state is not None
        model = self.model
        chunk = slot.todo[: model.n_batch]
        if not self._pool_fits(len(chunk)):
            return
        slot.todo = slot.todo[len(chunk) :]
        last = [len(chunk) - 1] if not slot.todo else []
        try:
            t0 = time.perf_counter()
            rows = model.decode([(slot.kv, chunk, last)])
            state.timings.prompt_ms += (time.perf_counter() - t0) * 1000.0
            self._progress(slot)
            if last:
                slot.prompt_logits = (list(state.prompt), memoryview(bytearray(rows[0])).cast("f"))
                self._sample(slot, rows, 0)
        except Exception as exc:  # noqa: BLE001 - reported to the request, the server keeps serving
            slot.task.post(ErrorEvent(exc))
            self._finish(slot, ok=False)
            return
        if state.finished:
            self._finish(slot)

    def _decode(self) -> None:
        """One batched forward pass for every slot that has a token to evaluate."""
        active = [s for s in self.slots if s.busy and not s.todo and s.state is not None and not s.state.finished]
        if not active:
            return
        if not self._pool_fits(len(active)):
            return
        batch = [(s.kv, [s.state.next_token]) for s in active]  # type: ignore[union-attr]
        model = self.model
        calls0 = model.kernel_calls
        try:
            t0 = time.perf_counter()
            rows = model.decode(batch)
            dt = (time.perf_counter() - t0) * 1000.0
            calls = model.kernel_calls - calls0
            for i, slot in enumerate(active):
                self._sample(slot, rows, i)
        except Exception as exc:  # noqa: BLE001 - every slot of the failed step gets the error
            for slot in active:
                if slot.busy:
                    slot.task.post(ErrorEvent(exc))
                    self._finish(slot, ok=False)
            return
        self.stats.decode_steps += 1
        self.stats.decode_rows += len(active)
        for slot in active:
            if slot.state is not None:
                tm: Timings = slot.state.timings
                tm.eval_ms += dt
                tm.eval_tokens += 1
                tm.kernel_calls += calls
        for slot in active:
            if slot.busy and slot.state is not None and slot.state.finished:
                self._finish(slot)

    def _use_prompt_cache(self, slot: Slot, prompt: list[int]) -> None:
        """Before ``prompt`` takes ``slot``: copy the slot's rows to the prompt cache when the prompt would lose most
        of them, and restore the cached prompt that shares the most with it when that beats the slot."""
        assert self.prompt_cache is not None
        kv = slot.kv
        saved = bool(kv.tokens) and common_prefix(kv.tokens, prompt) < len(kv.tokens) / 2 \
            and self.prompt_cache.save(kv, slot.prompt_logits)
        restored, logits = self.prompt_cache.load(kv, prompt)
        if logits is not None:
            slot.prompt_logits = logits
        if saved or restored:
            self.log(f"slot {slot.id}: updating prompt cache (saved: {saved}, restored {restored} tokens; "
                     f"{len(self.prompt_cache.entries)} prompts, {self.prompt_cache.nbytes >> 20} MiB)")

    def _cache_idle_slots(self) -> None:
        """``--cache-idle-slots``: copy every idle slot to the prompt cache (with ``--kv-unified`` also clear it)."""
        assert self.prompt_cache is not None
        for slot in self.slots:
            if slot.busy:
                continue
            if self.prompt_cache.save(slot.kv, slot.prompt_logits):
                self.log(f"slot {slot.id}: idle slot saved to the prompt cache __TEST_TAG_CACHE_IDLE_SLOT__")
            if self.kv_pool is not None and slot.kv.tokens:
                slot.kv.clear()
                slot.prompt_logits = None

    def _progress(self, slot: Slot) -> None:
        """Post the prompt's progress to a task that asked for it."""
        task, state = slot.task, slot.state
        if task is None or state is None or not task.progress:
            return
        tm = state.timings
        total = tm.cached_tokens + tm.prompt_tokens
        task.post(ProgressEvent(total, tm.cached_tokens, total - len(slot.todo), tm.prompt_ms))

    def _pool_fits(self, n_new: int) -> bool:
        """``--kv-unified``: whether ``n_new`` more tokens fit in the shared pool beside the busy slots' tokens;
        when not, every busy slot ends with ``KVPoolExceededError`` (llama-server aborts the pool as a whole)."""
        if self.kv_pool is None:
            return True
        busy = [s for s in self.slots if s.busy]
        need = sum(len(s.kv.tokens) for s in busy) + n_new
        if need <= self.kv_pool:
            return True
        error = KVPoolExceededError(f"context size has been exceeded: the {len(busy)} busy slots need {need} tokens "
                                    f"of the unified KV pool of {self.kv_pool} (--kv-unified, -c)")
        for slot in busy:
            slot.task.post(ErrorEvent(error))
            self._finish(slot, ok=False)
        return False

    def _step_work(self) -> None:
        """One step of the oldest queued work (``submit_work``)."""
        with self._cv:
            if not self._work:
                return
            work = self._work[0]
        try:
            next(work)
            return
        except StopIteration:
            pass
        except Exception:  # noqa: BLE001 - the work reports its own errors; the engine keeps serving
            pass
        with self._cv:
            self._work.popleft()

    def _sample(self, slot: Slot, rows: LogitRows, i: int) -> None:
        """Sample the slot's next token from row ``i`` of the step's logits and post the step."""
        state = slot.state
        assert state is not None and slot.task is not None
        step: Step = state.sample_row(rows, i)
        slot.task.post(StepEvent(step))

    def _finish(self, slot: Slot, ok: bool = True) -> None:
        task, state = slot.task, slot.state
        slot.task, slot.state, slot.todo = None, None, []
        slot.last_used = time.monotonic()
        self.stats.processing -= 1
        if ok and task is not None and state is not None:
            st = self.stats
            tm = state.timings
            st.requests += 1
            st.prompt_tokens += tm.prompt_tokens
            st.prompt_seconds += tm.prompt_ms / 1000.0
            st.predicted_tokens += state.produced
            st.predicted_steps += max(state.produced - 1, 0)
            st.predicted_seconds += (tm.eval_ms + tm.sample_ms) / 1000.0
            st.prompt_cached += tm.cached_tokens
            st.n_tokens_max = max(st.n_tokens_max, tm.cached_tokens + tm.prompt_tokens + state.produced)
            if task.on_done is not None:
                task.on_done(slot, state)
        with self._cv:
            self._cv.notify()

    def _shutdown(self) -> None:
        for slot in self.slots:
            if slot.busy:
                assert slot.state is not None
                slot.task.post(StepEvent(slot.state.cancel()))
                self._finish(slot)
        with self._cv:
            queued = list(self._queue)
            self._queue.clear()
            self.stats.deferred = 0
        for task in queued:
            task.post(ErrorEvent(RuntimeError("the server is shutting down")))
        with self._cv:
            works = list(self._work)
            self._work.clear()
        for work in works:
            close = getattr(work, "close", None)
            if close is not None:
                close()
