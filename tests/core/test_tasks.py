from __future__ import annotations

import anyio
import pytest

from mis_core.errors import Busy
from mis_core.tasks import plain_task_group

pytestmark = pytest.mark.anyio


async def test_the_blocks_error_comes_out_as_itself_once_the_tasks_ended() -> None:
    finished: list[str] = []

    async def task() -> None:
        await anyio.lowlevel.checkpoint()
        finished.append("task")

    async def refused() -> None:
        async with plain_task_group() as group:
            group.start_soon(task)
            raise Busy("all slots taken")

    with pytest.raises(Busy, match="all slots taken"):
        await refused()
    assert finished == ["task"]  # the group waited for its task before the error left it


async def test_a_tasks_error_still_comes_as_the_group_raises_it() -> None:
    async def failing() -> None:
        raise ValueError("in a task")

    with pytest.raises(ExceptionGroup) as caught:
        async with plain_task_group() as group:
            group.start_soon(failing)
    assert caught.group_contains(ValueError, match="in a task")


async def test_cancellation_goes_through_the_group() -> None:
    with anyio.move_on_after(0) as scope:
        async with plain_task_group() as group:
            group.start_soon(anyio.sleep_forever)
            await anyio.sleep_forever()
    assert scope.cancelled_caught
