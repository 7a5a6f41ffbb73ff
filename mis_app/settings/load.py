"""Reading the configuration: the YAML file, `MIS_<SECTION>__<KEY>` overrides, and messages
that name each bad key (and the variable that set it)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mis_app import config_yaml
from mis_app.settings.docker import DockerSettings
from mis_app.settings.root import Settings
from mis_app.settings.section import Section, SettingsError

ENV_PREFIX = "MIS_"
CONFIG_ENV = "MIS_CONFIG"


class _EngineOnly(Section):
    """The `docker` section alone, for a tool that needs nothing else of a configuration that
    may not serve yet (`mis map inspect`, run while the map section is being written)."""

    docker: DockerSettings = DockerSettings()


def with_map_defaults(settings: Settings, defaults: Mapping[str, Any]) -> Settings:
    """`settings` with `defaults` (map keys, as a MAP manifest declares them) in the keys that
    neither the file nor the environment set."""
    data = settings.model_dump()
    current = settings.map
    for key, value in defaults.items():
        if key == "resources":
            unset = value.keys() - current.resources.model_fields_set
            data["map"]["resources"].update({name: value[name] for name in unset})
        elif key not in current.model_fields_set:
            data["map"][key] = value
    try:
        result = Settings.model_validate(data)
    except ValidationError as exc:
        described = _describe(exc, None)
        raise SettingsError(described.replace(":", " with the MAP manifest's values:", 1)) from None
    result._source = settings.source
    return result


def load_settings(path: Path | None, environ: Mapping[str, str]) -> Settings:
    """Read `path` (or the file `MIS_CONFIG` names; none means the defaults) and apply overrides."""
    path = _config_path(path, environ)
    data, overrides = _read(path, environ)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, path, overrides)) from None
    settings._source = path
    return settings


def load_docker_settings(path: Path | None, environ: Mapping[str, str]) -> DockerSettings:
    """The `docker` section, read as `load_settings` reads it; the other sections are not
    checked."""
    path = _config_path(path, environ)
    data, overrides = _read(path, environ)
    try:
        return _EngineOnly.model_validate({"docker": data.get("docker", {})}).docker
    except ValidationError as exc:
        raise SettingsError(_describe(exc, path, overrides)) from None


def _config_path(path: Path | None, environ: Mapping[str, str]) -> Path | None:
    """`path`, else the file `MIS_CONFIG` names, else None (the defaults)."""
    if path is None and environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return path


def _read(
    path: Path | None, environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """The file's mapping with the overrides applied, and which variable set which key."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = config_yaml.read_file(path) or {}
        except OSError as exc:
            raise SettingsError(
                f"cannot read the configuration file {path}: {exc.strerror}"
            ) from None
        except config_yaml.ConfigYamlError as exc:
            raise SettingsError(f"{path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise SettingsError(f"{path}: the configuration must be a mapping of sections")
        data = loaded
    return data, _apply_overrides(data, environ)


def _apply_overrides(
    data: dict[str, Any], environ: Mapping[str, str]
) -> dict[tuple[str, ...], str]:
    """`MIS_MAP__TIMEOUT_SECONDS=5` sets map.timeout_seconds; `MIS_BACKEND` sets backend.

    A value that starts with `[` or `{` is read as YAML (a list or mapping); anything else
    stays a string for validation to convert. Returns which variable set which key, so that a
    bad value is reported as coming from the variable, not from the file.
    """
    overrides: dict[tuple[str, ...], str] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        keys = name[len(ENV_PREFIX) :].lower().split("__")
        if len(keys) == 1 and keys[0] not in Settings.model_fields:
            continue  # MIS_REQUIRE_ALL and friends are not configuration
        target = data
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise SettingsError(f"{name}: {'.'.join(keys[:-1])} is not a section")
        try:
            parsed = config_yaml.parse(value) if value.lstrip()[:1] in ("[", "{") else value
        except config_yaml.ConfigYamlError as exc:
            raise SettingsError(f"{name}: {exc}") from None
        target[keys[-1]] = parsed
        overrides[tuple(keys)] = name
    return overrides


def _describe(
    exc: ValidationError,
    path: Path | None,
    overrides: Mapping[tuple[str, ...], str] | None = None,
) -> str:
    lines = []
    from_file = False
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        key = ".".join(loc)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and section)"
        variable = _source(loc, overrides or {})
        if variable:
            message += f" (the value comes from the environment variable {variable})"
        from_file = from_file or not variable
        lines.append(f"  {key}: {message}" if key else f"  {message}")
    where = f" in {path}" if path and from_file else ""
    return "\n".join([f"invalid configuration{where}:", *lines])


def _source(loc: tuple[str, ...], overrides: Mapping[tuple[str, ...], str]) -> str:
    """The variable that set `loc`, or a section above it."""
    for length in range(len(loc), 0, -1):
        if loc[:length] in overrides:
            return overrides[loc[:length]]
    return ""
