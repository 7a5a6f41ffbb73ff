"""SHA-256 of a stream as it passes, hashed beside it rather than in its way.

The bytes are handed, in batches of about 1 MiB, to a thread of the digest's own that hashes
them while the stream goes on (hashlib lets go of the GIL for large buffers): the event loop
only counts and batches, and the request pays for the hash only where the thread falls behind.
At most a few batches wait for the thread; beyond that the stream waits for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import struct
import threading

import anyio

BATCH_BYTES = 1024 * 1024
WAITING_BATCHES = 8  # what the hashing thread may have yet to hash, at most
_EOCD = b"PK\x05\x06"
_ZIP64_EOCD = b"PK\x06\x06"
_ZIP_TAIL_BYTES = 56 + 20 + 22  # zip64 end record, its locator, the end record


class Digest:
    """SHA-256, size and last bytes of a stream; `feed` every chunk, then `finish` it."""

    def __init__(self) -> None:
        self.size = 0
        self.tail = b""  # the last bytes, for the zip's entry count
        self.complete = False  # the stream was read to its end, and hashed
        self._hash = hashlib.sha256()
        self._batch: list[bytes] = []
        self._batched = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(WAITING_BATCHES)
        self._thread: threading.Thread | None = None

    async def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.tail = (self.tail + chunk[-_ZIP_TAIL_BYTES:])[-_ZIP_TAIL_BYTES:]
        self._batch.append(chunk)
        self._batched += len(chunk)
        if self._batched >= BATCH_BYTES:
            await self._hand_over()

    async def finish(self) -> None:
        """The stream ended: wait for the thread to hash the rest."""
        await self._hand_over()
        thread = self._thread
        if thread is not None:
            await self._put(None)
            await anyio.to_thread.run_sync(thread.join)
        self.complete = True

    def close(self) -> None:
        """Let the thread go (the stream was cut short, or has finished): never blocks."""
        if self._thread is not None and self._thread.is_alive():
            self._batch.clear()
            while True:
                try:
                    self._queue.put_nowait(None)
                    return
                except queue.Full:
                    self._drop_one()

    @property
    def sha256(self) -> str | None:
        """The hash of the whole stream; None for one cut short (the size says how far)."""
        return self._hash.hexdigest() if self.complete else None

    def zip_entries(self) -> int | None:
        """The entry count in the end record of the zip this stream was (no comment)."""
        tail = self.tail
        if not self.complete or len(tail) < 22 or tail[-22:-18] != _EOCD:
            return None
        count = int(struct.unpack("<H", tail[-12:-10])[0])
        if count == 0xFFFF and tail[:4] == _ZIP64_EOCD:
            count = int(struct.unpack("<Q", tail[32:40])[0])
        return count

    async def _hand_over(self) -> None:
        if not self._batch:
            return
        batch = self._batch[0] if len(self._batch) == 1 else b"".join(self._batch)
        self._batch, self._batched = [], 0
        if self._thread is None:
            self._thread = threading.Thread(target=self._hash_batches, daemon=True)
            self._thread.start()
        await self._put(batch)

    async def _put(self, item: bytes | None) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:  # the thread is behind: the stream waits for it
            await anyio.to_thread.run_sync(self._queue.put, item)

    def _drop_one(self) -> None:
        with contextlib.suppress(queue.Empty):
            self._queue.get_nowait()

    def _hash_batches(self) -> None:
        while (batch := self._queue.get()) is not None:
            self._hash.update(batch)
