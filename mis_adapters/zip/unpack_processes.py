"""Writing an archive of many small entries on worker processes, each owning a share of the
folders.

Why processes: creating a file is kernel work that threads of one process serialize on (the
descriptor table, the GIL around each call). 100,000 files of 4 KB on ext4: one thread 4.1 s,
two threads 7.9 s; two worker processes on disjoint folders 3.6 s (two `unzip`s likewise).

Each worker (a fresh interpreter, so it inherits none of the server's threads, sockets or
signal handlers) reads the archive through the descriptor MIS checked it by (never its path
again) and writes the small entries (under `unpack.PARALLEL_FROM`) of the folders that fall
to it by a hash of the folder's name, the same in every process, with the same code and
checks as the threads (`unpack.py`). Meanwhile the large entries are inflated on threads in
MIS, as without workers: a few large files in one folder would otherwise all fall to one
worker. Entries of one folder go to one worker, so a duplicate name meets its twin in one
process; a name that is a file in one share and a folder in another is refused by the file
system, whichever comes first. The overlap bounds come on the worker's stdin. A worker stops
when MIS dies (PDEATHSIG), and every worker is killed once anything fails.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import selectors
import signal
import subprocess
import sys
from array import array
from pathlib import Path
from typing import Any, BinaryIO

from mis_adapters.process.process_tree import PR_SET_PDEATHSIG, prctl
from mis_adapters.zip.errors import BadArchive
from mis_adapters.zip.index import Record, records
from mis_adapters.zip.layout import Layout, read_layout
from mis_adapters.zip.names import parts
from mis_adapters.zip.unpack import EntryWriter, Modes, is_small, write_entries

PROCESSES_FROM = 2000  # small entries: below, threads (a worker's start costs some 30 ms)
NICER = 10  # the workers' niceness above MIS's own
# A worker imports MIS and its libraries from where this server does (its sys.path, which
# PYTHONPATH or a user site may have made), whatever the worker's own current folder.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])
# (imported, not run as __main__: importing the zip package has imported this module already)
_BOOT = (
    "import sys, json; sys.path[:0] = json.loads(sys.argv.pop(1)); "
    "from mis_adapters.zip.unpack_processes import main; main()"
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
    archive: int, destination: Path, modes: Modes, bounds: array[int], index: int, workers: int
) -> int:
    """Write the entries of share `index` of the archive open as `archive` (a descriptor
    the parent passed: the file it checked, not whatever its path names now), with `modes`;
    how many files."""
    files = 0
    # a description of its own: the one passed is shared with the other workers, offset and all
    fresh = os.open(f"/proc/self/fd/{archive}", os.O_RDONLY | os.O_CLOEXEC)
    os.close(archive)
    with open(fresh, "rb") as source:
        writer = EntryWriter(source, destination, modes)
        try:
            for position, record in enumerate(records(source, read_layout(source))):
                if is_small(record) and shard(record, workers) == index:
                    files += writer.entry(record, bounds[position])
        finally:
            writer.close()
    return files


def write_in_processes(
    source: BinaryIO,
    layout: Layout,
    bounds: array[int],
    destination: Path,
    modes: Modes,
    workers: int,
) -> int:
    """Write every entry of the checked archive open as `source` into `destination`: the
    small ones on `workers` processes, the large ones meanwhile on as many threads here
    (inflating releases the GIL, and a few large files in one folder would all fall to one
    worker); the file count. Raises what went wrong first (BadArchive, or OSError: a
    full disk among them), every worker killed."""
    archive = source.fileno()
    started: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(workers):  # one that cannot start stops those that did
            started.append(_start(archive, destination, modes, index, workers))
        _send(started, bounds.tobytes())
        files = write_entries(source, layout, bounds, destination, modes, workers, small=False)
        results = _results(started)
    finally:
        for worker in started:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
            for pipe in (worker.stdout, worker.stderr):  # a killed one's, unread
                if pipe is not None:
                    pipe.close()
    return files + sum(int(result["files"]) for result in results)


def _start(
    archive: int, destination: Path, modes: Modes, index: int, workers: int
) -> subprocess.Popen[bytes]:
    path = [_SOURCE_ROOT, *(entry for entry in sys.path if entry)]  # "": the current folder
    argv = [sys.executable, "-I", "-c", _BOOT, json.dumps(path), str(os.getpid())]
    argv += [str(archive), str(destination), str(modes.file), str(modes.folder)]
    argv += [str(index), str(workers)]
    worker = subprocess.Popen(
        argv,
        pass_fds=(archive,),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", "")},
    )
    # Bulk work: the server's event loop, at the usual priority, goes first when they meet
    # (at the same priority, busy answers waited up to 220 ms for a core while the workers
    # started and wrote). Set at once, so it covers the interpreter's start too.
    with contextlib.suppress(ProcessLookupError):  # it died already: its result says why
        os.setpriority(os.PRIO_PROCESS, worker.pid, os.getpriority(os.PRIO_PROCESS, 0) + NICER)
    return worker


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
        return BadArchive(message)
    if result["error"] == "os":
        return OSError(int(str(result["errno"])), message)
    return RuntimeError(f"an unpacking worker failed ({message})")


def _worker(argv: list[str]) -> dict[str, Any]:
    archive, destination, file_mode, folder_mode, index, workers = argv
    modes = Modes(file=int(file_mode), folder=int(folder_mode))
    bounds: array[int] = array("Q")
    bounds.frombytes(sys.stdin.buffer.read())
    try:
        files = write_share(
            int(archive), Path(destination), modes, bounds, int(index), int(workers)
        )
    except BadArchive as exc:  # damaged deflate data among them (EntryWriter says so)
        return {"error": "invalid", "message": exc.message}
    except OSError as exc:
        return {"error": "os", "errno": exc.errno or errno.EIO, "message": exc.strerror or ""}
    return {"files": files}


def main() -> None:
    """A worker (see `_start`): MIS's pid, then the archive's descriptor, the destination, the
    file and folder modes, its index and the number of workers, as arguments; the overlap
    bounds on stdin."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # when MIS goes
    if os.getppid() != int(sys.argv[1]):  # it went before that
        os._exit(1)
    print(json.dumps(_worker(sys.argv[2:])), flush=True)
    os._exit(0)
