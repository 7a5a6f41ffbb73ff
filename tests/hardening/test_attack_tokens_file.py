"""Attack: the tokens file replaced by something that is not a small regular file.

Found: the server read the whole tokens file on its event loop, whatever it was. Replaced
by a FIFO (a mistaken deploy, `mkfifo` in a shared folder), the first authenticated request
blocked the event loop for good: `/healthz` went silent with the rest. A link to
`/dev/zero` would have read until memory ran out.

The fix this test expects: the file is read without blocking, only when it is a regular
file and only up to the tokens format's size limit; otherwise the tokens read before are
kept and the log says why, as for any broken tokens file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness.servers import Server, ServerFactory

TOKEN = "s3cret-token-for-tokens-file-tests"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tokens-file")


@pytest.fixture(scope="module")
def server(workdir: Path, mis_server: ServerFactory) -> Iterator[Server]:
    (workdir / "tokens").write_text(TOKEN + "\n")
    auth = {"server": {"auth": {"tokens_file": str(workdir / "tokens")}}}
    with mis_server(workdir, auth) as running:
        yield running


def status(server: Server) -> int:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return httpx.get(f"{server.url}/v1/status", headers=headers, timeout=5).status_code


@pytest.mark.parametrize("replacement", ["fifo", "/dev/zero", "huge"])
def test_a_tokens_file_that_is_no_small_file_keeps_the_tokens_and_the_server(
    server: Server, workdir: Path, replacement: str
) -> None:
    tokens = workdir / "tokens"
    assert status(server) == 200
    tokens.unlink()
    if replacement == "fifo":
        os.mkfifo(tokens)
    elif replacement == "huge":
        tokens.write_text((TOKEN + "\n") * (2 * 1024 * 1024 // len(TOKEN)))
    else:
        tokens.symlink_to(replacement)
    try:
        assert status(server) == 200  # the tokens read before still hold, in time
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        assert f"the tokens file {tokens}" in server.log_text()
    finally:
        tokens.unlink()
        tokens.write_text(TOKEN + "\n")
