"""`mis infer`: send a zip or a folder to MIS and save (or unpack) the result.

A folder is zipped while it is sent, never whole in memory; the answer is streamed to a
temporary file next to the output and renamed only when complete. Exit codes tell the
failures apart, so scripts can act on them.

With `--extract DIR` the client keeps what it received: DIR is checked before anything is
uploaded (it must be new or empty, unless `--force` lets the result replace files of the same
names), the result is unpacked with the server's own checks and default limits into a
folder beside DIR and moved into place only when whole, and if unpacking fails the zip is
kept and the message says where.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import httpx

from mis_adapters.storage.archive import extract_archive
from mis_adapters.storage.limits import PayloadLimits
from mis_adapters.zip import OutputLimits, OutputProblem, zip_folder
from mis_app.client_answer import Answer, read_error, shown
from mis_app.infer_options import InferOptions
from mis_app.logs import clean
from mis_app.settings import ServerSettings
from mis_app.settings.mapping import from_settings
from mis_core.error_catalogue import BY_CODE, Exit
from mis_core.errors import MisError

_CHUNK = 1024 * 1024
# A server as configured by default: the result is unpacked within its limits, and a folder
# is zipped the way it zips its output.
_SERVER = ServerSettings()
UNPACK_LIMITS = from_settings(PayloadLimits, _SERVER).for_extraction()


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
        return Exit.USAGE
    target = options.extract_to
    if target is not None and (problem := _extract_problem(target, options.force)):
        err.write(f"mis infer: {problem}\n")
        return Exit.USAGE
    if options.output is not None:
        output = options.output
    elif target is not None:
        output = _scratch_zip(target)
    else:
        err.write("mis infer: say where the result goes: an output zip, or a folder\n")
        return Exit.USAGE
    try:
        code = _infer(options, output, err)
    finally:
        if options.output is None:
            output.unlink(missing_ok=True)  # kept under another name if it was needed
    return code


def _infer(options: InferOptions, output: Path, err: TextIO) -> int:
    headers = {"Content-Type": "application/zip"}
    if options.token:
        headers["Authorization"] = f"Bearer {options.token}"
    progress = Progress(err)
    attempt, waited = 0, 0.0
    while True:
        try:
            result = _attempt(options, output, headers, progress)
        except httpx.TransportError as exc:
            progress.end()
            reason = clean(f"{type(exc).__name__}: {exc}")  # it may quote what the server sent
            reason = reason.replace(options.token, "<token>") if options.token else reason
            err.write(
                f"mis infer: cannot reach {options.url} ({reason}). Is MIS running there? "
                "Give its address with --url or the MIS_URL environment variable.\n"
            )
            return Exit.UNREACHABLE
        except OutputProblem as exc:  # found before the first byte is sent
            progress.end()
            err.write(f"mis infer: {options.source} cannot be sent: {exc.problem}\n")
            return Exit.USAGE
        delay = _retry_delay(result, options, attempt, waited, err)
        if delay is None:
            break
        time.sleep(delay)
        attempt, waited = attempt + 1, waited + delay
    if result.code:
        err.write(f"mis infer: {shown(result, (options.token,))}\n")
        row = BY_CODE.get(result.code)
        return row.exit if row else Exit.FAILED
    target = options.extract_to
    if target is None:
        err.write(f"mis infer: saved {output}\n")
        return Exit.OK
    try:
        count = unpack(output, target)
    except (MisError, OSError) as exc:
        reason = exc.message if isinstance(exc, MisError) else f"{exc.strerror} ({exc.filename})"
        reason = clean(reason)  # it may quote a name the server chose
        kept = output if options.output is not None else _keep(output, target)
        err.write(
            f"mis infer: the result could not be unpacked into {target}: {reason}\n"
            f"mis infer: the result is kept, as received, in {kept}\n"
        )
        return Exit.FAILED
    err.write(f"mis infer: {count} file(s) in {target}\n")
    return Exit.OK


def _retry_delay(
    result: Answer, options: InferOptions, attempt: int, waited: float, err: TextIO
) -> float | None:
    """How long to wait before trying again after `result` (said on `err`), or None to stop:
    only answers sent with Retry-After (busy) are retried, within --retries and --max-wait."""
    row = BY_CODE.get(result.code)
    if not (row and row.retry_after) or not options.wait or attempt >= options.retries:
        return None
    asked = result.retry_after if result.retry_after is not None else min(2 ** (attempt + 1), 30)
    remaining = options.max_wait_seconds - waited
    if asked > 0 and remaining <= 0:
        err.write(f"mis infer: still busy after waiting {waited:g}s in all (--max-wait)\n")
        return None
    delay = max(0.0, min(asked, remaining))
    err.write(
        f"mis infer: the service is busy; retry {attempt + 1}/{options.retries} in {delay:g}s\n"
    )
    return delay


def _extract_problem(target: Path, force: bool) -> str:
    """Why the result cannot be unpacked into `target` (checked before uploading), or ''."""
    if target.exists() and not target.is_dir():
        return f"{target} exists and is not a folder; choose a folder to extract the result to"
    if target.is_dir() and not force and any(target.iterdir()):
        return (
            f"{target} already holds files, which the result could overwrite; choose a new or "
            "empty folder, or pass --force to replace the files the result also has"
        )
    return ""


def _scratch_zip(target: Path) -> Path:
    target.absolute().parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.absolute().parent, prefix=".mis-result-", suffix=".zip")
    os.close(fd)
    return Path(name)


def _keep(scratch: Path, target: Path) -> Path:
    """Move the received zip to a lasting name beside `target`."""
    kept = target.with_name(f"{target.name}.zip")
    number = 1
    while kept.exists():
        kept = target.with_name(f"{target.name}-{number}.zip")
        number += 1
    os.replace(scratch, kept)
    return kept


def unpack(archive: Path, target: Path) -> int:
    """Unpack `archive` into `target` with the server's checks: into a folder beside it first,
    so that a refused or cut archive leaves `target` as it was; the number of files."""
    parent = target.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mis-extract-", dir=parent))
    try:
        count = extract_archive(archive, staging, UNPACK_LIMITS, _SERVER.workers)
        if target.exists():
            _merge(staging, target)
        else:
            umask = os.umask(0)
            os.umask(umask)
            staging.chmod(0o777 & ~umask)  # a folder made for the user, as mkdir would
            staging.rename(target)
        return count
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _merge(source: Path, target: Path) -> None:
    """Move every file of `source` into `target`, replacing files of the same names."""
    for folder, folders, files in os.walk(source):
        relative = Path(folder).relative_to(source)
        for name in folders:
            (target / relative / name).mkdir(exist_ok=True)
        for name in files:
            os.replace(Path(folder, name), target / relative / name)


def _attempt(
    options: InferOptions, output: Path, headers: dict[str, str], progress: Progress
) -> Answer:
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
            return read_error(response)
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=output.parent, prefix=".mis-partial-")
        try:
            with os.fdopen(fd, "wb") as sink:
                received = 0
                for chunk in response.iter_bytes(_CHUNK):
                    sink.write(chunk)
                    received += len(chunk)
                    progress.show("downloading", received)
            os.replace(partial, output)
        finally:
            Path(partial).unlink(missing_ok=True)
        progress.end()
        return Answer(status=200)


def _upload(source: Path, progress: Progress) -> Iterator[bytes]:
    chunks = _zipped(source) if source.is_dir() else _file_chunks(source)
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        progress.show("uploading", sent)
        yield chunk


def _zipped(folder: Path) -> Iterator[bytes]:
    """`folder` zipped as it is sent; no limits but the server's, which it answers with."""
    level, compression = _SERVER.output_compression_level, _SERVER.output_compression
    return zip_folder(folder, level, compression, _SERVER.workers, OutputLimits(), None)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as source:
        while chunk := source.read(_CHUNK):
            yield chunk
