"""Waiting for state by polling with a deadline, never by a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

T = TypeVar("T")

POLL = 0.02


def wait_until(
    condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll `condition` until it holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL)


def settled(probe: Callable[[], T], done: Callable[[T], bool], timeout: float) -> T:
    """`probe()` once `done` holds for it, or its last value when `timeout` runs out.

    For asserting on the value afterwards, so that a failure shows what was still there."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(POLL)
        value = probe()
    return value


async def await_until(
    condition: Callable[[], bool | Awaitable[bool]], seconds: float = 10.0, what: str = "condition"
) -> None:
    """The async `wait_until`: polls without blocking the event loop."""
    with anyio.move_on_after(seconds) as scope:
        while not await _holds(condition):
            await anyio.sleep(POLL)
    if scope.cancelled_caught:
        raise AssertionError(f"timed out after {seconds}s waiting for {what}")


async def _holds(condition: Callable[[], bool | Awaitable[bool]]) -> bool:
    result = condition()
    return bool(await result) if isinstance(result, Awaitable) else bool(result)
