"""Busy answers made by the shortcut are the ones the full path would give, and only for
inference requests while every slot is taken."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mis_app.bootstrap import create_app
from mis_app.errors import error_response
from mis_app.settings import Settings
from mis_app.state import app_state

pytestmark = pytest.mark.anyio


async def call(app: Any, method: str, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"x-request-id", b"burst-7")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return (
        sent[0]["status"],
        dict(sent[0]["headers"]),
        b"".join(m.get("body", b"") for m in sent[1:]),
    )


async def test_busy_answers_match_the_error_catalogue(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"server": {"payload_dir": str(tmp_path)}, "map": {"command": ["true"]}}
    )
    app = create_app(settings)
    gate = app_state(app).service.gate
    expected = error_response(gate.refusal(), "burst-7")
    with gate.admit():
        for path in ("/v1/inference", "/upload/"):
            status, headers, body = await call(app, "POST", path)
            assert (status, body) == (expected.status_code, expected.body)
            assert headers[b"retry-after"] == b"5"
            assert headers[b"x-request-id"] == b"burst-7"
            assert headers[b"content-length"] == str(len(body)).encode()
        status, _, _ = await call(app, "GET", "/healthz")  # other routes are not refused
        assert status == 200
        status, _, _ = await call(app, "GET", "/v1/inference")  # nor wrong methods
        assert status == 405
