"""The base of every model a user writes: strict, so that a typo is an error, not a default."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class CoreModel(BaseModel):
    """Strict about what users write: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
