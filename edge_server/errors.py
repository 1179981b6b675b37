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

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_body(status: int, message: str) -> dict[str, dict[str, object]]:
    """The JSON body for an error."""
    return {"error": {"code": status, "message": message, "type": ERROR_TYPES.get(status, "server_error")}}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error response."""
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)
