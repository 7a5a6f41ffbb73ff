"""The MAP's log lines, live, for the client that sent the request and nobody else.

`POST /v1/inference` may carry `X-Log-Key`: a secret the client made up (128 bits or more).
While that request runs, `GET /v1/inference/{request_id}/log` with the same key (and the same
`Authorization` header) streams the lines the MAP prints as server-sent events. A wrong key,
another token, a guessed id or a request that has ended all get the same 404.

The lines come from MIS's own log: a loguru sink, added at start-up, takes the records tagged
`source: map` and hands each to the channel of the request it was logged under. The channel
travels in a context variable set around the inference endpoint, so two requests that sent
the same X-Request-ID still have channels of their own. A channel keeps its last
`MAX_LINES` lines (each cut to `MAX_CHARS`, colour codes and control characters removed),
holds no buffer until its MAP prints, and is dropped when its request ends. `LiveLogCapture`
is the middleware of the inference routes that opens the channel. Only real control
characters are removed: text the MAP printed that merely looks like an escape (`\\x1b[31m`)
is shown as printed.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any

from loguru import logger
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from mis_app.errors import error_response
from mis_app.logs import CONTROL_CHARACTERS
from mis_app.request_info import request_info
from mis_app.state import app_state
from mis_core.errors import NotFound

KEY_HEADER = "x-log-key"
MAX_LINES = 500  # kept per request: enough to catch up after connecting late
MAX_CHARS = 1000  # per line; the full line is still in MIS's own log
MAX_READERS = 4  # streams open at once on one request (the page needs one)
KEEP_ALIVE_SECONDS = 15.0  # a comment line, so proxies do not close an idle stream
_KEY = re.compile(r"[A-Za-z0-9_-]{32,128}")
# CSI (colours, cursor moves), OSC (titles, links) and the other two-byte escapes
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")

_current: ContextVar[Channel | None] = ContextVar("mis_live_log_channel", default=None)


def clean_line(line: str) -> str:
    """What a person should see of one printed line: the last state a carriage return left
    (progress bars), no escape sequences or control characters, at most MAX_CHARS."""
    line = _ESCAPES.sub("", line)
    pieces = [piece for piece in line.split("\r") if piece.strip()]
    line = (pieces[-1] if pieces else "").replace("\t", "    ")
    line = CONTROL_CHARACTERS.sub("", line)  # removed: logs.clean escapes them, to show them
    return line if len(line) <= MAX_CHARS else line[: MAX_CHARS - 1] + "…"


class Channel:
    """One request's lines, numbered from 1. The sink may add from any thread; readers wait
    on the event loop the request runs on."""

    def __init__(self, owner: LiveLogs, request_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.request_id = request_id
        self.lines: deque[tuple[int, str]] | None = None  # made on the first line
        self.last = 0
        self.closed = False
        self.readers: set[asyncio.Event] = set()
        self._loop = loop
        self._lock = threading.Lock()

    def add(self, line: str) -> None:
        text = clean_line(line)
        with self._lock:
            if self.lines is None:
                self.lines = deque(maxlen=MAX_LINES)
            self.last += 1
            self.lines.append((self.last, text))
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def since(self, seen: int) -> list[tuple[int, str]]:
        with self._lock:
            return [item for item in self.lines or () if item[0] > seen]

    def _wake(self) -> None:
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for event in list(self.readers):
            if here is self._loop:
                event.set()
            elif not self._loop.is_closed():
                self._loop.call_soon_threadsafe(event.set)


class LiveLogs:
    """The channels of the requests in flight, the sink that feeds them, and the endpoint."""

    def __init__(self) -> None:
        self._channels: dict[bytes, Channel] = {}

    @asynccontextmanager
    async def attached(self) -> AsyncIterator[None]:
        """While the app runs, take the MAP's lines from the log (configured by then)."""
        sink = logger.add(self._sink, level="INFO", format="{message}", filter=_from_map)
        try:
            yield
        finally:
            logger.remove(sink)

    @contextmanager
    def opened(self, scope: Scope) -> Iterator[None]:
        key = _header(scope, KEY_HEADER)
        request_id = request_info(scope).request_id
        digest = _digest(request_id, key, _header(scope, "authorization"))
        if not _KEY.fullmatch(key) or digest in self._channels:
            yield  # no key, a malformed one, or the very same request twice: no live log
            return
        channel = Channel(self, request_id, asyncio.get_running_loop())
        self._channels[digest] = channel
        token = _current.set(channel)
        try:
            yield
        finally:
            _current.reset(token)
            del self._channels[digest]
            channel.close()

    def _sink(self, message: Any) -> None:
        channel = _current.get()
        record = message.record
        if (
            channel is not None
            and channel.owner is self
            and record["extra"].get("request_id") == channel.request_id
        ):
            channel.add(record["message"])

    async def endpoint(self, request: Request) -> Response:
        """GET /v1/inference/{request_id}/log: the lines so far, then each as it comes."""
        scope = request.scope
        key = _header(scope, KEY_HEADER)
        digest = _digest(request.path_params["request_id"], key, _header(scope, "authorization"))
        channel = self._channels.get(digest) if _KEY.fullmatch(key) else None
        if channel is None or len(channel.readers) >= MAX_READERS:
            return error_response(
                NotFound(
                    "There is no live log to read here: the request has ended, or it was not "
                    "sent with this X-Log-Key and this token. Only the client that sent a "
                    "request can follow its log, while it runs."
                ),
                request_info(scope).request_id,
            )
        seen = _last_event_id(request.headers.get("last-event-id", ""))
        return StreamingResponse(
            _events(channel, seen),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


class LiveLogCapture:
    """Middleware of the inference routes: the request runs inside its channel (if it has a
    key), so the MAP's lines reach the client that sent it."""

    def __init__(self, app: ASGIApp, logs: LiveLogs | None = None) -> None:
        self.app = app
        self.logs = logs  # None: the app's own (its state's)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        logs = self.logs or app_state(scope["app"]).live_logs
        with logs.opened(scope):
            await self.app(scope, receive, send)


async def log_stream(request: Request) -> Response:
    """The route: the app's LiveLogs answers."""
    return await app_state(request.app).live_logs.endpoint(request)


async def _events(channel: Channel, seen: int) -> AsyncIterator[str]:
    """Server-sent events: `id: n` and `data: line` per line, `event: end` when it is over."""
    changed = asyncio.Event()
    channel.readers.add(changed)
    try:
        yield "retry: 1000\n\n"
        while True:
            closed = channel.closed  # read before the lines, so none are missed at the end
            lines = channel.since(seen)
            if lines:
                seen = lines[-1][0]
                yield "".join(f"id: {n}\ndata: {line}\n\n" for n, line in lines)
            if closed:
                yield "event: end\ndata: \n\n"
                return
            if channel.last == seen:
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), KEEP_ALIVE_SECONDS)
                except TimeoutError:
                    yield ": still running\n\n"
    finally:
        channel.readers.discard(changed)


def _from_map(record: Any) -> bool:
    return bool(record["extra"].get("source") == "map")


def _header(scope: Scope, name: str) -> str:
    for header, value in scope["headers"]:
        if header == name.encode():
            return str(value.decode("latin-1"))
    return ""


def _digest(request_id: str, key: str, authorization: str) -> bytes:
    """Channels are found by all three at once: a lookup says nothing about any one of them."""
    return hashlib.sha256(f"{request_id}\0{key}\0{authorization}".encode()).digest()


def _last_event_id(value: str) -> int:
    return int(value) if value.isdigit() and len(value) < 12 else 0
