"""The uploaded zip as a stream of bytes, from either body the API accepts.

`multipart/form-data` with the zip in a part named `file` (the original MIS's form), or the
raw zip with `Content-Type: application/zip`. The multipart body is parsed as it arrives:
only the bytes of the `file` part are passed on, nothing is spooled elsewhere.

Every byte of the body counts, whichever part it belongs to: against `max_upload_bytes`, the
idle and total upload timeouts and the minimum rate. A multipart body may have only a
few parts, each with a short head, and is parsed in small pieces with a turn for the event
loop after each, so no body, however it is cut, can hold the loop for long.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, AsyncIterator

import anyio
import anyio.lowlevel
import attrs
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from mis_core.errors import (
    HttpVersionNotSupported,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedMediaType,
    UploadTimeout,
)

FILE_PART = b"file"
ZIP_MEDIA_TYPES = {b"application/zip", b"application/x-zip-compressed", b"application/x-zip"}
HOW_TO_SEND = (
    "Send the zip as multipart/form-data with a part named 'file' "
    "(curl -F file=@input.zip URL), or as the request body with "
    "Content-Type: application/zip."
)
MAX_PARTS = 16  # the form needs one; a few more fields are tolerated (and ignored)
MAX_PART_HEAD_BYTES = 16 * 1024  # the headers of one part
PIECE = 16 * 1024  # multipart bytes parsed between two turns of the event loop
MAX_BOUNDARY = 70  # RFC 2046; python-multipart raises a bare error past its own 256
RATE_SLOTS = 16  # the rate window is kept as this many slots: bounded memory at any rate


@attrs.frozen
class UploadLimits:
    max_bytes: int  # server.max_upload_bytes
    idle_seconds: float  # server.upload_idle_timeout_seconds
    total_seconds: float  # server.upload_timeout_seconds
    min_bytes_per_second: float  # server.min_upload_bytes_per_second; 0: no minimum


def zip_upload(request: Request, limits: UploadLimits) -> AsyncIterator[bytes]:
    """The zip's bytes as they arrive; refuses what cannot be right before reading anything."""
    if request.scope.get("http_version") == "1.0":
        # the answer is streamed in chunks, which HTTP/1.0 cannot carry
        raise HttpVersionNotSupported(
            "Send the request with HTTP/1.1 or later: the result is streamed with chunked "
            "transfer encoding, which HTTP/1.0 does not have."
        )
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary") or b""
    if media_type == b"multipart/form-data":
        if not boundary:
            raise InvalidInput(f"The multipart body has no boundary. {HOW_TO_SEND}")
        if len(boundary) > MAX_BOUNDARY:
            raise InvalidInput(
                f"The multipart boundary is longer than {MAX_BOUNDARY} characters "
                f"(RFC 2046). {HOW_TO_SEND}"
            )
    elif media_type not in ZIP_MEDIA_TYPES:
        shown = media_type.decode("latin-1")[:100] or "none"
        raise UnsupportedMediaType(f"The request's Content-Type is {shown!a}. {HOW_TO_SEND}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise too_large(limits.max_bytes)
    body = within_deadlines(_counted(request.stream(), limits.max_bytes), limits)
    if boundary and media_type == b"multipart/form-data":
        return _file_part(body, boundary)
    return body


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The upload is larger than this service accepts ({limit} bytes, server.max_upload_bytes)."
    )


