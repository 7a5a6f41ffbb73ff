"""The error catalogue on the wire: the HTTP status per code, and the JSON body every error has.

Every code, its status and whether `Retry-After` is sent are rows of
`mis_core.error_catalogue.CATALOGUE`.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

from mis_app.logs import clean_lines
from mis_core.error_catalogue import BY_CODE, CATALOGUE
from mis_core.errors import MisError

STATUS_BY_CODE = {row.code: row.status for row in CATALOGUE}
# what routing itself answers (no such path, no such method), by status
ROUTING_CODE_BY_STATUS = {row.status: row.code for row in CATALOGUE if row.routing}
RETRY_AFTER_SECONDS = "5"


def error_body(error: MisError, request_id: str) -> dict[str, dict[str, str]]:
    return _body(error.code, error.message, request_id)


def error_response(error: MisError, request_id: str) -> JSONResponse:
    return coded_response(error.code, error.message, request_id)


def coded_response(
    code: str, message: str, request_id: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The error body of `code` (a catalogue row's) with its status and, where the row says,
    `Retry-After`; `headers` besides (a 405's Allow)."""
    row = BY_CODE[code]
    sent = dict(headers or {})
    if row.retry_after:
        sent["Retry-After"] = RETRY_AFTER_SECONDS
    return JSONResponse(_body(code, message, request_id), status_code=row.status, headers=sent)


def _body(code: str, message: str, request_id: str) -> dict[str, dict[str, str]]:
    # messages may quote a client's header or a MAP's log lines: no control character in them
    # reaches a client, a terminal or the page
    cleaned = clean_lines(message)
    return {"error": {"code": code, "message": cleaned, "request_id": request_id}}


def internal_error() -> MisError:
    return MisError(
        "The service hit an unexpected error; nothing of the request was kept. Try again, and "
        "if it keeps happening, give the administrator the request id."
    )
