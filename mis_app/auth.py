"""Optional bearer-token access control.

Tokens live in a file, one per line (the format is mis_app.token_format's). The file is read
again whenever it may have changed: a new inode (a Kubernetes Secret's symlink swap, a `mv`
over it), a new change time (a rewrite in place, even one that puts the size and modification
time back), or, as a backstop, every few seconds. Adding or revoking a token needs no restart.

It fails closed: a file that goes missing, becomes unreadable, holds a malformed line, or is
no regular file of at most the format's size (a FIFO, a link to /dev/zero: read on the event
loop, either would stop the whole service) keeps
the tokens last read from it (and says so in the log, once per change), and with none ever
read every request is refused with a JSON 503. Tokens are compared in constant time, never
logged, and refused in the URL, where proxies and browsers record them.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from loguru import logger
from starlette.types import ASGIApp, Receive, Scope, Send

from mis_app.errors import error_response
from mis_app.request_info import RequestInfo, request_info
from mis_app.token_format import MAX_FILE_BYTES, MalformedTokens, parse_named_tokens
from mis_core.errors import BackendUnavailable, Unauthorized

URL_TOKEN_PARAMETERS = (b"access_token=", b"token=")
CHALLENGE = 'Bearer realm="monai-inference-service"'
REREAD_SECONDS = 5.0


class TokensUnavailable(Exception):
    """No usable token set: the file could never be read, or never held a valid one."""


class TokenFile:
    def __init__(
        self,
        path: Path,
        reread_seconds: float = REREAD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.reread_seconds = reread_seconds
        self._clock = clock
        self._stamp: tuple[int, ...] | None = None
        self._read_at = float("-inf")
        self._tokens: list[tuple[str, bytes]] | None = None  # (name, token)
        self._problem = ""
        with contextlib.suppress(TokensUnavailable):
            self.tokens()  # a broken file is logged at start-up, not at the first request

    def tokens(self) -> list[tuple[str, bytes]]:
        """The current (name, token) pairs; raises TokensUnavailable when there has never
        been a good set."""
        now = self._clock()
        try:
            info = os.stat(self.path)
        except OSError as exc:
            self._keep(f"cannot be read ({exc.strerror})")
        else:
            stamp = (info.st_dev, info.st_ino, info.st_ctime_ns, info.st_mtime_ns, info.st_size)
            if stamp != self._stamp or now - self._read_at >= self.reread_seconds:
                self._read(stamp)
                self._read_at = now
        if self._tokens is None:
            raise TokensUnavailable(self._problem)
        return self._tokens

    def _read(self, stamp: tuple[int, ...]) -> None:
        try:
            data = _read_small_file(self.path)
        except OSError as exc:
            self._keep(f"cannot be read ({exc.strerror})")
            return
        if data is None:
            self._keep(f"is not a regular file of at most {MAX_FILE_BYTES // 1024 // 1024} MiB")
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self._keep("is not UTF-8 text")
            return
        try:
            tokens = [(name, token.encode()) for name, token in parse_named_tokens(text)]
        except MalformedTokens as exc:
            self._keep(str(exc))
            return
        if self._problem or self._tokens is None:
            logger.info("read {} token(s) from the tokens file {}", len(tokens), self.path)
        self._tokens, self._problem, self._stamp = tokens, "", stamp

    def _keep(self, problem: str) -> None:
        """Keep the last good set (if any), telling the log once per new problem."""
        problem = f"the tokens file {self.path} {problem}"
        if problem != self._problem:
            kept = (
                f"keeping the {len(self._tokens)} token(s) read before"
                if self._tokens is not None
                else "refusing every request until it can be read"
            )
            logger.error("{}; {}", problem, kept)
        self._problem = problem
        self._stamp = None  # look again at the next request

    def accepts(self, presented: bytes) -> bool:
        return self.match(presented) is not None

    def match(self, presented: bytes) -> str | None:
        """The name of the token `presented` is, or None."""
        # compare with every token, so the time taken says nothing about which one matched
        found = None
        for name, token in self.tokens():
            if hmac.compare_digest(presented, token):
                found = name
        return found


def _read_small_file(path: Path) -> bytes | None:
    """The file's bytes; None when it is no regular file or is over MAX_FILE_BYTES. Opened
    without blocking (a FIFO with no writer) and never read past the limit."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as source:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = source.read(MAX_FILE_BYTES + 1)
    return data if len(data) <= MAX_FILE_BYTES else None


class AuthMiddleware:
    def __init__(self, app: ASGIApp, tokens: TokenFile, open_paths: frozenset[str]) -> None:
        self.app = app
        self.tokens = tokens
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        info = request_info(scope)
        try:
            problem = self._problem(scope, info)
        except TokensUnavailable:
            unavailable = BackendUnavailable(
                "Authentication is on but the service cannot read its tokens file; nothing can "
                "be let in until it can. Ask the administrator to check server.auth.tokens_file."
            )
            info.outcome = unavailable.code  # for the access line and audit record
            await error_response(unavailable, info.request_id)(scope, receive, send)
            return
        if not problem:
            await self.app(scope, receive, send)
            return
        refusal = Unauthorized(problem)
        info.outcome = refusal.code
        response = error_response(refusal, info.request_id)
        response.headers["WWW-Authenticate"] = CHALLENGE
        await response(scope, receive, send)

    def _problem(self, scope: Scope, info: RequestInfo) -> str:
        query = scope.get("query_string", b"")
        if any(query.startswith(p) or b"&" + p in query for p in URL_TOKEN_PARAMETERS):
            return (
                "Tokens are refused in the URL, where logs and browser history keep them. Send "
                "it as a header: Authorization: Bearer <token>."
            )
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, presented = header.partition(b" ")
        if scheme.lower() != b"bearer" or not presented.strip():
            return "This service needs a token: send Authorization: Bearer <token>."
        name = self.tokens.match(presented.strip())
        if name is None:
            return "The token is not valid (wrong, or revoked). Ask the administrator for one."
        info.token_name = name  # for the audit record; never the token
        return ""
