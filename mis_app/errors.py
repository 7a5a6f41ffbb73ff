"""The error catalogue on the wire: HTTP status per code, and the JSON body every error has.

The core's errors are in `mis_core.errors`; the few here are about HTTP itself.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

from mis_app.logs import clean_lines
from mis_core.errors import MisError

STATUS_BY_CODE = {
    "invalid_input": 400,
    "unauthorized": 401,
    "request_timeout": 408,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "busy": 500,
    "timeout": 500,
    "map_failed": 500,
    "internal_error": 500,
    "backend_unavailable": 503,
    "insufficient_storage": 507,
    "not_found": 404,  # routing, not the service: no such path
    "method_not_allowed": 405,
    "headers_too_large": 431,  # written by the connection (mis_app.http.head), not a route
    "http_version_not_supported": 505,
}
RETRY_AFTER_SECONDS = "5"


class HeadersTooLarge(MisError):
    code = "headers_too_large"


class HttpVersionNotSupported(MisError):
    code = "http_version_not_supported"


def error_body(error: MisError, request_id: str) -> dict[str, dict[str, str]]:
    # messages may quote a client's header or a MAP's log lines: no control character in them
    # reaches a client, a terminal or the page
    message = clean_lines(error.message)
    return {"error": {"code": error.code, "message": message, "request_id": request_id}}


def error_response(error: MisError, request_id: str) -> JSONResponse:
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if error.code == "busy" else None
    return JSONResponse(
        error_body(error, request_id),
        status_code=STATUS_BY_CODE[error.code],
        headers=headers,
    )


def internal_error() -> MisError:
    return MisError(
        "The service hit an unexpected error; nothing of the request was kept. Try again, and "
        "if it keeps happening, give the administrator the request id."
    )
