"""The server's shared state: settings and the engine worker (kept on ``app.state.server``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from emberllm.edge_server.config import ServerConfig
from emberllm.edge_server.errors import ApiError
from emberllm.edge_server.worker import EngineWorker
from emberllm.runtime.model import Model


@dataclass
class ServerState:
    """Settings, the worker, and when the server started."""

    config: ServerConfig
    worker: EngineWorker = field(init=False)
    started: int = field(default_factory=lambda: int(time.time()))
    #: called with the error when the model fails to load (``emberllm serve`` stops the server then)
    on_load_failure: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self.worker = EngineWorker(max_queue=self.config.max_queue, n_predict_max=self.config.n_predict_max,
                                   n_slots=self.config.n_parallel, context_shift=self.config.context_shift)


def server_of(request: Request) -> ServerState:
    """The state of the app serving ``request``."""
    return request.app.state.server


def ready_model(request: Request) -> Model:
    """The loaded model, or 503 while it is loading (500 if loading failed)."""
    worker = server_of(request).worker
    if worker.model is None:
        if worker.load_error:
            raise ApiError(500, f"model failed to load: {worker.load_error}")
        raise ApiError(503, "Loading model", headers={"Retry-After": "1"})
    return worker.model
