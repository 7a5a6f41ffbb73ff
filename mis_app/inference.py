"""`POST /v1/inference` and `POST /upload/`: one request through an InferenceSession.

Written as a plain ASGI app rather than a request→response function because the session must
outlive the handler: the workspace is deleted only after the last byte of the zip is sent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from loguru import logger
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mis_app.errors import error_response, internal_error
from mis_app.metrics import Metrics
from mis_app.upload import UploadLimits, zip_upload
from mis_core.errors import MisError
from mis_core.session import InferenceService, InferenceSession

ZIP_HEADERS = [
    (b"content-type", b"application/zip"),
    (b"content-disposition", b'attachment; filename="output.zip"'),
]


class InferenceEndpoint:
    def __init__(self, service: InferenceService, metrics: Metrics, limits: UploadLimits) -> None:
        self.service = service
        self.metrics = metrics
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        began = time.perf_counter()
        session: InferenceSession | None = None
        code = "internal_error"
        try:
            # keyed by MIS's own job id: the client's request id may be another's too
            async with self.service.session(scope["state"]["job_id"]) as session:
                code = await self._fulfil(session, scope, receive, send)
            if code == "ok":
                # End the response only now that the workspace is gone and the slot is free,
                # so a client that sends its next request at once is not told "busy".
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except MisError as error:
            code = error.code
            raise
        finally:
            scope["state"]["outcome"] = code
            times, got, sent = (
                (session.times, session.bytes_in, session.bytes_out) if session else (None, 0, 0)
            )
            self.metrics.observe(code, time.perf_counter() - began, times, got, sent)

    async def _fulfil(
        self, session: InferenceSession, scope: Scope, receive: Receive, send: Send
    ) -> str:
        """Receive, stage, run and respond; the outcome code, for metrics and the access log."""
        upload = zip_upload(Request(scope, receive), self.limits)
        try:
            await session.receive(upload)
        except ClientDisconnect:
            logger.warning("client disconnected during the upload")
            return "client_disconnected"
        await session.stage()

        async def run_and_respond() -> None:
            await session.run()
            await _send_zip(session.output(), send)

        if not await _unless_disconnected(receive, run_and_respond):
            logger.warning("client disconnected; the job was stopped")
            return "client_disconnected"
        return "ok"


class BusyShortcut:
    """Refuses inference requests while every slot is taken, before Starlette's middleware and
    routing run.

    Under a burst of clients the busy answers are nearly all the work the server does, so they
    are made here, from a body prepared once; the answer is the same as the full path's.
    """

    def __init__(
        self, app: ASGIApp, service: InferenceService, metrics: Metrics, paths: frozenset[str]
    ) -> None:
        self.app = app
        self.gate = service.gate
        self.metrics = metrics
        self.paths = paths
        refusal = error_response(self.gate.refusal(), "REQUEST_ID")
        self._status = refusal.status_code
        self._headers = [(k, v) for k, v in refusal.raw_headers if k != b"content-length"]
        self._body = bytes(refusal.body).split(b"REQUEST_ID")  # request ids need no escaping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            self.gate.full
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in self.paths
        ):
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        body = scope["state"]["request_id"].encode().join(self._body)
        headers = [*self._headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": self._status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        scope["state"]["outcome"] = "busy"
        self.metrics.observe("busy", time.perf_counter() - began, None, 0, 0)


class ErrorResponder:
    """Turns what the endpoint raises into the JSON error body, unless the zip had started."""

    def __init__(self, app: InferenceEndpoint) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id: str = scope["state"]["request_id"]
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except MisError as error:
            if started:
                logger.error("failed after the response started: {}", error.message)
                raise
            # busy answers can come by the hundred; the access line already says "busy"
            level = "DEBUG" if error.code == "busy" else "INFO"
            logger.log(level, "refused: {} ({})", error.code, error.message.splitlines()[0])
            await error_response(error, request_id)(scope, receive, send)
        except Exception:
            logger.exception("unexpected error")
            if started:
                raise
            await error_response(internal_error(), request_id)(scope, receive, send)


async def _send_zip(chunks: AsyncIterator[bytes], send: Send) -> None:
    """Everything but the end of the response, which waits for the clean-up."""
    await send({"type": "http.response.start", "status": 200, "headers": ZIP_HEADERS})
    async for chunk in chunks:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _unless_disconnected(receive: Receive, work: Callable[[], Awaitable[None]]) -> bool:
    """Run `work`, cancelling it if the client goes away; whether it ran to the end.

    Only call once the request body has been read: from then on the only message `receive`
    can bring is the disconnect (which also comes once the response is complete).
    """
    completed = False
    error: Exception | None = None
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        try:
            await work()
            completed = True
        except Exception as exc:  # re-raised below, outside the task group's exception group
            error = exc
        tg.cancel_scope.cancel()
    if error is not None:
        raise error
    return completed
