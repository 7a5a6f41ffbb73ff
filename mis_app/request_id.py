"""`X-Request-ID` on every response, and the request id in every log line while it is handled."""

from __future__ import annotations

import re
import time
import uuid

from loguru import logger
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
_WELL_FORMED = re.compile(r"[A-Za-z0-9_-]{1,64}")


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's id when it is well formed (1–64 of letters, digits, - and _), else a new one."""
    for name, value in headers:
        if name.lower() == HEADER.encode():
            candidate = value.decode("latin-1")
            if _WELL_FORMED.fullmatch(candidate):
                return candidate
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Assigns the id, tags the request's log lines with it, and writes one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope["headers"])
        scope.setdefault("state", {})["request_id"] = request_id
        status = 0
        sent = 0
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        with logger.contextualize(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                logger.bind(access=True).info(
                    "{} {} -> {} ({} bytes sent, {:.3f}s)",
                    scope["method"],
                    scope["path"],
                    status or "no response",
                    sent,
                    time.perf_counter() - started,
                )
