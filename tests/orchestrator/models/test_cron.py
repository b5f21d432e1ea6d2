"""`schedule`'s cron: the next time each expression names, in UTC, as cron counts it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from iacrun.orchestrator.models.policies import Schedule, check_cron, next_cron_time


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _shown(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %a %H:%M")


# 2026-12-01 is a Tuesday
CASES = [
    ("* * * * *", "2026-12-01T14:31:17", "2026-12-01 Tue 14:32"),
    ("* * * * *", "2026-12-01T14:32:00", "2026-12-01 Tue 14:33"),  # strictly after
    ("0 3 * * *", "2026-12-01T14:31:00", "2026-12-02 Wed 03:00"),
    ("*/15 * * * *", "2026-12-01T23:50:00", "2026-12-02 Wed 00:00"),
    ("*/15 9-17 * * 1-5", "2026-12-05T10:00:00", "2026-12-07 Mon 09:00"),
    ("5/20 1 * * *", "2026-12-01T01:06:00", "2026-12-01 Tue 01:25"),
    ("0 12 1,15 * *", "2026-12-02T00:00:00", "2026-12-15 Tue 12:00"),
    ("0 0 31 * *", "2027-02-01T00:00:00", "2027-03-31 Wed 00:00"),
    ("0 0 29 2 *", "2026-12-01T00:00:00", "2028-02-29 Tue 00:00"),
    ("0 0 13 * 5", "2026-12-01T00:00:00", "2026-12-04 Fri 00:00"),  # 13th OR Friday
    ("0 0 * * 7", "2026-12-01T00:00:00", "2026-12-06 Sun 00:00"),  # 7 is Sunday too
    ("0 0 * * SUN", "2026-12-01T00:00:00", "2026-12-06 Sun 00:00"),
    ("30 6 * JAN-MAR MON", "2026-12-01T00:00:00", "2027-01-04 Mon 06:30"),
    ("@weekly", "2026-12-01T00:00:00", "2026-12-06 Sun 00:00"),
    ("@hourly", "2026-12-01T14:31:00", "2026-12-01 Tue 15:00"),
    ("@yearly", "2026-12-01T00:00:00", "2027-01-01 Fri 00:00"),
]


@pytest.mark.parametrize(("cron", "after", "expected"), CASES)
def test_the_next_time_is_the_first_one_cron_names_after(
    cron: str, after: str, expected: str
) -> None:
    assert _shown(next_cron_time([cron], _at(after))) == expected


def test_several_expressions_fire_at_the_earliest_of_theirs() -> None:
    schedule = Schedule.model_validate({"cron": ["0 3 * * *", "30 12 * * 1-5"]})
    first = schedule.next_time(_at("2026-12-01T04:00:00"))
    assert _shown(first) == "2026-12-01 Tue 12:30"
    assert _shown(schedule.next_time(first)) == "2026-12-02 Wed 03:00"


def test_an_expression_that_names_no_real_day_is_refused() -> None:
    with pytest.raises(ValueError, match="names no day that exists"):
        check_cron("0 0 30 2 *")
    with pytest.raises(ValueError, match="names no day that exists"):
        check_cron("0 0 31 4,6,9,11 *")


def test_concurrent_is_off_unless_asked() -> None:
    assert Schedule.model_validate({"cron": "* * * * *"}).concurrent is False
    assert Schedule.model_validate({"cron": "* * * * *", "concurrent": True}).concurrent
