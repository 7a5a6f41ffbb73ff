"""What a MAP sees of the host's files in the sandbox: an allow-list, derived once at start-up.

Read-only, at the host's own paths:

- the system's programs and libraries: `/usr`, and `/bin`, `/sbin`, `/lib`, `/lib32`,
  `/lib64`, `/libx32` where they exist (the same links into `/usr` where the host merged it);
- the few `/etc` files a program needs (ETC, those that exist);
- the MAP's own program: the installation of the program `map.command` names (the folder
  above its `bin/` when that holds `lib/` or `pyvenv.cfg`, else its folder; for a Python
  virtual environment also the base Python that `pyvenv.cfg`'s `home` names), and the folder
  of every file the command names, so a script's modules come with it (only the file itself
  when that folder is a top-level one, MIS's home or a shared temporary folder);
- the folders in `process.read_only_paths`.

A folder MIS finds this way that holds a payload folder (this installation's
`server.payload_dir`, or any folder marked as one: storage/layout.py) or a secret of MIS's
(its configuration, tokens file, TLS key, kubeconfig, container engine socket) is shown entry
by entry without them, as it is at start-up; a folder the configuration names is refused.
Nothing else of the host is there, so a secret replaced by rename, a new file, or another
installation's payload cannot appear inside.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable, Sequence

import attrs

from mis_adapters.process.exposure import Entry, Guard, ViewRefused, split

__all__ = ["ETC", "SYSTEM", "Entry", "View", "ViewRefused", "map_view", "system_view"]

SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC = (
    "passwd",  # user and group names (ls -l, getpass, Python's pwd)
    "group",
    "nsswitch.conf",  # how those names are looked up
    "hosts",  # localhost
    "host.conf",
    "gai.conf",
    "resolv.conf",
    "ld.so.cache",  # where the dynamic linker finds libraries
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",  # the time zone
    "timezone",
    "alternatives",  # Debian's links behind /usr/bin/awk, /usr/bin/java...
    "ssl/certs",  # CA certificates (not ssl/private)
    "ssl/openssl.cnf",
    "pki/tls/certs",
    "pki/ca-trust/extracted",
    "ca-certificates.conf",
    "protocols",
    "services",
    "mime.types",
    "os-release",
)


@attrs.frozen
class View:
    """Everything of the host the MAP sees read-only; its request's folders come on top."""

    entries: tuple[Entry, ...]

    def argv(self) -> list[str]:
        return [word for entry in self.entries for word in entry.argv()]

    def sealing(self) -> list[str]:
        """bwrap's arguments that make its empty folders read-only: after every mount, as
        the request's own folders may need mount points in them."""
        argv: list[str] = []
        for entry in reversed(self.entries):
            if not entry.source and not entry.link:
                argv += ["--remount-ro", entry.path]
        return argv

    def describe(self) -> list[str]:
        """For the start-up log and `mis config check`."""
        return [
            "the MAP sees, read-only:",
            *(f"  {entry.describe()}" for entry in self.entries),
            "  its request's input/ folder, at its path under server.payload_dir",
            "and writable: its request's output/, work/ (its working folder and HOME) and "
            "tmp/ (its TMPDIR, also at /tmp); a fresh /dev, /dev/shm and /proc; nothing else",
        ]


def system_view() -> View:
    """The system's folders and /etc files: what any program needs."""
    entries: list[Entry] = []
    for folder in SYSTEM:
        if os.path.islink(folder) and os.path.realpath(folder).startswith("/usr/"):
            entries.append(Entry(folder, link=os.readlink(folder), why="system"))
        elif os.path.isdir(folder):
            entries.append(Entry(folder, folder, why="system"))
    for name in ETC:
        path = os.path.join("/etc", name)
        if not os.path.lexists(path):
            continue
        if os.path.islink(path) and _inside(os.path.realpath(path), ["/usr"]):
            entries.append(Entry(path, link=os.readlink(path), why="/etc"))
        elif os.path.exists(path):
            entries.append(Entry(path, path, why="/etc"))
    return View(tuple(entries))


def map_view(
    words: Sequence[str],
    path: str | None,
    *,
    guard: Guard,
    read_only_paths: Iterable[str] = (),
    home: str | None = None,
) -> View:
    """The whole allow-list for the MAP whose command is `words` (absolute where they name
    files), found on `path`; ViewRefused when it would show a payload folder or a secret."""
    system = system_view()
    shown = [e.path for e in system.entries]
    for entry in system.entries:
        guard.refuse_inside(entry.path, f"the system folder {entry.path}")
    entries = list(system.entries)
    for folder in read_only_paths:
        entries += _declared(folder, guard)
    for file, why in _named(words, path):
        guard.refuse_file(file, why)
        if _inside(file, shown):
            continue
        if os.path.isdir(file):
            guard.refuse_holding(os.path.realpath(file), f"{file} ({why})")
        for folder in _folders_of(file, why, home):
            if not _inside(os.path.realpath(folder), shown):
                entries += _derived(folder, guard, why)
        entries += _with_link(file, file, why)
    return View(_tidy(entries))


