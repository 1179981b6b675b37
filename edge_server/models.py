"""The models a server runs, by name (``ModelRegistry``): each loaded model has its own ``EngineWorker`` (its own
engine thread and slots), so one model's load or generation never waits for another's.

Two modes:

- **one model** (``-m FILE`` once, no ``--models-dir``): as llama-server, the model loads at start-up and stays;
  ``/health`` answers 503 until it has loaded, and a request's ``model`` (and ``keep_alive``) changes nothing.
- **several models** (``--models-dir DIR``, several ``-m``, or neither with models in the store): every file is
  served by name; a model loads on first use (off the event loop), the least recently used idle model is unloaded
  when one more would exceed ``--models-max`` or the ``--models-memory`` budget (weights + KV caches), and each
  request's ``keep_alive`` (Ollama's: ``0`` unloads after the reply, negative keeps it loaded for good, else the
  seconds to stay loaded once idle; default ``--keep-alive``, 5 minutes) decides when an idle model is unloaded.

A request holds a ``Lease`` on its model from ``acquire`` until its response has been sent (``LeaseMiddleware``
gives the leases back), so a model is never unloaded under a running request.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from emberllm.backends.memory import available_memory_bytes, gib, kv_cache_bytes
from emberllm.edge_server.config import ServerConfig
from emberllm.edge_server.errors import ApiError
from emberllm.edge_server.model_catalog import Catalog, InfoCache, ModelInfo
from emberllm.edge_server.scheduler import Stats
from emberllm.edge_server.worker import EngineWorker
from emberllm.runtime.context_size import resolve_context
from emberllm.runtime.model import Model

#: The scope key under which a request's leases wait for ``LeaseMiddleware``.
LEASES = "emberllm.leases"


@dataclass
class ModelEntry:
    """One model of the catalogue and, while loaded, its worker."""

    name: str
    path: Path
    worker: EngineWorker | None = None
    status: str = "unloaded"  # unloaded | loading | loaded
    active: int = 0  # requests holding a lease
    last_used: float = 0.0  # time.monotonic()
    keep_alive: float | None = None  # the latest request's keep_alive (seconds; negative: forever)
    expires: float | None = None  # time.time() at which an idle model unloads (None: not scheduled)
    loaded_at: float = 0.0
    load_ms: float = 0.0
    memory: int = 0  # bytes the loaded model is counted for (weights + KV caches)
    pinned: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class Lease:
    """A request's hold on a loaded model; ``load_ns`` is how long this request waited for it to load."""

    entry: ModelEntry
    load_ns: int = 0
    keep_alive: float | None = None  # what the request asked for (None: the server's default)
    released: bool = False

    @property
    def worker(self) -> EngineWorker:
        """The model's engine worker."""
        assert self.entry.worker is not None
        return self.entry.worker

    @property
    def model(self) -> Model:
        """The loaded model."""
        assert self.entry.worker is not None and self.entry.worker.model is not None
        return self.entry.worker.model

    @property
    def name(self) -> str:
        """The model's name."""
        return self.entry.name


def add_stats(total: Stats, part: Stats) -> None:
    """Add ``part``'s counters into ``total``."""
    for f in fields(Stats):
        combine = max if f.name == "n_tokens_max" else operator.add
        setattr(total, f.name, combine(getattr(total, f.name), getattr(part, f.name)))


