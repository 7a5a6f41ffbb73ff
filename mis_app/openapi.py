"""The OpenAPI 3 description of the HTTP API, served at /openapi.json.

Written by hand next to the routes, from the data in mis_app.openapi_schema; the errors come
from the catalogue (mis_app.openapi_errors). A test checks that every route is described
here, and schemathesis checks the live server against it.
"""

from __future__ import annotations

from typing import Any

from mis_app.openapi_errors import (
    ERROR_SCHEMA,
    INFERENCE_CODES,
    RESPONSE_REQUEST_ID,
    error_responses,
    page_advice,
)
from mis_app.openapi_schema import (
    BINARY,
    INFERENCE_OK,
    INFO,
    LIVE_LOG_DESCRIPTION,
    LIVE_LOG_PARAMETERS,
    LIVE_LOG_SUMMARY,
    LOG_KEY,
    READYZ_SUMMARY,
    REQUEST_ID,
    STATUS_SCHEMA,
    UPLOAD_FORM,
)
from mis_core.errors import BackendUnavailable, NotFound, Unauthorized


def openapi(protect_metrics: bool) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": INFO,
        "security": [{"bearer": []}],
        "paths": {**_inference_paths(), **_other_paths(protect_metrics)},
        "x-errors": page_advice(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR_SCHEMA},
        },
    }


def _inference_paths() -> dict[str, Any]:
    return {
        "/v1/inference": {"post": _inference("Run the MAP on a zip of inputs", raw_body=True)},
        "/v1/inference/": {"post": _inference("The same as /v1/inference", raw_body=True)},
        "/upload/": {
            "post": _inference("The same, for clients of the original MIS", raw_body=False)
        },
        "/upload": {"post": _inference("The same as /upload/", raw_body=False)},
        "/v1/inference/{request_id}/log": {"get": _live_log()},
    }


def _other_paths(protect_metrics: bool) -> dict[str, Any]:
    html = {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}
    return {
        "/healthz": _get("Liveness", {"200": _json_ok("Serving", {"type": "object"})}),
        "/readyz": _get(
            READYZ_SUMMARY,
            {
                "200": _json_ok("Ready", {"type": "object"}),
                **error_responses([BackendUnavailable.code]),
            },
        ),
        "/v1/status": _get(
            "Idle or busy, and the configured MAP (feeds the page at /)",
            {
                "200": _json_ok("The service's state", STATUS_SCHEMA),
                **error_responses([Unauthorized.code]),
            },
            secured=True,
        ),
        "/metrics": {"get": _metrics(protect_metrics)},
        "/": _get(
            "The browser page: run the MAP on a zip or a folder",
            {"200": html},
            description="Its scripts and styles are under /static/ (not listed).",
        ),
        "/openapi.json": _get(
            "This description", {"200": _json_ok("OpenAPI 3", {"type": "object"})}
        ),
    }


def _get(
    summary: str, responses: dict[str, Any], *, secured: bool = False, description: str = ""
) -> dict[str, Any]:
    """A GET operation; open to all unless `secured` (the description's default security)."""
    operation: dict[str, Any] = {"summary": summary}
    if description:
        operation["description"] = description
    if not secured:
        operation["security"] = []
    operation["parameters"] = [REQUEST_ID]
    operation["responses"] = responses
    return {"get": operation}


def _json_ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": RESPONSE_REQUEST_ID,
        "content": {"application/json": {"schema": schema}},
    }


def _inference(summary: str, raw_body: bool) -> dict[str, Any]:
    content: dict[str, Any] = {"multipart/form-data": UPLOAD_FORM}
    if raw_body:
        content["application/zip"] = {"schema": BINARY}
    return {
        "summary": summary,
        "parameters": [REQUEST_ID, LOG_KEY],
        "requestBody": {"required": True, "content": content},
        "responses": {
            "200": {
                "description": INFERENCE_OK,
                "headers": {
                    **RESPONSE_REQUEST_ID,
                    "Content-Disposition": {"schema": {"type": "string"}},
                },
                "content": {"application/zip": {"schema": BINARY}},
            },
            **error_responses(INFERENCE_CODES),
        },
    }


def _live_log() -> dict[str, Any]:
    return {
        "summary": LIVE_LOG_SUMMARY,
        "description": LIVE_LOG_DESCRIPTION,
        "parameters": LIVE_LOG_PARAMETERS,
        "responses": {
            "200": {
                "description": "The MAP's lines as server-sent events, until the request ends",
                "headers": RESPONSE_REQUEST_ID,
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **error_responses([Unauthorized.code, NotFound.code]),
        },
    }


def _metrics(protect_metrics: bool) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "summary": "Prometheus metrics",
        "parameters": [REQUEST_ID],
        "responses": {
            "200": {
                "description": "Text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **(error_responses([Unauthorized.code]) if protect_metrics else {}),
        },
    }
    if not protect_metrics:
        metrics["security"] = []
    return metrics
