"""Every failure a client can meet, as an exception of the core, each class with its row.

A class's `row` (error_code.py's ErrorCode) is its code and what the code means to a client:
HTTP status, `mis infer`'s exit code, whether `Retry-After` is sent, when it happens (the words
of docs/api.md's error table; a test holds them together) and what the browser page says. The
catalogue (error_catalogue.py) is collected from these classes, and the edge's status map, the
OpenAPI text, the client's exit codes, the 404/405 map and the page's advice derive from it:
a new code is one class here, with its row, and its line in docs/api.md. The core says what
went wrong and what to do; the edge decides how it goes on the wire.
"""

from __future__ import annotations

from typing import ClassVar

from mis_core.error_code import ErrorCode, Exit


class MisError(Exception):
    """A failure with a message written for the person who sent the request. Raised as
    itself it is a fault of MIS: its row is the catch-all."""

    row: ClassVar[ErrorCode] = ErrorCode(
        "internal_error",
        500,
        Exit.FAILED,
        when=(
            "a fault in MIS itself, not in the request or the MAP: nothing of the request was "
            "kept; the message carries the request id to quote, and MIS's log has the details"
        ),
        title="The service hit an unexpected error.",
        advice="Try again. If it keeps happening, give the administrator the request id.",
    )
    code: ClassVar[str] = row.code

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.code = cls.row.code  # a subclass without a row of its own keeps its parent's

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(MisError):
    row = ErrorCode(
        "invalid_input",
        400,
        Exit.BAD_INPUT,
        when=(
            "an empty body or `file` part, not valid HTTP (a malformed request line, header or "
            "chunk), not a zip, a corrupt or inconsistent zip (overlapping entries, a local "
            "header that disagrees with its directory record, an entry larger than it declares), "
            "no `file` part, a multipart boundary over 70 characters, a multipart part with "
            "headers over 16 KiB, an unsafe entry (absolute path, `..`, drive letter, backslash, "
            "control character, nested over 128 folders, symlink, device, duplicate name), a name "
            "the payload volume cannot hold (too long, a clash its file system refuses), "
            "encrypted entries, a compression method other than stored or deflate"
        ),
        title="This file cannot be used.",
        advice="Send a .zip archive of the study, or choose its folder instead.",
    )


class Unauthorized(MisError):
    row = ErrorCode(
        "unauthorized",
        401,
        Exit.UNAUTHORIZED,
        when=(
            "auth is on and the bearer token is missing, wrong, revoked, or sent in the URL; "
            "`WWW-Authenticate` is set"
        ),
        title="Your access token was not accepted.",
        advice="Enter a valid token above. Ask the administrator if you do not have one.",
    )


class NotFound(MisError):
    row = ErrorCode(
        "not_found",
        404,
        Exit.FAILED,
        routing=True,
        when=(
            "no such path; or, for `GET /v1/inference/{request_id}/log`, no live log for that "
            "request id, key and token (or the request has ended)"
        ),
        title="The service has no such page, or no log for this study.",
        advice="Reload the page and try again.",
    )


class MethodNotAllowed(MisError):
    row = ErrorCode(
        "method_not_allowed",
        405,
        Exit.FAILED,
        routing=True,
        when="the path is there but does not answer this method (e.g. `GET /v1/inference`)",
        title="The service does not answer this kind of request here.",
        advice="Reload the page and try again.",
    )


class UploadTimeout(MisError):
    row = ErrorCode(
        "request_timeout",
        408,
        Exit.BAD_INPUT,
        when=(
            "the upload stalled (`upload_idle_timeout_seconds`), took longer than "
            "`upload_timeout_seconds`, or, once `upload_idle_timeout_seconds` had passed, fewer "
            "bytes arrived in the last `upload_idle_timeout_seconds` than "
            "`min_upload_bytes_per_second` asks for (a sliding window, so a burst followed by a "
            "trickle is cut off soon after the trickle begins); or the request's headers took "
            "longer than `header_timeout_seconds`"
        ),
        title="The upload was too slow and was stopped.",
        advice="Check your network connection and try again.",
    )


