"""Server-sent events: ``data: {json}\\n\\n`` lines, and a response that always stops its generation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


def sse(data: Any) -> str:
    """One SSE event carrying ``data`` as JSON (or a bare string such as ``[DONE]``)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"


def named_events(events: list[dict[str, Any]]) -> str:
    """Events as SSE, each named by its ``type`` (``event: TYPE``), as Anthropic's and the Responses API's streams."""
    return "".join(f"event: {event['type']}\n{sse(event)}" for event in events)


class SSEResponse(StreamingResponse):
    """A ``text/event-stream`` response that calls ``on_close`` however it ends (done, error, client gone)."""

    def __init__(self, body: AsyncIterator[str], on_close: Callable[[], None],
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(body, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})})
        self._on_close = on_close
        self._body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
            aclose = getattr(self._body, "aclose", None)
            if aclose is not None:
                await aclose()
