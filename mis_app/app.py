"""The HTTP routes: endpoints reading the app's state (`mis_app.state`), which
`mis_app.bootstrap` builds.

The inference routes have a plain ASGI endpoint (mis_app.inference), wrapped in their own
middleware: the busy shortcut, then the live-log capture that keeps the MAP's lines for their
sender; the others answer a Request.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from mis_app.errors import ROUTING_CODE_BY_STATUS, coded_response, error_response, internal_error
from mis_app.inference import BusyShortcut, InferenceEndpoint
from mis_app.live_log import LiveLogCapture, log_stream
from mis_app.metrics import Metrics
from mis_app.openapi_schema import SERVICE_STATE
from mis_app.request_info import find_request_info, request_info
from mis_app.state import app_state
from mis_core.errors import BackendUnavailable
from mis_core.service import InferenceService

STATIC = Path(__file__).parent / "static"  # the page at /: shipped in the package, no CDN
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# with and without the trailing slash: answered, never redirected (a redirect would be built
# from the client's Host header)
INFERENCE_PATHS = frozenset({"/v1/inference", "/v1/inference/", "/upload", "/upload/"})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    try:
        await app_state(request.app).service.check_ready()
    except BackendUnavailable as error:
        return error_response(error, request_info(request.scope).request_id)
    return JSONResponse({"status": "ready"})


async def status(request: Request) -> Response:
    state = app_state(request.app)
    now = state.service.status()
    return JSONResponse(
        {
            "state": SERVICE_STATE[now.busy],
            "in_flight": now.in_flight,
            "capacity": now.capacity,
            "running": [{"elapsed_seconds": round(seconds, 3)} for seconds in now.running],
            "deleting": now.deleting,
            "timeout_seconds": now.timeout_seconds,
            "map": state.map_summary,
        }
    )


async def metrics_text(request: Request) -> Response:
    registry = app_state(request.app).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


async def openapi_json(request: Request) -> Response:
    return JSONResponse(app_state(request.app).openapi)


async def http_error(request: Request, exc: Exception) -> Response:
    """Routing's own answers (no such path or method) in the catalogue's words; any other
    HTTPException would be a fault of MIS."""
    assert isinstance(exc, HTTPException)
    code = ROUTING_CODE_BY_STATUS.get(exc.status_code)
    if code is None:
        return await server_error(request, exc)
    return coded_response(code, exc.detail, request_info(request.scope).request_id, exc.headers)


def routes(service: InferenceService, metrics: Metrics) -> list[BaseRoute]:
    """The app's routes. The inference routes refuse at once while `service` is busy (a burst
    of requests costs little more than its answers), and only then open the live log (only
    there: the MAP runs for these)."""
    busy = Middleware(BusyShortcut, service=service, metrics=metrics)
    inference = [busy, Middleware(LiveLogCapture)]
    return [
        *(
            Route(path, InferenceEndpoint(), methods=["POST"], middleware=inference)
            for path in sorted(INFERENCE_PATHS)
        ),
        Route("/v1/inference/{request_id}/log", log_stream),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/v1/status", status),
        Route("/metrics", metrics_text),
        Route("/openapi.json", openapi_json),
        Route("/", page),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


async def server_error(request: Request, exc: Exception) -> Response:
    """An unexpected error outside the inference routes: the JSON error body, with the id."""
    info = find_request_info(request.scope)
    request_id = info.request_id if info is not None else "-"
    response = error_response(internal_error(), request_id)
    response.headers["x-request-id"] = request_id  # it never reaches the request id middleware
    return response


exception_handlers = {HTTPException: http_error, Exception: server_error}


def public_paths(protect_metrics: bool) -> frozenset[str]:
    """What auth leaves open, beside the routes above: the probes (a kubelet sends no token),
    the API's description, the page (it asks for the token itself), and the metrics unless
    they are protected."""
    page = {"/", *(f"/static/{file.name}" for file in STATIC.iterdir())}
    metrics = set() if protect_metrics else {"/metrics"}
    return frozenset({"/healthz", "/readyz", "/openapi.json", *page, *metrics})
