"""`X-Request-ID` on every response, and the request id in every log line while it is handled.

The request id is the client's word: two clients may send the same one, or ids that differ only
in letter case. So MIS keys what it keeps for a request (its slot, workspace, job or container)
by a job id of its own (`RequestInfo.job_id`, 32 random hex digits), and uses the request id
only in headers and log lines. Without a client id, both are the same new id.

This layer makes the request's record (`mis_app.request_info`) and, when the request ends,
writes its access line and hands it to the audit trail: both see every answer, the layers'
below and its own.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from loguru import logger
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mis_app.errors import error_response
from mis_app.request_info import STOPPED, RequestInfo, attach
from mis_core.errors import BackendUnavailable

if TYPE_CHECKING:
    from mis_app.audit import AuditTrail

HEADER = "x-request-id"
_WELL_FORMED = re.compile(r"[A-Za-z0-9_-]{1,64}")


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The client's id when it is well formed (1–64 of letters, digits, - and _)."""
    for name, value in headers:
        if name.lower() == HEADER.encode():
            candidate = value.decode("latin-1")
            if _WELL_FORMED.fullmatch(candidate):
                return candidate
    return None


def _stopped() -> BackendUnavailable:
    return BackendUnavailable(
        "The service was stopped (a restart or an update) while this request ran; its MAP "
        "was stopped and nothing was kept. Send the request again in a moment."
    )


def _log_access(access: dict[str, Any]) -> None:
    line = (
        "{method} {path} -> {status} {code} ({bytes_received} bytes in, "
        "{bytes_sent} out, {duration_seconds:.3f}s)"
    ).format(**access)
    logger.bind(access=access).info(line)  # no arguments: braces in paths are safe


class RequestIdMiddleware:
    """Assigns the id, tags the request's log lines with it, and writes one access line (and
    the audit record, when `audit` is given).

    The access line carries its fields as `access` too, so the JSON log has them as data.
    """

    def __init__(self, app: ASGIApp, audit: AuditTrail | None = None) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        job_id = secrets.token_hex(16)
        request_id = request_id_from(scope["headers"]) or job_id
        info = RequestInfo(request_id, job_id)
        if self.audit is not None:
            info.audit = self.audit.facts_for(scope)
        attach(scope, info)
        status = 0
        sent = 0
        received = 0
        started = time.perf_counter()

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        with logger.contextualize(request_id=request_id, job_id=job_id):
            try:
                await self.app(scope, counting_receive, send_with_id)
            except asyncio.CancelledError:
                # Only a stop of the whole server cancels a request, once its grace is over;
                # the request has stopped its MAP and deleted its files on the way out. Say so
                # to the client rather than let the server answer a bare 500, and end here.
                info.outcome = STOPPED
                if status == 0:
                    await error_response(_stopped(), request_id)(scope, receive, send_with_id)
            finally:
                access = {
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "code": info.outcome,
                    "duration_seconds": round(time.perf_counter() - started, 6),
                    "bytes_received": received,
                    "bytes_sent": sent,
                }
                # Written once the loop has sent what is ready: under a burst of requests the
                # answers go out first and their log lines right after (the line's content is
                # fixed here; its context, with the request id, goes with the callback).
                asyncio.get_running_loop().call_soon(_log_access, access)
                if self.audit is not None:
                    self.audit.write(scope, info, status or None)
