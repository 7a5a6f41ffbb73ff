"""Live logs in process: the channels follow the request that logged a line, not just its id.

Two requests may send the same X-Request-ID (the storage refuses the second while the first
runs today, but the live log must not rely on it): each sender reads only its own MAP's lines.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import anyio
import pytest
from loguru import logger
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from mis_adapters.map_follow import MapLog
from mis_app.live_log import LiveLogCapture, LiveLogs
from mis_app.request_info import RequestInfo, attach

pytestmark = pytest.mark.anyio


def scope(method: str, path: str, headers: dict[str, str], request_id: str) -> Scope:
    made: Scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "path_params": {"request_id": request_id},
        "query_string": b"",
    }
    attach(made, RequestInfo(request_id, job_id=secrets.token_hex(16)))  # as the middleware does
    return made


async def lines_of(stream: AsyncIterator[str | bytes]) -> list[str]:
    """The `data:` lines of an event stream, to its end."""
    text = "".join([chunk if isinstance(chunk, str) else chunk.decode() async for chunk in stream])
    assert text.endswith("event: end\ndata: \n\n")
    return [line[6:] for line in text.split("\n") if line.startswith("data: ") and line[6:]]


async def test_two_requests_with_the_same_id_each_get_only_their_own_lines() -> None:
    logs = LiveLogs()
    printed = {"first": anyio.Event(), "second": anyio.Event()}
    release = anyio.Event()

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        """Stands in for the inference endpoint: its MAP prints, MIS logs, then it waits."""
        which = dict(scope["headers"])[b"x-which"].decode()
        async with anyio.create_task_group() as tg:  # as backends pump the MAP's output

            async def pump() -> None:
                for n in range(3):
                    MapLog(max_bytes=1 << 20).emit(f"{which} {n}")
                logger.info("a line of MIS's own, not the MAP's")
                printed[which].set()

            tg.start_soon(pump)
        await release.wait()

    keys = {"first": "a" * 32, "second": "b" * 32}
    app = LiveLogCapture(endpoint, logs)
    async with logs.attached(), anyio.create_task_group() as tg:
        for which, key in keys.items():
            headers = {"X-Log-Key": key, "X-Which": which}
            request = scope("POST", "/v1/inference", headers, "same-id")

            async def run(request: Scope = request) -> None:
                with logger.contextualize(request_id="same-id"):  # as the middleware does
                    await app(request, _no_receive, _no_send)

            tg.start_soon(run)
        for event in printed.values():
            await event.wait()
        responses = {}
        for which, key in keys.items():
            get = scope("GET", "/v1/inference/same-id/log", {"X-Log-Key": key}, "same-id")
            responses[which] = await logs.endpoint(Request(get))
        release.set()  # the requests end; their streams end after the last lines
        streams = {}
        for which, response in responses.items():
            assert isinstance(response, StreamingResponse)
            streams[which] = await lines_of(response.body_iterator)  # type: ignore[arg-type]
    assert streams == {
        "first": ["first 0", "first 1", "first 2"],
        "second": ["second 0", "second 1", "second 2"],
    }
    after = await logs.endpoint(Request(scope("GET", "/", {"X-Log-Key": keys["first"]}, "same-id")))
    assert after.status_code == 404  # gone with the request


async def _no_receive() -> dict[str, str]:
    raise AssertionError("the stand-in endpoint reads nothing")


async def _no_send(message: object) -> None:
    raise AssertionError("the stand-in endpoint sends nothing")
