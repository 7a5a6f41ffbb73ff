"""What mis_app/http/tls.py relies on in asyncio's private TLS protocol, named and checked.

tls.py makes `asyncio.sslproto.SSLProtocol` itself and hands it a connection already accepted
and counted (the loop's public TLS would do the handshake before MIS saw the connection; see
tls.py). `asyncio.sslproto` is no public module, so a Python upgrade may move it. The names
tls.py uses there are read from its source, so a new use must be added here; each is then
checked against the running Python, and the behaviour tls.py counts on is checked on both
event loops MIS runs on (asyncio's and uvloop's):

- the HTTP protocol gets `connection_made` only once the handshake is done, and before the
  handshake waiter's callbacks run (tls.py's `_handshake_done` reads `http.connected` there);
- every handshake that does not finish (a silent client, one that hangs up, one that speaks
  no TLS) still ends the waiter, so the connection's place is given back;
- `ssl_handshake_timeout` bounds a client that never sends its ClientHello. asyncio's TLS
  layer ends that connection with the raw transport's private `_force_close`, which uvloop's
  transports must have too.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import ssl
from asyncio.sslproto import SSLProtocol
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import uvloop

from tests.harness.certificates import self_signed
from tests.harness.repo import REPO

TLS = REPO / "mis_app" / "http" / "tls.py"

# what tls.py imports from asyncio.sslproto
IMPORTED = {"SSLProtocol"}
# SSLProtocol's parameters tls.py passes by position, then by name
POSITIONAL = ["loop", "app_protocol", "sslcontext", "waiter"]
KEYWORDS = {"server_side", "ssl_handshake_timeout"}
# what tls.py calls on the SSLProtocol it made
CALLED = {"connection_made"}
# what SSLProtocol calls on the raw transport beyond asyncio.Transport's public methods
RAW_TRANSPORT_PRIVATE = {"_force_close"}

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
HANDSHAKE_SECONDS = 1  # tls.py rounds the head timeout up to whole seconds
PROMPTLY = 5.0


def _uses() -> tuple[set[str], int, set[str], set[str]]:
    """What tls.py imports from asyncio.sslproto, how many arguments it passes by position
    and which by name when it makes one, and what it calls on the one it made."""
    tree = ast.parse(TLS.read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "asyncio.sslproto":
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            assert all("sslproto" not in alias.name for alias in node.names)
        elif isinstance(node, ast.Attribute):
            assert node.attr != "sslproto", "reach asyncio.sslproto by a from-import only"
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        if node.func.id in imported
    ]
    assert len(calls) == 1, "tls.py makes its SSLProtocol in one place"
    made = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and node.value is calls[0]
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    called = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        if node.value.id in made
    }
    keywords = {k.arg for k in calls[0].keywords if k.arg is not None}
    return imported, len(calls[0].args), keywords, called


def test_every_name_tls_py_uses_in_asyncio_sslproto_is_listed() -> None:
    imported, positional, keywords, called = _uses()
    assert imported == IMPORTED
    assert positional == len(POSITIONAL)
    assert keywords == KEYWORDS
    assert called == CALLED


def test_the_running_python_has_every_listed_name() -> None:
    parameters = list(inspect.signature(SSLProtocol).parameters)
    assert parameters[: len(POSITIONAL)] == POSITIONAL
    assert parameters.index("server_side") >= len(POSITIONAL)  # where tls.py passes it by name
    assert set(KEYWORDS) <= set(parameters)
    for name in CALLED:
        assert callable(getattr(SSLProtocol, name)), f"SSLProtocol has no {name!r} any more"


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The server's context and a client's that trusts it."""
    certificate, key = self_signed(tmp_path_factory.mktemp("tls"))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(certificate, key)
    return server, ssl.create_default_context(cafile=str(certificate))


