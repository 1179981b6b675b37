"""The server's shared state: settings and the model registry (kept on ``app.state.server``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from emberllm.edge_server.config import ServerConfig
from emberllm.edge_server.errors import ApiError
from emberllm.edge_server.model_catalog import Catalog, parse_keep_alive
from emberllm.edge_server.models import Lease, ModelRegistry, request_leases
from emberllm.edge_server.scheduler import Stats


@dataclass
class ServerState:
    """Settings, the models' registry, and when the server started."""

    config: ServerConfig
    registry: ModelRegistry = field(init=False)
    started: int = field(default_factory=lambda: int(time.time()))
    #: called with the error when the model fails to load (``emberllm serve`` stops the server then)
    on_load_failure: Callable[[str], None] | None = None

    #: the counters at the last /metrics scrape: its gauges are rates over the window since then (llama-server)
    _scraped: Stats = field(default_factory=Stats, init=False, repr=False)

    def scrape_rates(self, now: Stats) -> tuple[float, float]:
        """Prompt tokens/s and generation steps/s since the previous scrape (0 when nothing ran), and start a new
        window."""
        last, self._scraped = self._scraped, now
        prompt_s = now.prompt_seconds - last.prompt_seconds
        predicted_s = now.predicted_seconds - last.predicted_seconds
        prompt = (now.prompt_tokens - last.prompt_tokens) / prompt_s if prompt_s > 0 else 0.0
        predicted = (now.predicted_steps - last.predicted_steps) / predicted_s if predicted_s > 0 else 0.0
        return prompt, predicted

    def __post_init__(self) -> None:
        c = self.config
        if c.multi_model:
            catalog = Catalog(dict(c.models), c.models_dir)
        else:
            if c.model_path is None:
                raise ValueError("ServerConfig: model_path is required unless multi_model is set")
            catalog = Catalog({c.model_name: c.model_path})
        self.registry = ModelRegistry(c, catalog, c.multi_model)


def server_of(request: Request) -> ServerState:
    """The state of the app serving ``request``."""
    return request.app.state.server


def requested_name(request: Request, data: dict[str, Any] | None) -> str | None:
    """The ``model`` a request names (its body's, else the ``?model=`` query), or None."""
    name = data.get("model") if data is not None else None
    if name is None:
        name = request.query_params.get("model")
    if name is not None and not isinstance(name, str):
        raise ApiError(400, f"model: expected a string, got {type(name).__name__}")
    return name


def keep_alive_of(data: dict[str, Any] | None) -> float | None:
    """A body's ``keep_alive`` (Ollama's; every endpoint takes it) in seconds, negative: forever; None if absent."""
    if data is None or data.get("keep_alive") is None:
        return None
    try:
        return parse_keep_alive(data["keep_alive"])
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc


async def use_model(request: Request, data: dict[str, Any] | None = None) -> Lease:
    """A lease on the request's model, loaded (503 while the one model loads, 500 if it failed, 404 for an unknown
    name), with the body's ``keep_alive``; held until the response has been sent."""
    server = server_of(request)
    keep_alive = keep_alive_of(data)
    lease = await server.registry.acquire(requested_name(request, data), request_leases(request.scope))
    lease.keep_alive = keep_alive
    return lease


def served(request: Request) -> Lease:
    """The lease the request took last (``use_model``): its model's worker and name."""
    leases = request_leases(request.scope)
    if not leases:
        raise RuntimeError("use_model was not called for this request")
    return leases[-1]


def check_ready(request: Request) -> None:
    """One-model mode: 503 while the model loads (500 if it failed), before the body is read."""
    registry = server_of(request).registry
    if not registry.multi and not registry.sleeping:
        entry = next(iter(registry.entries.values()))
        if entry.worker is None or entry.worker.model is None:
            if registry.load_error:
                raise ApiError(500, f"model failed to load: {registry.load_error}")
            raise ApiError(503, "Loading model", headers={"Retry-After": "1"})
