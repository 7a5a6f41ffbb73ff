"""A task group whose body's own error leaves it as itself, not wrapped in an ExceptionGroup.

Callers catch the domain's errors (`MisError` and its kinds) by type; a task group would hand
them an ExceptionGroup instead. Errors of the group's tasks still come as the group raises them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskGroup


@asynccontextmanager
async def plain_task_group() -> AsyncIterator[TaskGroup]:
    """`anyio.create_task_group()`, re-raising an exception of the block once its tasks end.

    Cancellation is not caught: it goes through the group as usual.
    """
    error: Exception | None = None
    async with anyio.create_task_group() as group:
        try:
            yield group
        except Exception as exc:  # re-raised below, outside the group
            error = exc
    if error is not None:
        raise error
