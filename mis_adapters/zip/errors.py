"""What the zip package raises. Each says what went wrong in words a user can act on; which
HTTP answer it becomes is the storage adapter's business, not this package's."""

from __future__ import annotations


class ZipError(Exception):
    """The base of this package's errors; `message` is the whole text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadArchive(ZipError):
    """An archive that cannot be unpacked safely or at all: the archive's fault."""


def corrupt(what: str) -> BadArchive:
    return BadArchive(f"The zip archive is corrupt: {what}. Re-create it and retry.")


class ArchiveTooLarge(ZipError):
    """An archive over a limit on what it holds or expands to."""


class OutputProblem(ZipError):
    """A folder that cannot be sent whole; `problem` says why (a clause: "it is gone")."""

    @property
    def problem(self) -> str:
        return self.message


class OutputTooLarge(OutputProblem):
    """The folder's files add up to more than the bound (`st_size`: a sparse file counts
    whole, since the zip would send it whole)."""


class OutputOverLimit(OutputProblem):
    """The folder's zip would pass one of the limits on its listing; `limit` says which
    (one of `budget.LIMITS`)."""

    def __init__(self, limit: str, problem: str) -> None:
        super().__init__(problem)
        self.limit = limit


class UnsafeName(OutputProblem):
    """A name the reader would refuse (`names.py`): never sent; `name` is the path."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(problem)
        self.name = name
