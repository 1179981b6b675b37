"""Browser-facing security settings: the page's Content-Security-Policy and the cross-origin (CORS) policy.

Pure data and checks, no Starlette: ``cli`` builds a ``CorsPolicy`` from ``--cors-origins`` & co., ``guard`` (the
ASGI middleware) and ``requests`` (the JSON Content-Type check) apply it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

#: The chat page's policy, sent on every non-API response.  ``web/index.html`` carries the same policy minus
#: ``frame-ancestors`` (which a ``<meta http-equiv>`` cannot carry) so a copy of the page served elsewhere keeps it.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
    "connect-src 'self' https: http://localhost:* http://127.0.0.1:*; img-src 'self' data: blob:; style-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: Headers on every response.
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

#: Headers on every non-API response (the page, its files, their 404s).
PAGE_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Frame-Options": "DENY"}

#: Methods that cannot change state: never refused for their origin.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: llama-server's default ``--cors-methods``.
DEFAULT_CORS_METHODS = "GET, POST, DELETE, OPTIONS"

#: Default ``--cors-headers``, llama-server's.  Browsers never let a lone ``*`` cover ``Authorization`` (nor any header
#: of a request with credentials): a page of another origin that sends the API key as a bearer token needs
#: ``--cors-headers "Authorization, *"`` (or sends it as ``X-Api-Key``, which ``*`` covers).
DEFAULT_CORS_HEADERS = "*"

#: Seconds a browser may cache a preflight answer.
PREFLIGHT_MAX_AGE = 600

LOCALHOST_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_key(origin: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an ``Origin`` value or ``scheme://host[:port]``; ``None`` when it is not one
    (``null``, a bare name, a path, user info)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query \
            or parts.fragment or "@" in parts.netloc:
        return None
    return scheme, parts.hostname.lower(), port if port is not None else DEFAULT_PORTS[scheme]


def own_origin_key(scheme: str, host: str | None) -> tuple[str, str, int] | None:
    """The server's own origin as this request reached it: its scheme and ``Host`` header."""
    return origin_key(f"{scheme}://{host}") if host else None


def is_localhost_origin(origin: str) -> bool:
    """An origin on localhost, 127.0.0.1 or [::1], any scheme and port (llama-server's ``localhost`` value)."""
    key = origin_key(origin)
    return key is not None and key[1] in LOCALHOST_NAMES


@dataclass(frozen=True)
class CorsPolicy:
    """Which other origins may call the API from a browser, and what a preflight answers them."""

    origins: frozenset[tuple[str, str, int]] = frozenset()
    any_origin: bool = False
    localhost: bool = False
    methods: str = DEFAULT_CORS_METHODS
    headers: str = DEFAULT_CORS_HEADERS
    credentials: bool = True

    @classmethod
    def parse(cls, origins: str = "", methods: str = DEFAULT_CORS_METHODS, headers: str = DEFAULT_CORS_HEADERS,
              credentials: bool = True) -> CorsPolicy:
        """From ``--cors-origins`` (comma-separated origins, ``*`` or ``localhost``; empty: none) and the other
        ``--cors-*`` flags; ``ValueError`` naming the flag for a value that is not an origin."""
        exact: set[tuple[str, str, int]] = set()
        any_origin = localhost = False
        for item in (s.strip() for s in origins.split(",")):
            if not item:
                continue
            if item == "*":
                any_origin = True
            elif item.lower() == "localhost":
                localhost = True
            elif (key := origin_key(item)) is not None:
                exact.add(key)
            else:
                raise ValueError(f"--cors-origins: {item!r} is not an origin: give scheme://host[:port] (no path), "
                                 "'localhost' or '*'")
        for flag, value in (("--cors-methods", methods), ("--cors-headers", headers)):
            if not value.strip() or any(c in value for c in "\r\n"):
                raise ValueError(f"{flag}: expected a comma-separated list, got {value!r}")
        return cls(frozenset(exact), any_origin, localhost, methods.strip(), headers.strip(), credentials)

    def allows(self, origin: str) -> bool:
        """Whether ``--cors-origins`` lets ``origin`` call the API."""
        if self.any_origin:
            return True
        if self.localhost and is_localhost_origin(origin):
            return True
        key = origin_key(origin)
        return key is not None and key in self.origins

    def describe(self) -> str:
        """The allowed origins in words (for errors and the start-up line)."""
        if self.any_origin:
            return "any origin"
        names = sorted(_origin_text(k) for k in self.origins) + (["localhost"] if self.localhost else [])
        return "the server's own origin" + (" and " + ", ".join(names) if names else " only")


def _origin_text(key: tuple[str, str, int]) -> str:
    scheme, host, port = key
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" if DEFAULT_PORTS[scheme] == port else f"{scheme}://{host}:{port}"


def is_browser_request(headers: Mapping[str, str]) -> bool:
    """A request a browser made for a page: it carries ``Origin`` or ``Sec-Fetch-Site`` (other clients send
    neither)."""
    return "origin" in headers or "sec-fetch-site" in headers


def is_json_content_type(value: str | None) -> bool:
    """``application/json`` or any ``*/*+json`` type, parameters (``; charset=utf-8``) ignored."""
    if not value:
        return False
    media = value.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return bool(kind) and (media == "application/json" or subtype.endswith("+json"))
