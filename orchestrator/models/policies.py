"""dstack's run policies that iacrun checks as dstack does: `utilization_policy`, `priority`,
`schedule` (cron) and the multi-node orders, with their ranges and defaults."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
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
_CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: how far ahead an expression is searched for its next time (a leap day on a given weekday
#: comes back within 28 years); an expression with no time in that span never fires
_CRON_HORIZON_YEARS = 29


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
    if _CronTimes(text).next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise ValueError(f"{expression!r} names no day that exists (e.g. 30 February)")
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


class _CronTimes:
    """The minutes one checked cron expression names, as sets per field (UTC)."""

    def __init__(self, expression: str) -> None:
        text = _CRON_MACROS.get(expression.strip().lower(), expression.strip())
        fields = [
            _expand(part.upper(), low, high, names)
            for part, (_, low, high, names) in zip(text.split(), _CRON_FIELDS, strict=True)
        ]
        self.minutes, self.hours, self.days, self.months, weekdays = fields
        self.weekdays = {d % 7 for d in weekdays}  # 7 is Sunday too
        # cron's rule: when both day fields are restricted, a day matching either one fires
        self.either_day = not text.split()[2].startswith("*") and not text.split()[4].startswith(
            "*"
        )

    def _day_ok(self, day: datetime) -> bool:
        weekday = (day.weekday() + 1) % 7  # cron counts from Sunday = 0
        in_month, in_week = day.day in self.days, weekday in self.weekdays
        return (in_month or in_week) if self.either_day else (in_month and in_week)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first time strictly after `moment` (aware, UTC) that the expression names."""
        at = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        horizon = at.year + _CRON_HORIZON_YEARS
        while at.year <= horizon:
            if at.month not in self.months:
                year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
                at = at.replace(year=year, month=month, day=1, hour=0, minute=0)
            elif not self._day_ok(at):
                at = (at + timedelta(days=1)).replace(hour=0, minute=0)
            elif at.hour not in self.hours:
                at = (at + timedelta(hours=1)).replace(minute=0)
            elif at.minute not in self.minutes:
                at += timedelta(minutes=1)
            else:
                return at
        return None


def _expand(part: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    """The values one checked cron field names: `*`, `a`, `a-b`, each with `/step`, listed."""
    values: set[int] = set()
    for item in part.split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            first, last = low, high
        else:
            bounds = [names.index(b) + low if b in names else int(b) for b in base.split("-")]
            first = bounds[0]
            last = bounds[-1] if len(bounds) == 2 or not step_text else high  # `5/15`: 5 to max
        values.update(range(first, last + 1, step))
    return values


def next_cron_time(expressions: Sequence[str], after: float) -> float:
    """The first time strictly after `after` (epoch seconds) that any of the checked cron
    `expressions` names, in UTC, as epoch seconds (a whole minute)."""
    moment = datetime.fromtimestamp(after, UTC)
    found = [_CronTimes(e).next_after(moment) for e in expressions]
    times = [t for t in found if t is not None]
    if not times:
        raise ValueError(f"{', '.join(expressions)} never fires")
    return min(times).timestamp()


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
    """When a run starts (UTC): one cron expression or several.

    `concurrent` is iacrun's own (dstack has no such field): a time that comes while the
    schedule's previous run is still active starts another run beside it, instead of being
    skipped."""

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
    concurrent: bool = False

    def next_time(self, after: float) -> float:
        """The schedule's first time strictly after `after` (epoch seconds, UTC)."""
        return next_cron_time(self.cron, after)
