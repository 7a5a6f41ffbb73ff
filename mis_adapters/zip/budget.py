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

import attrs

from mis_adapters.zip.constants import MAX_NAME_BYTES
from mis_adapters.zip.errors import OutputOverLimit, OutputTooLarge, UnsafeName
from mis_adapters.zip.names import NameLimits, name_problem, shown
from mis_adapters.zip.records import central_record_bound
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
        try:
            budget.admit(member)
        finally:
            if member.fd is not None:
                os.close(member.fd)
        files += member.fd is not None
    return Scan(files, budget.bytes, walker.left_out)


class Budget:
    """The output so far against `limits`; `admit` raises at the first member past one."""

    def __init__(self, limits: OutputLimits) -> None:
        self.limits = limits
        longest = min(limits.max_path_bytes or MAX_NAME_BYTES, MAX_NAME_BYTES)
        self._names = NameLimits(longest)
        self.entries = 0
        self.bytes = 0
        self.directory = 0

    def admit(self, member: Member) -> bytes:
        """The member's name as the zip holds it (UTF-8), once the member is counted; raises
        UnsafeName, OutputOverLimit or OutputTooLarge (its `fd` is the caller's to close)."""
        name = member.name.encode()
        self._check_name(member.name, len(name))
        limits = self.limits
        self.entries += 1
        if limits.max_entries and self.entries > limits.max_entries:
            raise OutputOverLimit(
                "max_entries", f"it has more than {limits.max_entries} files and empty folders"
            )
        self.directory += central_record_bound(len(name))
        if limits.max_directory_bytes and self.directory > limits.max_directory_bytes:
            raise OutputOverLimit(
                "max_directory_bytes",
                f"its zip's central directory would pass {limits.max_directory_bytes} bytes "
                f"(a record of up to {central_record_bound(0)} bytes and a name for each file and "
                "empty folder)",
            )
        if member.fd is not None:
            self.bytes += member.info.st_size
            if limits.max_bytes and self.bytes > limits.max_bytes:
                raise OutputTooLarge(f"its files add up to more than {limits.max_bytes} bytes")
        return name

    def _check_name(self, name: str, size: int) -> None:
        longest = self._names.max_path_bytes
        if size > longest:
            raise OutputOverLimit(
                "max_path_bytes", f"the path {shown(name)} is {size} bytes, over {longest}"
            )
        problem = name_problem(name, self._names)
        if problem:
            raise UnsafeName(name, f"the name {shown(name)} is unsafe: {problem}")