class _Http(asyncio.Protocol):
    """Where tls.py has MIS's HTTP protocol: records what asyncio's TLS layer hands it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received += data
        assert self.transport is not None
        self.transport.write(b"pong")


@dataclass
class _Accepted:
    http: _Http
    handshake: asyncio.Future[None]
    raw: asyncio.Transport
    connected_when_done: list[bool] = field(default_factory=list)


class _Accepting(asyncio.Protocol):
    """tls.py's TlsAccepting.connection_made, down to its calls into asyncio.sslproto."""

    def __init__(self, context: ssl.SSLContext, accepted: asyncio.Queue[_Accepted]) -> None:
        self.context = context
        self.accepted = accepted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        raw = cast(asyncio.Transport, transport)
        one = _Accepted(_Http(), loop.create_future(), raw)
        one.handshake.add_done_callback(
            lambda _: one.connected_when_done.append(one.http.transport is not None)
        )
        secure = SSLProtocol(
            loop,
            one.http,
            self.context,
            one.handshake,
            server_side=True,
            ssl_handshake_timeout=HANDSHAKE_SECONDS,
        )
        raw.set_protocol(secure)
        secure.connection_made(raw)
        self.accepted.put_nowait(one)


@asynccontextmanager
async def _listening(
    context: ssl.SSLContext,
) -> AsyncIterator[tuple[int, asyncio.Queue[_Accepted]]]:
    """A server on 127.0.0.1 that accepts as tls.py does: its port, and its connections."""
    accepted: asyncio.Queue[_Accepted] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Accepting(context, accepted), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        server.close()
        await server.wait_closed()


def _run(loop: str, scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(scenario())


@pytest.mark.parametrize("loop", LOOPS)
def test_the_protocol_gets_the_connection_once_the_handshake_is_done(
    loop: str, contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, trust = contexts

    async def scenario() -> None:
        async with _listening(server_context) as (port, accepted):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=trust)
            one = await asyncio.wait_for(accepted.get(), PROMPTLY)
            await asyncio.wait_for(one.handshake, PROMPTLY)  # raises had the handshake failed
            assert one.connected_when_done == [True]
            assert one.http.transport is not None
            assert one.http.transport.get_extra_info("sslcontext") is server_context  # https
            peer = one.http.transport.get_extra_info("peername")
            assert peer == writer.get_extra_info("sockname")
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), PROMPTLY) == b"pong"
            assert one.http.received == b"ping"
            writer.close()
            await writer.wait_closed()

    _run(loop, scenario)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_client_that_never_sends_its_hello_is_cut_off_at_the_handshake_timeout(
    loop: str, contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, _ = contexts

    async def scenario() -> None:
        async with _listening(server_context) as (port, accepted):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)  # no TLS
            one = await asyncio.wait_for(accepted.get(), PROMPTLY)
            for name in RAW_TRANSPORT_PRIVATE:
                assert callable(getattr(one.raw, name)), f"{type(one.raw)} has no {name!r}"
            started = asyncio.get_running_loop().time()
            done, _ = await asyncio.wait([one.handshake], timeout=HANDSHAKE_SECONDS + PROMPTLY)
            waited = asyncio.get_running_loop().time() - started
            assert done, "the handshake timeout never ended the waiter"
            assert isinstance(one.handshake.exception(), OSError)
            assert waited >= HANDSHAKE_SECONDS * 0.9
            assert await asyncio.wait_for(reader.read(), PROMPTLY) == b""  # closed
            assert one.connected_when_done == [False]
            writer.close()

    _run(loop, scenario)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("client_sends", [b"", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"])
def test_a_handshake_that_fails_still_ends_its_waiter(
    loop: str, client_sends: bytes, contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """A client that hangs up before its hello, or speaks plain HTTP: no connection for the
    protocol, and a waiter that ends long before the timeout."""
    server_context, _ = contexts

    async def scenario() -> None:
        async with _listening(server_context) as (port, accepted):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(client_sends)
            if not client_sends:
                writer.close()
            one = await asyncio.wait_for(accepted.get(), PROMPTLY)
            done, _ = await asyncio.wait([one.handshake], timeout=HANDSHAKE_SECONDS / 2)
            assert done, "a failed handshake left its waiter pending"
            assert one.handshake.cancelled() or one.handshake.exception() is not None
            assert one.connected_when_done == [False]
            assert one.http.transport is None
            writer.close()

    _run(loop, scenario)
