"""`mis infer`: send a zip or a folder to MIS and save (or unpack) the result.

A folder is zipped while it is sent, never whole in memory; the answer is streamed to a
temporary file next to the output and renamed only when complete. Exit codes tell the
failures apart, so scripts can act on them.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import attrs
import httpx

from mis_adapters.storage.archive import ExtractLimits, extract_archive
from mis_adapters.storage.walk import OutputProblem
from mis_adapters.storage.zipwriter import zip_folder
from mis_core.errors import MisError

EXIT_OK = 0
EXIT_FAILED = 1  # anything not below (an error of the service itself, a full disk)
EXIT_USAGE = 2  # wrong command line, or INPUT is not there
EXIT_BAD_INPUT = 3  # 400, 408, 413, 415: the input or its upload was refused
EXIT_BUSY = 4  # another request is being fulfilled (after --wait's retries)
EXIT_TIMEOUT = 5  # the MAP did not finish in time
EXIT_MAP_FAILED = 6  # the MAP failed
EXIT_UNREACHABLE = 7  # no connection, or the service cannot start jobs (503)
EXIT_UNAUTHORIZED = 8  # 401: no token, or a wrong one

EXIT_BY_CODE = {
    "invalid_input": EXIT_BAD_INPUT,
    "payload_too_large": EXIT_BAD_INPUT,
    "unsupported_media_type": EXIT_BAD_INPUT,
    "request_timeout": EXIT_BAD_INPUT,
    "busy": EXIT_BUSY,
    "timeout": EXIT_TIMEOUT,
    "map_failed": EXIT_MAP_FAILED,
    "backend_unavailable": EXIT_UNREACHABLE,
    "unauthorized": EXIT_UNAUTHORIZED,
}
_CHUNK = 1024 * 1024
_UNPACK_LIMITS = ExtractLimits(
    max_extracted_bytes=2**62, max_entries=10**9, max_compression_ratio=1e12
)


@attrs.frozen
class InferOptions:
    source: Path
    output: Path
    url: str = "http://127.0.0.1:8000"
    token: str = ""
    extract_to: Path | None = None
    wait: bool = False
    retries: int = 10
    timeout_seconds: float = 600


class Progress:
    """One self-overwriting line on a terminal; silent otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()

    def show(self, what: str, done: int) -> None:
        if self.enabled:
            self.stream.write(f"\r{what} {done / 1e6:9.1f} MB")
            self.stream.flush()

    def end(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def infer(options: InferOptions, err: TextIO = sys.stderr) -> int:
    """Run one inference; the exit code. Messages go to `err`."""
    if not options.source.exists():
        err.write(f"mis infer: {options.source} does not exist\n")
        return EXIT_USAGE
    headers = {"Content-Type": "application/zip"}
    if options.token:
        headers["Authorization"] = f"Bearer {options.token}"
    progress = Progress(err)
    attempt = 0
    while True:
        try:
            result = _attempt(options, headers, progress)
        except httpx.TransportError as exc:
            progress.end()
            err.write(f"mis infer: cannot reach {options.url} ({type(exc).__name__}: {exc})\n")
            return EXIT_UNREACHABLE
        except OutputProblem as exc:  # found before the first byte is sent
            progress.end()
            err.write(f"mis infer: {options.source} cannot be sent: {exc.problem}\n")
            return EXIT_USAGE
        if result.code == "busy" and options.wait and attempt < options.retries:
            attempt += 1
            delay = result.retry_after if result.retry_after is not None else min(2**attempt, 30)
            err.write(
                f"mis infer: the service is busy; retry {attempt}/{options.retries} in {delay:g}s\n"
            )
            time.sleep(delay)
            continue
        break
    if result.code:
        err.write(f"mis infer: {result.status} {result.code}: {result.message}\n")
        return EXIT_BY_CODE.get(result.code, EXIT_FAILED)
    if options.extract_to is not None:
        try:
            options.extract_to.mkdir(parents=True, exist_ok=True)
            count = extract_archive(options.output, options.extract_to, _UNPACK_LIMITS)
        except MisError as exc:
            err.write(f"mis infer: the result could not be unpacked: {exc.message}\n")
            return EXIT_FAILED
        err.write(f"mis infer: {count} file(s) in {options.extract_to}\n")
    else:
        err.write(f"mis infer: saved {options.output}\n")
    return EXIT_OK


@attrs.frozen
class _Result:
    status: int
    code: str = ""
    message: str = ""
    retry_after: float | None = None


def _attempt(options: InferOptions, headers: dict[str, str], progress: Progress) -> _Result:
    timeout = httpx.Timeout(options.timeout_seconds, connect=10)
    with (
        httpx.Client(timeout=timeout) as client,
        client.stream(
            "POST",
            f"{options.url.rstrip('/')}/v1/inference",
            content=_upload(options.source, progress),
            headers=headers,
        ) as response,
    ):
        progress.end()
        if response.status_code != 200:
            return _error(response)
        options.output.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=options.output.parent, prefix=".mis-partial-")
        try:
            with os.fdopen(fd, "wb") as sink:
                received = 0
                for chunk in response.iter_bytes(_CHUNK):
                    sink.write(chunk)
                    received += len(chunk)
                    progress.show("downloading", received)
            os.replace(partial, options.output)
        finally:
            Path(partial).unlink(missing_ok=True)
        progress.end()
        return _Result(status=200)


def _error(response: httpx.Response) -> _Result:
    response.read()
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = f"http_{response.status_code}", response.text[:300]
    retry = response.headers.get("retry-after")
    return _Result(
        status=response.status_code,
        code=code,
        message=message,
        retry_after=float(retry) if retry and retry.replace(".", "", 1).isdigit() else None,
    )


def _upload(source: Path, progress: Progress) -> Iterator[bytes]:
    chunks = zip_folder(source, level=1) if source.is_dir() else _file_chunks(source)
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        progress.show("uploading", sent)
        yield chunk


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as source:
        while chunk := source.read(_CHUNK):
            yield chunk
