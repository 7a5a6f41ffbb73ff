"""What a MAP image's manifest declares (its command, folders, resources), read through the
container engine at docker.url: into the settings when `map.from_manifest` asks, and for
`mis map inspect`."""

from __future__ import annotations

import anyio

from mis_adapters.docker.engine import DockerEngine
from mis_adapters.docker.manifest import ManifestError, MapManifest, read_manifest
from mis_app.settings import Settings, SettingsError, with_map_defaults
from mis_core.errors import BackendUnavailable


def with_map_manifest(settings: Settings) -> Settings:
    """`settings`, with what the MAP image's manifest declares in the map keys neither the file
    nor the environment set when `map.from_manifest` asks; SettingsError says what failed."""
    if not settings.map.from_manifest:
        return settings
    manifest = map_manifest(settings.docker.url, settings.map.image)
    return with_map_defaults(settings, manifest.map_settings())


def map_manifest(url: str, image: str) -> MapManifest:
    """The manifest of `image`, through the engine at `url`; SettingsError says why it could
    not be read."""

    async def read() -> MapManifest:
        engine = DockerEngine(url)
        try:
            return await read_manifest(engine, image)
        finally:
            await engine.close()

    try:
        return anyio.run(read)
    except (ManifestError, BackendUnavailable) as exc:
        raise SettingsError(f"cannot read the MAP manifest: {exc}") from None
