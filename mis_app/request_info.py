"""What the edge knows of one request while it is handled: one typed record per request.

`RequestIdMiddleware` makes it when the request comes in and puts it in the ASGI scope's state;
every layer after it (auth, the busy shortcut, the live log, the endpoint) and the HTTP
protocol's own refusals read and write its attributes through `request_info(scope)`, and the
access line and the audit record are written from it when the request ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs
from starlette.types import Scope

if TYPE_CHECKING:  # only for the annotation: the audit module reads this one
    from mis_app.audit import AuditFacts

# How a request ended when no error code says it (the codes are mis_core.errors')
OK = "ok"  # answered in full
CLIENT_DISCONNECTED = "client_disconnected"  # the client went away before its answer
STOPPED = "stopped"  # a stop of the server cut it short

_KEY = "mis_request"  # the one key MIS sets in a scope's state


@attrs.define
class RequestInfo:
    request_id: str  # the client's X-Request-ID (or the job id): for headers and log lines
    job_id: str  # MIS's own, 32 random hex digits: keys the slot, workspace and job
    outcome: str = ""  # OK, CLIENT_DISCONNECTED, STOPPED or an error code; "" while none
    token_name: str | None = None  # the name of the token auth accepted, never the token
    audit: AuditFacts | None = None  # what its audit record needs, when it is audited


def attach(scope: Scope, info: RequestInfo) -> None:
    """Put the request's record in its scope's state, once."""
    state = scope.setdefault("state", {})
    if _KEY in state:
        raise RuntimeError("a request's record is made once, by RequestIdMiddleware")
    state[_KEY] = info


def request_info(scope: Scope) -> RequestInfo:
    """The request's record; RequestIdMiddleware has put it there before any reader runs."""
    info = find_request_info(scope)
    if info is None:
        raise RuntimeError("no request record: RequestIdMiddleware runs before this")
    return info


def find_request_info(scope: Mapping[str, object]) -> RequestInfo | None:
    """The request's record, or None before RequestIdMiddleware has made it (the HTTP
    protocol, which holds the scope too, may refuse a request before the app has run)."""
    state = scope.get("state")
    info = state.get(_KEY) if isinstance(state, dict) else None
    return info if isinstance(info, RequestInfo) else None
