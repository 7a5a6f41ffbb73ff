"""The shape of a row of the error catalogue, and `mis infer`'s exit codes it names.

Each exception class of errors.py carries its row (`MisError.row`): its code and what the code
means to a client. Apart from errors.py so that the classes read as the table they are.
"""

from __future__ import annotations

from enum import IntEnum

import attrs


class Exit(IntEnum):
    """`mis infer`'s exit codes, so that scripts can tell failures apart."""

    OK = 0
    FAILED = 1  # anything not below (an error of the service itself, a full disk)
    USAGE = 2  # wrong command line, or INPUT is not there
    BAD_INPUT = 3  # the input or its upload was refused
    BUSY = 4  # another request is being fulfilled (after --wait's retries)
    TIMEOUT = 5  # the MAP did not finish in time
    MAP_FAILED = 6  # the MAP failed
    UNREACHABLE = 7  # no connection, or the service cannot start jobs
    UNAUTHORIZED = 8  # no token, or a wrong one


@attrs.frozen
class ErrorCode:
    """One row of the catalogue: an error code and what it means on the wire and on the page."""

    code: str  # the error body's `code`
    status: int  # HTTP
    exit: Exit  # mis infer's
    retry_after: bool = False  # sent with Retry-After: a client may wait and try again
    map_ran: bool = False  # the MAP ran: the page keeps its log in view
    routing: bool = False  # answered by routing (no such path or method), not by an endpoint
    when: str = ""  # the words of docs/api.md's error table
    title: str = ""  # what the page says happened
    advice: str = ""  # and what to do
