"""The one rule for names in a zip, for the reader and the writer alike: MIS never sends a name
it would refuse to receive.

A name is a plain relative path of UTF-8 components joined by "/": no absolute path, no drive
letter, no backslash (a folder separator to Windows tools), no control character, no empty,
"." or ".." component, not nested too deep, and not longer than the limits given.
"""

from __future__ import annotations

import re

import attrs

MAX_DEPTH = 128  # components of a path; bounds the folders held open while unpacking
NAME_MAX = 255  # bytes in one component, as Linux file systems hold them
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DRIVE = re.compile(r"^[A-Za-z]:")


@attrs.frozen
class NameLimits:
    max_path_bytes: int  # the whole path, UTF-8
    max_component_bytes: int = NAME_MAX
    path_why: str = ""  # what the path limit is, for the message
    component_why: str = ""
    # Names up to this many bytes are within every length limit: no component too long, and
    # not too deep (MAX_DEPTH + 1 components take twice as many bytes at least).
    plain_up_to: int = attrs.field(init=False)

    @plain_up_to.default
    def _plain_up_to(self) -> int:
        return min(self.max_path_bytes, self.max_component_bytes, 2 * MAX_DEPTH)


def name_problem(name: str, limits: NameLimits, size: int = -1) -> str:
    """Why `name` (a folder's ends with "/") is not a plain relative path within `limits`, as
    a clause ("it contains a backslash"); "" when it is one. `size`: its length in UTF-8,
    when the caller knows it."""
    if size < 0:
        size = len(name.encode())
    if (  # the common case, in cheap tests (every name of an output is judged twice)
        size <= limits.plain_up_to
        and name.isprintable()  # no control character among others
        and "\\" not in name
        and name[:1] not in "./"  # absolute, ".", "..", or empty
        and name[1:2] != ":"
        and "//" not in name
        and "/." not in name
    ):
        return ""
    return _unsafe(name) or _too_long(name, limits, size)


def _too_long(name: str, limits: NameLimits, size: int) -> str:
    if size > limits.max_path_bytes:
        return f"it is longer than {limits.max_path_bytes} bytes{_why(limits.path_why)}"
    if len(parts(name)) > MAX_DEPTH:
        return f"it is nested more than {MAX_DEPTH} folders deep"
    for part in parts(name):
        if len(part.encode()) > limits.max_component_bytes:
            return (
                f"a component is longer than {limits.max_component_bytes} bytes"
                f"{_why(limits.component_why)}"
            )
    return ""


def _why(what: str) -> str:
    return f", {what}" if what else ""


def _unsafe(name: str) -> str:
    if "\x00" in name:
        return "it contains a NUL byte"
    if control := _CONTROL.search(name):
        return f"it contains a control character (U+{ord(control.group()):04X})"
    if "\\" in name:
        return "it contains a backslash (zip names separate folders with '/')"
    if name.startswith("/"):
        return "it is an absolute path"
    if _DRIVE.match(name):
        return "it starts with a drive letter"
    for part in parts(name):
        if part in ("", ".", ".."):
            return f"it has a {part or 'empty'!r} path component"
    return ""


def parts(name: str) -> list[str]:
    """A name's path components (a folder's trailing slash dropped)."""
    return name[:-1].split("/") if name.endswith("/") else name.split("/")


def shown(name: str, most: int = 160) -> str:
    """`name` quoted for a message: what does not print (control characters, a backslash)
    escaped, and a long one cut in its middle."""
    text = "".join(_escaped(char) for char in name)
    if len(text) > most:
        text = f"{text[: most // 2]}…{text[-most // 4 :]}"
    return f"'{text}'"


def _escaped(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
