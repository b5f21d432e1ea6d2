"""dstack's run policies that iacrun checks as dstack does: `utilization_policy`, `priority`,
`schedule` (cron) and the multi-node orders, with their ranges and defaults."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from iacrun.orchestrator.models.common import CoreModel
from iacrun.orchestrator.models.units import format_duration, parse_duration

#: dstack's run priorities: 0 (default, lowest) to 100
PRIORITY_MIN, PRIORITY_MAX, PRIORITY_DEFAULT = 0, 100, 0
#: dstack's shortest utilization window
MIN_TIME_WINDOW = 5 * 60

StartupOrder = Literal["any", "master-first", "workers-first"]
StopCriteria = Literal["all-done", "master-done"]
CreationPolicy = Literal["reuse", "reuse-or-create"]


def _window(value: Any) -> int:
    seconds = parse_duration(value)
    if seconds < MIN_TIME_WINDOW:
        raise ValueError(
            f"time_window is {format_duration(seconds)}; the shortest is "
            f"{format_duration(MIN_TIME_WINDOW)} (as in dstack)"
        )
    return seconds


class UtilizationPolicy(CoreModel):
    """End the run when a GPU stays under `min_gpu_utilization` % for the whole `time_window`."""

    min_gpu_utilization: int = Field(ge=0, le=100)
    time_window: Annotated[
        int,
        BeforeValidator(_window),
        WithJsonSchema({"anyOf": [{"type": "string", "examples": ["30m"]}, {"type": "integer"}]}),
    ]


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def check_cron(expression: str) -> str:
    """A standard five-field cron expression (or a macro such as `@daily`); ValueError else."""
    text = expression.strip()
    if text.lower() in _CRON_MACROS:
        return text
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(
            f"{expression!r} is not a cron expression; it takes 5 fields "
            "(minute hour day-of-month month day-of-week), e.g. '0 3 * * *'"
        )
    for part, (what, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        for item in part.split(","):
            if not _cron_item_ok(item.upper(), low, high, names):
                raise ValueError(
                    f"{expression!r}: {part!r} is not a valid {what} ({low}-{high}, *, "
                    "ranges a-b, steps */n, lists a,b)"
                )
    return text


def _cron_item_ok(item: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    base, slash, step = item.partition("/")
    if slash and not (step.isdigit() and int(step) > 0):
        return False
    if base == "*":
        return True
    bounds = base.split("-")
    if len(bounds) > 2:
        return False
    values = []
    for bound in bounds:
        if bound in names:
            values.append(names.index(bound) + low)
        elif re.fullmatch(r"\d+", bound):
            values.append(int(bound))
        else:
            return False
    return all(low <= v <= high for v in values) and values == sorted(values)


def _crons(value: Any) -> Any:
    values = [value] if isinstance(value, str) else value
    if isinstance(values, list):
        if not values:
            raise ValueError("cron needs at least one expression")
        for item in values:
            if not isinstance(item, str):
                raise ValueError(f"{item!r} is not a cron expression; write it like '0 3 * * *'")
            check_cron(item)
    return values


class Schedule(CoreModel):
    """When a run starts (UTC): one cron expression or several."""

    cron: Annotated[
        list[str],
        BeforeValidator(_crons),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string", "examples": ["0 3 * * *"]},
                    {"type": "array", "items": {"type": "string"}},
                ]
            }
        ),
    ]
