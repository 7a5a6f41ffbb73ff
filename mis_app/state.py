"""What the app's endpoints and middleware share, built once by `mis_app.bootstrap`.

One typed object in place of loose attributes on `app.state`: a missing or misspelt piece is
a start-up or type-check error, not an AttributeError at the first request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:  # only for the annotations: the modules that read the state import this one
    from starlette.applications import Starlette

    from mis_app.live_log import LiveLogs
    from mis_app.metrics import Metrics
    from mis_app.upload import UploadLimits
    from mis_core.service import InferenceService

_ATTRIBUTE = "mis"  # the one attribute of `app.state` that MIS sets


@attrs.frozen
class AppState:
    service: InferenceService  # the core's, running the requests
    metrics: Metrics
    live_logs: LiveLogs  # the MAP's lines, for the client that sent the request
    upload_limits: UploadLimits
    map_summary: dict[str, object]  # the configured MAP as /v1/status shows it
    openapi: dict[str, Any]  # the API's description, served at /openapi.json


def install(app: Starlette, state: AppState) -> None:
    """Store the state on the app, once."""
    if hasattr(app.state, _ATTRIBUTE):
        raise RuntimeError("the app's state is set once, by mis_app.bootstrap.create_app")
    setattr(app.state, _ATTRIBUTE, state)


def app_state(app: Any) -> AppState:
    """The state `install` stored on `app` (a Starlette app; `request.app` or `scope["app"]`)."""
    state = getattr(app.state, _ATTRIBUTE)
    assert isinstance(state, AppState)
    return state
