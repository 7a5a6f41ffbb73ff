"""The one catalogue of error codes, collected from errors.py's classes, each carrying its row.

The edge's status map, the OpenAPI text, the client's exit codes, the 404/405 map and the
page's advice all derive from `CATALOGUE`. Its order is fixed: by HTTP status; within one
status, in the order errors.py defines the classes, the catch-all (MisError's own row) last.
A new code is one class of errors.py, with its row, and its line in docs/api.md.
"""

from __future__ import annotations

from mis_core import errors
from mis_core.error_code import ErrorCode, Exit

__all__ = ["BY_CODE", "CATALOGUE", "ErrorCode", "Exit"]


def collect() -> tuple[ErrorCode, ...]:
    """The rows of errors.py's classes, in the catalogue's order. A class there without a row
    of its own would repeat its parent's code: BY_CODE's length gives it away (a test)."""
    classes = [
        value
        for value in vars(errors).values()  # a module's namespace keeps its definition order
        if isinstance(value, type) and issubclass(value, errors.MisError)
    ]
    ordered = sorted(classes, key=lambda error: (error.row.status, error is errors.MisError))
    return tuple(error.row for error in ordered)


CATALOGUE = collect()
BY_CODE = {row.code: row for row in CATALOGUE}
