"""What the scheduler costs. Prints medians; asserts nothing.

    .venv/bin/python -m tests.bench.bench_schedules [--schedules 10000] [--repeat 15]

- the next time of typical cron expressions (the scheduler computes one per schedule at each
  of its times, and one for every time a schedule is created or read for the dry run)
- `Scheduler.tick` on a registry holding N active schedules none of which is due (what the
  server's loop does between times: one SELECT on the index of next times), and
  `Schedules.next_due` (how long the loop sleeps)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.models.policies import next_cron_time
from iacrun.orchestrator.models.runspec import build_run_spec
from iacrun.orchestrator.models.settings import Settings
from iacrun.server.scheduler import Scheduler

EXPRESSIONS = ["* * * * *", "0 3 * * *", "*/15 9-17 * * 1-5", "0 0 29 2 *", "@weekly"]
NOW = 1796135400.0  # 2026-12-01 14:30 UTC


def _median_ms(action: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()  # type: ignore[operator]
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    for expression in EXPRESSIONS:
        ms = _median_ms(lambda e=expression: next_cron_time([e], NOW), args.repeat * 20)
        print(f"next time of {expression!r:22} {ms * 1000:8.1f} µs")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "task.dstack.yml").write_text(
            "type: task\ncommands: [echo hi]\nschedule:\n  cron: '0 3 * * *'\n"
        )
        spec = build_run_spec(folder / "task.dstack.yml")
        scheduler = Scheduler(Orchestrator(home=folder / "home", settings=Settings()))
        store = scheduler.schedules
        start = time.perf_counter()
        with store.db.transaction():
            for number in range(args.schedules):
                store.create(f"s{number}", spec, now=NOW)
        made = time.perf_counter() - start
        print(f"{args.schedules} schedules created in {made:.1f} s")
        tick = _median_ms(lambda: scheduler.tick(NOW + 60), args.repeat)
        print(f"tick with {args.schedules} schedules, none due: {tick:.2f} ms")
        soonest = _median_ms(store.next_due, args.repeat)
        print(f"next_due with {args.schedules} schedules: {soonest:.2f} ms")
        listing = _median_ms(store.listing, args.repeat)
        print(f"listing {args.schedules} schedules (GET /schedules): {listing:.1f} ms")


if __name__ == "__main__":
    main()
