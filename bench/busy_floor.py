"""The floor for busy answers: a bare ASGI app on the same uvicorn that answers every request
with bytes like MIS's busy answer (and /healthz with 200), doing nothing else."""

from __future__ import annotations

from typing import Any

BUSY = (
    b'{"error":{"code":"busy","message":"Another inference request is being fulfilled; this '
    b'service runs 1 at a time. Try again when it has finished.","request_id":'
    b'"0123456789abcdef0123456789abcdef"}}'
)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    status, body = (200, b"{}") if scope["path"] == "/healthz" else (500, BUSY)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
