"""Every default is stated once: where the settings state one, what takes the value has none
of its own; the `mis` command's defaults are the ones its options classes and the settings
state; `mis map inspect` reads the engine's address as `mis serve` does."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import mis_adapters.zip
from mis_adapters.cpus import worker_count
from mis_adapters.storage import archive
from mis_app import cli
from mis_app.client import UNPACK_LIMITS
from mis_app.infer_options import InferOptions
from mis_app.settings import DockerSettings, ServerSettings
from mis_app.upload import UploadLimits
from mis_core.gate import AdmissionGate

ZIP_FUNCTIONS = [
    getattr(mis_adapters.zip, name)
    for name in mis_adapters.zip.__all__
    if inspect.isfunction(getattr(mis_adapters.zip, name))
]


@pytest.mark.parametrize(
    "taker",
    [AdmissionGate, UploadLimits, worker_count, archive.extract_archive, *ZIP_FUNCTIONS],
    ids=lambda taker: f"{taker.__module__}.{taker.__qualname__}",
)
def test_what_takes_a_setting_has_no_default_of_its_own(taker: Callable[..., Any]) -> None:
    defaults = [
        name
        for name, parameter in inspect.signature(taker).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    ]
    assert defaults == []


def test_the_zip_package_offers_functions_for_the_check_above_to_hold() -> None:
    assert {function.__name__ for function in ZIP_FUNCTIONS} >= {"zip_folder", "extract_archive"}


def test_mis_infer_takes_the_options_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIS_URL", raising=False)
    parsed = cli._parser().parse_args(["infer", "study.zip"])
    defaults = InferOptions(source=Path("study.zip"))
    assert (parsed.url, parsed.retries, parsed.max_wait) == (
        defaults.url,
        defaults.retries,
        defaults.max_wait_seconds,
    )


def test_mis_infer_goes_where_mis_serve_listens_by_default() -> None:
    server = ServerSettings()
    assert InferOptions(source=Path("study.zip")).url == f"http://{server.host}:{server.port}"


def test_mis_infer_unpacks_within_the_servers_default_limits() -> None:
    server = ServerSettings()
    assert (
        UNPACK_LIMITS.max_extracted_bytes,
        UNPACK_LIMITS.max_entries,
        UNPACK_LIMITS.max_compression_ratio,
    ) == (server.max_extracted_bytes, server.max_entries, server.max_compression_ratio)


@pytest.fixture
def inspected(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The engine address each `mis map inspect` asks (no engine is reached)."""
    asked: list[str] = []
    monkeypatch.setattr(cli, "_read_manifest", lambda url, image: asked.append(url))
    for name in ("MIS_CONFIG", "MIS_DOCKER__URL"):
        monkeypatch.delenv(name, raising=False)
    return asked


def test_mis_map_inspect_reads_the_engine_address_as_mis_serve_does(
    inspected: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "mis.yaml"
    # a configuration being written: no map yet, which `mis serve` would refuse
    config.write_text("docker:\n  url: unix:///from/the/file.sock\n")
    cli.main(["map", "inspect", "map:1"])
    cli.main(["map", "inspect", "map:1", "--config", str(config)])
    monkeypatch.setenv("MIS_CONFIG", str(config))
    cli.main(["map", "inspect", "map:1"])
    monkeypatch.setenv("MIS_DOCKER__URL", "unix:///from/the/environment.sock")
    cli.main(["map", "inspect", "map:1"])
    cli.main(["map", "inspect", "map:1", "--url", "unix:///from/the/command/line.sock"])
    assert inspected == [
        DockerSettings().url,
        "unix:///from/the/file.sock",
        "unix:///from/the/file.sock",
        "unix:///from/the/environment.sock",
        "unix:///from/the/command/line.sock",
    ]


def test_mis_map_inspect_says_which_docker_key_is_wrong(
    inspected: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "mis.yaml"
    config.write_text("docker:\n  url: ftp://engine\n")
    assert cli.main(["map", "inspect", "map:1", "--config", str(config)]) == 2
    assert "docker.url: String should match pattern" in capsys.readouterr().err
    assert inspected == []