def _named(words: Sequence[str], path: str | None) -> list[tuple[str, str]]:
    """The existing files the command names, each with where links lead, and why shown."""
    program = shutil.which(words[0], path=path) if words else None
    named = [(program, "the MAP's program")] if program else []
    named += [(w, "named by map.command") for w in words[1:] if os.path.isabs(w)]
    found: list[tuple[str, str]] = []
    for word, why in named:
        if os.path.exists(word):
            found += [(os.path.abspath(word), why), (os.path.realpath(word), why)]
    return list(dict.fromkeys(found))


def _folders_of(file: str, why: str, home: str | None) -> list[str]:
    """The folders to show with `file`: its folder, or the installation it belongs to; for a
    Python virtual environment also its base Python's installation."""
    if os.path.isdir(file):
        return []  # a folder the command names is shown itself (by _with_link)
    folders = [_installation(file) if why == "the MAP's program" else os.path.dirname(file)]
    home_of_venv = _venv_home(folders[0])
    if home_of_venv:
        folders.append(_installation(os.path.join(home_of_venv, "python")))
    return [f for f in folders if not _general(f, home)]


def _installation(program: str) -> str:
    folder = os.path.dirname(program)
    parent = os.path.dirname(folder)
    if os.path.basename(folder) in ("bin", "sbin") and any(
        os.path.exists(os.path.join(parent, mark)) for mark in ("lib", "lib64", "pyvenv.cfg")
    ):
        return parent
    return folder


def _venv_home(folder: str) -> str:
    """pyvenv.cfg's `home` (the base Python's bin folder) when `folder` is a venv, else ''."""
    try:
        with open(os.path.join(folder, "pyvenv.cfg"), encoding="utf-8") as config:
            for line in config:
                key, _, value = line.partition("=")
                if key.strip() == "home" and os.path.isabs(value.strip()):
                    return os.path.realpath(value.strip())
    except OSError:
        pass
    return ""


def _general(folder: str, home: str | None) -> bool:
    """A folder too general to show whole: `/`, top-level ones, MIS's home, shared tmp."""
    real = os.path.realpath(folder)
    if real.count("/") <= 1 or (home and real == os.path.realpath(home)):
        return True
    try:
        mode = os.stat(real).st_mode
    except OSError:
        return True
    return bool(mode & stat.S_ISVTX and mode & stat.S_IWOTH)


def _declared(folder: str, guard: Guard) -> list[Entry]:
    why = "process.read_only_paths"
    if not os.path.exists(folder):
        raise ViewRefused(f"{why}: {folder} does not exist; create it or remove it from the list.")
    guard.refuse_file(folder, f"{folder} in {why}")
    guard.refuse_holding(os.path.realpath(folder), f"{folder} in {why}")
    return _with_link(folder, folder, why)


def _derived(folder: str, guard: Guard, why: str) -> list[Entry]:
    """`folder`, or its entries without payload folders and secrets when it holds some."""
    real = os.path.realpath(folder)
    guard.refuse_file(real, f"{why} ({folder})")
    return [*_with_link(folder, "", why), *split(real, guard.excluded_in(real), why)]


def _with_link(path: str, source: str, why: str) -> list[Entry]:
    """`path` as the MAP sees it: a link to where it leads when it is one (or lies in one),
    and `source` bound where it leads (nothing when `source` is '')."""
    real = os.path.realpath(path)
    entries = [Entry(real, real, why=why)] if source else []
    if os.path.abspath(path) != real:
        entries.append(Entry(os.path.abspath(path), link=real, why=why))
    return entries


def _tidy(entries: Sequence[Entry]) -> tuple[Entry, ...]:
    """Once each, parents first, without what a folder bound whole already shows."""
    kept: list[Entry] = []
    whole: list[str] = []
    for entry in sorted(dict.fromkeys(entries), key=lambda e: (e.path.count("/"), e.path)):
        if any(_inside(entry.path, [w]) and entry.path != w for w in whole):
            continue
        if entry.path in {k.path for k in kept}:
            continue
        kept.append(entry)
        if entry.source:
            whole.append(entry.path)
    return tuple(kept)


def _inside(path: str, folders: Iterable[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)
