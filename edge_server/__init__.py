"""emberllm's edge server: llama-server's and OpenAI's HTTP APIs on Starlette + uvicorn.

Layout: ``cli`` (``emberllm serve``), ``config`` (settings), ``worker`` (a model's engine thread and its jobs),
``scheduler`` (continuous batching over the slots), ``events`` (what a job delivers: steps, the end, an error),
``errors`` (OpenAI-shaped error bodies), ``requests`` (body parsing and validation), ``generation`` (shared by the
endpoints: the prompt, collected results, the one SSE loop), ``sse``, ``native`` (llama-server endpoints),
``openai_api`` (``/v1/*``), ``models`` / ``model_catalog`` / ``model_flags`` (several models by name: the registry
of workers, the catalogue, the flags), ``ollama_*`` (Ollama's ``/api/*``), ``security`` (the page's CSP and the
CORS policy), ``guard`` (security headers, CORS, cross-site writes refused), ``app`` (routes, API key, error
handlers, static files).  Starlette is imported lazily so that the ``emberllm`` command line does not need it for
its other sub-commands.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_app", "ServerConfig"]


def __getattr__(name: str) -> Any:
    if name == "build_app":
        from emberllm.edge_server.app import build_app

        return build_app
    if name == "ServerConfig":
        from emberllm.edge_server.config import ServerConfig

        return ServerConfig
    raise AttributeError(name)
