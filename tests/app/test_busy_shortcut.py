"""Busy answers made by the shortcut are the ones the full path would give, only for inference
requests while every slot is taken, after the token check and before the live log and the
endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mis_app.bootstrap import create_app
from mis_app.errors import error_response
from mis_app.settings import Settings
from mis_app.state import app_state

pytestmark = pytest.mark.anyio
TOKEN = "burst-token-0123456789"


async def call(
    app: Any, method: str, path: str, token: str = ""
) -> tuple[int, dict[bytes, bytes], bytes]:
    auth = [(b"authorization", f"Bearer {token}".encode())] if token else []
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
        "headers": [(b"host", b"127.0.0.1"), (b"x-request-id", b"burst-7"), *auth],
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


def app_for(tmp_path: Path, **server: Any) -> Any:
    settings = Settings.model_validate(
        {
            "server": {"payload_dir": str(tmp_path / "payload"), **server},
            "map": {"command": ["true"]},
        }
    )
    return create_app(settings)


@contextmanager
def full_and_past_the_shortcut_forbidden(app: Any) -> Iterator[Any]:
    """Every slot taken; the live log and the endpoint fail the test if a request reaches them."""
    state = app_state(app)

    def reached(*args: object, **kwargs: object) -> None:
        raise AssertionError("a busy request went past the shortcut")

    state.live_logs.opened = reached  # type: ignore[method-assign,assignment]
    state.service.infer = reached  # type: ignore[method-assign,assignment]
    gate = state.service.gate
    with gate.admit():
        yield gate


async def test_busy_answers_match_the_error_catalogue(tmp_path: Path) -> None:
    app = app_for(tmp_path)
    with full_and_past_the_shortcut_forbidden(app) as gate:
        expected = error_response(gate.refusal(), "burst-7")
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


async def test_a_client_without_a_token_is_refused_as_such_not_as_busy(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN}\n")
    app = app_for(tmp_path, auth={"tokens_file": str(tokens)})
    with full_and_past_the_shortcut_forbidden(app):
        status, headers, _ = await call(app, "POST", "/v1/inference")
        assert (status, headers[b"www-authenticate"][:6]) == (401, b"Bearer")
        status, _, body = await call(app, "POST", "/v1/inference", TOKEN)
        assert (status, body[:22]) == (500, b'{"error":{"code":"busy')
