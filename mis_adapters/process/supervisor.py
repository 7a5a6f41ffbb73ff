"""One MAP run's supervisor: the process between MIS and the MAP (or its sandbox).

MIS starts it as `python -I -S supervisor.py [options] -- COMMAND...` in a new session, with
the MAP's environment (`-I` keeps Python from reading it). It runs only the standard library
and process_tree.py beside it (the walk and the kills of the tree below it), so it starts in
milliseconds and works outside MIS's virtual environment. It

- closes every file descriptor but 0-2 that MIS's process handed down (uvloop does not close
  them when it spawns), so the MAP inherits nothing of MIS's;
- makes itself a child subreaper: whatever the MAP starts, including children that call
  `setsid` or fork twice, stays its descendant, so it can find and kill every one;
- starts COMMAND with a parent-death signal, the memory limit (`RLIMIT_DATA`, inherited by
  every process the MAP starts), the process limit (`RLIMIT_NPROC`: the tasks its user runs
  now plus `--processes`, so a fork bomb stops there) and the working directory; with
  `--sandbox-args N`, the N words after COMMAND's program are the sandbox's own arguments:
  they go to it through a pipe (`bwrap --args FD`, NUL-separated), since bwrap is process 1
  of the MAP's PID namespace and its command line, there in /proc/1/cmdline, would tell the
  MAP where MIS's hidden files are;
- on SIGTERM (MIS stopping the job) passes SIGTERM on to every descendant (not to a sandbox's
  own process, which would end the MAP at once), then SIGKILLs all of them after the grace;
- on SIGHUP (its parent-death signal: MIS is gone) SIGKILLs all of them;
- when COMMAND exits, SIGKILLs whatever it left running, reaps everything, writes how COMMAND
  ended to the report file, closes its output (in the sandbox, the end of the MAP's log pipe
  tells MIS the run is over) and exits with COMMAND's code (128 + the signal that ended it),
  which MIS takes when there is no report (a full volume).
"""

from __future__ import annotations

import os
import resource
import signal
import sys

TYPE_CHECKING = False  # mypy takes it as True; `typing` would add milliseconds to every run
if TYPE_CHECKING or __package__:  # imported (by tests, or to be type-checked)
    from mis_adapters.process.process_tree import (
        PR_SET_CHILD_SUBREAPER,
        PR_SET_PDEATHSIG,
        descendants,
        kill_if_same,
        prctl,
    )
else:  # run as a script: isolated mode (-I) leaves this folder off sys.path
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    from process_tree import (
        PR_SET_CHILD_SUBREAPER,
        PR_SET_PDEATHSIG,
        descendants,
        kill_if_same,
        prctl,
    )

# open_flags.NEW_FILE, spelled again: this script runs outside MIS's packages and imports
# nothing but the standard library and process_tree.py beside it (a test pins the two equal)
NEW_FILE = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def tasks_of(uid: int) -> int:
    """How many tasks (processes and threads) `uid` runs now: RLIMIT_NPROC counts them all,
    MIS's own threads included, so the MAP's allowance is added to this."""
    count = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as status:
                fields = dict(line.split(b":", 1) for line in status.read().splitlines())
            if int(fields[b"Uid"].split()[0]) == uid:
                count += int(fields[b"Threads"])
        except (OSError, KeyError, ValueError, IndexError):
            continue
    return count


