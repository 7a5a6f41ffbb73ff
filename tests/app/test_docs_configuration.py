"""The configuration page (docs/configuration.md) is the settings model: every key is listed
once, with the environment variable that sets it and a default that is the model's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from mis_app.settings import ENV_PREFIX, Settings, load_settings

PAGE = Path(__file__).parents[2] / "docs" / "configuration.md"
PROCESS_MAP = {"map": {"command": ["app"]}}  # the least a valid configuration needs
DOCKER_MAP = {"backend": "docker", "map": {"image": "app"}}  # ... without a command


def documented() -> dict[str, tuple[str, str]]:
    """key → (default as written, environment variable), from the page's tables."""
    rows = re.findall(r"^\| `([\w.]+)` \| `(.*?)` \| `(\w+)` \| .* \|$", PAGE.read_text(), re.M)
    keys = [key for key, _, _ in rows]
    assert len(keys) == len(set(keys)), "a key is listed twice"
    return {key: (default, variable) for key, default, variable in rows}


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every leaf key of the settings: a section's keys, a sub-section's, and so on."""
    keys = set()
    for name, field in model.model_fields.items():
        inner = field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            keys |= model_keys(inner, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def nested(key: str, value: Any) -> dict[str, Any]:
    result: Any = value
    for part in reversed(key.split(".")):
        result = {part: result}
    return result


def value_of(settings: Settings, key: str) -> Any:
    found: Any = settings
    for part in key.split("."):
        found = getattr(found, part)
    return found


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in extra.items():
        inner = result.get(key)
        is_section = isinstance(value, dict) and isinstance(inner, dict)
        result[key] = merged(inner, value) if is_section else value
    return result


def test_every_key_of_the_settings_is_on_the_page_and_nothing_else() -> None:
    assert set(documented()) == model_keys(Settings)


def test_each_key_s_variable_is_the_one_the_loader_reads() -> None:
    for key, (_, variable) in documented().items():
        assert variable == ENV_PREFIX + key.replace(".", "__").upper(), key


@pytest.mark.parametrize("key", sorted(documented()))
def test_the_documented_default_is_the_model_s(key: str) -> None:
    """Setting a key to what the page calls its default changes nothing."""
    written = documented()[key][0]
    value = yaml.safe_load(written)
    base = DOCKER_MAP if key == "map.command" else PROCESS_MAP
    configured = Settings.model_validate(merged(base, nested(key, value)))
    default = Settings.model_validate(base)
    assert value_of(configured, key) == value_of(default, key), written


def test_a_documented_variable_sets_its_key(tmp_path: Path) -> None:
    """The environment form works as the page writes it (one key per section kind)."""
    config = tmp_path / "mis.yaml"
    config.write_text(yaml.safe_dump(PROCESS_MAP))
    variables = {key: variable for key, (_, variable) in documented().items()}
    environ = {
        variables["server.port"]: "8081",
        variables["server.auth.protect_metrics"]: "false",
        variables["map.resources.memory"]: "1Gi",
        variables["kubernetes.payload_volume.host_path"]: "/srv/payload",
    }
    settings = load_settings(config, environ)
    assert settings.server.port == 8081
    assert settings.server.auth.protect_metrics is False
    assert settings.map.resources.memory == "1Gi"
    assert settings.kubernetes.payload_volume.host_path == "/srv/payload"
