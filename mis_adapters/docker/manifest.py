"""What a MAP says about itself: its application and package manifests.

A MONAI Application Package carries `/etc/monai/app.json` (command, input and output folders,
timeout) and `/etc/monai/pkg.json` (resources); Holoscan packages carry the same files under
`/etc/holoscan/`. Folders in app.json are relative to its `workingDirectory`.
"""

from __future__ import annotations

import json
import posixpath
import shlex
import uuid
from typing import Any

import attrs

from mis_adapters.docker.engine import DockerEngine, EngineError

MANIFEST_FOLDERS = ("/etc/monai", "/etc/holoscan")


class ManifestError(Exception):
    """The image has no manifest, or one that cannot be read."""


@attrs.frozen
class MapManifest:
    source: str  # the folder the manifests came from
    command: tuple[str, ...] = ()
    input_path: str = ""
    output_path: str = ""
    timeout_seconds: float = 0.0
    cpu: str = ""
    memory: str = ""
    gpu: int | None = None
    environment: dict[str, str] = attrs.field(factory=dict)

    def map_settings(self) -> dict[str, Any]:
        """The manifest as `map` configuration keys; what it does not declare is left out."""
        values: dict[str, Any] = {
            "command": list(self.command),
            "input_path": self.input_path,
            "output_path": self.output_path,
            "timeout_seconds": self.timeout_seconds,
        }
        resources = {"cpu": self.cpu, "memory": self.memory, "gpu": self.gpu}
        values["resources"] = {key: value for key, value in resources.items() if value}
        return {key: value for key, value in values.items() if value}


def parse_manifest(source: str, app: dict[str, Any], pkg: dict[str, Any]) -> MapManifest:
    workdir = str(app.get("workingDirectory") or "/")
    resources = pkg.get("resources") or {}
    gpu = resources.get("gpu")
    return MapManifest(
        source=source,
        command=_command(app.get("command")),
        input_path=_folder(workdir, (app.get("input") or {}).get("path")),
        output_path=_folder(workdir, (app.get("output") or {}).get("path")),
        timeout_seconds=float(app.get("timeout") or 0),
        cpu=str(resources["cpu"]) if resources.get("cpu") else "",
        memory=str(resources.get("memory") or ""),
        gpu=int(gpu) if gpu is not None else None,
        environment={str(k): str(v) for k, v in (app.get("environment") or {}).items()},
    )


async def read_manifest(engine: DockerEngine, image: str) -> MapManifest:
    """Read the manifests out of `image` through a container that is created but never run."""
    name = f"mis-inspect-{uuid.uuid4().hex}"
    try:
        container = await engine.create_container(name, {"Image": image, "Entrypoint": ["true"]})
    except EngineError as exc:
        if exc.status == 404:
            raise ManifestError(f"the image {image} is not in the container engine") from None
        raise ManifestError(f"cannot open the image {image}: {exc.message}") from None
    try:
        for folder in MANIFEST_FOLDERS:
            app = await engine.read_file(container, f"{folder}/app.json")
            if app is None:
                continue
            pkg = await engine.read_file(container, f"{folder}/pkg.json")
            return parse_manifest(
                folder, _json(folder, "app.json", app), _json(folder, "pkg.json", pkg)
            )
    except EngineError as exc:
        raise ManifestError(f"cannot read the manifest of {image}: {exc.message}") from None
    finally:
        await engine.remove(container)
    raise ManifestError(
        f"{image} has no MAP manifest ({' or '.join(f'{f}/app.json' for f in MANIFEST_FOLDERS)})"
    )


def _json(folder: str, name: str, data: bytes | None) -> dict[str, Any]:
    if data is None:
        return {}
    try:
        loaded = json.loads(data)
    except ValueError as exc:
        raise ManifestError(f"{folder}/{name} is not valid JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise ManifestError(f"{folder}/{name} is not a JSON object")
    return loaded


def _command(value: Any) -> tuple[str, ...]:
    """app.json's command is a JSON list, or (as the packagers write it) a string holding one."""
    if isinstance(value, list):
        return tuple(str(part) for part in value)
    if not isinstance(value, str) or not value.strip():
        return ()
    try:
        parsed = json.loads(value)
    except ValueError:
        return tuple(shlex.split(value))
    return _command(parsed) if isinstance(parsed, list) else (value,)


def _folder(workdir: str, path: Any) -> str:
    if not isinstance(path, str) or not path:
        return ""
    return posixpath.normpath(posixpath.join(workdir, path))
