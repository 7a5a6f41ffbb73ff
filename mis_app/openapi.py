"""The OpenAPI 3 description of the HTTP API, served at /openapi.json.

Written by hand next to the routes; the errors come from the catalogue (mis_app.openapi_errors).
A test checks that every route is described here, and schemathesis checks the live server
against it.
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
from mis_core.errors import BackendUnavailable, NotFound, Unauthorized
from mis_core.model import HOST_VERSION

REQUEST_ID = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "Your id for the request (1-64 letters, digits, - or _); echoed back, or one "
    "is generated.",
    "schema": {"type": "string"},
}
LOG_KEY = {
    "name": "X-Log-Key",
    "in": "header",
    "required": False,
    "description": "A secret of your own (32-128 letters, digits, - or _; at least 128 random "
    "bits) that lets you, and only you, follow this request's MAP log while it runs: see "
    "GET /v1/inference/{request_id}/log. Send an X-Request-ID of your own too, to know the id.",
    "schema": {"type": "string"},
}


def _json_ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": RESPONSE_REQUEST_ID,
        "content": {"application/json": {"schema": schema}},
    }


def _inference(summary: str, raw_body: bool) -> dict[str, Any]:
    content: dict[str, Any] = {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        }
    }
    if raw_body:
        content["application/zip"] = {"schema": {"type": "string", "format": "binary"}}
    return {
        "summary": summary,
        "parameters": [REQUEST_ID, LOG_KEY],
        "requestBody": {"required": True, "content": content},
        "responses": {
            "200": {
                "description": "The MAP's output folder as a zip, streamed as it is made. A "
                "client that reads too little of it for the send buffer to drain within "
                "`server.download_idle_timeout_seconds`, or is still reading it "
                "`server.download_timeout_seconds` after it first fell behind, is cut off "
                "(the connection is closed and the job's files deleted).",
                "headers": {
                    **RESPONSE_REQUEST_ID,
                    "Content-Disposition": {"schema": {"type": "string"}},
                },
                "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            },
            **error_responses(INFERENCE_CODES),
        },
    }


def _live_log() -> dict[str, Any]:
    return {
        "summary": "Follow the MAP's log while your request runs (server-sent events)",
        "description": "Only for the client that sent the request: the same X-Log-Key it sent "
        "with the POST and the same Authorization header. Each line the MAP prints is an event "
        "with `id` (its number) and `data` (the line, colour codes and control characters "
        "removed, at most 1,000 characters); the last 500 lines are kept, so a client that "
        "connects late or reconnects (with Last-Event-ID) catches up. `event: end` comes when "
        "the request is over, and the stream closes. Any other key, token, or request id, and "
        "a request that has ended, get the same 404.",
        "parameters": [
            {
                "name": "request_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "The X-Request-ID the POST was sent with",
            },
            {**LOG_KEY, "required": True, "description": "The key the POST was sent with"},
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "Resume after this line number",
            },
            REQUEST_ID,
        ],
        "responses": {
            "200": {
                "description": "The MAP's lines as server-sent events, until the request ends",
                "headers": RESPONSE_REQUEST_ID,
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **error_responses([Unauthorized.code, NotFound.code]),
        },
    }


def openapi(protect_metrics: bool) -> dict[str, Any]:
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    status_schema = {
        "type": "object",
        "required": ["state", "in_flight", "capacity", "running", "timeout_seconds", "map"],
        "properties": {
            "state": {"type": "string", "enum": ["idle", "busy"]},
            "in_flight": {"type": "integer"},
            "capacity": {"type": "integer"},
            "running": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"elapsed_seconds": {"type": "number"}},
                },
            },
            "deleting": {
                "type": "integer",
                "description": "Workspaces of finished requests being deleted, or retried "
                "(at most 2 × capacity exist; a request admitted beyond that waits)",
            },
            "timeout_seconds": {"type": "number"},
            "map": {
                "type": "object",
                "description": "The configured MAP (its environment values are not shown)",
                "required": ["backend", "image", "command", "resources", "timeout_seconds"],
                "properties": {
                    "backend": {"type": "string", "enum": ["process", "kubernetes", "docker"]},
                    "image": {"type": "string"},
                    "command": {"type": "array", "items": {"type": "string"}},
                    "input_path": {"type": "string"},
                    "output_path": {"type": "string"},
                    "resources": {
                        "type": "object",
                        "properties": {
                            "cpu": {"type": "string"},
                            "memory": {"type": "string"},
                            "gpu": {"type": "integer"},
                        },
                    },
                    "timeout_seconds": {"type": "number"},
                },
            },
        },
    }
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
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "MONAI Inference Service",
            "version": HOST_VERSION,
            "description": "Runs one MONAI Application Package on an uploaded zip and answers "
            "with a zip of its outputs. One request at a time.",
        },
        "security": secured,
        "paths": {
            "/v1/inference": {"post": _inference("Run the MAP on a zip of inputs", raw_body=True)},
            "/v1/inference/": {"post": _inference("The same as /v1/inference", raw_body=True)},
            "/upload/": {
                "post": _inference("The same, for clients of the original MIS", raw_body=False)
            },
            "/upload": {"post": _inference("The same as /upload/", raw_body=False)},
            "/v1/inference/{request_id}/log": {"get": _live_log()},
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "security": [],
                    "parameters": [REQUEST_ID],
                    "responses": {"200": _json_ok("Serving", {"type": "object"})},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: jobs can be started (the backend answers, the MAP's "
                    "program exists, the payload folder is there, writable, not full, and "
                    "keeps no workspace failing to be deleted)",
                    "security": [],
                    "parameters": [REQUEST_ID],
                    "responses": {
                        "200": _json_ok("Ready", {"type": "object"}),
                        **error_responses([BackendUnavailable.code]),
                    },
                }
            },
            "/v1/status": {
                "get": {
                    "summary": "Idle or busy, and the configured MAP (feeds the page at /)",
                    "parameters": [REQUEST_ID],
                    "responses": {
                        "200": _json_ok("The service's state", status_schema),
                        **error_responses([Unauthorized.code]),
                    },
                }
            },
            "/metrics": {"get": metrics},
            "/": {
                "get": {
                    "summary": "The browser page: run the MAP on a zip or a folder",
                    "description": "Its scripts and styles are under /static/ (not listed).",
                    "security": [],
                    "parameters": [REQUEST_ID],
                    "responses": {
                        "200": {
                            "description": "HTML",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This description",
                    "security": [],
                    "parameters": [REQUEST_ID],
                    "responses": {"200": _json_ok("OpenAPI 3", {"type": "object"})},
                }
            },
        },
        "x-errors": page_advice(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR_SCHEMA},
        },
    }
