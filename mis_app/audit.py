"""An audit record for every inference request, whatever ended it, written when it ends.

`AuditMiddleware` is the app's outermost layer, so it sees every answer: the busy shortcut's,
auth's 401, a stop's 503, and a client that went away before any. The endpoint and auth add
what only they know to the request's `AuditFacts` (`scope["state"]["audit"]`, present only
while auditing is on). A record holds sizes, hashes and counts of what came in and went out,
never a file name or anything else from inside a study.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mis_app.audit_log import AuditLog, AuditUnavailable
from mis_app.digest import Digest
from mis_app.settings import Settings, SettingsError
from mis_app.summary import map_summary
from mis_core.service import Inference

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@attrs.define
class AuditFacts:
    """What the endpoint and auth learn of one request, for its record."""

    upload: Digest = attrs.Factory(Digest)
    output: Digest = attrs.Factory(Digest)
    inference: Inference | None = None


def trusted_networks(addresses: Sequence[str]) -> tuple[Network, ...]:
    """server.trusted_proxies as networks; a bare address is a network of one."""
    return tuple(ipaddress.ip_network(address, strict=False) for address in addresses)


def client_address(scope: Scope, trusted: tuple[Network, ...]) -> str | None:
    """The peer; when the peer is a trusted proxy, X-Forwarded-For's last untrusted hop."""
    peer: str | None = (scope.get("client") or (None,))[0]
    if peer is None or not _is_trusted(peer, trusted):
        return peer
    forwarded = [
        hop.strip()
        for name, value in scope["headers"]
        if name.lower() == b"x-forwarded-for"
        for hop in value.decode("latin-1").split(",")
    ]
    for hop in reversed(forwarded):
        if not _is_trusted(hop, trusted):
            return hop if _is_address(hop) else peer
        peer = hop
    return peer


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


class AuditMiddleware:
    """Writes one record per request to `paths` once its answer is done (or abandoned)."""

    def __init__(
        self,
        app: ASGIApp,
        log: AuditLog,
        map_facts: dict[str, Any],
        trusted: tuple[Network, ...],
        paths: frozenset[str],
    ) -> None:
        self.app = app
        self.log = log
        self.map_facts = map_facts  # image or command, and resources, as configured
        self.trusted = trusted
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        started = time.time()
        state = scope.setdefault("state", {})
        state["audit"] = facts = AuditFacts()
        status: int | None = None

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            facts.upload.close()
            facts.output.close()
            self.log.write(self._record(scope, facts, started, status))

    def _record(
        self, scope: Scope, facts: AuditFacts, started: float, status: int | None
    ) -> dict[str, Any]:
        state = scope["state"]
        inference = facts.inference
        image_id = inference.image_id if inference else ""
        times = attrs.asdict(inference.times) if inference else {}
        return {
            "time_started": _iso(started),
            "time_ended": _iso(time.time()),
            "request_id": state.get("request_id"),
            "job_id": state.get("job_id"),
            "client": client_address(scope, self.trusted),
            "token_name": state.get("token_name"),
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "code": state.get("outcome") or ("client_disconnected" if status is None else ""),
            "map": {**self.map_facts["map"], "image_id": image_id or None},
            "resources": self.map_facts["resources"],
            "input_bytes": facts.upload.size,
            "input_sha256": facts.upload.sha256,
            "input_entries": inference.files_in if inference else None,
            "output_bytes": facts.output.size,
            "output_sha256": facts.output.sha256,
            "output_entries": facts.output.zip_entries(),
            "stage_seconds": {name: round(value, 6) for name, value in times.items()},
        }


def audit_layer(settings: Settings, paths: frozenset[str]) -> list[Middleware]:
    """The audit middleware the settings ask for (none when off); put it outermost, so that
    the refusals of the layers below are recorded too."""
    server = settings.server
    if server.audit_file is None:
        return []
    try:
        log = AuditLog(server.audit_file)
    except AuditUnavailable as exc:
        raise SettingsError(str(exc)) from None
    summary = map_summary(settings)
    facts = {
        "map": {key: summary[key] for key in ("backend", "image", "command")},
        "resources": summary["resources"],
    }
    trusted = trusted_networks(server.trusted_proxies)
    audit = Middleware(AuditMiddleware, log=log, map_facts=facts, trusted=trusted, paths=paths)
    return [audit]
