"""The uploaded zip as a stream of bytes, from either body the API accepts.

`multipart/form-data` with the zip in a part named `file` (the original MIS's form), or the
raw zip with `Content-Type: application/zip`. The multipart body is parsed as it arrives:
only the bytes of the `file` part are passed on, nothing is spooled elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import anyio
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from mis_core.errors import InvalidInput, UnsupportedMediaType, UploadTimeout

FILE_PART = b"file"
ZIP_MEDIA_TYPES = {b"application/zip", b"application/x-zip-compressed", b"application/x-zip"}
HOW_TO_SEND = (
    "Send the zip as multipart/form-data with a part named 'file' "
    "(curl -F file=@input.zip URL), or as the request body with "
    "Content-Type: application/zip."
)


def zip_upload(request: Request) -> AsyncIterator[bytes]:
    """The zip's bytes as they arrive; refuses other media types before reading anything."""
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    if media_type == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise InvalidInput(f"The multipart body has no boundary. {HOW_TO_SEND}")
        return _file_part(request.stream(), boundary)
    if media_type in ZIP_MEDIA_TYPES:
        return request.stream()
    shown = media_type.decode("latin-1") or "none"
    raise UnsupportedMediaType(f"The request's Content-Type is {shown}. {HOW_TO_SEND}")


class _FilePart:
    """Callbacks for python-multipart that keep the data of the first `file` part."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.found = False
        self.complete = False
        self._in_file = False
        self._field = bytearray()
        self._value = bytearray()
        self._disposition = b""

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._disposition = b""

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
    try:
        async for chunk in body:
            parser.write(chunk)
            for data in part.pending:
                yield data
            part.pending.clear()
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidInput(f"The multipart body is malformed ({exc}). {HOW_TO_SEND}") from None
    if not part.found:
        raise InvalidInput(f"The multipart body has no part named 'file'. {HOW_TO_SEND}")
    if not part.complete:
        raise InvalidInput("The multipart body ended before the 'file' part did.")


async def within_deadlines(
    chunks: AsyncIterable[bytes], idle_seconds: float, total_seconds: float
) -> AsyncIterator[bytes]:
    """Pass `chunks` on, ending the upload when it stalls or drags on too long.

    One slow client must not hold the only slot: no bytes for `idle_seconds`, or an upload
    still arriving after `total_seconds`, is UploadTimeout (408).
    """
    deadline = anyio.current_time() + total_seconds
    iterator = aiter(chunks)
    while True:
        remaining = deadline - anyio.current_time()
        with anyio.move_on_after(min(idle_seconds, remaining)) as waited:
            try:
                chunk = await anext(iterator)
            except StopAsyncIteration:
                return
        if waited.cancelled_caught:
            if remaining <= idle_seconds:
                raise UploadTimeout(
                    f"The upload took longer than {total_seconds:g} seconds "
                    "(server.upload_timeout_seconds); send a smaller input or a faster link."
                )
            raise UploadTimeout(
                f"The upload stalled: no data arrived for {idle_seconds:g} seconds "
                "(server.upload_idle_timeout_seconds). Check the connection and retry."
            )
        yield chunk
