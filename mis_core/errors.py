"""Every failure a client can meet, each with the stable `code` the HTTP API reports.

The edge maps codes to HTTP statuses; the core only says what went wrong and what to do.
"""

from __future__ import annotations

from typing import ClassVar


class MisError(Exception):
    """A failure with a message written for the person who sent the request."""

    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(MisError):
    code = "invalid_input"


class PayloadTooLarge(MisError):
    code = "payload_too_large"


class UploadTimeout(MisError):
    code = "request_timeout"


class UnsupportedMediaType(MisError):
    code = "unsupported_media_type"


class Unauthorized(MisError):
    code = "unauthorized"


class Busy(MisError):
    code = "busy"


class JobTimedOut(MisError):
    code = "timeout"


class MapFailed(MisError):
    code = "map_failed"


class BackendUnavailable(MisError):
    code = "backend_unavailable"


class InsufficientStorage(MisError):
    code = "insufficient_storage"
