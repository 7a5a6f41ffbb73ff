"""The OpenAPI description's data: parameters, schemas and words, without the routes' layout
(mis_app.openapi puts them together)."""

from __future__ import annotations

from typing import Any

from mis_core.model import HOST_VERSION

INFO = {
    "title": "MONAI Inference Service",
    "version": HOST_VERSION,
    "description": "Runs one MONAI Application Package on an uploaded zip and answers "
    "with a zip of its outputs. One request at a time.",
}

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
LIVE_LOG_PARAMETERS = [
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
]

BINARY: dict[str, Any] = {"type": "string", "format": "binary"}
UPLOAD_FORM = {
    "schema": {
        "type": "object",
        "required": ["file"],
        "properties": {"file": BINARY},
    }
}

INFERENCE_OK = (
    "The MAP's output folder as a zip, streamed as it is made. A client that reads too little "
    "of it for the send buffer to drain within `server.download_idle_timeout_seconds`, or is "
    "still reading it `server.download_timeout_seconds` after it first fell behind, is cut off "
    "(the connection is closed and the job's files deleted)."
)
LIVE_LOG_SUMMARY = "Follow the MAP's log while your request runs (server-sent events)"
LIVE_LOG_DESCRIPTION = (
    "Only for the client that sent the request: the same X-Log-Key it sent with the POST and "
    "the same Authorization header. Each line the MAP prints is an event with `id` (its "
    "number) and `data` (the line, colour codes and control characters removed, at most 1,000 "
    "characters); the last 500 lines are kept, so a client that connects late or reconnects "
    "(with Last-Event-ID) catches up. `event: end` comes when the request is over, and the "
    "stream closes. Any other key, token, or request id, and a request that has ended, get "
    "the same 404."
)
READYZ_SUMMARY = (
    "Readiness: jobs can be started (the backend answers, the MAP's program exists, the "
    "payload folder is there, writable, not full, and keeps no workspace failing to be deleted)"
)

SERVICE_STATE = {False: "idle", True: "busy"}  # /v1/status's state: whether every slot is taken
STATUS_SCHEMA = {
    "type": "object",
    "required": ["state", "in_flight", "capacity", "running", "timeout_seconds", "map"],
    "properties": {
        "state": {"type": "string", "enum": list(SERVICE_STATE.values())},
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
