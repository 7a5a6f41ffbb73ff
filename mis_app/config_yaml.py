"""YAML for configuration that cannot explode: no anchors or aliases, bounded size and depth.

PyYAML's safe loader still follows aliases: a few hundred bytes of nested `*refs` stand for
billions of values once validation or printing walks them. Configuration never needs them,
so a file or an `MIS_*` value that uses one is refused with the place it is in, as is a text
over `MAX_BYTES` or nested deeper than `MAX_DEPTH` (the parser recurses per level).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent
from yaml.nodes import Node

from mis_app.bounded_read import NothingCame, read_at_most

MAX_BYTES = 1024 * 1024  # a configuration is a few KiB; this leaves room for long MAP args
MAX_DEPTH = 32  # sections are two levels deep; map.env and args add a few more


class ConfigYamlError(Exception):
    """The text cannot be configuration; the message says where and why."""


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, refusing anchors, aliases (and so `<<` merges) and deep nesting."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ConfigYamlError(
                f"a YAML anchor or alias ({_where(event)}): they are not accepted in "
                "configuration; write each value out in full"
            )
        nested = isinstance(event, CollectionStartEvent)
        if nested and self._depth >= MAX_DEPTH:
            raise ConfigYamlError(
                f"nested more than {MAX_DEPTH} levels deep ({_where(event)}); "
                "configuration needs a few"
            )
        self._depth += nested
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= nested

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        """PyYAML converts some values with Python's own functions, whose ValueError is no
        YAML error: `!!timestamp 2020-13-45`, an integer of over 4300 digits."""
        try:
            return super().construct_object(node, deep)
        except ValueError as exc:
            raise ConfigYamlError(
                f"a value YAML cannot convert ({exc}; {_where(node)}); write it as a plain value"
            ) from exc


def _where(event: Any) -> str:
    mark = event.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}"


def parse(text: str) -> Any:
    """The value `text` holds; ConfigYamlError (without the source's name) if refused."""
    if len(text.encode()) > MAX_BYTES:
        raise ConfigYamlError(f"over {MAX_BYTES // 1024 // 1024} MiB; configuration is a few KiB")
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigYamlError(f"not valid YAML: {exc}") from exc
    finally:
        loader.dispose()


def read_file(path: Path) -> Any:
    """The file's value; over MAX_BYTES it is refused without reading the rest (a FIFO or a
    device such as /dev/zero included), as is a FIFO that brings nothing. OSError when it
    cannot be read."""
    try:
        data = read_at_most(path, MAX_BYTES)
    except NothingCame as exc:
        raise ConfigYamlError(str(exc)) from exc
    if len(data) > MAX_BYTES:
        raise ConfigYamlError(f"over {MAX_BYTES // 1024 // 1024} MiB; configuration is a few KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigYamlError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return parse(text)
