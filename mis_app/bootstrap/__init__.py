"""The composition root: settings → adapters → the core's InferenceService → the web app, and
how the server takes its connections.

Nothing else builds adapters, the app or what the server runs: the routes (`mis_app.app`) read
the state (`mis_app.state`) `create_app` stores; the command line and `mis_app.serve` take what
this package makes. One module per part:

- `web`: the app and its lifespan (`create_app`), and the whole server (`build_server`);
- `adapters`: the service, the payload volume and the job backend the settings name;
- `options`: each adapter's options, from the settings keys of the same names;
- `connections`: how the server takes connections (bounds, budget, TLS);
- `manifest`: what a MAP image's manifest declares, into the settings.
"""

from mis_app.bootstrap.adapters import (
    Backend,
    build_backend,
    build_service,
    build_storage,
    docker_backend,
    kubernetes_backend,
    process_backend,
    sample_job_request,
)
from mis_app.bootstrap.connections import TlsUnusable
from mis_app.bootstrap.manifest import map_manifest
from mis_app.bootstrap.options import (
    container_options,
    job_options,
    kubernetes_options,
    process_options,
)
from mis_app.bootstrap.web import build_server, create_app

__all__ = [
    "Backend",
    "TlsUnusable",
    "build_backend",
    "build_server",
    "build_service",
    "build_storage",
    "container_options",
    "create_app",
    "docker_backend",
    "job_options",
    "kubernetes_backend",
    "kubernetes_options",
    "map_manifest",
    "process_backend",
    "process_options",
    "sample_job_request",
]
