"""The slot and the deletion: a response never waits for its workspace to go, and pending
deletions are bounded without making anyone busy."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import anyio
import pytest
from loguru import logger

from mis_core.errors import Busy
from tests.core.driving import (
    ARCHIVE,
    STAGES,
    STUDY,
    SUCCESS,
    deletions_held,
    full_request,
    make_service,
    serving,
    study_upload,
)
from tests.fakes import FakeClock, FakeJobBackend, FakeStorage
from tests.harness.wait import await_until
from tests.zips import unzipped

pytestmark = pytest.mark.anyio


async def test_the_next_request_is_admitted_while_the_last_workspace_is_still_being_deleted() -> (
    None
):
    journal: list[str] = []
    storage = FakeStorage(journal)
    service = make_service(storage, FakeJobBackend(journal, SUCCESS))

    with anyio.fail_after(5):
        async with serving(service, journal):
            with deletions_held(storage):
                await full_request(service, "first")
                await anyio.wait_all_tasks_blocked()
                assert service.gate.deleting == 1
                assert unzipped(await full_request(service, "second")) == STUDY
                assert journal.count("deleted") == 0
    assert journal.count("deleted") == 2
    assert service.gate.deleting == 0


async def test_a_request_beyond_the_bound_waits_for_a_pending_deletion_and_is_not_busy() -> None:
    journal: list[str] = []
    storage = FakeStorage(journal)
    service = make_service(storage, FakeJobBackend(journal, SUCCESS))

    with anyio.fail_after(5):
        async with serving(service, journal), anyio.create_task_group() as tg:
            with deletions_held(storage):
                await full_request(service, "first")
                await full_request(service, "second")  # one deletion pending behind the slot
                tg.start_soon(full_request, service, "third")  # a second: wait for the volume
                await anyio.wait_all_tasks_blocked()
                assert journal.count("create") == 2  # the third made no workspace yet ...
                assert service.gate.full  # ... but holds the slot
                with pytest.raises(Busy):
                    await full_request(service, "fourth")
    assert journal.count("create") == 3
    assert journal.count("deleted") == 3


async def test_a_cancelled_request_frees_its_slot_while_it_deletes_its_own_files() -> None:
    journal: list[str] = []
    storage = FakeStorage(journal)
    jobs = FakeJobBackend(journal, outcome=None)
    service = make_service(storage, jobs)
    first = anyio.CancelScope()

    async def cancelled_request() -> None:
        with first:
            await full_request(service, "gone")

    with anyio.fail_after(5):
        async with serving(service, journal), anyio.create_task_group() as tg:
            with deletions_held(storage):
                tg.start_soon(cancelled_request)
                await jobs.started.wait()
                first.cancel()  # a client that went away
                await await_until(lambda: "delete" in journal, 5, "its deletion to begin")
                assert journal[-2:] == ["terminate", "delete"]  # its own deletion is under way
                assert (service.gate.full, service.gate.deleting) == (False, 1)
                jobs.outcome = SUCCESS
                assert unzipped(await full_request(service, "next")) == STUDY
    assert journal.count("deleted") == 2


async def test_a_consumer_that_stops_reading_frees_the_slot_when_it_closes_the_output() -> None:
    journal: list[str] = []
    service = make_service(FakeStorage(journal), FakeJobBackend(journal, SUCCESS))

    async with serving(service, journal):
        inference = service.infer("r", study_upload())
        async with aclosing(inference.output()) as output:
            first = await anext(output)
            assert first.startswith(b"PK\x03\x04")  # the output zip's first piece
            assert service.gate.full
        assert not service.gate.full
    assert journal == [*STAGES, "delete", "deleted"]
    assert inference.bytes_out == len(first) < len(ARCHIVE)  # what was read, not the whole


async def test_a_failed_delete_is_retried_with_back_off_until_it_works() -> None:
    journal: list[str] = []
    storage = FakeStorage(journal)
    storage.fail_delete = True
    clock = FakeClock()
    service = make_service(storage, FakeJobBackend(journal, SUCCESS), clock)

    with anyio.fail_after(5):
        async with serving(service, journal):
            await full_request(service)
            await anyio.wait_all_tasks_blocked()
            assert not service.gate.full  # the slot is free ...
            assert service.gate.deleting == 1  # ... the workspace still counts
            assert service.failing_deletions == {"r1": 0.0}
            tries = [1.0, 2.0, 4.0]  # each wait twice the last
            for delay in tries:
                clock.advance(delay - 0.01)
                await anyio.wait_all_tasks_blocked()
                assert journal.count("delete") == 1 + tries.index(delay)  # not yet
                clock.advance(0.01)
                await anyio.wait_all_tasks_blocked()
            assert service.cleanup_failures == 4
            storage.fail_delete = False  # the fault clears
            clock.advance(8.0)
            await anyio.wait_all_tasks_blocked()
            assert journal[-1] == "deleted"
            assert (service.gate.deleting, service.failing_deletions) == (0, {})


@pytest.mark.parametrize(
    ("error", "traced"),
    [(OSError(13, "Permission denied"), False), (KeyError("r1"), True)],
    ids=["expected", "unexpected"],
)
async def test_a_failed_deletion_is_a_line_and_an_unexpected_one_has_its_traceback_once(
    error: Exception, traced: bool
) -> None:
    """OSError is how the storage says it could not delete; anything else is a bug, whose
    traceback is logged the first time (not at every retry). Either way the service goes on."""
    journal: list[str] = []
    storage = FakeStorage(journal)
    storage.fail_delete, storage.delete_error = True, error
    clock = FakeClock()
    service = make_service(storage, FakeJobBackend(journal, SUCCESS), clock)
    logged: list[str] = []
    sink = logger.add(logged.append, level="ERROR", format="{message}")
    try:
        with anyio.fail_after(5):
            async with serving(service, journal):
                await full_request(service)
                await anyio.wait_all_tasks_blocked()
                clock.advance(1.0)  # the first retry fails the same way
                await anyio.wait_all_tasks_blocked()
                assert journal.count("delete") == 2
                storage.fail_delete = False
                assert unzipped(await full_request(service, "r2")) == STUDY  # still serving
    finally:
        logger.remove(sink)
    said = f"could not delete the workspace: {type(error).__name__}: {error}"
    failures = [text for text in logged if text.startswith(said)]
    assert len(failures) == 2
    assert failures[1] == f"{said}\n"  # a retry: one line, whatever the error
    if traced:
        assert failures[0].startswith(f"{said}\nTraceback (most recent call last):")
        assert "in delete\n    raise self.delete_error" in failures[0]  # where it was raised
    else:
        assert failures[0] == f"{said}\n"
    assert "Traceback" not in "".join(logged[1:])


async def test_a_stop_ends_the_retries_and_leaves_the_workspace_to_the_next_sweep() -> None:
    journal: list[str] = []
    storage = FakeStorage(journal)
    storage.fail_delete = True
    service = make_service(storage, FakeJobBackend(journal, SUCCESS))

    with anyio.fail_after(5):
        async with serving(service, journal):
            await full_request(service)
            await anyio.wait_all_tasks_blocked()
            assert service.gate.deleting == 1
    assert service.cleanup_failures == 1
    assert (service.gate.in_use, service.gate.deleting) == (0, 0)
    assert service.failing_deletions == {}


async def test_the_deletion_is_logged_after_the_response_with_the_request_id() -> None:
    journal: list[str] = []
    service = make_service(FakeStorage(journal), FakeJobBackend(journal, SUCCESS))
    deleted: list[float] = []
    service.on_deleted = deleted.append
    lines: list[tuple[str, Any]] = []
    sink = logger.add(lambda m: lines.append((m.record["message"], m.record["extra"])))
    try:
        async with serving(service, journal):
            with logger.contextualize(request_id="study-7"):
                await full_request(service, "study-7")
    finally:
        logger.remove(sink)
    messages = [message.split(" ")[0] for message, _ in lines]
    assert messages.index("responded") < messages.index("cleaned")
    assert dict(lines)["cleaned"]["request_id"] == "study-7"
    assert deleted == [0.0]  # the fake clock does not move
