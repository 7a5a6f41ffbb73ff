"""An app served by uvicorn in the test's own event loop, on 127.0.0.1: its real lifespan,
over real HTTP, with the adapters or fakes the test built it on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn

from tests.harness.wait import await_until


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """`app` served on a free port while the block runs (its lifespan started); its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    ended = anyio.Event()

    async def serve() -> None:
        try:
            await server.serve()
        finally:
            ended.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(serve)
        await await_until(lambda: server.started or ended.is_set(), what="uvicorn to start")
        if not server.started:  # the lifespan failed: uvicorn logged why
            raise RuntimeError("uvicorn ended before it started serving (see its log above)")
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
