"""What every section of the configuration shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

GiB = 1024**3


class SettingsError(Exception):
    """Configuration that cannot be used, with one line per problem."""


class Section(BaseModel):
    """A section of the file: an unknown key is an error, not ignored; so is a number that is
    infinite or not a number (`.inf`, `nan`), which no limit or timeout can mean."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
