"""Admission: at most `capacity` requests at once (the spec says one), refusing the rest at once.

A request holds its slot from admission until its response ends. Its workspace is deleted
after that, in the background, and counts until it is gone: at most 2 × capacity workspaces
exist at once (those of requests in flight and those still being deleted). A client that
sends its next study the moment a response ends is admitted at once (one deletion may be
pending behind each slot); only when deletions fall further behind (one taking longer than the
whole next request) does an admitted request wait for one to finish before it makes its
workspace. So pending deletions can never fill the payload volume, and nobody is told busy
because of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio

from mis_core.errors import Busy


class AdmissionGate:
    """Counts without awaiting, so checking and taking a slot cannot interleave."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.in_use = 0
        self.deleting = 0
        self._deleted: list[anyio.Event] = []

    @property
    def full(self) -> bool:
        return self.in_use >= self.capacity

    def refusal(self) -> Busy:
        return Busy(
            "Another inference request is being fulfilled; this service runs "
            f"{self.capacity} at a time. Try again after the seconds its Retry-After header "
            "gives (mis infer --wait does that for you)."
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

    @property
    def room_for_a_workspace(self) -> bool:
        """Whether an admitted request may make its workspace now (its slot is counted)."""
        return self.in_use + self.deleting <= 2 * self.capacity

    async def wait_for_room(self) -> None:
        """Wait until `room_for_a_workspace`: until enough pending deletions have finished."""
        while not self.room_for_a_workspace:
            deleted = anyio.Event()
            self._deleted.append(deleted)
            await deleted.wait()

    def deletion_started(self) -> None:
        """Count a workspace being deleted; called before its request's slot is released."""
        self.deleting += 1

    def deletion_finished(self) -> None:
        self.deleting -= 1
        for deleted in self._deleted:
            deleted.set()
        self._deleted.clear()
