"""The `server` section: listening, limits on requests and uploads, logging, auth, TLS."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import ByteSize, Field, field_validator, model_validator

from mis_adapters.zip import Compression
from mis_app.settings.section import GiB, Section


class AuthSettings(Section):
    tokens_file: Path | None = None  # one bearer token per line; none: no authentication
    protect_metrics: bool = True  # /metrics needs a token too (healthz and readyz never do)

    @model_validator(mode="after")
    def _tokens_readable(self) -> AuthSettings:
        if self.tokens_file is not None and not self.tokens_file.is_file():
            raise ValueError(f"tokens_file: {self.tokens_file} is not a readable file")
        return self


class TlsSettings(Section):
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set both cert_file and key_file to serve HTTPS, or neither")
        for path in (self.cert_file, self.key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is not a readable file")
        return self


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    payload_dir: Path = Path("/var/lib/mis/payload")
    max_concurrent: int = Field(1, ge=1)
    max_upload_bytes: ByteSize = ByteSize(10 * GiB)
    max_extracted_bytes: ByteSize = ByteSize(20 * GiB)
    max_entries: int = Field(100_000, ge=1)
    max_compression_ratio: float = Field(200.0, ge=1)
    # What the MAP's output files may add up to (st_size: a sparse file counts whole, as the
    # zip would send it); more is 500 map_failed before anything is sent.
    max_output_bytes: ByteSize = Field(ByteSize(64 * GiB), ge=1)
    # What the output zip may list, checked before anything is sent too (more is 500
    # map_failed naming the setting): files and empty folders, one path's UTF-8 bytes (the
    # zip format holds 65,535), and the central directory (a record and a name per entry).
    # A tree of long names is all headers: these bound what it costs.
    max_output_entries: int = Field(1_000_000, ge=1)
    max_output_path_bytes: int = Field(4096, ge=1, le=65535)
    max_output_directory_bytes: ByteSize = Field(ByteSize(256 * 1024**2), ge=1)
    output_compression: Compression = "adaptive"
    output_compression_level: int = Field(1, ge=1, le=9)
    # Threads that unpack the input and deflate the output, per request; 0: the CPUs MIS may
    # use (affinity, cgroup quota), up to 4; 1: none besides the request's own.
    workers: int = Field(0, ge=0)
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # How much of each request's MAP output MIS's log keeps (the live log shows the same);
    # the rest is counted in one line at the end of the run.
    map_log_max_bytes: ByteSize = Field(ByteSize(1024**2), ge=0)
    # A client that sends nothing for this long, or takes longer than the total, gets 408;
    # so does one that, once the idle timeout has passed, sent fewer bytes in the last idle
    # timeout than the minimum rate asks for (every body byte counts, whatever part of a form
    # it is in; 0: no minimum).
    upload_idle_timeout_seconds: float = Field(30.0, gt=0)
    upload_timeout_seconds: float = Field(3600.0, gt=0)
    min_upload_bytes_per_second: float = Field(16384, ge=0)
    # A client that reads too little of the result for the send buffer to drain in the idle
    # time, or still reads it the total time after it first fell behind, is cut off (the slot
    # is freed, the job's files deleted).
    download_idle_timeout_seconds: float = Field(30.0, gt=0)
    download_timeout_seconds: float = Field(3600.0, gt=0)
    # The request line and headers: bigger, or slower to arrive, is refused (431, 408) before
    # anything else runs.
    max_header_bytes: ByteSize = Field(ByteSize(64 * 1024), ge=1024)
    header_timeout_seconds: float = Field(10.0, gt=0)
    # Open connections: one more is closed at once. None: what the file descriptor limit leaves
    # after those requests in flight need (at most 4096); a new connection that sends nothing
    # for header_timeout_seconds is closed.
    max_connections: int | None = Field(None, ge=1)
    # A workspace that failed to be deleted is retried in the background; failing this long,
    # /readyz answers 503 saying so.
    stuck_deletion_seconds: float = Field(60.0, gt=0)
    # On SIGTERM/SIGINT, requests in flight get this long to finish before they are stopped;
    # None: map.timeout_seconds + 30.
    shutdown_grace_seconds: float | None = Field(None, ge=0)
    # One JSON record per inference request, appended (a path) or on standard output ("-");
    # None: no audit records.
    audit_file: str | None = None
    # Proxies whose X-Forwarded-For the audit record believes (addresses or CIDRs).
    trusted_proxies: list[str] = []
    auth: AuthSettings = AuthSettings()
    tls: TlsSettings = TlsSettings()

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for address in value:
            try:
                ipaddress.ip_network(address, strict=False)
            except ValueError:
                raise ValueError(
                    f"{address!r} is not an IP address or CIDR network (e.g. 10.0.0.0/8)"
                ) from None
        return value

    @field_validator("audit_file")
    @classmethod
    def _audit_target(cls, value: str | None) -> str | None:
        return value or None  # empty: off
