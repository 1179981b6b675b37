"""The Starlette app: routes, API-key check, browser guard, error bodies, model loading at start-up and the web
UI."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from emberllm.edge_server import (
    anthropic_api,
    cors_proxy,
    embeddings,
    gcp,
    native,
    ollama_api,
    ollama_embed,
    ollama_models,
    openai_api,
    rerank,
    responses_api,
)
from emberllm.edge_server.config import ServerConfig
from emberllm.edge_server.errors import ApiError, error_response
from emberllm.edge_server.guard import BrowserGuardMiddleware
from emberllm.edge_server.models import LeaseMiddleware
from emberllm.edge_server.openapi import openapi_json
from emberllm.edge_server.state import ServerState
from emberllm.runtime.model import Model

#: Paths answered without an API key (llama-server leaves /health and the static files open; the API description
#: is public too).
PUBLIC_PATHS = frozenset({"/health", "/v1/health", "/openapi.json", "/api/version"})

#: The chat page: ``web/`` ships as the package data directory ``emberllm/web`` (pyproject.toml), beside
#: ``emberllm/edge_server`` when installed, as the repository's ``web/`` is beside ``edge_server/`` in a checkout
#: (an editable install), so one path serves both.
DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def api_routes() -> list[Route]:
    """Every API endpoint (llama-server's names, with its aliases, OpenAI's and Anthropic's)."""
    return [
        Route("/health", native.health, methods=["GET"]),
        Route("/v1/health", native.health, methods=["GET"]),
        Route("/completion", native.completion, methods=["POST"]),
        Route("/completions", native.completion, methods=["POST"]),
        Route("/infill", native.infill, methods=["POST"]),
        Route("/tokenize", native.tokenize, methods=["POST"]),
        Route("/detokenize", native.detokenize, methods=["POST"]),
        Route("/apply-template", native.apply_template, methods=["POST"]),
        Route("/props", native.props, methods=["GET"]),
        Route("/slots", native.slots, methods=["GET"]),
        Route("/metrics", native.metrics, methods=["GET"]),
        Route("/models", openai_api.models, methods=["GET"]),
        Route("/v1/models", openai_api.models, methods=["GET"]),
        Route("/v1/completions", openai_api.completions, methods=["POST"]),
        Route("/chat/completions", openai_api.chat_completions, methods=["POST"]),
        Route("/v1/chat/completions", openai_api.chat_completions, methods=["POST"]),
        Route("/embedding", embeddings.native_embedding, methods=["POST"]),
        Route("/embeddings", embeddings.native_embedding, methods=["POST"]),
        Route("/v1/embeddings", embeddings.openai_embeddings, methods=["POST"]),
        Route("/v1/chat/completions/input_tokens", openai_api.chat_input_tokens, methods=["POST"]),
        Route("/chat/completions/input_tokens", openai_api.chat_input_tokens, methods=["POST"]),
        *[Route(path, rerank.rerank, methods=["POST"]) for path in ("/rerank", "/reranking", "/v1/rerank",
                                                                      "/v1/reranking")],
        *[Route(path, responses_api.responses, methods=["POST"]) for path in ("/v1/responses", "/responses")],
        *[Route(path, responses_api.input_tokens, methods=["POST"])
          for path in ("/v1/responses/input_tokens", "/responses/input_tokens")],
        Route("/v1/messages", anthropic_api.messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", anthropic_api.count_tokens, methods=["POST"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/cors-proxy", cors_proxy.cors_proxy, methods=["GET", "POST"]),
        *ollama_routes(),
        *gcp_routes(),
    ]


def gcp_routes() -> list[Route]:
    """Vertex AI's predict route and health alias when ``AIP_MODE=PREDICTION`` (``gcp.py``)."""
    settings = gcp.gcp_settings()
    if not settings.enabled:
        return []
    routes = [Route(settings.predict_route, gcp.predict, methods=["POST"])]
    if settings.health_route:
        routes.append(Route(settings.health_route, native.health, methods=["GET"]))
    return routes


def ollama_routes() -> list[Route]:
    """Ollama's API (``ollama_api.py``, ``ollama_embed.py``, ``ollama_models.py``)."""
    return [
        Route("/api/version", ollama_models.version, methods=["GET"]),
        Route("/api/tags", ollama_models.tags, methods=["GET"]),
        Route("/api/show", ollama_models.show, methods=["POST"]),
        Route("/api/ps", ollama_models.ps, methods=["GET"]),
        Route("/api/pull", ollama_models.pull, methods=["POST"]),
        Route("/api/delete", ollama_models.delete, methods=["DELETE"]),
        Route("/api/copy", ollama_models.copy, methods=["POST"]),
        Route("/api/chat", ollama_api.chat, methods=["POST"]),
        Route("/api/generate", ollama_api.generate, methods=["POST"]),
        Route("/api/embed", ollama_embed.embed, methods=["POST"]),
        Route("/api/embeddings", ollama_embed.embeddings, methods=["POST"]),
    ]


class ApiKeyMiddleware:
    """Requires ``Authorization: Bearer KEY`` (or ``X-Api-Key: KEY``) on API routes; constant-time compare."""

    def __init__(self, app: ASGIApp, api_key: str | None, api_paths: frozenset[str]) -> None:
        self.app = app
        self.key = api_key.encode() if api_key else None
        self.api_paths = api_paths
        vertex = gcp.gcp_settings()
        self.public = PUBLIC_PATHS | ({vertex.health_route} if vertex.enabled and vertex.health_route else set())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is None or scope["type"] != "http" or not self._protected(scope):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        given = headers.get("x-api-key", b"")
        auth = headers.get("authorization", b"")
        if auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        if not hmac.compare_digest(given, self.key):
            response = error_response(401, "Invalid API Key", headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _protected(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        if path in self.public:
            return False
        # Static files of the web UI are public; anything that is not a GET of a non-API path needs the key.
        return path in self.api_paths or scope.get("method") != "GET"


class GuardedStarlette(Starlette):
    """Starlette with ``outer`` wrapped around its whole stack, error handling included, so that the browser
    guard's headers are on every response, a 500 too."""

    def __init__(self, outer: Callable[[ASGIApp], ASGIApp], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outer = outer

    def build_middleware_stack(self) -> ASGIApp:
        """Starlette's stack inside ``outer``."""
        return self.outer(super().build_middleware_stack())


def _is_ollama(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if _is_ollama(request):  # Ollama's error body: {"error": "message"}
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)
    return error_response(exc.status, exc.message, exc.headers, exc.error_type, exc.fields)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "File Not Found" if exc.status_code == 404 else str(exc.detail)
    if _is_ollama(request):
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=dict(exc.headers or {}))
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> Response:
    if _is_ollama(request):
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)
    return error_response(500, f"internal error: {type(exc).__name__}: {exc}")


def build_app(config: ServerConfig, model_factory: Callable[[], Model] | None = None) -> Starlette:
    """The ASGI app for ``config``; in one-model mode the model loads on its own thread once the server has
    started (``model_factory`` replaces the loading, for tests), with several models each loads on first use."""
    state = ServerState(config)
    if model_factory is not None:
        state.registry.factory = lambda _path: model_factory()

    async def load_or_report() -> None:
        await state.registry.start()
        if state.registry.load_error and state.on_load_failure is not None:
            state.on_load_failure(state.registry.load_error)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loading = asyncio.create_task(load_or_report())
        try:
            yield
        finally:
            loading.cancel()
            await state.registry.shutdown()

    endpoints = api_routes()
    routes: list[Any] = list(endpoints)
    web_dir = config.web_dir or DEFAULT_WEB_DIR
    if config.webui and web_dir.is_dir():
        routes.append(Mount("/", app=StaticFiles(directory=web_dir, html=True), name="webui"))
    api_paths = frozenset(r.path for r in endpoints)

    def guard(inner: ASGIApp) -> ASGIApp:
        return BrowserGuardMiddleware(inner, cors=config.cors, api_key_set=config.api_key is not None,
                                      api_paths=api_paths)

    app = GuardedStarlette(
        guard,
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _server_error},
    )
    app.state.server = state
    app.state.gcp_aliases = gcp.format_aliases([r.path for r in endpoints if "POST" in (r.methods or ())])
    app.add_middleware(LeaseMiddleware, registry=lambda: state.registry)
    app.add_middleware(ApiKeyMiddleware, api_key=config.api_key, api_paths=api_paths)
    return app
