"""The routes' own answers, through the app bootstrap builds (no server, no lifespan)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from mis_app.bootstrap import create_app
from mis_app.errors import error_body
from mis_app.settings import Settings
from mis_app.state import app_state
from mis_core.errors import MethodNotAllowed

pytestmark = pytest.mark.anyio


def app_for(tmp_path: Path) -> object:
    settings = Settings.model_validate(
        {"server": {"payload_dir": str(tmp_path)}, "map": {"command": ["true"]}}
    )
    return create_app(settings)


async def test_an_unexpected_error_is_the_json_error_body_with_the_request_id(
    tmp_path: Path,
) -> None:
    app = app_for(tmp_path)

    async def broken() -> None:
        raise RuntimeError("a bug")

    app_state(app).service.jobs.check = broken  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://mis") as client:
        response = await client.get("/readyz", headers={"X-Request-ID": "oops-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "oops-1"
    error = response.json()["error"]
    assert (error["code"], error["request_id"]) == ("internal_error", "oops-1")
    assert "a bug" not in response.text  # no internals on the wire


async def test_status_counts_requests_and_pending_deletions(tmp_path: Path) -> None:
    app = app_for(tmp_path)
    gate = app_state(app).service.gate  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://mis") as client:
        idle = (await client.get("/v1/status")).json()
        gate.deletion_started()
        with gate.admit():
            busy = (await client.get("/v1/status")).json()
    assert (idle["state"], idle["deleting"], idle["capacity"]) == ("idle", 0, 1)
    assert (busy["state"], busy["deleting"]) == ("busy", 1)
    assert idle["map"]["resources"] == {"cpu": "1", "memory": "8Gi", "gpu": 0}


async def test_routing_s_answers_are_built_as_every_error_is(tmp_path: Path) -> None:
    transport = httpx.ASGITransport(app=app_for(tmp_path))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://mis") as client:
        response = await client.get("/v1/inference", headers={"X-Request-ID": "wrong-1"})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"  # routing's own header is kept
    assert response.json() == error_body(MethodNotAllowed("Method Not Allowed"), "wrong-1")
