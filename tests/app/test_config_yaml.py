"""Configuration YAML cannot explode: aliases, huge files and deep nesting are refused.

Through the real `mis config check`, run as a subprocess with a 1 GiB address-space limit:
an alias bomb that would stand for billions of values must be refused at once, in little
memory, with a message naming the file or the variable.
"""

from __future__ import annotations

import itertools
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from mis_app.config_yaml import MAX_BYTES, MAX_DEPTH
from mis_app.settings import SettingsError, load_settings
from tests.harness.command import mis_command

MINIMAL = "map:\n  command: [app, -i, '{input_path}']\n"
LEVELS = "abcdefghi"


def alias_bomb(flow: bool) -> str:
    """Nine levels of nine aliases each: 9**9 (387 million) strings in under 1 KiB, under
    kubernetes.affinity, which takes any mapping: printing the effective configuration would
    write every one of them out."""
    levels = [f"{LEVELS[0]}: &{LEVELS[0]} [{', '.join(['lol'] * 9)}]"]
    for previous, name in itertools.pairwise(LEVELS):
        levels.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    if flow:
        return "{" + ", ".join(levels) + "}"
    return MINIMAL + "kubernetes:\n  affinity:\n" + "".join(f"    {level}\n" for level in levels)


def _limit_memory() -> None:
    limit = 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def config_check(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MIS_")}
    return mis_command(
        "config",
        "check",
        "--config",
        config,
        env={**environ, **env},
        timeout=5,
        preexec_fn=_limit_memory,
    )


def test_an_alias_bomb_file_is_refused_by_config_check(tmp_path: Path) -> None:
    config = tmp_path / "bomb.yaml"
    config.write_text(alias_bomb(flow=False))
    assert len(config.read_bytes()) < 1024
    result = config_check(config)
    assert result.returncode == 2, result.stderr
    assert f"{config}: a YAML anchor or alias (line 5, column 8)" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_alias_bomb_in_an_environment_value_is_refused_by_config_check(
    tmp_path: Path,
) -> None:
    config = tmp_path / "mis.yaml"
    config.write_text(MINIMAL)
    result = config_check(config, MIS_KUBERNETES__AFFINITY=alias_bomb(flow=True))
    assert result.returncode == 2, result.stderr
    assert "MIS_KUBERNETES__AFFINITY: a YAML anchor or alias" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_anchor_alone_is_refused_too(tmp_path: Path) -> None:
    config = tmp_path / "mis.yaml"
    config.write_text(MINIMAL + "server: &s\n  port: 8001\n")
    with pytest.raises(SettingsError, match=r"anchor or alias \(line 3, column 9"):
        load_settings(config, {})


def test_a_file_over_the_limit_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    config = tmp_path / "big.yaml"
    config.write_text(MINIMAL + "# " + "x" * MAX_BYTES + "\n")
    with pytest.raises(SettingsError, match=f"{config}: over 1 MiB"):
        load_settings(config, {})
    with pytest.raises(SettingsError, match="/dev/zero: over 1 MiB"):
        load_settings(Path("/dev/zero"), {})


def test_deep_nesting_is_refused_with_its_place(tmp_path: Path) -> None:
    depth = MAX_DEPTH + 1
    with pytest.raises(SettingsError, match=f"MIS_MAP__ARGS: nested more than {MAX_DEPTH}"):
        load_settings(None, {"MIS_MAP__ARGS": "[" * depth + "]" * depth})
    config = tmp_path / "deep.yaml"
    config.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SettingsError, match=f"{config}: nested more than"):
        load_settings(config, {})


def test_ordinary_flow_values_still_work(tmp_path: Path) -> None:
    config = tmp_path / "mis.yaml"
    config.write_text(MINIMAL)
    settings = load_settings(config, {"MIS_MAP__ENV": "{A: '1', B: two}"})
    assert settings.map.env == {"A": "1", "B": "two"}


@pytest.mark.parametrize(
    "value",
    ["!!timestamp 2020-13-45", "1" * 5000, "!!float abc", "!!int 1_0x"],
    ids=["bad date", "huge integer", "bad float", "bad integer"],
)
def test_a_value_python_cannot_convert_is_refused_with_its_place(
    tmp_path: Path, value: str
) -> None:
    """PyYAML raises Python's own ValueError for these, not a YAML error: it came out of
    `mis config check` and `mis serve` as a traceback."""
    config = tmp_path / "mis.yaml"
    config.write_text(MINIMAL + f"server:\n  max_connections: {value}\n")
    result = config_check(config)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{config}: a value YAML cannot convert" in result.stderr
    assert "line 4, column 20" in result.stderr
    config.write_text(MINIMAL)
    result = config_check(config, MIS_MAP__ARGS=f"[{value}]")
    assert "Traceback" not in result.stderr
    assert "MIS_MAP__ARGS: a value YAML cannot convert" in result.stderr


def test_a_configuration_fifo_that_nothing_writes_to_is_refused_not_waited_on(
    tmp_path: Path,
) -> None:
    """The opening of a FIFO without a writer blocks for ever: `mis serve` hung at start."""
    fifo = tmp_path / "mis.yaml"
    os.mkfifo(fifo)
    result = mis_command("config", "check", "--config", fifo, timeout=30)
    assert result.returncode == 2, result.stderr
    assert f"nothing came through the FIFO {fifo}" in result.stderr


def test_a_configuration_through_process_substitution_is_read(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            "bash",
            "-c",
            f'{sys.executable} -m mis_app config check --config <(printf "$0")',
            MINIMAL,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stderr
