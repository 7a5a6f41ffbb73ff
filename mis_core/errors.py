"""Every failure a client can meet, as an exception of the core: its code and its message.

The code is written here once; what each code means on the wire (HTTP status, `mis infer`'s
exit code, the page's advice) is a row of error_catalogue.py's table. The core says what went
wrong and what to do; the edge decides how it goes on the wire.
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


class NotFound(MisError):
    code = "not_found"


class MethodNotAllowed(MisError):
    code = "method_not_allowed"


class HeadersTooLarge(MisError):
    code = "request_header_fields_too_large"


class HttpVersionNotSupported(MisError):
    code = "http_version_not_supported"


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
