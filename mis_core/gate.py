"""Admission: at most `capacity` requests at once (the spec says one), refusing the rest at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mis_core.errors import Busy


class AdmissionGate:
    """Counts slots without awaiting, so checking and taking a slot cannot interleave."""

    def __init__(self, capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.in_use = 0

    @property
    def full(self) -> bool:
        return self.in_use >= self.capacity

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
