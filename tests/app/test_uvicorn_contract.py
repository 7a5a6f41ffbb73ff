"""What mis_app/http relies on inside uvicorn, named: an upgrade that moves one fails here.

MIS's protocol subclasses uvicorn's private httptools protocol (mis_app/http). The names it
touches on that class, on a request's cycle, on the server state and on the parser are read
from MIS's own source, so a new use must be added here; each is then checked against the
installed uvicorn, and the installed uvicorn against the pin in pyproject.toml, which admits
one minor release: a new one is checked here before MIS runs on it. asyncio's TLS protocol,
which mis_app/http/tls.py also uses from a private module, has its own fence
(test_asyncio_tls_contract.py).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import tomllib
from importlib.metadata import version
from typing import Any

import uvicorn
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from tests.harness.repo import REPO

HTTP = REPO / "mis_app" / "http"

# uvicorn's, on the protocol (self.X, or protocol.X in the head watch)
PROTOCOL_ATTRIBUTES = {
    "connections",  # the server's set of open connections
    "cycle",  # the request being answered (a RequestResponseCycle)
    "loop",
    "parser",  # httptools' parser
    "pipeline",  # requests waiting behind the one being answered
    "server_state",
    "transport",
}
# uvicorn's methods that MIS overrides and calls through super(), with their parameters
PROTOCOL_METHODS = {
    "connection_made": ["self", "transport"],
    "connection_lost": ["self", "exc"],
    "data_received": ["self", "data"],
    "on_message_begin": ["self"],
    "on_url": ["self", "url"],
    "on_header": ["self", "name", "value"],
    "on_headers_complete": ["self"],
    "on_body": ["self", "body"],
    "on_message_complete": ["self"],
    "on_response_complete": ["self"],
    "send_400_response": ["self", "msg"],
    "pause_writing": ["self"],
    "resume_writing": ["self"],
}
# what MIS reads or sets on those attributes
NESTED = {
    "cycle": {
        "disconnected",
        "message_event",
        "more_body",
        "response_complete",
        "response_started",
        "scope",
    },
    "server_state": {"default_headers"},
    "parser": {"get_method"},
}


def _sources() -> list[ast.Module]:
    return [ast.parse(path.read_text()) for path in sorted(HTTP.glob("*.py"))]


def _mis_names(trees: list[ast.Module]) -> set[str]:
    """What MIS's own classes define: methods, class-level attributes, `self.X = ...`."""
    names = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(
                    t.attr
                    for t in targets
                    if isinstance(t, ast.Attribute)
                    and isinstance(t.value, ast.Name)
                    and t.value.id == "self"
                )
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        names.add(item.name)
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        names.add(item.target.id)
                    elif isinstance(item, ast.Assign):
                        names.update(t.id for t in item.targets if isinstance(t, ast.Name))
    return names


def _used(trees: list[ast.Module]) -> tuple[set[str], dict[str, set[str]], set[str]]:
    """Names used on the protocol, on its attributes, and called through super()."""
    first: set[str] = set()
    nested: dict[str, set[str]] = {}
    supers: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            value = node.value
            if isinstance(value, ast.Name) and value.id in ("self", "protocol"):
                first.add(node.attr)
            elif (
                isinstance(value, ast.Attribute)
                and isinstance(value.value, ast.Name)
                and value.value.id == "self"
            ):
                nested.setdefault(value.attr, set()).add(node.attr)
            elif (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name)
                and value.func.id == "super"
            ):
                supers.add(node.attr)
    return first, nested, supers


def _protocol() -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    config = uvicorn.Config(app, log_config=None)
    return HttpToolsProtocol(config=config, server_state=ServerState(), app_state={})


class _Transport(asyncio.Transport):
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(name)

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def test_every_uvicorn_name_mis_uses_is_listed() -> None:
    trees = _sources()
    first, nested, supers = _used(trees)
    ours = _mis_names(trees)
    assert first - ours == PROTOCOL_ATTRIBUTES
    asyncio_public = {"loop", "transport"}  # asyncio's own interfaces, not uvicorn's
    uvicorn_nested = PROTOCOL_ATTRIBUTES - asyncio_public
    assert {k: v for k, v in nested.items() if k in uvicorn_nested} == NESTED
    assert supers == set(PROTOCOL_METHODS)


def test_the_installed_uvicorn_has_every_listed_name() -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        protocol = _protocol()
        for name in PROTOCOL_ATTRIBUTES:
            assert hasattr(protocol, name), f"uvicorn's protocol has no {name!r} any more"
        for name, parameters in PROTOCOL_METHODS.items():
            method = getattr(HttpToolsProtocol, name)
            assert list(inspect.signature(method).parameters) == parameters, name
        protocol.connection_made(_Transport())
        protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert protocol.cycle is not None  # a request's cycle, as MIS reads it
        for name in NESTED["cycle"]:
            assert hasattr(protocol.cycle, name), f"uvicorn's cycle has no {name!r} any more"
        assert isinstance(protocol.server_state.default_headers, list)
        assert protocol.parser.get_method() == b"GET"
        assert isinstance(protocol.connections, set)
        assert protocol in protocol.connections
        assert STATUS_LINE[431].startswith(b"HTTP/1.1 431 ")
        tasks = list(protocol.tasks)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def test_the_server_hooks_mis_uses_are_there() -> None:
    parameters = inspect.signature(uvicorn.Config).parameters
    assert {"http", "backlog", "ws", "timeout_graceful_shutdown"} <= set(parameters)
    assert callable(uvicorn.Server.capture_signals)  # serve.py overrides it
    assert callable(uvicorn.Server.handle_exit)
    assert uvicorn.Server(uvicorn.Config(_protocol)).started is False


def _pin() -> SpecifierSet:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = [r for r in map(Requirement, project["dependencies"]) if r.name == "uvicorn"]
    assert len(pins) == 1, pins
    return pins[0].specifier


def test_the_pin_is_one_minor_release() -> None:
    """Any uvicorn it admits is one this file has checked: `>=X.Y,<X.Y+1`, nothing wider."""
    bounds = {spec.operator: Version(spec.version) for spec in _pin()}
    assert set(bounds) == {">=", "<"}, f"uvicorn's pin must be '>=X.Y,<X.Y+1', not {_pin()}"
    lower, upper = bounds[">="], bounds["<"]
    assert upper == Version(f"{lower.major}.{lower.minor + 1}"), f"{_pin()} is not one minor"


def test_the_installed_uvicorn_is_within_the_pin() -> None:
    assert _pin().contains(version("uvicorn"))
