"""The error catalogue in the OpenAPI description: responses per status, the Error schema, and
`x-errors`, what the browser page says for each code (it reads them from /openapi.json)."""

from __future__ import annotations

from typing import Any

from mis_core.error_catalogue import BY_CODE, CATALOGUE, ErrorCode

RESPONSE_REQUEST_ID = {
    "X-Request-ID": {"description": "The request's id", "schema": {"type": "string"}}
}

# everything an endpoint may answer with; routing's own 404 and 405 are not listed per path
INFERENCE_CODES = [row.code for row in CATALOGUE if not row.routing]


def error_responses(codes: list[str]) -> dict[str, Any]:
    by_status: dict[int, list[ErrorCode]] = {}
    for code in codes:
        by_status.setdefault(BY_CODE[code].status, []).append(BY_CODE[code])
    responses: dict[str, Any] = {}
    for status, grouped in sorted(by_status.items()):
        headers = dict(RESPONSE_REQUEST_ID)
        if any(row.retry_after for row in grouped):
            headers["Retry-After"] = {
                "description": "Seconds to wait",
                "schema": {"type": "string"},
            }
        if status == 401:  # HTTP: a 401 always names its scheme
            headers["WWW-Authenticate"] = {"description": "Bearer", "schema": {"type": "string"}}
        responses[str(status)] = {
            "description": "; ".join(f"`{row.code}`: {row.when}" for row in grouped),
            "headers": headers,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    return responses


def page_advice() -> dict[str, dict[str, Any]]:
    """Every error code with what the browser page tells the person: it reads them here."""
    return {
        row.code: {
            "status": row.status,
            "title": row.title,
            "advice": row.advice,
            "map_ran": row.map_ran,
        }
        for row in CATALOGUE
    }


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "request_id"],
            "properties": {
                "code": {"type": "string", "enum": sorted(BY_CODE)},
                "message": {"type": "string"},
                "request_id": {"type": "string"},
            },
        }
    },
}