def limit_processes(allowance: int) -> None:
    """RLIMIT_NPROC at the tasks this user runs now plus `allowance`, or at the hard limit
    where that is lower (a container's runtime may have set one: it cannot be raised)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    most = tasks_of(os.getuid()) + allowance
    if hard != resource.RLIM_INFINITY:
        most = min(most, hard)
    resource.setrlimit(resource.RLIMIT_NPROC, (most, most))


def signal_all(sig: int, spare: int = 0) -> int:
    """Send `sig` to every descendant but `spare`."""
    found = descendants([os.getpid()])
    return sum(kill_if_same(pid, started, sig) for pid, started in found.items() if pid != spare)


class Supervisor:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.child = 0
        self.stopping = False

    def start(self) -> None:
        """Fork and exec COMMAND, with our signals held meanwhile (the child must not run
        our handlers, and a SIGTERM now is handled once the child is known)."""
        options = self.options
        command = options.command
        words = command[1 : 1 + options.sandbox_args]
        if words:
            arguments, feed = os.pipe()  # both close-on-exec until the child says otherwise
            command = [command[0], "--args", str(arguments), *command[1 + len(words) :]]
        held = (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
        pid = os.fork()
        if pid:
            self.child = pid
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
            if words:
                os.close(arguments)
                feed_arguments(feed, words)
            return
        try:  # the child: one thread, so anything goes before exec
            for sig in held:
                signal.signal(sig, signal.SIG_DFL)
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; the MAP not
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
            if words:
                os.set_inheritable(arguments, True)  # only this one: `feed` closes at exec
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if options.memory:
                resource.setrlimit(resource.RLIMIT_DATA, (options.memory, options.memory))
            if options.processes:
                limit_processes(options.processes)
            if options.cwd:
                os.chdir(options.cwd)
            os.execvp(command[0], command)
        except OSError as exc:
            print(f"could not start {options.command[0]}: {exc.strerror}", file=sys.stderr)
        os._exit(127)

    def terminate(self, signum: int, frame: object) -> None:
        """SIGTERM from MIS: ask every process to stop, kill them all after the grace."""
        if self.stopping:
            return
        self.stopping = True
        signal_all(signal.SIGTERM, spare=self.child if self.options.sandboxed else 0)
        signal.setitimer(signal.ITIMER_REAL, max(self.options.grace, 0.001))

    def kill(self, signum: int = 0, frame: object = None) -> None:
        signal_all(signal.SIGKILL)

    def run(self) -> tuple[int, int, int]:
        """Wait for COMMAND, then for everything else, killing it.

        Returns COMMAND's exit code (-1 if a signal ended it), that signal (0 if none) and
        the largest peak RSS of any process reaped, in KiB.
        """
        code, killed_by, peak = -1, 0, 0
        ended = False
        while True:
            try:
                pid, status, usage = os.wait4(-1, 0)
            except ChildProcessError:
                return code, killed_by, peak
            peak = max(peak, usage.ru_maxrss)
            if pid == self.child:
                ended = True
                if os.WIFSIGNALED(status):
                    killed_by = os.WTERMSIG(status)
                else:
                    code = os.waitstatus_to_exitcode(status)
            if ended:
                peak = max(peak, _reap_ended())
                if _has_children():
                    self.kill()  # strays, after every wait, until none is left


_READY_MOST = 8  # reaps between two walks at most: a fork-and-exit chain cannot dodge them


def _reap_ended() -> int:
    """Reap the children that have ended already, without waiting, and return their largest
    peak RSS. In the sandbox the namespace's first process is still ending as bwrap's outer
    one is reaped, and reaping it here spares a walk of the process tree (~0.5 ms)."""
    peak = 0
    for _ in range(_READY_MOST):
        try:
            pid, _, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        peak = max(peak, usage.ru_maxrss)
    return peak


def _has_children() -> bool:
    """Whether any child is left, running or ended (its status is left to wait4). With none,
    nothing of the MAP is left (an orphan below us becomes ours), so the usual run ends
    without a walk of the process tree."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def feed_arguments(feed: int, words: list[str]) -> None:
    """Write the sandbox's arguments into the pipe it reads them from, then close it (a
    sandbox that failed to start leaves the pipe without a reader: nothing to feed)."""
    data = b"".join(os.fsencode(word) + b"\0" for word in words)
    try:
        with open(feed, "wb", closefd=True) as out:
            out.write(data)
    except BrokenPipeError:
        pass


class Options:
    """`--parent PID --report FILE [--grace S] [--memory BYTES] [--processes N] [--cwd DIR]
    [--sandboxed] [--sandbox-args N] -- COMMAND...` (no argparse: it would double the
    start-up time)."""

    def __init__(self, argv: list[str]) -> None:
        split = argv.index("--")
        self.command = argv[split + 1 :]
        flags = [flag for flag in argv[:split] if flag != "--sandboxed"]
        self.sandboxed = len(flags) < split
        values = dict(zip(flags[::2], flags[1::2], strict=True))
        self.parent = int(values["--parent"])
        self.report = values["--report"]
        self.grace = float(values.get("--grace", "5"))
        self.memory = int(values.get("--memory", "0"))
        self.processes = int(values.get("--processes", "0"))
        self.cwd = values.get("--cwd", "")
        self.sandbox_args = int(values.get("--sandbox-args", "0"))
        if not self.command:
            raise ValueError("no command")


def close_inherited_fds() -> None:
    for fd in [int(name) for name in os.listdir("/proc/self/fd")]:
        if fd > 2:
            os.closerange(fd, fd + 1)  # ignores the listing's own, already closed


def main(argv: list[str]) -> int:
    options = Options(argv)
    close_inherited_fds()
    supervisor = Supervisor(options)
    signal.signal(signal.SIGTERM, supervisor.terminate)
    signal.signal(signal.SIGALRM, supervisor.kill)
    signal.signal(signal.SIGHUP, supervisor.kill)
    prctl(PR_SET_PDEATHSIG, signal.SIGHUP)
    if os.getppid() != options.parent:  # MIS died before the signal was armed
        return 1
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    if supervisor.stopping:  # MIS stopped the run before it began
        return 128 + signal.SIGTERM
    supervisor.start()
    code, killed_by, peak = supervisor.run()
    try:
        write_report(options.report, code, killed_by, peak)
    except OSError as exc:  # a full volume, or something in its place: our exit says it
        print(f"the MAP's supervisor could not write its report: {exc.strerror}", file=sys.stderr)
    return code if killed_by == 0 else 128 + killed_by


def write_report(path: str, code: int, killed_by: int, peak: int) -> None:
    """How COMMAND ended, as one JSON line; O_EXCL and O_NOFOLLOW: never through a file or a
    link a MAP put there."""
    line = f'{{"exit_code": {code}, "signal": {killed_by}, "peak_rss_kib": {peak}}}\n'
    fd = os.open(path, os.O_WRONLY | NEW_FILE, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def end(status: int) -> None:
    """Close the log pipe, then exit. Everything below us is reaped and the report written,
    so in the sandbox the pipe's end tells MIS the run is over ~0.6 ms before this process
    is gone (an interpreter's exit frees its memory before its files); MIS reaps us later."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.closerange(0, 3)
    os._exit(status)  # the interpreter's own shutdown would add ~5 ms to every request


if __name__ == "__main__":
    end(main(sys.argv[1:]))
