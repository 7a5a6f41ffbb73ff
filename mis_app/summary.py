"""The configuration as MIS tells it: at start-up in its log, and in /v1/status."""

from __future__ import annotations

from loguru import logger

from mis_app.map_folders import map_folders
from mis_app.settings import Settings


def map_summary(settings: Settings) -> dict[str, object]:
    """The configured MAP as /v1/status shows it: no environment values (they may be secrets)."""
    spec = settings.map.spec()
    input_path, output_path = map_folders(settings)
    return {
        "backend": settings.backend,
        "image": spec.image,
        "command": [*spec.command, *spec.args],
        "input_path": input_path,
        "output_path": output_path,
        "resources": {
            "cpu": str(spec.resources.cpu),
            "memory": str(spec.resources.memory),
            "gpu": spec.resources.gpu,
        },
        "timeout_seconds": spec.timeout_seconds,
    }


def log_configuration(settings: Settings) -> None:
    spec = settings.map
    logger.info(
        "serving MAP with the {} backend: image={!r} command={} args={} env keys={} "
        "cpu={} memory={} gpu={} timeout={:g}s input_path={} output_path={}",
        settings.backend,
        spec.image,
        spec.command,
        spec.args,
        sorted(spec.env),  # values may be secrets
        spec.resources.cpu,
        spec.resources.memory,
        spec.resources.gpu,
        spec.timeout_seconds,
        *map_folders(settings),
    )
    logger.info(
        "payload_dir={} max_concurrent={} max_upload_bytes={} max_extracted_bytes={}",
        settings.server.payload_dir,
        settings.server.max_concurrent,
        int(settings.server.max_upload_bytes),
        int(settings.server.max_extracted_bytes),
    )
    if settings.backend == "docker":
        docker = settings.docker
        logger.info(
            "container engine {} (instance {}, pull {}, network {})",
            docker.url,
            docker.instance,
            docker.pull,
            docker.network,
        )
