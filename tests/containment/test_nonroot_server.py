"""The real server run as an unprivileged user, as MIS's image runs it."""

from __future__ import annotations

import io
import os
import zipfile

import httpx
import pytest

from tests.harness.servers import ServerFactory
from tests.nonroot import NonRoot
from tests.zips import make_zip

pytestmark = pytest.mark.slow  # see pyproject.toml: more than a few seconds


def test_mis_serves_a_round_trip_as_the_unprivileged_user(
    nonroot: NonRoot, mis_server: ServerFactory
) -> None:
    work = nonroot.workdir()
    with mis_server(work, nonroot=nonroot) as server:
        assert os.stat(f"/proc/{server.process.pid}").st_uid == nonroot.uid
        body = make_zip(work / "in.zip", {"series/a.dcm": b"abc"}).read_bytes()
        response = httpx.post(
            f"{server.url}/v1/inference",
            content=body,
            headers={"Content-Type": "application/zip"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        with zipfile.ZipFile(io.BytesIO(response.content)) as result:
            assert result.read("series/a.dcm") == b"abc"
