"""What the archive tests share: a workspace's input folder to extract into."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from mis_adapters.zip import reader, unpack_processes


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """An empty input folder inside a workspace folder, as the volume makes them."""
    folder = tmp_path / "ws" / "input"
    folder.mkdir(parents=True)
    return folder


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Archive tests that take `unpack_by` run with the threads and with worker processes,
    except those that patch MIS's functions: a worker process would not see the patch."""
    if "unpack_by" not in metafunc.fixturenames:
        return
    patched = "monkeypatch" in inspect.signature(metafunc.function).parameters
    metafunc.parametrize("unpack_by", ["threads"] if patched else ["threads", "processes"])


@pytest.fixture
def unpack_by(request: pytest.FixtureRequest) -> Iterator[str]:
    """How extract_archive writes: "processes" makes every archive take the worker processes
    (with two workers where the test leaves the count to MIS), "threads" leaves it be."""
    mode: str = request.param
    with pytest.MonkeyPatch.context() as patch:
        if mode == "processes":
            patch.setattr(unpack_processes, "PROCESSES_FROM", 1)
            patch.setattr(reader, "worker_count", lambda workers: workers or 2)
        yield mode
