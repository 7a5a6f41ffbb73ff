"""`POST /v1/inference` and `POST /upload/`: HTTP adapted to the service's one operation.

The core runs the request (`InferenceService.infer`); this module only turns the ASGI body
into the upload stream, the output stream into response messages, a client that goes away
into cancellation, and errors into the JSON error body.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import aclosing

import anyio
from loguru import logger
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mis_app.digest import Digest
from mis_app.errors import error_response, internal_error
from mis_app.metrics import Metrics
from mis_app.request_info import CLIENT_DISCONNECTED, OK, request_info
from mis_app.state import app_state
from mis_app.upload import UploadLimits, zip_upload
from mis_core.errors import Busy, MisError
from mis_core.service import Inference, InferenceService
from mis_core.tasks import plain_task_group

ZIP_HEADERS = [
    (b"content-type", b"application/zip"),
    (b"content-disposition", b'attachment; filename="output.zip"'),
]


class InferenceEndpoint:
    """The inference routes' endpoint: a plain ASGI app, writing its answer while the service
    produces it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = app_state(scope["app"])
        request = Request(scope, receive)
        body_read = anyio.Event()
        info = request_info(scope)
        facts = info.audit  # present while auditing is on
        upload = _upload(request, state.upload_limits, body_read, facts.upload if facts else None)
        # keyed by MIS's own job id: the client's request id may be another's too
        inference = state.service.infer(info.job_id, upload, request_id=info.request_id)
        if facts is not None:
            facts.inference = inference
        answer = _Answer(facts.output if facts else None)
        began = time.perf_counter()
        try:
            await answer.send(inference, body_read, scope, receive, send)
        finally:
            info.outcome = answer.outcome
            state.metrics.observe(
                answer.outcome,
                time.perf_counter() - began,
                inference.times,
                inference.bytes_in,
                inference.bytes_out,
            )


class _Answer:
    """One request's answer: the output zip, or the error body; `outcome` says which."""

    def __init__(self, digest: Digest | None) -> None:
        self.outcome = MisError.code  # the code for metrics and the access line
        self.digest = digest  # of the output as it is sent, for the audit record

    async def send(
        self,
        inference: Inference,
        body_read: anyio.Event,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            if await _unless_disconnected(
                receive, body_read, _send_zip(inference, tracked_send, self.digest)
            ):
                self.outcome = OK
            else:
                self.outcome = CLIENT_DISCONNECTED
                logger.warning("client disconnected; the job was stopped")
            return
        except ClientDisconnect:
            self.outcome = CLIENT_DISCONNECTED
            logger.warning("client disconnected during the upload")
            return
        except MisError as exc:
            error = exc
            if started:
                self.outcome = error.code
                logger.error("failed after the response started: {}", error.message)
                raise
            # busy answers can come by the hundred; the access line already says busy
            level = "DEBUG" if isinstance(error, Busy) else "INFO"
            logger.log(level, "refused: {} ({})", error.code, error.message.splitlines()[0])
        except Exception:
            logger.exception("unexpected error")
            if started:
                raise
            error = internal_error()
        self.outcome = error.code
        await error_response(error, request_info(scope).request_id)(scope, receive, send)


async def _upload(
    request: Request, limits: UploadLimits, body_read: anyio.Event, digest: Digest | None
) -> AsyncIterator[bytes]:
    """The zip's bytes, read only once the service has admitted the request (and hashed as
    they pass when auditing)."""
    async for chunk in zip_upload(request, limits):  # refuses a wrong media type first
        if digest is not None:
            await digest.feed(chunk)
        yield chunk
    if digest is not None:
        await digest.finish()
    body_read.set()


async def _send_zip(inference: Inference, send: Send, digest: Digest | None) -> None:
    """The output as the body of a 200; the response ends once the service has let go."""
    started = False
    async with aclosing(inference.output()) as chunks:
        async for chunk in chunks:
            if not started:
                await send({"type": "http.response.start", "status": 200, "headers": ZIP_HEADERS})
                started = True
            if digest is not None:
                await digest.feed(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    if digest is not None:
        await digest.finish()
    # The slot is free now (the workspace is being deleted in the background), so a client
    # that sends its next request as soon as this one ends is not told it is busy.
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _unless_disconnected(
    receive: Receive, body_read: anyio.Event, work: Awaitable[None]
) -> bool:
    """Run `work`, cancelling it if the client goes away once its body is read; whether it
    ran to the end.

    Until the body is read, `receive` belongs to the upload (which reports a disconnect
    itself); from then on the only message it can bring is the disconnect (which also comes
    once the response is complete).
    """
    completed = False
    async with plain_task_group() as tg:

        async def watch() -> None:
            await body_read.wait()
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        try:
            await work
            completed = True
        finally:
            tg.cancel_scope.cancel()
    return completed


class BusyShortcut:
    """Middleware of the inference routes: refuses a request while every slot is taken,
    before the live log is opened and the endpoint runs.

    Under a burst of clients the busy answers are nearly all the work the server does, so they
    are made here, from a body prepared once; the answer is the same as the full path's.
    """

    def __init__(self, app: ASGIApp, service: InferenceService, metrics: Metrics) -> None:
        self.app = app
        self.service = service
        self.metrics = metrics
        refusal = error_response(service.refusal(), "REQUEST_ID")
        self._status = refusal.status_code
        self._headers = [(k, v) for k, v in refusal.raw_headers if k != b"content-length"]
        self._body = bytes(refusal.body).split(b"REQUEST_ID")  # request ids need no escaping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.service.busy:
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        info = request_info(scope)
        body = info.request_id.encode().join(self._body)
        headers = [*self._headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": self._status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        info.outcome = Busy.code
        self.metrics.observe(Busy.code, time.perf_counter() - began, None, 0, 0)
