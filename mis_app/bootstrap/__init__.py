"""The composition root: settings → adapters → the core's InferenceService → the web app.

Nothing else builds adapters or the app: the routes (`mis_app.app`) read the state
(`mis_app.state`) `create_app` stores; the command line takes what this package makes. One
module per part:

- `web`: the app and its lifespan (`create_app`);
- `adapters`: the service, the payload volume and the job backend the settings name;
- `options`: each adapter's options, from the settings keys of the same names.
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
from mis_app.bootstrap.options import (
    container_options,
    job_options,
    kubernetes_options,
    process_options,
)
from mis_app.bootstrap.web import create_app

__all__ = [
    "Backend",
    "build_backend",
    "build_service",
    "build_storage",
    "container_options",
    "create_app",
    "docker_backend",
    "job_options",
    "kubernetes_backend",
    "kubernetes_options",
    "process_backend",
    "process_options",
    "sample_job_request",
]
