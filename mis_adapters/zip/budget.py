"""What the output zip may hold, counted as the walk meets each file and folder.

A tree of a few thousand empty files with names of hundreds of bytes, folders upon folders,
makes a zip of nothing but headers: every name goes out twice (its local header and its
central directory record). So besides the files' bytes, the number of entries, the length of
one path and the central directory's size are held to limits, and every name to the rule the
reader holds names to (names.py): the scan finds any of it before the first byte is sent,
and the plan checks again as it goes (then the zip stops, cut short).
"""

from __future__ import annotations

import os
import sys

import attrs

from mis_adapters.zip.constants import MAX_NAME_BYTES
from mis_adapters.zip.errors import OutputOverLimit, OutputTooLarge, UnsafeName
from mis_adapters.zip.names import NameLimits, name_problem, shown
from mis_adapters.zip.records import CENTRAL_MOST
from mis_adapters.zip.walk import Member, Walker

# The limits `OutputOverLimit.limit` names, as `OutputLimits` calls them.
LIMITS = ("max_entries", "max_path_bytes", "max_directory_bytes")


@attrs.frozen
class OutputLimits:
    """0: no bound (a path's is then the zip format's own, 65,535 bytes)."""

    max_bytes: int = 0  # the files' sizes in all
    max_entries: int = 0  # files and empty folders
    max_path_bytes: int = 0  # one entry's name, UTF-8
    max_directory_bytes: int = 0  # the central directory, each record counted at its largest


@attrs.frozen
class Scan:
    files: int
    bytes: int
    left_out: int  # links and special files


def scan(top: int, limits: OutputLimits) -> Scan:
    """Walk the tree under `top` once, opening every file, to find what would stop the zip
    halfway or what is past `limits`, stopping at the first such member."""
    budget = Budget(limits)
    walker = Walker(top)
    files = 0
    for member in walker:
        if member.fd is not None:
            os.close(member.fd)  # (admit needs only to know there was one)
            files += 1
        budget.admit(member)
    return Scan(files, budget.bytes, walker.left_out)


class Budget:
    """The output so far against `limits`; `admit` raises at the first member past one."""

    def __init__(self, limits: OutputLimits) -> None:
        self.limits = limits
        self._longest = min(limits.max_path_bytes or MAX_NAME_BYTES, MAX_NAME_BYTES)
        self._names = NameLimits(self._longest)
        unbounded = sys.maxsize
        self._most = (
            limits.max_entries or unbounded,
            limits.max_directory_bytes or unbounded,
            limits.max_bytes or unbounded,
        )
        self.entries = 0
        self.directory = 0
        self.bytes = 0

    def admit(self, member: Member) -> bytes:
        """The member's name as the zip holds it (UTF-8), once the member is counted; raises
        UnsafeName, OutputOverLimit or OutputTooLarge (its `fd` is the caller's to close)."""
        name = member.encoded
        size = len(name)
        if size > self._longest or name_problem(member.name, self._names, size):
            self._refuse_name(member.name, size)
        self.entries += 1
        self.directory += CENTRAL_MOST + size
        if member.fd is not None:
            self.bytes += member.info.st_size
        most_entries, most_directory, most_bytes = self._most
        if self.entries > most_entries or self.directory > most_directory:
            self._refuse_listing()
        if self.bytes > most_bytes:
            raise OutputTooLarge(f"its files add up to more than {most_bytes} bytes")
        return name

    def _refuse_name(self, name: str, size: int) -> None:
        if size > self._longest:
            path = shown(name)
            raise OutputOverLimit(
                "max_path_bytes", f"the path {path} is {size} bytes, over {self._longest}"
            )
        problem = name_problem(name, self._names, size)
        raise UnsafeName(name, f"the name {shown(name)} is unsafe: {problem}")

    def _refuse_listing(self) -> None:
        limits = self.limits
        if limits.max_entries and self.entries > limits.max_entries:
            raise OutputOverLimit(
                "max_entries", f"it has more than {limits.max_entries} files and empty folders"
            )
        raise OutputOverLimit(
            "max_directory_bytes",
            f"its zip's central directory would pass {limits.max_directory_bytes} bytes "
            f"(a record of up to {CENTRAL_MOST} bytes and a name for each file and "
            "empty folder)",
        )
