"""Running the plan's steps: on the caller's thread, or with the walk on a thread of its own
and each step's work on a pool, the results taken in archive order either way.

Deflating is what costs, and ISA-L (deflate.py) lets go of the GIL while it works, so with
`workers` > 1 it runs on that many threads (pigz's idea, within Python). Memory is bounded by
a window (`Window`) of three pieces' worth per worker: each step counts for its cost from when
the walk makes it until it is sent, and the walk waits for room (so it runs ahead of the
sender, but not far).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from mis_adapters.zip.steps import PIECE, Batch, Piece, Step

PER_WORKER = 3  # pieces' worth of bytes in flight per worker


def run_steps(plan: Iterator[Step], workers: int) -> Generator[tuple[Step, Any], None, None]:
    """Each step with its result, in order. The first step is done on the caller's thread,
    the rest on `workers` threads (or there too, for one): the response's first bytes do not
    wait for the pool and the walk's thread to start."""
    try:
        first = next(plan, None)
        if first is None:
            return
        yield first, _work(first)
    except BaseException:
        plan.close()  # type: ignore[attr-defined]
        raise
    rest = _serial(plan) if workers <= 1 else Pipeline(plan, workers).steps()
    try:
        yield from rest
    finally:
        rest.close()


def _serial(plan: Iterator[Step]) -> Generator[tuple[Step, Any], None, None]:
    """Each step's work done as it comes, on the caller's thread."""
    try:
        for step in plan:
            yield step, _work(step)
    finally:
        plan.close()  # type: ignore[attr-defined]


def _work(step: Step) -> Any:
    return step.run() if isinstance(step, Batch | Piece) else None


# A step and its work on the pool (None: nothing to do but send it), or what stopped the walk.
_Item = tuple[Step, Future[Any] | None] | BaseException


class Window:
    """The steps in flight, in order, and what they may hold in all: `limit` bytes (a step
    bigger than that goes alone). The walk waits for room; the sender frees it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0  # the most ever held (tests look)
        self.waits = 0  # times the walk had to wait for room (tests look)
        self._items: deque[_Item] = deque()
        self._changed = threading.Condition()
        self._ended = False
        self.stopped = False

    def reserve(self, cost: int) -> bool:
        """Room for `cost` more (False once stopped)."""
        with self._changed:
            if self.held and self.held + cost > self.limit and not self.stopped:
                self.waits += 1
                while self.held and self.held + cost > self.limit and not self.stopped:
                    self._changed.wait()
            if self.stopped:
                return False
            self.held += cost
            self.peak = max(self.peak, self.held)
            return True

    def put(self, item: _Item) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def end(self) -> None:
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def get(self) -> _Item | None:
        """The next step in order, once there is one; None after the last."""
        with self._changed:
            while not self._items and not self._ended:
                self._changed.wait()
            return self._items.popleft() if self._items else None

    def release(self, cost: int) -> None:
        with self._changed:
            self.held -= cost
            self._changed.notify_all()

    def stop(self) -> None:
        with self._changed:
            self.stopped = True
            self._changed.notify_all()


class Pipeline:
    """The walk on a thread of its own, each step's work on a pool of `workers`, the results
    taken in order by whoever iterates `steps()`."""

    def __init__(self, plan: Iterator[Step], workers: int) -> None:
        self._plan = plan
        self.window = Window(workers * PER_WORKER * PIECE)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="mis-pack")
        self._walker = threading.Thread(target=self._walk, name="mis-pack-walk", daemon=True)

    def steps(self) -> Generator[tuple[Step, Any], None, None]:
        self._walker.start()
        try:
            while (item := self.window.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                step, work = item
                yield step, work.result() if work is not None else None
                self.window.release(step.cost)
        finally:
            self.window.stop()
            self._walker.join()
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _walk(self) -> None:
        window = self.window
        try:
            for step in self._plan:
                if not window.reserve(step.cost):
                    return
                work = self._pool.submit(step.run) if isinstance(step, Batch | Piece) else None
                window.put((step, work))
                if window.stopped:
                    return
        except BaseException as exc:  # handed to the sender, in its place
            window.put(exc)
        finally:
            self._plan.close()  # type: ignore[attr-defined]
            window.end()
