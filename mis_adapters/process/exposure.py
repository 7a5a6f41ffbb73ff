"""What the sandbox must never show a MAP: payload folders and MIS's secrets, and the checks.

A payload folder is this installation's `server.payload_dir` or any folder marked as one
(storage/layout.py), found by walking a folder before it is shown. A secret is a file MIS
knows: its configuration, tokens file, TLS key, kubeconfig, container engine socket; one that
is a link (a Kubernetes Secret's `tokens -> ..data/tokens`) takes the folders of the link and
of its target with it, where a swap of `..data` brings the next version.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs

from mis_adapters.storage.layout import PAYLOAD_ROOT_MARKER, is_payload_root

MOST_FOLDERS = 50_000  # walked looking for payload folders before a folder is refused
_MARKED = f"payload folder (marked {PAYLOAD_ROOT_MARKER})"


@attrs.frozen
class Entry:
    """One thing the MAP sees: `source` bound read-only at `path`, a link to `link`, or
    (neither) an empty read-only folder that some of the entries below it are bound into."""

    path: str
    source: str = ""
    link: str = ""
    why: str = ""

    def argv(self) -> list[str]:
        if self.link:
            return ["--symlink", self.link, self.path]
        if self.source:
            return ["--ro-bind", self.source, self.path]
        return ["--tmpfs", self.path]  # made read-only once its entries are in (View.argv)

    def describe(self) -> str:
        if self.link:
            return f"{self.path} -> {self.link} ({self.why})"
        if self.source:
            return f"{self.path} ({self.why})"
        return f"{self.path}/ ({self.why}; only the entries listed below it)"


class ViewRefused(Exception):
    """The sandbox would show a MAP a payload folder or a secret: what to move, and where."""


@attrs.frozen
class Guard:
    """The payload folder and secrets of this installation, as real paths, each with what
    it is (for the messages)."""

    payload_root: str
    secrets: Mapping[str, str] = attrs.field(factory=dict)

    @classmethod
    def of(cls, payload_root: str, secrets: Mapping[str, str | os.PathLike[str] | None]) -> Guard:
        """`secrets`: what each is ("tokens file (server.auth.tokens_file)") → its path."""
        found: dict[str, str] = {}
        for what, given in secrets.items():
            if not given:
                continue
            path = os.path.abspath(given)
            real = os.path.realpath(path)
            found.setdefault(real, what)
            if os.path.islink(path) or os.path.realpath(os.path.dirname(path)) != os.path.dirname(
                real
            ):
                found.setdefault(os.path.realpath(os.path.dirname(path)), f"{what}'s folder")
                found.setdefault(os.path.dirname(real), f"{what}'s folder")
        return cls(os.path.realpath(payload_root) if payload_root else "", found)

    def _known(self) -> dict[str, str]:
        known = dict(self.secrets)
        if self.payload_root:
            known[self.payload_root] = "payload folder (server.payload_dir)"
        return known

    def refuse_file(self, path: str, what: str) -> None:
        """Refuse `path` when it is a secret or lies in a payload folder (this installation's
        or any marked one) or a secret's folder."""
        real = os.path.realpath(path)
        known = {**self._known(), **dict.fromkeys(_marked_above(real), _MARKED)}
        for folder, name in known.items():
            if _inside(real, folder):
                raise ViewRefused(
                    f"{what}: {path} is MIS's {name} or lies in it ({folder}), which the "
                    "sandbox never shows a MAP; install the MAP's files elsewhere, or set "
                    "process.sandbox: none."
                )

    def refuse_inside(self, folder: str, what: str) -> None:
        """Refuse `folder` when a payload folder or secret of this installation lies in it
        (without walking it: for the system's folders)."""
        real = os.path.realpath(folder)
        for known, name in self._known().items():
            if _inside(known, real) and known != real:
                raise ViewRefused(_holds(what, folder, name, known))

    def refuse_holding(self, folder: str, what: str) -> None:
        """Refuse `folder` when it holds a payload folder (any installation's) or a secret."""
        for found in self.excluded_in(folder):
            name = self._known().get(found, _MARKED)
            raise ViewRefused(_holds(what, folder, name, found))

    def excluded_in(self, folder: str) -> list[str]:
        """The payload folders and secrets in the real folder `folder`."""
        known = [k for k in self._known() if _inside(k, folder)]
        return sorted({*known, *marked_payload_roots(folder)})


def _marked_above(real: str) -> list[str]:
    """The folders above `real` (itself included) marked as payload folders: another
    installation's, whose studies a folder inside it would show."""
    found, folder = [], real
    while True:
        if is_payload_root(folder):
            found.append(folder)
        if folder == os.path.dirname(folder):
            return found
        folder = os.path.dirname(folder)


def _holds(what: str, folder: str, name: str, found: str) -> str:
    return (
        f"{what}: {folder} holds MIS's {name} {found}, and every MAP would see it. Move "
        "one out of the other (server.payload_dir, the secret, or the MAP's files), or "
        "name a narrower folder."
    )


def marked_payload_roots(folder: str) -> list[str]:
    """Folders under `folder` (itself included) marked as payload folders; links are not
    followed (in the sandbox they lead only to what it shows anyway)."""
    found: list[str] = []
    stack, walked = [folder], 0
    while stack:
        current = stack.pop()
        walked += 1
        if walked > MOST_FOLDERS:
            raise ViewRefused(
                f"{folder} has more than {MOST_FOLDERS} folders to look through for payload "
                "folders before a MAP may see it; install the MAP in a folder of its own."
            )
        try:
            with os.scandir(current) as entries:
                listed = list(entries)
        except OSError:
            continue  # MIS cannot read it: neither can the MAP, which runs as MIS's user
        if any(e.name == PAYLOAD_ROOT_MARKER for e in listed):
            found.append(current)
            continue
        stack += [e.path for e in listed if e.is_dir(follow_symlinks=False)]
    return found


def split(folder: str, excluded: list[str], why: str) -> list[Entry]:
    """`folder` (real) as binds and links: whole when it holds none of `excluded`, else each
    of its entries the same way, without the excluded ones (as they are now)."""
    if folder in excluded:
        return []
    if not any(_inside(e, folder) for e in excluded):
        return [Entry(folder, folder, why=why)]
    shown = [Entry(folder, why=why)]
    with os.scandir(folder) as entries:
        listed = sorted(entries, key=lambda e: e.name)
    for entry in listed:
        if entry.path in excluded:
            continue
        if entry.is_symlink():
            shown.append(Entry(entry.path, link=os.readlink(entry.path), why=why))
        elif entry.is_dir(follow_symlinks=False):
            shown += split(entry.path, excluded, why)
        elif entry.is_file(follow_symlinks=False):
            shown.append(Entry(entry.path, entry.path, why=why))
    return shown


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")