async def _counted(chunks: AsyncIterable[bytes], limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        yield chunk
    if size == 0:  # said plainly, rather than as a zip without an end record
        raise InvalidInput(f"The request body is empty. {HOW_TO_SEND}")


class _FilePart:
    """Callbacks for python-multipart that keep the data of the first `file` part."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.found = False
        self.complete = False
        self.parts = 0
        self._in_file = False
        self._head_bytes = 0
        self._field = bytearray()
        self._value = bytearray()
        self._disposition = b""

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._head(self._field, data[start:end]),
            "on_header_value": lambda data, start, end: self._head(self._value, data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise PayloadTooLarge(
                f"The multipart body has more than {MAX_PARTS} parts. {HOW_TO_SEND}"
            )
        self._disposition = b""
        self._head_bytes = 0

    def _head(self, buffer: bytearray, data: bytes) -> None:
        self._head_bytes += len(data)
        if self._head_bytes > MAX_PART_HEAD_BYTES:
            raise InvalidInput(
                f"A part of the multipart body has headers over {MAX_PART_HEAD_BYTES} bytes. "
                f"{HOW_TO_SEND}"
            )
        buffer.extend(data)

    def _header_end(self) -> None:
        if bytes(self._field).lower() == b"content-disposition":
            self._disposition = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if options.get(b"name") == FILE_PART:
            if self.found:
                raise InvalidInput("The multipart body has more than one part named 'file'.")
            self.found = self._in_file = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.pending.append(data[start:end])

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self.complete = True


async def _file_part(body: AsyncIterator[bytes], boundary: bytes) -> AsyncIterator[bytes]:
    part = _FilePart()
    parser = MultipartParser(boundary, part.callbacks())  # type: ignore[arg-type]
    size = 0
    try:
        async for chunk in body:
            for start in range(0, len(chunk), PIECE):
                parser.write(chunk[start : start + PIECE])
                for data in part.pending:
                    size += len(data)
                    yield data
                part.pending.clear()
                await anyio.lowlevel.checkpoint()  # whatever the piece held, others get a turn
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidInput(f"The multipart body is malformed ({exc}). {HOW_TO_SEND}") from None
    if not part.found:
        raise InvalidInput(f"The multipart body has no part named 'file'. {HOW_TO_SEND}")
    if not part.complete:
        raise InvalidInput("The multipart body ended before the 'file' part did.")
    if size == 0:
        raise InvalidInput(f"The 'file' part is empty: it holds no zip. {HOW_TO_SEND}")


async def within_deadlines(
    chunks: AsyncIterable[bytes], limits: UploadLimits
) -> AsyncIterator[bytes]:
    """Pass `chunks` on, ending the upload when it stalls, drags on or trickles.

    One slow client must not hold the only slot: no bytes for `idle_seconds`, an upload still
    arriving after `total_seconds`, or, once `idle_seconds` have passed, fewer bytes in the
    last `idle_seconds` than `min_bytes_per_second` asks for, is UploadTimeout (408) at the
    moment it happens. The rate is judged over that sliding window, not since the start, so a
    burst followed by a trickle is cut off soon after the trickle begins.
    """
    started = last = anyio.current_time()
    deadline = started + limits.total_seconds
    rate = limits.min_bytes_per_second
    window = limits.idle_seconds
    needed = rate * window  # bytes each window must hold
    recent = _Recent(window)

    def too_slow_at() -> float:
        """When the window will hold fewer than `needed` bytes if no more arrive."""
        return max(started + window, recent.enough_until(needed))

    def expired(now: float) -> UploadTimeout | None:
        if now >= deadline:
            return UploadTimeout(
                f"The upload took longer than {limits.total_seconds:g} seconds "
                "(server.upload_timeout_seconds); send a smaller input or a faster link."
            )
        if now - last >= limits.idle_seconds:
            return UploadTimeout(
                f"The upload stalled: no data arrived for {limits.idle_seconds:g} seconds "
                "(server.upload_idle_timeout_seconds). Check the connection and retry."
            )
        if rate and now >= too_slow_at():
            return UploadTimeout(
                f"The upload is too slow: {recent.total(now)} bytes in the last {window:g} "
                f"seconds (server.upload_idle_timeout_seconds), below the {rate:g} bytes per "
                "second this service needs (server.min_upload_bytes_per_second). Use a faster "
                "connection, or ask the administrator to lower the minimum."
            )
        return None

    iterator = aiter(chunks)
    while True:
        now = anyio.current_time()
        if error := expired(now):
            raise error
        slow = too_slow_at() if rate else deadline
        chunk: bytes | None = None
        with anyio.move_on_after(min(last + limits.idle_seconds, deadline, slow) - now):
            try:
                chunk = await anext(iterator)
            except StopAsyncIteration:
                return
        if chunk is None:
            continue  # a deadline passed: the check above says which
        last = anyio.current_time()
        recent.add(last, len(chunk))
        yield chunk


class _Recent:
    """The bytes received in the last `window` seconds, in at most RATE_SLOTS + 1 slots: a
    slot holds what arrived within `window / RATE_SLOTS` of its first byte, stamped with the
    time of its last (so the window errs by at most one slot, in the client's favour)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.slot = window / RATE_SLOTS
        self.slots: deque[tuple[float, float, int]] = deque()  # (first, last, bytes)

    def add(self, now: float, size: int) -> None:
        if self.slots and now - self.slots[-1][0] < self.slot:
            first, _, held = self.slots.pop()
            self.slots.append((first, now, held + size))
        else:
            self.slots.append((now, now, size))
        while self.slots and self.slots[0][1] <= now - self.window:
            self.slots.popleft()

    def total(self, now: float) -> int:
        return sum(held for _, last, held in self.slots if last > now - self.window)

    def enough_until(self, needed: float) -> float:
        """Until when the window holds at least `needed` bytes if no more arrive (-inf if it
        never did)."""
        held = 0
        for _, last, size in reversed(self.slots):
            held += size
            if held >= needed:
                return last + self.window
        return float("-inf")
