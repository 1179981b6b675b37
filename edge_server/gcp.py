"""Vertex AI's custom-container protocol, as llama-server speaks it when ``AIP_MODE=PREDICTION``.

``POST $AIP_PREDICT_ROUTE`` (default ``/predict``) takes ``{"instances": [...]}``; each instance names an endpoint
in ``@requestFormat`` (a camelCase alias such as ``chatCompletions`` for ``/v1/chat/completions``, or the path
itself) and is that endpoint's body.  The instances run side by side through the whole app (the caller's key
applies), never streamed, and ``{"predictions": [...]}`` holds each one's JSON answer (an error body for one that
failed).  ``AIP_HTTP_PORT`` overrides ``--port`` and ``AIP_HEALTH_ROUTE`` adds an alias of ``/health``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message

from emberllm.edge_server.errors import ApiError, error_body
from emberllm.edge_server.requests import read_json

#: Instances one request may hold (llama-server's limit).
MAX_INSTANCES = 128

#: Request headers an instance's internal request keeps (the key, and what describes the caller).
KEPT_HEADERS = ("authorization", "x-api-key", "user-agent")


@dataclass(frozen=True)
class GcpSettings:
    """The ``AIP_*`` environment."""

    enabled: bool
    predict_route: str
    health_route: str
    port: int | None


def _route(value: str | None, default: str) -> str:
    if not value:
        return default
    return value if value.startswith("/") else "/" + value


def gcp_settings(env: Mapping[str, str] | None = None) -> GcpSettings:
    """The Vertex AI settings of the environment (``AIP_MODE=PREDICTION`` turns them on)."""
    env = os.environ if env is None else env
    port = env.get("AIP_HTTP_PORT")
    return GcpSettings(enabled=env.get("AIP_MODE") == "PREDICTION",
                       predict_route=_route(env.get("AIP_PREDICT_ROUTE"), "/predict"),
                       health_route=_route(env.get("AIP_HEALTH_ROUTE"), ""),
                       port=int(port) if port and port.isdigit() else None)


def request_format(path: str) -> str:
    """The camelCase ``@requestFormat`` alias of a route: ``/v1/chat/completions`` -> ``chatCompletions``."""
    s = path[3:] if path.startswith("/v1") and len(path) > 3 else path
    s = s.lstrip("/")
    out, cap = [], False
    for c in s:
        if c in "/-_":
            cap = True
        else:
            out.append(c.upper() if cap else c)
            cap = False
    return "".join(out)


def format_aliases(post_paths: list[str]) -> dict[str, str]:
    """``@requestFormat`` alias -> path for the app's POST routes (the first path wins an alias)."""
    aliases: dict[str, str] = {}
    for path in post_paths:
        aliases.setdefault(request_format(path), path)
    return aliases


async def _call(request: Request, path: str, payload: dict[str, Any]) -> Any:
    """Run ``payload`` as a POST to ``path`` through the whole app; its JSON answer (or text)."""
    body = json.dumps(payload).encode()
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()
               if k.lower() in KEPT_HEADERS]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
             "client": request.scope.get("client"), "server": request.scope.get("server")}
    sent = False
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # never: the body is read; a disconnect is not simulated
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await request.app(scope, receive, send)
    data = b"".join(chunks)
    if not data:
        return None
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        return data.decode("utf-8", "replace")


async def predict(request: Request) -> Response:
    """``POST /predict``: each instance through its endpoint, the answers as ``predictions``."""
    data = await read_json(request, request.app.state.server.config.max_body_bytes)
    instances = data.get("instances")
    if not isinstance(instances, list):
        raise ApiError(400, "request body must include an array field named instances")
    if len(instances) > MAX_INSTANCES:
        raise ApiError(400, f"instances array exceeds maximum size of {MAX_INSTANCES}")
    aliases = request.app.state.gcp_aliases

    async def one(instance: Any) -> Any:
        if not isinstance(instance, dict):
            return error_body(400, "each instance must be a JSON object")
        fmt = instance.get("@requestFormat")
        if not isinstance(fmt, str):
            return error_body(400, "each instance must include a string @requestFormat")
        path = aliases.get(fmt) or (fmt if fmt in aliases.values() else None)
        if path is None:
            return error_body(400, f"no handler registered for @requestFormat: {fmt}")
        payload = {k: v for k, v in instance.items() if k != "@requestFormat"}
        if "stream" in payload:
            payload["stream"] = False  # the predict route answers whole
        return await _call(request, path, payload)

    return JSONResponse({"predictions": await asyncio.gather(*(one(i) for i in instances))})
