"""`mis audit verify FILE`: is the audit file's chain whole, and if not, where does it break?

Each line's `prev_sha256` must be the SHA-256 of the line before it (of the empty string for
the first line) and its `seq` one more than that line's. A line whose hash no longer matches
what the next line recorded was edited; a `seq` that jumps means records were removed there.
Records removed from the end of the file leave no trace in the chain: compare the last `seq`
with what was shipped elsewhere (a log collector) to see those.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from mis_app.audit_log import EMPTY_SHA256, record_of

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


@attrs.frozen
class Break:
    line: int  # 1-based, in the file as it is now
    what: str  # for the person reading it


@attrs.frozen
class Verdict:
    records: int
    breaks: tuple[Break, ...]

    @property
    def whole(self) -> bool:
        return not self.breaks


def verify_lines(lines: Iterable[bytes]) -> Verdict:
    """Check the chain of `lines` (without their newlines)."""
    breaks: list[Break] = []
    prev_hash = EMPTY_SHA256
    prev_seq = 0
    count = 0
    for number, line in enumerate(lines, start=1):
        count = number
        record = record_of(line)
        if record is None or not isinstance(record.get("prev_sha256"), str):
            breaks.append(Break(number, "is not an audit record (edited, or cut short)"))
        else:
            breaks.extend(_link(number, record, prev_hash, prev_seq))
            seq = record.get("seq")
            prev_seq = seq if isinstance(seq, int) else prev_seq + 1
        prev_hash = hashlib.sha256(line).hexdigest()
    return Verdict(count, tuple(breaks))


def _link(number: int, record: dict[str, object], prev_hash: str, prev_seq: int) -> list[Break]:
    """What is wrong between line `number` and the one before it."""
    seq = record.get("seq")
    if not isinstance(seq, int):
        return [Break(number, "has no sequence number (edited)")]
    gap = seq - prev_seq - 1
    if gap > 0:
        before = f"line {number - 1}" if number > 1 else "the start of the file"
        return [Break(number, f"{gap} record(s) removed between {before} and this line")]
    if gap < 0:
        return [Break(number, f"sequence number {seq} after {prev_seq} (edited, or reordered)")]
    if record["prev_sha256"] != prev_hash:
        if number == 1:
            return [Break(number, "does not chain to the start of a file (edited)")]
        return [Break(number - 1, "was edited (the next record's prev_sha256 does not match it)")]
    return []


def verify_file(path: Path) -> Verdict:
    with open(path, "rb") as source:
        return verify_lines(line.rstrip(b"\n") for line in source)


def run(path: Path) -> int:
    """What `mis audit verify` prints and its exit code: 0 whole, 1 broken, 2 unreadable."""
    try:
        verdict = verify_file(path)
    except OSError as exc:
        print(f"mis audit verify: cannot read {path}: {exc.strerror}")
        return 2
    for found in verdict.breaks:
        print(f"{path}:{found.line}: {found.what}")
    if verdict.whole:
        print(f"{path}: the chain of {verdict.records} record(s) is whole")
        return 0
    print(f"{path}: the chain is broken in {len(verdict.breaks)} place(s)")
    return 1


def add_audit_command(commands: Commands) -> None:
    """`mis audit verify FILE` on the `mis` command's subcommands."""
    audit = commands.add_parser("audit", help="work with the audit file (server.audit_file)")
    verify = audit.add_subparsers(required=True, metavar="COMMAND").add_parser(
        "verify", help="check the audit file's chain; exit 0 when whole, 1 where it breaks"
    )
    verify.add_argument("file", type=Path, help="the audit file")
    verify.set_defaults(run=lambda options: run(options.file), needs_settings=False)
