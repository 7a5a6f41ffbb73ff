"""The web app's middleware, in its order: the request id, then the token check.

Apart from the composition root because the order is a decision of its own: the request id
first, so every answer carries it and its access line and audit record see every answer; the
token check before routing, so nothing answers a client without a valid token (the inference
routes' own busy shortcut included: mis_app.app) but the open paths.
"""

from __future__ import annotations

from starlette.middleware import Middleware

from mis_app import app as routes
from mis_app.audit import audit_trail
from mis_app.auth import AuthMiddleware, TokenFile
from mis_app.request_id import RequestIdMiddleware
from mis_app.settings import Settings


def middleware(settings: Settings) -> list[Middleware]:
    """The middleware of the app `settings` describe, in the order requests meet it."""
    audit = audit_trail(settings, routes.INFERENCE_PATHS)  # None when auditing is off
    return [
        Middleware(RequestIdMiddleware, audit=audit),
        *_auth(settings),
    ]


def _auth(settings: Settings) -> list[Middleware]:
    auth = settings.server.auth
    if auth.tokens_file is None:
        return []
    open_paths = routes.public_paths(auth.protect_metrics)
    return [Middleware(AuthMiddleware, tokens=TokenFile(auth.tokens_file), open_paths=open_paths)]
