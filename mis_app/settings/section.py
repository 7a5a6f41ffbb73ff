"""What every section of the configuration shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

GiB = 1024**3


class SettingsError(Exception):
    """Configuration that cannot be used, with one line per problem."""


class Section(BaseModel):
    """A section of the file: an unknown key is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")
