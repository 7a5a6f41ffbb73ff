"""An audit record for every inference request, whatever ended it, written when it ends.

`AuditTrail` is handed each request's end by `RequestIdMiddleware`, MIS's first layer, so
it sees every answer: the busy shortcut's, auth's 401, a stop's 503, and a client that went
away before any. The endpoint and auth add what only they know to the request's record
(`mis_app.request_info`): the token's name, and the `AuditFacts` of an audited request. A
record holds sizes, hashes and counts of what came in and went out, never a file name or
anything else from inside a study.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
from starlette.types import Scope

from mis_app.audit_log import AuditLog, AuditUnavailable
from mis_app.digest import Digest
from mis_app.request_info import CLIENT_DISCONNECTED, RequestInfo
from mis_app.settings import Settings, SettingsError
from mis_app.summary import map_summary
from mis_core.service import Inference

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@attrs.define
class AuditFacts:
    """What the endpoint learns of one audited request, for its record."""

    started: float = attrs.Factory(time.time)  # when the request came in
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


class AuditTrail:
    """Writes one record per request to `paths` once its answer is done (or abandoned)."""

    def __init__(
        self,
        log: AuditLog,
        map_facts: dict[str, Any],
        trusted: tuple[Network, ...],
        paths: frozenset[str],
    ) -> None:
        self.log = log
        self.map_facts = map_facts  # image or command, and resources, as configured
        self.trusted = trusted
        self.paths = paths

    def facts_for(self, scope: Scope) -> AuditFacts | None:
        """The facts to gather while the request runs; None when it is not audited."""
        return AuditFacts() if scope["path"] in self.paths else None

    def write(self, scope: Scope, info: RequestInfo, status: int | None) -> None:
        """The record of a request that has ended (`status`: None when nothing was answered)."""
        facts = info.audit
        if facts is None:
            return
        facts.upload.close()
        facts.output.close()
        self.log.write(self._record(scope, info, facts, status))

    def _record(
        self, scope: Scope, info: RequestInfo, facts: AuditFacts, status: int | None
    ) -> dict[str, Any]:
        inference = facts.inference
        image_id = inference.image_id if inference else ""
        times = attrs.asdict(inference.times) if inference else {}
        return {
            "time_started": _iso(facts.started),
            "time_ended": _iso(time.time()),
            "request_id": info.request_id,
            "job_id": info.job_id,
            "client": client_address(scope, self.trusted),
            "token_name": info.token_name,
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "code": info.outcome or (CLIENT_DISCONNECTED if status is None else ""),
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


def audit_trail(settings: Settings, paths: frozenset[str]) -> AuditTrail | None:
    """The audit trail the settings ask for (None when off), of the requests to `paths`."""
    server = settings.server
    if server.audit_file is None:
        return None
    try:
        log = AuditLog(server.audit_file)
    except AuditUnavailable as exc:
        raise SettingsError(str(exc)) from None
    summary = map_summary(settings)
    facts = {
        "map": {key: summary[key] for key in ("backend", "image", "command")},
        "resources": summary["resources"],
    }
    return AuditTrail(log, facts, trusted_networks(server.trusted_proxies), paths)
