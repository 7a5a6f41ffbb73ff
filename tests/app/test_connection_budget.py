"""The connection budget: what connections may have of the descriptors, and the refusals.

The real server under a flood is tests/hardening/test_attack_connection_flood.py."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Iterator

import pytest
from loguru import logger

from mis_app.http import ConnectionBudget
from mis_app.http.descriptors import DEFAULT_MOST_CONNECTIONS, MIN_CONNECTIONS, plan
from tests.harness.unavailable import unavailable


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    yield lines
    logger.remove(sink)


@pytest.mark.parametrize("limit", [1024, 4096, 65536])
@pytest.mark.parametrize("capacity", [1, 2])
def test_connections_get_what_the_reserve_leaves(limit: int, capacity: int) -> None:
    planned = plan(limit, capacity, None)
    assert planned.reserve >= planned.backlog + 256 * capacity  # a request's own, per slot
    assert planned.max_connections + planned.reserve <= limit
    assert planned.max_connections == min(limit - planned.reserve, DEFAULT_MOST_CONNECTIONS)


def test_more_requests_at_once_leave_fewer_connections() -> None:
    assert plan(1024, 2, None).max_connections < plan(1024, 1, None).max_connections


def test_a_configured_bound_is_kept_when_it_fits(warnings: list[str]) -> None:
    assert plan(1024, 1, 100).max_connections == 100
    assert warnings == []


def test_a_configured_bound_that_leaves_requests_too_little_is_lowered(
    warnings: list[str],
) -> None:
    planned = plan(1024, 1, 5000)
    assert planned.max_connections == 1024 - planned.reserve
    assert "server.max_connections=5000" in warnings[0]


def test_a_descriptor_limit_too_low_says_how_to_raise_it(warnings: list[str]) -> None:
    assert plan(256, 1, None).max_connections == MIN_CONNECTIONS
    assert "ulimit -n" in warnings[0]


def test_refusals_are_counted_and_logged_at_most_once_a_minute(warnings: list[str]) -> None:
    now = [0.0]
    budget = ConnectionBudget(2, clock=lambda: now[0])
    assert budget.take()
    assert budget.take()
    assert [budget.take() for _ in range(5)] == [False] * 5
    now[0] = 59.0
    assert not budget.take()
    assert len(warnings) == 1
    now[0] = 60.0
    assert not budget.take()
    assert len(warnings) == 2
    assert warnings[1].startswith("closed 6 new connection(s) at once: 2 are open")
    assert budget.refused == 7
    budget.give_back()
    assert budget.take()
    assert budget.open == 2


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 512:
        unavailable(f"the hard descriptor limit here is {hard}, under 512")
    code = (
        "import resource, sys; from loguru import logger; logger.remove(); "
        "logger.add(sys.stdout, format='{message}'); "
        "from mis_app.http.descriptors import raise_limit; "
        "print(raise_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 512)),
    )
    lines = result.stdout.splitlines()
    assert lines == ["raised the descriptor limit (RLIMIT_NOFILE) from 256 to 512", "512 512"]
