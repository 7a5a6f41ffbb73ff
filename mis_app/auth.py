"""Optional bearer-token access control.

Tokens live in a file, one per line (blank lines and `#` comments ignored); the file is read
again when it changes, so adding or revoking a token needs no restart. Tokens are compared in
constant time, never logged, and refused in the URL, where proxies and browsers record them.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from mis_app.errors import error_response
from mis_core.errors import Unauthorized

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
URL_TOKEN_PARAMETERS = (b"access_token=", b"token=")
CHALLENGE = 'Bearer realm="monai-inference-service"'


class TokenFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._tokens: list[bytes] = []

    def tokens(self) -> list[bytes]:
        info = os.stat(self.path)
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            lines = self.path.read_text().splitlines()
            self._tokens = [
                line.strip().encode() for line in lines if line.strip() and not line.startswith("#")
            ]
            self._stamp = stamp
        return self._tokens

    def accepts(self, presented: bytes) -> bool:
        # compare with every token, so the time taken says nothing about which one matched
        matches = [hmac.compare_digest(presented, token) for token in self.tokens()]
        return any(matches)


class AuthMiddleware:
    def __init__(self, app: ASGIApp, tokens: TokenFile, open_paths: frozenset[str]) -> None:
        self.app = app
        self.tokens = tokens
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        problem = self._problem(scope)
        if not problem:
            await self.app(scope, receive, send)
            return
        response = error_response(Unauthorized(problem), scope["state"]["request_id"])
        response.headers["WWW-Authenticate"] = CHALLENGE
        await response(scope, receive, send)

    def _problem(self, scope: Scope) -> str:
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
        if not self.tokens.accepts(presented.strip()):
            return "The token is not valid (wrong, or revoked). Ask the administrator for one."
        return ""
