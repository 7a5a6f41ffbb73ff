"""Options classes filled from settings sections: an attrs class takes the keys of the same
names. Apart from the bootstrap so that `mis infer` (which must start quickly) can use it
without importing every adapter."""

from __future__ import annotations

from typing import Any, TypeVar

import attrs
from pydantic import BaseModel

Options = TypeVar("Options")


def from_settings(cls: type[Options], *sections: BaseModel, **values: Any) -> Options:
    """An attrs options class from the settings keys of the same names; `values` win."""
    names = attrs.fields_dict(cls)  # type: ignore[arg-type]
    found = {
        key: value
        for section in sections
        for key, value in section.model_dump().items()
        if key in names
    }
    return cls(**{**found, **values})
