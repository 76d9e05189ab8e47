"""The base of every config model: unknown keys are errors, values are immutable once loaded."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["ConfigModel"]


class ConfigModel(BaseModel):
    # extra="forbid" turns a misspelt key into an error (with a did-you-mean from the loader)
    # instead of a setting silently left at its default.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
