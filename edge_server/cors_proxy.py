"""llama-server's ``/cors-proxy`` (``--ui-mcp-proxy``): GET or POST ``?url=`` on the page's behalf.

A browser page cannot call an MCP server of another origin that sends no CORS headers; llama-server's web UI asks
the server to forward the request instead.  Off by default (a 403 ``feature_disabled`` then, as llama-server): it
lets whoever reaches the API reach any host the server can.  As in llama-server only headers the page names
explicitly, ``X-Llama-Server-Proxy-Header-<Name>: value``, are forwarded (never its ``Authorization``, API key or
cookies), redirects are answered as they are, and the target's body streams back.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from emberllm.edge_server.errors import ApiError, error_response

#: The request-header prefix whose headers are forwarded, the prefix removed.
FORWARD_PREFIX = "x-llama-server-proxy-header-"

#: Seconds the target has to answer and to send each part of its body (llama-server: 10 minutes).
TIMEOUT_S = 600.0

#: Response headers not relayed: hop-by-hop ones, the length (the body is re-framed), cookies and CORS (ours
#: apply).
DROPPED_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "set-cookie",
                             "proxy-authenticate", "proxy-connection", "upgrade", "trailer", "te"})

CHUNK_BYTES = 65536


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Answer a redirect to the page as it is instead of following it from the server."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


def target_url(request: Request) -> str:
    """The ``url`` parameter, checked: http(s), a host, no user info (``ApiError`` 400 naming what is wrong)."""
    url = request.query_params.get("url", "")
    if not url:
        raise ApiError(400, "cors-proxy: the 'url' query parameter is required")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ApiError(400, f"cors-proxy: invalid target URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ApiError(400, f"cors-proxy: unsupported URL scheme in target URL: {parts.scheme or '(none)'}")
    if not parts.hostname:
        raise ApiError(400, "cors-proxy: invalid target URL: missing host")
    if "@" in parts.netloc:
        raise ApiError(400, "cors-proxy: authentication in target URL is not supported")
    return url


def forwarded_headers(request: Request) -> dict[str, str]:
    """The headers the page named for the target (``X-Llama-Server-Proxy-Header-<Name>``)."""
    out: dict[str, str] = {}
    for name, value in request.headers.items():
        if name.lower().startswith(FORWARD_PREFIX) and len(name) > len(FORWARD_PREFIX):
            out[name[len(FORWARD_PREFIX):]] = value
    return out


async def cors_proxy(request: Request) -> Response:
    """GET/POST /cors-proxy?url=...: the target's answer (status, headers, streamed body)."""
    if not request.app.state.server.config.ui_mcp_proxy:
        return error_response(403, "this feature is disabled", error_type="feature_disabled")
    url = target_url(request)
    body = await request.body() if request.method == "POST" else None
    outbound = urllib.request.Request(url, data=body, headers=forwarded_headers(request), method=request.method)
    try:
        upstream = await asyncio.to_thread(_OPENER.open, outbound, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        upstream = exc  # an answer all the same: 3xx (not followed), 4xx, 5xx
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(502, f"cors-proxy: cannot reach {url}: {reason}") from None
    headers = {k: v for k, v in upstream.headers.items() if k.lower() not in DROPPED_HEADERS}
    status = upstream.status if hasattr(upstream, "status") else upstream.code
    if status in (204, 304) or request.method == "HEAD":
        upstream.close()
        return Response(status_code=status, headers=headers)
    return StreamingResponse(_body(upstream), status_code=status, headers=headers)


async def _body(upstream: Any) -> AsyncIterator[bytes]:
    """The target's body, read on a thread a chunk at a time."""
    try:
        while chunk := await asyncio.to_thread(upstream.read1 if hasattr(upstream, "read1") else upstream.read,
                                               CHUNK_BYTES):
            yield chunk
    finally:
        upstream.close()
