"""Admission: at most `capacity` requests at once (the spec says one), refusing the rest at once.

A request holds its slot from admission until its response ends. Its workspace is deleted
after that, in the background, and counts until it is gone: nothing is admitted while
2 × capacity workspaces exist (those of requests in flight and those still being deleted).
So a client that sends its next study the moment a response ends is admitted (one deletion
may be pending behind each slot), and deletions slower than requests cannot pile up on the
payload volume.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mis_core.errors import Busy


class AdmissionGate:
    """Counts without awaiting, so checking and taking a slot cannot interleave."""

    def __init__(self, capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.in_use = 0
        self.deleting = 0

    @property
    def full(self) -> bool:
        return self.in_use >= self.capacity or self.in_use + self.deleting >= 2 * self.capacity

    def refusal(self) -> Busy:
        return Busy(
            "Another inference request is being fulfilled; this service runs "
            f"{self.capacity} at a time. Try again when it has finished."
        )

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a slot for the duration of the block, or raise Busy."""
        if self.full:
            raise self.refusal()
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1

    def deletion_started(self) -> None:
        """Count a workspace being deleted; called before its request's slot is released."""
        self.deleting += 1

    def deletion_finished(self) -> None:
        self.deleting -= 1
