"""Writing an archive of many entries on worker processes, each owning a share of its folders.

Why processes: creating a file is kernel work that threads of one process serialize on (the
descriptor table, the GIL around each call). 100,000 files of 4 KB on ext4: one thread 4.1 s,
two threads 7.9 s, two `unzip` processes on disjoint folders 1.75 times faster than one.

Each worker (`python -m mis_adapters.storage.unpack_processes`, a fresh interpreter, so it
inherits none of the server's threads, sockets or signal handlers) reads the checked archive
itself and writes the entries of the folders that fall to it (by a hash of the folder's
name, the same in every process), with the same code and checks as the threads (`unpack.py`).
Entries of one folder go to one worker, so a duplicate name still meets its twin in one
process; a name that is a file in one share and a folder in another is refused by the file
system, whichever comes first. The overlap bounds come on the worker's stdin. A worker stops
when MIS dies (PDEATHSIG), and every worker is killed once one fails.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import selectors
import signal
import subprocess
import sys
import zlib
from array import array
from pathlib import Path
from typing import Any

from mis_adapters.process.supervisor import PR_SET_PDEATHSIG, prctl
from mis_adapters.storage.unpack import EntryWriter, parts
from mis_adapters.storage.zipindex import Layout, Record, corrupt, read_layout, records
from mis_core.errors import InvalidInput

PROCESSES_FROM = 2000  # entries: below, threads (a worker's start costs some 30 ms)
# A worker imports MIS and its libraries from where this server does (its sys.path, which
# PYTHONPATH or a user site may have made), whatever the worker's own current folder.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])
_BOOT = (
    "import sys, json, runpy; sys.path[:0] = json.loads(sys.argv.pop(1)); "
    "runpy.run_module('mis_adapters.storage.unpack_processes', run_name='__main__', "
    "alter_sys=True)"
)


def shard(record: Record, workers: int) -> int:
    """The worker whose folder holds the entry (a folder entry: the folder itself)."""
    components = parts(record.name)
    folder = components if record.name.endswith("/") else components[:-1]
    return shard_name("/".join(folder), workers)


def shard_name(folder: str, workers: int) -> int:
    """The worker that writes what is directly in `folder` ("a/b"; "" for the top): by a
    hash that spreads similar names (a CRC's low bits are the same for "series-00" to
    "series-03"), the same in every process."""
    digest = hashlib.blake2s(folder.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") % workers


def write_share(
    source_path: Path, destination: Path, bounds: array[int], index: int, workers: int
) -> tuple[int, int]:
    """Write the entries of share `index`: how many files, and how many entries in all."""
    files = entries = 0
    with open(source_path, "rb") as source:
        writer = EntryWriter(source, destination)
        try:
            for position, record in enumerate(records(source, read_layout(source))):
                if shard(record, workers) == index:
                    files += writer.entry(record, bounds[position])
                    entries += 1
        finally:
            writer.close()
    return files, entries


def write_in_processes(
    source_path: Path, layout: Layout, bounds: array[int], destination: Path, workers: int
) -> int:
    """Write every entry of the checked archive at `source_path` on `workers` processes; the
    file count. Raises what a worker met (InvalidInput, or OSError: a full disk among them)
    as soon as one fails, the others killed."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(workers):  # one that cannot start stops those that did
            started.append(_start(source_path, destination, index, workers))
        _send(started, bounds.tobytes())
        results = _results(started)
    finally:
        for worker in started:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
            for pipe in (worker.stdout, worker.stderr):  # a killed one's, unread
                if pipe is not None:
                    pipe.close()
    if sum(int(result["entries"]) for result in results) != layout.entries:
        raise corrupt("its entries were not all written")  # the archive changed meanwhile
    return sum(int(result["files"]) for result in results)


def _start(
    source_path: Path, destination: Path, index: int, workers: int
) -> subprocess.Popen[bytes]:
    path = [_SOURCE_ROOT, *(entry for entry in sys.path if entry)]  # "": the current folder
    argv = [sys.executable, "-I", "-c", _BOOT, json.dumps(path), str(os.getpid())]
    argv += [str(source_path), str(destination), str(index), str(workers)]
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", "")},
    )


def _send(started: list[subprocess.Popen[bytes]], data: bytes) -> None:
    for worker in started:
        assert worker.stdin is not None
        try:
            worker.stdin.write(data)
            worker.stdin.close()
        except BrokenPipeError:
            pass  # it died at once; what it said says why
        worker.stdin = None  # so that communicate() leaves it alone


def _results(started: list[subprocess.Popen[bytes]]) -> list[dict[str, Any]]:
    """Each worker's result, in the order they finish; the first failure raised at once."""
    results: list[dict[str, Any]] = []
    with selectors.DefaultSelector() as waiting:
        for worker in started:
            assert worker.stdout is not None
            waiting.register(worker.stdout, selectors.EVENT_READ, worker)
        while len(results) < len(started):
            for key, _ in waiting.select():
                worker = key.data
                waiting.unregister(key.fileobj)
                result = _result(worker)
                if "files" not in result:
                    raise _error(result)
                results.append(result)
    return results


def _result(worker: subprocess.Popen[bytes]) -> dict[str, Any]:
    """What the worker printed (one JSON line, then it exits), or why it said nothing."""
    out, err = worker.communicate()
    try:
        result: dict[str, Any] = json.loads(out.decode())
    except ValueError:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        return {"error": "crashed", "message": f"exit {worker.returncode}: {tail[0]}"}
    return result


def _error(result: dict[str, Any]) -> Exception:
    message = str(result.get("message", ""))
    if result["error"] == "invalid":
        return InvalidInput(message)
    if result["error"] == "os":
        return OSError(int(str(result["errno"])), message)
    return RuntimeError(f"an unpacking worker failed ({message})")


def _worker(argv: list[str]) -> dict[str, Any]:
    source_path, destination, index, workers = argv
    bounds: array[int] = array("Q")
    bounds.frombytes(sys.stdin.buffer.read())
    try:
        files, entries = write_share(
            Path(source_path), Path(destination), bounds, int(index), int(workers)
        )
    except InvalidInput as exc:
        return {"error": "invalid", "message": exc.message}
    except zlib.error:
        return {"error": "invalid", "message": corrupt("an entry's data is damaged").message}
    except OSError as exc:
        return {"error": "os", "errno": exc.errno or errno.EIO, "message": exc.strerror or ""}
    return {"files": files, "entries": entries}


if __name__ == "__main__":
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # when MIS goes
    if os.getppid() != int(sys.argv[1]):  # it went before that
        os._exit(1)
    print(json.dumps(_worker(sys.argv[2:])), flush=True)
    os._exit(0)
