"""What `mis infer` takes from a server's error answer, trusting none of it.

The body is read up to `MAX_ERROR_BYTES` (a server may send gigabytes), `Retry-After` is
capped at `MAX_RETRY_AFTER_SECONDS`, and every text that came from the server is shown with
its control characters escaped, so it cannot move the cursor, clear the screen or write the
clipboard of the terminal it is printed on.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs
import httpx

from mis_app.infer_options import MAX_RETRY_AFTER_SECONDS
from mis_app.logs import clean, clean_lines

MAX_ERROR_BYTES = 64 * 1024  # MIS's own error bodies are well under this
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]*)?", re.ASCII)  # not str.isdigit(): it takes "²"
MAX_CODE_CHARS = 64
MAX_MESSAGE_CHARS = 8000  # a failed MAP's last log lines fit


@attrs.frozen
class Answer:
    status: int
    code: str = ""  # "" for success
    message: str = ""
    retry_after: float | None = None  # seconds, capped; None when not given or not a number


def read_error(response: httpx.Response) -> Answer:
    """The error a non-200 streamed answer carries, from at most MAX_ERROR_BYTES of its body."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > MAX_ERROR_BYTES:
            break  # the rest is never read: the connection is closed with the response
    code, message = _parse(bytes(body[:MAX_ERROR_BYTES]))
    if not code:
        text = body[:300].decode("utf-8", "replace")
        code, message = f"http_{response.status_code}", text
    return Answer(
        status=response.status_code,
        code=code,
        message=message,
        retry_after=retry_after_seconds(response.headers.get("retry-after")),
    )


def _parse(body: bytes) -> tuple[str, str]:
    try:
        error: Any = json.loads(body)["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return "", ""


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After of seconds, at most MAX_RETRY_AFTER_SECONDS; None for anything else (an
    HTTP date included: the client's own backoff is used then)."""
    if not value or not _SECONDS.fullmatch(value.strip()):
        return None
    return min(float(value), MAX_RETRY_AFTER_SECONDS)


def shown(answer: Answer, secrets: tuple[str, ...] = ()) -> str:
    """How the answer is printed: `STATUS CODE: MESSAGE`, escaped, the message's extra lines
    indented (so none can pass for a line of the client's own), any of `secrets` hidden."""
    code = clean(answer.code[:MAX_CODE_CHARS])
    message = answer.message[:MAX_MESSAGE_CHARS]
    for secret in secrets:
        if secret:
            message = message.replace(secret, "<token>")
            code = code.replace(secret, "<token>")
    lines = clean_lines(message).split("\n")
    return f"{answer.status} {code}: " + "\n    ".join(lines)