class ModelRegistry:
    """The server's models and their workers (see the module doc)."""

    def __init__(self, config: ServerConfig, catalog: Catalog, multi: bool,
                 factory: Callable[[Path], Model] | None = None) -> None:
        self.config = config
        self.catalog = catalog
        self.multi = multi
        self.factory = factory or self._load_model
        self.infos = InfoCache()
        self.entries: dict[str, ModelEntry] = {}
        self.retired = Stats()  # counters of unloaded workers, so that /metrics never goes backwards
        self.load_error: str | None = None  # one-model mode: why the model did not load
        self.budget = config.models_memory if config.models_memory is not None else available_memory_bytes()
        self._load_lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._reaper: asyncio.Task[None] | None = None
        #: one-model mode with --sleep-idle-seconds: the model is unloaded until a request needs it
        self.sleeping = False
        if not multi:
            name, path = next(iter(catalog.fixed.items()))
            self.entries[name] = ModelEntry(name, path, pinned=True)

    # -- start and stop --------------------------------------------------------------------------------
    async def start(self) -> None:
        """One-model mode: load the model; several: start unloading expired models."""
        if self.multi:
            # Several engine threads (and loads) share the GIL, and an engine thread gives it up for every kernel
            # call: with the default 5 ms switch interval each call may wait that long to get it back, so a model
            # that loads or generates would slow the others' streams several times over.
            sys.setswitchinterval(SWITCH_INTERVAL_S)
            self._reaper = asyncio.create_task(self._reap())
            return
        entry = next(iter(self.entries.values()))
        await self._load(entry)
        self.load_error = entry.worker.load_error if entry.worker is not None else None
        entry.last_used = time.monotonic()
        if self.config.sleep_idle_s is not None and self.load_error is None:
            self._reaper = asyncio.create_task(self._doze(entry, self.config.sleep_idle_s))

    async def shutdown(self) -> None:
        """Stop every worker."""
        if self._reaper is not None:
            self._reaper.cancel()
        for entry in list(self.entries.values()):
            if entry.worker is not None:
                await asyncio.to_thread(entry.worker.shutdown)

    # -- names -----------------------------------------------------------------------------------------
    def names(self) -> dict[str, Path]:
        """Every model name and its file."""
        if not self.multi:
            return {e.name: e.path for e in self.entries.values()}
        return self.catalog.names()

    def default_name(self) -> str | None:
        """The model of requests that name none: the one model, else the first ``-m``, else the folder's first."""
        names = self.names()
        return next(iter(names), None)

    def resolve(self, name: str | None) -> str:
        """The catalogue name of a request's ``model`` (404 listing the names when there is no such model)."""
        if not self.multi:
            return next(iter(self.entries))
        if name is None or name == "":
            found = self.default_name()
            if found is None:
                raise ApiError(404, "no models are available: put GGUF files in the models folder (emberllm pull)")
            return found
        found = self.catalog.resolve(name)
        if found is None:
            raise ApiError(404, f"model {name!r} not found; available: {', '.join(self.names()) or 'none'}")
        return found

    def entry(self, name: str) -> ModelEntry:
        """The entry of a catalogue name (created on first use)."""
        path = self.names()[name]
        entry = self.entries.get(name)
        if entry is None or (entry.path != path and entry.worker is None):
            entry = self.entries[name] = ModelEntry(name, path)
        return entry

    def info(self, name: str) -> ModelInfo:
        """The header facts of a model (read once per file version)."""
        return self.infos.info(self.names()[name])

    def loaded(self) -> list[ModelEntry]:
        """The models loaded now, most recently used first."""
        return sorted((e for e in self.entries.values() if e.status == "loaded"), key=lambda e: -e.last_used)

    def status(self, name: str) -> str:
        """``loaded``, ``loading`` or ``unloaded``."""
        entry = self.entries.get(name)
        return entry.status if entry is not None else "unloaded"

    def stats(self) -> Stats:
        """The counters of every worker, unloaded ones included."""
        total = Stats()
        add_stats(total, self.retired)
        for entry in self.entries.values():
            if entry.worker is not None:
                add_stats(total, entry.worker.stats)
        return total

    # -- leases ----------------------------------------------------------------------------------------
    async def acquire(self, name: str | None, leases: list[Lease] | None) -> Lease:
        """A lease on the model ``name`` means (the default model for None), loading it first if need be; it is
        handed back by ``release`` (``LeaseMiddleware`` does it for the request that put it in ``leases``)."""
        entry = self.entries[self.resolve(name)] if not self.multi else self.entry(self.resolve(name))
        if not self.multi:
            entry.active += 1  # counted first: the model does not fall asleep while it wakes for this request
            if self.sleeping:
                async with entry.lock:
                    if self.sleeping:
                        await self._wake(entry)
            worker = entry.worker
            if worker is None or worker.model is None:
                entry.active -= 1
                if self.load_error:
                    raise ApiError(500, f"model failed to load: {self.load_error}")
                raise ApiError(503, "Loading model", headers={"Retry-After": "1"})
            lease = Lease(entry)
        else:
            entry.active += 1
            entry.expires = None
            lease = Lease(entry)
            try:
                if entry.status != "loaded":
                    t0 = time.perf_counter_ns()
                    async with entry.lock:
                        if entry.status != "loaded":
                            await self._load(entry)
                    lease.load_ns = time.perf_counter_ns() - t0
            except BaseException:
                lease.released = True
                await self._idle(entry)
                raise
        entry.last_used = time.monotonic()
        if leases is not None:
            leases.append(lease)
        return lease

    async def release(self, lease: Lease) -> None:
        """Hand a lease back: once its model is idle, apply the latest ``keep_alive`` (0: unload now)."""
        if lease.released:
            return
        lease.released = True
        entry = lease.entry
        entry.last_used = time.monotonic()
        if entry.pinned:
            entry.active -= 1
            return
        entry.keep_alive = lease.keep_alive if lease.keep_alive is not None else self.config.keep_alive_s
        await self._idle(entry)

    async def _idle(self, entry: ModelEntry) -> None:
        entry.active -= 1
        if entry.active == 0 and entry.status == "loaded":
            keep = self.config.keep_alive_s if entry.keep_alive is None else entry.keep_alive
            if keep == 0:
                await self.unload(entry)
            else:
                entry.expires = None if keep < 0 else time.time() + keep
        async with self._changed:
            self._changed.notify_all()

    async def preload(self, name: str | None, keep_alive: float | None) -> ModelEntry:
        """Load a model without a request to run (Ollama's empty prompt), then apply ``keep_alive``."""
        lease = await self.acquire(name, None)
        lease.keep_alive = keep_alive
        await self.release(lease)
        return lease.entry

    async def unload_now(self, name: str | None) -> ModelEntry:
        """Unload a model once its running requests end (Ollama's ``keep_alive: 0`` with an empty prompt)."""
        entry = self.entry(self.resolve(name)) if self.multi else self.entries[self.resolve(name)]
        if entry.pinned:
            return entry
        entry.keep_alive = 0.0
        if entry.active == 0 and entry.status == "loaded":
            await self.unload(entry)
        return entry

    # -- loading and unloading -------------------------------------------------------------------------
    def _load_model(self, path: Path) -> Model:
        c = self.config
        model = Model(path, n_ctx=c.model_n_ctx, n_seq=c.n_parallel, n_threads=c.n_threads, n_batch=c.n_batch,
                      chat_template=c.chat_template, use_mmap=c.use_mmap, n_gpu_layers=c.n_gpu_layers,
                      device=c.device, cache_type_k=c.cache_type_k, cache_type_v=c.cache_type_v)
        try:
            model.chat_template  # noqa: B018 - a bad --chat-template fails the load, not each request with a 500
        except BaseException:
            model.close()
            raise
        return model

    def estimate(self, entry: ModelEntry) -> int:
        """Bytes a model takes once loaded: its file (the weights) and its slots' KV caches."""
        info = self.infos.info(entry.path)
        per_seq = resolve_context(self.config.model_n_ctx, info.hp.n_ctx_train, self.config.n_parallel)
        return info.size + kv_cache_bytes(info.hp.n_layer, per_seq, info.hp.kv_dim, self.config.n_parallel)

    async def _load(self, entry: ModelEntry) -> None:
        """Load ``entry`` on a thread (making room first when several models are served)."""
        c = self.config
        worker = EngineWorker(max_queue=c.max_queue, n_predict_max=c.n_predict_max, n_slots=c.n_parallel,
                              context_shift=c.context_shift, kv_pool=c.kv_pool,
                              prompt_cache_bytes=c.prompt_cache_bytes, cache_idle_slots=c.cache_idle_slots,
                              verbose=c.verbose)
        async with self._load_lock:
            if self.multi:
                try:
                    entry.memory = await asyncio.to_thread(self.estimate, entry)
                except Exception as exc:  # noqa: BLE001 - a file that is not a model: the request's error
                    raise ApiError(500, f"model {entry.name!r} failed to load: {type(exc).__name__}: {exc}") from exc
                await self._make_room(entry)
            entry.status, entry.worker = "loading", worker
            t0 = time.perf_counter()
            await worker.load(lambda: self.factory(entry.path))
            entry.load_ms = (time.perf_counter() - t0) * 1000.0
        if worker.model is None:
            entry.status = "unloaded"
            if self.multi:
                entry.worker = None
                raise ApiError(500, f"model {entry.name!r} failed to load: {worker.load_error}")
            return
        entry.status, entry.loaded_at = "loaded", time.time()

    async def _make_room(self, entry: ModelEntry) -> None:
        """Unload idle models, least recently used first, until ``entry`` fits ``--models-max`` and the memory
        budget; waits (up to the request timeout) while every loaded model is busy."""
        deadline = time.monotonic() + self.config.timeout_s
        while True:
            others = [e for e in self.entries.values() if e is not entry and e.status != "unloaded"]
            over_count = self.config.models_max is not None and len(others) + 1 > self.config.models_max
            over_memory = (self.budget is not None and bool(others)
                           and sum(e.memory for e in others) + entry.memory > self.budget)
            if not (over_count or over_memory):
                return
            idle = [e for e in others if e.active == 0 and e.status == "loaded"]
            if idle:
                await self.unload(min(idle, key=lambda e: e.last_used))
                continue
            left = deadline - time.monotonic()
            why = (f"--models-max {self.config.models_max}" if over_count
                   else f"the memory budget of {gib(self.budget or 0)}")
            if left <= 0:
                raise ApiError(503, f"cannot load {entry.name!r}: {why} is reached and every loaded model is busy",
                               headers={"Retry-After": "1"})
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=min(left, 1.0))

    async def unload(self, entry: ModelEntry) -> None:
        """Stop a model's worker and free it (its counters go to ``retired``)."""
        worker = entry.worker
        if worker is None or entry.pinned:
            return
        entry.worker, entry.status, entry.expires, entry.keep_alive = None, "unloaded", None, None
        add_stats(self.retired, worker.stats)
        await asyncio.to_thread(worker.shutdown)

    async def _doze(self, entry: ModelEntry, idle_s: float) -> None:
        """One-model mode, ``--sleep-idle-seconds``: unload the model once no request has used it for ``idle_s``
        (its counters kept for /metrics); the next request that needs it loads it again (``acquire``)."""
        while True:
            await asyncio.sleep(min(0.1, idle_s / 4))
            worker = entry.worker
            idle = time.monotonic() - entry.last_used >= idle_s
            if self.sleeping or worker is None or entry.active > 0 or worker.busy or not idle:
                continue
            async with entry.lock:
                if entry.active > 0 or self.sleeping:
                    continue
                self.sleeping = True
                entry.worker, entry.status = None, "unloaded"
                add_stats(self.retired, worker.stats)
                await asyncio.to_thread(worker.shutdown)
                print("emberllm: sleeping: the model is unloaded until a request needs it (--sleep-idle-seconds)",
                      file=sys.stderr, flush=True)

    async def _wake(self, entry: ModelEntry) -> None:
        """Load the sleeping model again."""
        await self._load(entry)
        if entry.worker is not None and entry.worker.model is not None:
            self.sleeping = False
            entry.last_used = time.monotonic()
            print("emberllm: awake: the model is loaded again", file=sys.stderr, flush=True)

    async def _reap(self) -> None:
        """Unload idle models whose keep-alive has run out (checked every half second)."""
        while True:
            await asyncio.sleep(0.5)
            now = time.time()
            for entry in list(self.entries.values()):
                expired = entry.expires is not None and entry.expires <= now
                if entry.status == "loaded" and entry.active == 0 and expired:
                    await self.unload(entry)


#: The interpreter's thread switch interval with several models (CPython's default: 5 ms).
SWITCH_INTERVAL_S = 0.0002


class LeaseMiddleware:
    """Gives back the model leases a request took once its response has been sent (or has failed)."""

    def __init__(self, app: ASGIApp, registry: Callable[[], ModelRegistry]) -> None:
        self.app = app
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        leases: list[Lease] = []
        scope[LEASES] = leases
        try:
            await self.app(scope, receive, send)
        finally:
            for lease in leases:
                await self.registry().release(lease)


def request_leases(scope: dict[str, Any]) -> list[Lease]:
    """The lease list ``LeaseMiddleware`` put in a request's scope."""
    leases = scope.get(LEASES)
    if leases is None:
        raise RuntimeError("LeaseMiddleware is not installed")
    return leases
