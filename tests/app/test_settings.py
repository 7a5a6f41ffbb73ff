"""The configuration file, environment overrides, and validation messages that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mis_app.settings import SettingsError, load_settings, with_map_defaults
from tests.harness.command import mis_command


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mis.yaml"
    path.write_text(text)
    return path


MINIMAL = "map:\n  command: [app, -i, '{input_path}']\n"


def test_defaults_follow_the_spec(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), {})
    assert settings.backend == "process"
    assert settings.server.max_concurrent == 1
    assert settings.map.timeout_seconds == 50
    assert settings.map.input_path == "/var/monai/input"
    assert settings.map.resources.memory == "8Gi"
    assert settings.server.workers == 0  # auto


def test_environment_overrides_any_key(tmp_path: Path) -> None:
    env = {
        "MIS_MAP__TIMEOUT_SECONDS": "5",
        "MIS_SERVER__PORT": "9001",
        "MIS_MAP__RESOURCES__GPU": "1",
        "MIS_MAP__ARGS": '["--fast", "--seed=1"]',
        "MIS_SERVER__MAX_UPLOAD_BYTES": "2GiB",
        "MIS_REQUIRE_ALL": "1",  # not configuration: ignored
    }
    settings = load_settings(write(tmp_path, MINIMAL), env)
    assert settings.map.timeout_seconds == 5
    assert settings.server.port == 9001
    assert settings.map.resources.gpu == 1
    assert settings.map.args == ["--fast", "--seed=1"]
    assert int(settings.server.max_upload_bytes) == 2 * 1024**3


def test_mis_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "server:\n  port: 8123\n")
    assert load_settings(None, {"MIS_CONFIG": str(path)}).server.port == 8123


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (MINIMAL + "server:\n  prot: 80\n", {}, "server.prot: unknown key"),
        (
            MINIMAL + "map:\n  command: [a]\n  timeout_seconds: 0\n",
            {},
            "map.timeout_seconds: Input should be greater than 0",
        ),
        (MINIMAL, {"MIS_MAP__RESOURCES__GPU": "-1"}, "map.resources.gpu"),
        (MINIMAL, {"MIS_MAP__RESOURCES__MEMORY": "8 gigs"}, "map.resources.memory"),
        ("map:\n  command: []\n", {}, "map.command: the process backend needs the MAP's command"),
        (MINIMAL + "backend: kubernetes\n", {}, "map.image: the kubernetes backend needs"),
        (
            MINIMAL + "backend: docker-swarm\n",
            {},
            "backend: Input should be 'process', 'kubernetes' or 'docker'",
        ),
        ("backend: docker\n", {}, "map.image: the docker backend needs the MAP's image"),
        (MINIMAL + "map:\n  from_manifest: true\n", {}, "map.image: map.from_manifest reads"),
        (MINIMAL, {"MIS_DOCKER__URL": "/var/run/docker.sock"}, "docker.url: String should match"),
        (MINIMAL, {"MIS_SERVER__WORKERS": "-1"}, "server.workers"),
        ("map: [oops\n", {}, ": not valid YAML"),
        ("- a\n- b\n", {}, "must be a mapping"),
    ],
)
def test_invalid_configuration_names_the_key(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, text), env)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("env", "key", "variable"),
    [
        ({"MIS_SERVER__PORT": "eighty"}, "server.port", "MIS_SERVER__PORT"),
        (
            {"MIS_SERVER__SHUTDOWN_GRACE_SECONDS": ".inf"},
            "server.shutdown_grace_seconds",
            "MIS_SERVER__SHUTDOWN_GRACE_SECONDS",
        ),
        ({"MIS_MAP__TIMEOUT_SECONDS": "nan"}, "map.timeout_seconds", "MIS_MAP__TIMEOUT_SECONDS"),
        ({"MIS_MAP__RESOURCES__GPU": "-1"}, "map.resources.gpu", "MIS_MAP__RESOURCES__GPU"),
        ({"MIS_MAP__RESOURCES": "{gpu: -1}"}, "map.resources.gpu", "MIS_MAP__RESOURCES"),
        (
            {"MIS_SERVER__MAX_HEADER_BYTES": "12"},
            "server.max_header_bytes",
            "MIS_SERVER__MAX_HEADER_BYTES",
        ),
    ],
)
def test_a_bad_value_from_the_environment_is_reported_as_coming_from_its_variable(
    tmp_path: Path, env: dict[str, str], key: str, variable: str
) -> None:
    path = write(tmp_path, MINIMAL + "server:\n  port: 8000\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path, env)
    message = str(info.value)
    assert f"  {key}: " in message
    assert f"(the value comes from the environment variable {variable})" in message
    assert str(path) not in message  # the file is not to blame


def test_a_bad_value_from_the_file_is_reported_as_coming_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "server:\n  port: eighty\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path, {"MIS_SERVER__HOST": "0.0.0.0"})
    assert f"invalid configuration in {path}:" in str(info.value)
    assert "environment variable" not in str(info.value)


def test_an_environment_value_that_is_not_yaml_names_its_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="MIS_MAP__ARGS: not valid YAML"):
        load_settings(write(tmp_path, MINIMAL), {"MIS_MAP__ARGS": "[unclosed"})


def test_shutdown_grace_defaults_to_the_map_timeout_and_30_seconds(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), {"MIS_MAP__TIMEOUT_SECONDS": "70"})
    assert settings.shutdown_grace_seconds == 100
    assert settings.server.shutdown_grace_seconds is None  # `mis config check` shows it unset
    explicit = load_settings(write(tmp_path, MINIMAL), {"MIS_SERVER__SHUTDOWN_GRACE_SECONDS": "5"})
    assert explicit.shutdown_grace_seconds == 5


def test_manifest_values_fill_only_the_keys_the_file_and_environment_leave_unset(
    tmp_path: Path,
) -> None:
    text = "backend: docker\nmap:\n  image: m:1\n  resources:\n    memory: 1Gi\n"
    settings = load_settings(write(tmp_path, text), {"MIS_MAP__TIMEOUT_SECONDS": "9"})
    manifest = {
        "command": ["python3", "app.py"],
        "input_path": "/var/holoscan/input",
        "timeout_seconds": 120.0,
        "resources": {"cpu": "2", "memory": "4Gi", "gpu": 1},
    }
    merged = with_map_defaults(settings, manifest).map
    assert merged.command == ["python3", "app.py"]
    assert merged.input_path == "/var/holoscan/input"
    assert merged.output_path == "/var/monai/output"  # neither set it: the default stays
    assert merged.timeout_seconds == 9  # the environment set it
    assert merged.resources.memory == "1Gi"  # the file set it
    assert (merged.resources.cpu, merged.resources.gpu) == ("2", 1)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read the configuration file"):
        load_settings(tmp_path / "absent.yaml", {})


def test_config_check_prints_the_effective_configuration(tmp_path: Path) -> None:
    result = mis_command("config", "check", "--config", str(write(tmp_path, MINIMAL)))
    assert result.returncode == 0, result.stderr
    effective = yaml.safe_load(result.stdout)
    assert effective["map"]["command"] == ["app", "-i", "{input_path}"]
    assert effective["server"]["max_concurrent"] == 1


@pytest.mark.parametrize(
    ("tokens", "problem"),
    [
        ("a token with spaces\n", "has a malformed line 1"),
        ("# only a comment\n", "holds no token"),
    ],
)
def test_config_check_warns_once_about_a_tokens_file_that_lets_no_one_in(
    tmp_path: Path, tokens: str, problem: str
) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(tokens)
    config = f"server:\n  auth:\n    tokens_file: {tokens_file}\n" + MINIMAL
    result = mis_command("config", "check", "--config", str(write(tmp_path, config)))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(problem) == 1, result.stderr
    assert "every request will be refused" in result.stderr
    assert result.stderr.rstrip().endswith("warning(s) above")
    assert "a token with spaces" not in result.stderr  # where the line is wrong, never what


def test_config_check_refuses_bad_configuration_with_exit_code_2(tmp_path: Path) -> None:
    result = mis_command(
        "config",
        "check",
        "--config",
        str(write(tmp_path, MINIMAL + "map:\n  command: [a]\n  timout: 3\n")),
    )
    assert result.returncode == 2
    assert "map.timout: unknown key" in result.stderr


def test_serve_refuses_bad_configuration_before_listening(tmp_path: Path) -> None:
    result = mis_command(
        "serve", "--config", str(write(tmp_path, "server:\n  port: 70000\n" + MINIMAL))
    )
    assert result.returncode == 2
    assert "server.port" in result.stderr
