"""What a user of the server may see of a run or a schedule: a task's env holds its secrets, so
its values are shown only to the one who submitted it and to admins; every other member gets the
keys with `***` for values. The one place the API and the dashboard mask them."""

from __future__ import annotations

from typing import TypeVar

from iacrun.orchestrator.models.runspec import RunSpec
from iacrun.orchestrator.registry import RunRecord
from iacrun.orchestrator.registry.schedules import ScheduleRecord
from iacrun.server.accounts import Principal

#: what stands for a value the viewer may not see
MASK = "***"

Submitted = TypeVar("Submitted", RunRecord, ScheduleRecord)


def may_see_env(viewer: Principal, submitted_by: str | None) -> bool:
    """Whether `viewer` sees the env values of what `submitted_by` submitted."""
    return viewer.is_admin or (submitted_by is not None and submitted_by == viewer.user)


def masked_spec(spec: RunSpec) -> RunSpec:
    """`spec` with every env value as `MASK` (the keys kept)."""
    return spec.model_copy(update={"env": dict.fromkeys(spec.env, MASK)})


def as_seen_by(viewer: Principal, item: Submitted) -> Submitted:
    """A run or a schedule as `viewer` may see it: its env values masked unless they are theirs
    (or the viewer is an admin)."""
    if may_see_env(viewer, item.submitted_by) or not item.spec.env:
        return item
    return item.model_copy(update={"spec": masked_spec(item.spec)})


def masked_text(text: str, spec: RunSpec) -> str:
    """`text` (a task file as uploaded) with the values of the spec's env (of 3 characters or
    more: shorter ones are no secrets, and would mask half the file) as `MASK`."""
    for value in sorted(spec.env.values(), key=len, reverse=True):
        if len(value) >= 3:
            text = text.replace(value, MASK)
    return text
