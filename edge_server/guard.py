"""The browser guard: security headers on every response, CORS answers, and cross-site writes refused.

A pure ASGI middleware (only ``http.response.start`` is touched, so streamed bodies pass as they are), outermost,
so that every response, the API key's 401 and the 500 handler's included, gets the headers.

A request that can change state (any method but GET, HEAD, OPTIONS) and comes from a page of another origin is
refused with 403 before it reaches a route: its ``Origin`` is neither the server's own (scheme and ``Host``) nor
allowed by ``--cors-origins``, or it has no ``Origin`` but ``Sec-Fetch-Site: cross-site|same-site``.  Without
this, any web page could make the server generate with a ``text/plain`` POST, which browsers send without a
preflight.  Requests with neither header (curl, Python, the openai and ollama clients) are not browser requests
and pass.  With ``--api-key`` every origin may reach the key check (the key protects the API; llama-server answers
preflights from any origin then).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emberllm.edge_server.errors import error_response
from emberllm.edge_server.security import (
    COMMON_HEADERS,
    PAGE_HEADERS,
    PREFLIGHT_MAX_AGE,
    SAFE_METHODS,
    CorsPolicy,
    origin_key,
    own_origin_key,
)


class BrowserGuardMiddleware:
    """Security headers, CORS and the cross-site write check (see the module doc)."""

    def __init__(self, app: ASGIApp, cors: CorsPolicy, api_key_set: bool, api_paths: frozenset[str]) -> None:
        self.app = app
        self.cors = cors
        self.api_key_set = api_key_set
        self.api_paths = api_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        extra = self._cors_headers(origin)
        extra.update(COMMON_HEADERS)
        if scope.get("path", "") not in self.api_paths:
            extra.update(PAGE_HEADERS)
        method = scope.get("method", "GET")
        if method == "OPTIONS":
            response = Response(status_code=200)
            add_headers(response.raw_headers, {**extra, **self._preflight_headers(origin, headers)})
            await response(scope, receive, send)
            return
        if method not in SAFE_METHODS:
            refusal = self._refusal(scope, headers)
            if refusal is not None:
                refused = error_response(403, refusal)
                add_headers(refused.raw_headers, extra)
                await refused(scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", []))
                add_headers(message["headers"], extra)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _origin_allowed(self, origin: str) -> bool:
        """May a page of ``origin`` call the API (by ``--cors-origins``, or because the API key guards it)?"""
        return self.api_key_set or self.cors.allows(origin)

    def _cors_headers(self, origin: str | None) -> dict[str, str]:
        """``Access-Control-Allow-Origin`` & co. for a response to a page of ``origin``."""
        if self.cors.any_origin and not self.cors.credentials:
            return {"Access-Control-Allow-Origin": "*"}
        out = {"Vary": "Origin"}
        if origin is not None and self._origin_allowed(origin):
            out["Access-Control-Allow-Origin"] = origin
            if self.cors.credentials:
                out["Access-Control-Allow-Credentials"] = "true"
        return out

    def _preflight_headers(self, origin: str | None, headers: Headers) -> dict[str, str]:
        """What a preflight from an allowed origin is told (nothing for another origin: the browser then stops)."""
        if origin is None or not self._origin_allowed(origin):
            return {}
        out = {"Access-Control-Allow-Methods": self.cors.methods, "Access-Control-Allow-Headers": self.cors.headers,
               "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE)}
        if self.cors.credentials:
            out["Access-Control-Allow-Credentials"] = "true"
        if headers.get("access-control-request-private-network") == "true":
            out["Access-Control-Allow-Private-Network"] = "true"  # Chrome: a public page asking a local server
        return out

    def _refusal(self, scope: Scope, headers: Headers) -> str | None:
        """Why a state-changing request from a browser page is refused, or ``None`` when it may go on."""
        origin = headers.get("origin")
        fetch_site = headers.get("sec-fetch-site", "").lower()
        if fetch_site == "same-origin":  # set by the browser, never by a page: true behind a proxy that moves Host
            return None
        if origin is None:
            if fetch_site not in ("cross-site", "same-site") or self.api_key_set:
                return None
            return (f"cross-site request refused (Sec-Fetch-Site: {fetch_site}): this server takes browser requests "
                    f"from {self.cors.describe()}; allow other origins with --cors-origins, or set --api-key")
        own = own_origin_key(scope.get("scheme", "http"), headers.get("host"))
        key = origin_key(origin)
        if (key is not None and key == own) or self._origin_allowed(origin):
            return None
        return (f"cross-origin request from {origin!r} refused: this server takes browser requests from "
                f"{self.cors.describe()}; allow other origins with --cors-origins, or set --api-key")


def add_headers(raw: list[tuple[bytes, bytes]], extra: dict[str, str]) -> None:
    """Add ``extra`` to a response's raw header list, names spelled as given (``Access-Control-Allow-Origin``, as
    llama-server sends them: some clients compare names case-sensitively) unless the response set one already;
    ``Vary`` values are merged."""
    present = {name.lower(): i for i, (name, _) in enumerate(raw)}
    for name, value in extra.items():
        key = name.lower().encode("latin-1")
        if key == b"vary" and key in present:
            i = present[key]
            values = [v.strip() for v in raw[i][1].decode("latin-1").split(",") if v.strip()]
            if value not in values:
                raw[i] = (raw[i][0], ", ".join([*values, value]).encode("latin-1"))
        elif key not in present:
            present[key] = len(raw)
            raw.append((name.encode("latin-1"), value.encode("latin-1")))
