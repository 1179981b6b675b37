"""Errors with OpenAI's body shape: ``{"error": {"code", "message", "type"}}`` (llama-server uses it too)."""

from __future__ import annotations

from starlette.responses import JSONResponse

#: HTTP status -> OpenAI / llama-server error type.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    500: "server_error",
    501: "not_supported_error",
    503: "unavailable_error",
}


class ApiError(Exception):
    """An error answered to the client with ``status`` and ``message``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 error_type: str | None = None, fields: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.error_type = error_type
        self.fields = fields


def error_body(status: int, message: str, error_type: str | None = None,
               fields: dict[str, object] | None = None) -> dict[str, dict[str, object]]:
    """The JSON body for an error (``error_type``: instead of the status's; ``fields``: added beside them)."""
    body: dict[str, object] = {"code": status, "message": message,
                               "type": error_type or ERROR_TYPES.get(status, "server_error")}
    return {"error": {**body, **(fields or {})}}


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   error_type: str | None = None, fields: dict[str, object] | None = None) -> JSONResponse:
    """A JSON error response."""
    return JSONResponse(error_body(status, message, error_type, fields), status_code=status, headers=headers)


def context_exceeded(n_prompt: int, n_ctx: int) -> ApiError:
    """llama-server's 400 for a prompt that does not fit in a slot's context (``exceed_context_size_error``)."""
    return ApiError(400, f"request ({n_prompt} tokens) exceeds the available context size ({n_ctx} tokens), try "
                         "increasing it (or send \"truncate\": true to cut the prompt)",
                    error_type="exceed_context_size_error", fields={"n_prompt_tokens": n_prompt, "n_ctx": n_ctx})
