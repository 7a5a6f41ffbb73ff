"""Where an Inference meets the service: only at Host's named steps, in their order.

The service is wrapped so that each step it is asked for goes into the fakes' journal, next to
what the storage and the job backend did: the order the deletion's bookkeeping depends on (the
workspace counted before the slot is released, the request in flight until its workspace is
handed over) is read from one list.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager

import anyio
import pytest

from mis_core.inference import Host, Inference
from mis_core.model import MapSpec, Workspace
from mis_core.ports import Clock, JobBackend, Storage
from mis_core.service import InferenceService
from tests.core.driving import STAGES, SUCCESS, make_service, serving, study_upload
from tests.fakes import FakeJobBackend, FakeStorage

pytestmark = pytest.mark.anyio


class JournalingHost:
    """The service as an Inference sees it, each step written to the journal."""

    def __init__(self, service: InferenceService, journal: list[str]) -> None:
        self.service = service
        self.journal = journal

    @property
    def map_spec(self) -> MapSpec:
        return self.service.map_spec

    @property
    def storage(self) -> Storage:
        return self.service.storage

    @property
    def jobs(self) -> JobBackend:
        return self.service.jobs

    @property
    def clock(self) -> Clock:
        return self.service.clock

    @property
    def serving(self) -> bool:
        return self.service.serving

    @contextmanager
    def admit(self, inference: Inference) -> Iterator[None]:
        with self.service.admit(inference):
            self.journal.append("admitted")
            try:
                yield
            finally:
                self.journal.append("slot released")

    async def wait_for_room(self) -> None:
        self.journal.append("room")
        await self.service.wait_for_room()

    def deletion_started(self) -> None:
        self.journal.append("deletion counted")
        self.service.deletion_started()

    async def delete_now(self, workspace: Workspace) -> None:
        self.journal.append("delete now")
        await self.service.delete_now(workspace)

    def delete_later(self, workspace: Workspace) -> None:
        self.journal.append("delete later")
        self.service.delete_later(workspace)

    def release(self, inference: Inference) -> None:
        assert inference in self.service.in_flight  # counted from admit to here
        self.journal.append("released")
        self.service.release(inference)


def journaled(jobs: FakeJobBackend) -> tuple[InferenceService, Host]:
    service = make_service(FakeStorage(jobs.journal), jobs)
    return service, JournalingHost(service, jobs.journal)


async def drain(output: AsyncIterator[bytes]) -> None:
    async for _ in output:
        pass


async def test_a_request_takes_the_host_s_steps_in_order_and_its_workspace_goes_later() -> None:
    journal: list[str] = []
    service, host = journaled(FakeJobBackend(journal, SUCCESS))

    async with serving(service, journal):
        inference = Inference(host, "r1", study_upload(), "r1")
        async with aclosing(inference.output()) as output:
            await drain(output)
        steps = ["admitted", "room", *STAGES, "deletion counted", "slot released"]
        assert journal == [*steps, "delete later", "released"]
        await anyio.wait_all_tasks_blocked()
    assert journal[-2:] == ["delete", "deleted"]  # in the background, after the request
    assert service.status().in_flight == 0
    assert service.status().deleting == 0


async def test_a_cancelled_request_deletes_its_workspace_before_it_is_released() -> None:
    journal: list[str] = []
    jobs = FakeJobBackend(journal, outcome=None)  # the MAP runs until cancelled
    service, host = journaled(jobs)

    with anyio.fail_after(5):
        async with serving(service, journal), anyio.create_task_group() as tg:
            inference = Inference(host, "r1", study_upload(), "r1")

            async def request() -> None:
                async with aclosing(inference.output()) as output:
                    await drain(output)

            tg.start_soon(request)
            await jobs.started.wait()
            tg.cancel_scope.cancel()
    ending = journal[journal.index("deletion counted") :]
    assert ending == [
        "deletion counted",
        "slot released",
        "delete now",
        "delete",
        "deleted",
        "released",
    ]
    assert service.status().in_flight == 0
