"""A local HTTP file server for pull tests: ``Range`` requests, a log of what was asked, connections cut on demand."""

from __future__ import annotations

import http.server
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_RANGE_RE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class Route:
    """One served file; ``drop_after``: byte offsets at which the next requests' connections are cut, in turn."""

    path: Path
    drop_after: list[int] = field(default_factory=list)
    ranges: bool = True
    etag: str = '"v1"'
    fail_first: list[int] = field(default_factory=list)  # HTTP statuses answered to the next requests, in turn


class FileServer:
    """``http.server`` on 127.0.0.1 in a thread, serving :class:`Route` s by URL path."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[str, str | None]] = []  # (path, Range header) per GET
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        """The full URL of ``path``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(server: FileServer) -> Any:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            route = server.routes.get(self.path.split("?", 1)[0])
            server.log.append((self.path, self.headers.get("Range")))
            if route is None:
                self.send_error(404)
                return
            if route.fail_first:
                self.send_error(route.fail_first.pop(0))
                return
            data = route.path.read_bytes()
            start, end, status = 0, len(data), 200
            match = _RANGE_RE.fullmatch(self.headers.get("Range") or "") if route.ranges else None
            if_range = self.headers.get("If-Range")
            if match and (if_range is None or if_range == route.etag):
                start = int(match.group(1))
                end = min(int(match.group(2)) + 1, len(data)) if match.group(2) else len(data)
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start))
            self.send_header("ETag", route.etag)
            if route.ranges:
                self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            self.end_headers()
            cut = route.drop_after.pop(0) if route.drop_after else None
            body = memoryview(data)[start:end]
            if cut is not None:
                body = body[: max(cut - start, 0)]
            self.wfile.write(body)
            if cut is not None:
                self.wfile.flush()
                self.close_connection = True

    return Handler
