"""The Docker Engine API client against scripted HTTP answers (respx): what engines send that a
test engine rarely does, byte by byte."""

from __future__ import annotations

import io
import json
import struct
import tarfile
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from mis_adapters.docker.engine import DockerEngine, EngineError
from mis_core.errors import BackendUnavailable

pytestmark = pytest.mark.anyio
BASE = "http://engine:2375"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def logged(engine: DockerEngine) -> list[bytes]:
    return [chunk async for chunk in engine.follow_log("c1")]


@pytest.fixture
async def engine() -> AsyncIterator[DockerEngine]:
    client = DockerEngine("tcp://engine:2375")
    yield client
    await client.close()


@respx.mock
async def test_log_frames_are_demultiplexed_across_chunk_boundaries(engine: DockerEngine) -> None:
    stream = frame(1, b"loading model\n") + frame(2, b"warning: slow\n") + frame(1, b"done\n")
    # cut inside the first header, inside a payload, and right after a header
    cuts = [3, 20, len(frame(1, b"loading model\n")) + 8, len(stream)]
    parts = [stream[a:b] for a, b in zip([0, *cuts], cuts, strict=False)]
    respx.get(f"{BASE}/containers/c1/logs").mock(
        return_value=httpx.Response(
            200, headers={"Content-Type": MULTIPLEXED}, content=chunks(*parts)
        )
    )
    assert await logged(engine) == [b"loading model\n", b"warning: slow\n", b"done\n"]


@respx.mock
async def test_an_engine_that_does_not_say_is_judged_by_the_first_bytes(
    engine: DockerEngine,
) -> None:
    route = respx.get(f"{BASE}/containers/c1/logs")
    route.mock(return_value=httpx.Response(200, content=chunks(frame(1, b"framed\n"))))
    assert await logged(engine) == [b"framed\n"]
    route.mock(return_value=httpx.Response(200, content=chunks(b"raw tty output\n", b"more")))
    assert await logged(engine) == [b"raw tty output\n", b"more"]


@respx.mock
async def test_a_pull_that_fails_inside_its_progress_stream_is_an_error(
    engine: DockerEngine,
) -> None:
    progress = [
        {"status": "Pulling from monai/seg", "id": "1.0"},
        {"status": "Downloading", "progressDetail": {"current": 10, "total": 100}},
        {"errorDetail": {"message": "manifest unknown"}, "error": "manifest unknown"},
    ]
    body = "".join(json.dumps(line) + "\r\n" for line in progress).encode()
    route = respx.post(f"{BASE}/images/create").mock(return_value=httpx.Response(200, content=body))
    with pytest.raises(EngineError, match="manifest unknown"):
        await engine.pull("registry.example:5000/monai/seg")
    assert dict(route.calls.last.request.url.params) == {
        "fromImage": "registry.example:5000/monai/seg",
        "tag": "latest",
    }


@respx.mock
async def test_a_pull_that_streams_to_the_end_succeeds_and_digests_are_pulled_whole(
    engine: DockerEngine,
) -> None:
    body = b'{"status": "Digest: sha256:ab"}\n{"status": "Downloaded newer image"}\n'
    route = respx.post(f"{BASE}/images/create").mock(return_value=httpx.Response(200, content=body))
    await engine.pull("monai/seg@sha256:ab")
    assert dict(route.calls.last.request.url.params) == {"fromImage": "monai/seg@sha256:ab"}


def tar_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@respx.mock
async def test_a_manifest_file_is_read_out_of_its_tar(engine: DockerEngine) -> None:
    manifest = b'{"command": ["python3", "app.py"]}'
    route = respx.get(f"{BASE}/containers/c1/archive")
    route.mock(return_value=httpx.Response(200, content=tar_of("app.json", manifest)))
    assert await engine.read_file("c1", "/etc/monai/app.json") == manifest
    assert route.calls.last.request.url.params["path"] == "/etc/monai/app.json"
    route.mock(return_value=httpx.Response(404, json={"message": "no such file"}))
    assert await engine.read_file("c1", "/etc/monai/app.json") is None


@respx.mock
async def test_reading_a_huge_manifest_stops_at_its_bound(engine: DockerEngine) -> None:
    """An image whose app.json is endless: MIS reads a little past the bound, then stops."""
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 1
            yield b"\0" * 65536

    respx.get(f"{BASE}/containers/c1/archive").mock(
        return_value=httpx.Response(200, content=endless())
    )
    with pytest.raises(EngineError, match="larger than 1048576 bytes") as info:
        await engine.read_file("c1", "/etc/monai/app.json", limit=1 << 20)
    assert info.value.status == 413
    assert sent * 65536 <= (1 << 20) + 10_240 + 65536  # stopped at the bound, not the end


@respx.mock
async def test_engine_errors_carry_the_engines_message(engine: DockerEngine) -> None:
    respx.post(f"{BASE}/containers/create").mock(
        return_value=httpx.Response(404, json={"message": "No such image: monai/seg:1"})
    )
    with pytest.raises(EngineError) as info:
        await engine.create_container("mis-1", {"Image": "monai/seg:1"})
    assert (info.value.status, info.value.message) == (404, "No such image: monai/seg:1")


@respx.mock
async def test_an_engine_that_cannot_be_reached_is_backend_unavailable(
    engine: DockerEngine,
) -> None:
    respx.get(f"{BASE}/_ping").mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(BackendUnavailable, match="cannot be reached"):
        await engine.ping()