class PayloadTooLarge(MisError):
    row = ErrorCode(
        "payload_too_large",
        413,
        Exit.BAD_INPUT,
        when=(
            "upload (every byte of the body counts, whichever form part it is in; a "
            "`Content-Length` over the limit is refused before the body is read), expanded size,"
            " entry count, central directory size (1 KiB per allowed entry, plus 1 MiB) or "
            "compression ratio over the limits, or a form of more than 16 parts"
        ),
        title="The study is too large for this service.",
        advice="Send fewer images, or ask the administrator to raise the size limit.",
    )


class UnsupportedMediaType(MisError):
    row = ErrorCode(
        "unsupported_media_type",
        415,
        Exit.BAD_INPUT,
        when="a body that is neither multipart nor `application/zip`",
        title="The upload was not sent as a zip.",
        advice="Choose a .zip file or a folder.",
    )


class HeadersTooLarge(MisError):
    row = ErrorCode(
        "request_header_fields_too_large",
        431,
        Exit.BAD_INPUT,
        when=(
            "the request line and headers are over `max_header_bytes`; answered before anything "
            "else runs (authentication included) and the connection closed"
        ),
        title="The request's headers were too large for the service.",
        advice=(
            "Clear this site's cookies and try again, or ask the administrator to raise the "
            "header limit."
        ),
    )


class Busy(MisError):
    row = ErrorCode(
        "busy",
        500,
        Exit.BUSY,
        retry_after=True,
        when="another request is being fulfilled (the spec); `Retry-After` is set",
        title="The service is busy with another study.",
        advice=(
            "It runs one study at a time. Wait until the status above says idle, then try again."
        ),
    )


class JobTimedOut(MisError):
    row = ErrorCode(
        "timeout",
        500,
        Exit.TIMEOUT,
        map_ran=True,
        when="the MAP did not finish within `map.timeout_seconds`; it was stopped",
        title="The application did not finish in time and was stopped.",
        advice="Try a smaller study, or ask the administrator to raise the time limit.",
    )


class MapFailed(MisError):
    row = ErrorCode(
        "map_failed",
        500,
        Exit.MAP_FAILED,
        map_ran=True,
        when=(
            "the MAP failed: the message gives the reason (exit code, signal) and the last lines"
            " of its log; or its output cannot be sent whole (the output folder replaced by a "
            "link, a file MIS cannot read, a name that is not UTF-8, folders nested over 128 "
            "deep, files adding up to more than `server.max_output_bytes`, more entries, a "
            "longer path or a larger zip directory than `server.max_output_entries`, "
            "`server.max_output_path_bytes`, `server.max_output_directory_bytes`), or it has a "
            "name MIS would refuse in an upload (backslash, drive letter, control character: "
            "the message names the file, escaped)"
        ),
        title="The application failed on this study.",
        advice=(
            "Check that the study is what this application expects. If it keeps failing, give "
            "the administrator the details below."
        ),
    )


class BackendUnavailable(MisError):
    row = ErrorCode(
        "backend_unavailable",
        503,
        Exit.UNREACHABLE,
        when=(
            "jobs cannot be started (the backend cannot be reached, the MAP's program is "
            "missing: what `/readyz` says), auth is on and the tokens file has never been "
            "readable, or MIS was stopped while the request ran"
        ),
        title="The service cannot run the application right now.",
        advice="Try again in a few minutes. If it persists, tell the administrator.",
    )


class HttpVersionNotSupported(MisError):
    row = ErrorCode(
        "http_version_not_supported",
        505,
        Exit.BAD_INPUT,
        when=(
            "an inference request over HTTP/1.0: the result is streamed with chunked transfer "
            "encoding, which needs HTTP/1.1"
        ),
        title="Something between you and the service spoke an old version of HTTP (1.0).",
        advice="Ask the administrator to let the proxy in front of the service use HTTP/1.1.",
    )


class InsufficientStorage(MisError):
    row = ErrorCode(
        "insufficient_storage",
        507,
        Exit.FAILED,
        when="the payload volume ran out of space; nothing of the request was kept",
        title="The service ran out of disk space for this study.",
        advice="Try again later, or tell the administrator.",
    )
