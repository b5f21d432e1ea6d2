"""The supervising footprint of many active runs on the local backend: one server's supervision
pool (threads of one process) against one detached supervisor process per run (the embedded
way). Prints figures; asserts nothing (the issue's target: under 1.5 GB for 200 active runs).

    .venv/bin/python -m tests.bench.bench_supervision [--runs 200] [--way pool|detached|both]
                                                      [--database-url postgresql://...]

Each run is `sleep S`, so that all are active at once; the figures are taken when every run is
`running` (RSS and PSS of the supervising processes only: the runners and jobs are the same
either way), then every run is stopped and the time until all are final is shown too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.bench_memory import memory_kb


def _submit_all(count: int, seconds: int, *, supervise: bool) -> list[int]:
    from iacrun.orchestrator.api import Orchestrator
    from iacrun.orchestrator.models.runspec import build_run_spec

    orch = Orchestrator()
    task = Path(os.environ["IACRUN_HOME"]).parent / "project" / "task.dstack.yml"
    task.parent.mkdir(parents=True, exist_ok=True)
    task.write_text(f"type: task\ncommands: [sleep {seconds}]\n")
    spec = build_run_spec(task)
    plan = orch.plan(spec)
    ids = []
    for i in range(count):
        named = spec.model_copy(update={"run_name": f"bench-{i}"})
        ids.append(orch.submit(named, plan, supervise=supervise).id)
    return ids


def _wait(ids: list[int], status_ok: tuple[str, ...], timeout: float, sample: object) -> float:
    """Seconds until every run is in `status_ok`; at `timeout`, says how far they got."""
    import collections

    from iacrun.orchestrator.api import Orchestrator

    registry = Orchestrator().registry
    start = time.monotonic()
    while True:
        if callable(sample):
            sample()
        statuses = [registry.get_by_id(i).status.value for i in ids]
        if all(s in status_ok for s in statuses):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            print(f"  after {timeout:.0f} s: {dict(collections.Counter(statuses))}")
            return time.monotonic() - start
        time.sleep(0.5)


def _stop_all(ids: list[int]) -> None:
    from iacrun.orchestrator.api import Orchestrator

    orch = Orchestrator()
    for run_id in ids:
        orch.request_stop(orch.registry.get_by_id(run_id).name)


def _mb(kb: float) -> str:
    return f"{kb / 1024:8.1f} MB"


def bench_pool(count: int, seconds: int, timeout: float) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log = Path(os.environ["IACRUN_HOME"]).parent / "pool.log"
    with open(log, "wb") as out:
        pool = subprocess.Popen(
            [sys.executable, "-m", "iacrun.server.supervision"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        while "supervising as" not in log.read_text():
            time.sleep(0.1)
        idle = memory_kb(pool.pid)
        peak = [0, 0]

        def sample() -> None:
            rss, pss = memory_kb(pool.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)

        started = time.monotonic()
        ids = _submit_all(count, seconds, supervise=False)
        took = _wait(ids, ("running",), timeout, sample) + (time.monotonic() - started)
        rss, pss = memory_kb(pool.pid)
        threads = len(os.listdir(f"/proc/{pool.pid}/task"))
        print(f"pool: 1 process, {threads} threads, {count} active runs, measured at {took:.1f} s")
        print(f"  idle             RSS {_mb(idle[0])}  PSS {_mb(idle[1])}")
        print(f"  {count} active      RSS {_mb(rss)}  PSS {_mb(pss)}")
        print(f"  peak             RSS {_mb(peak[0])}  PSS {_mb(peak[1])}")
        print(f"  per run (above idle)  PSS {_mb((pss - idle[1]) / count)}")
        _stop_all(ids)
        print(f"  stopped: all final after {_wait(ids, FINAL, 600, None):.1f} s")
    finally:
        pool.terminate()
        pool.wait(30)


FINAL = ("done", "failed", "terminated")


def bench_detached(count: int, seconds: int, timeout: float) -> None:
    from iacrun.orchestrator.api import Orchestrator

    started = time.monotonic()
    ids = _submit_all(count, seconds, supervise=True)
    took = _wait(ids, ("running",), timeout, None) + (time.monotonic() - started)
    registry = Orchestrator().registry
    pids = [registry.get_by_id(i).supervisor_pid for i in ids]
    figures = [memory_kb(pid) for pid in pids if pid]
    rss = sum(f[0] for f in figures)
    pss = sum(f[1] for f in figures)
    print(f"detached: {len(figures)} processes, {count} active runs, measured at {took:.1f} s")
    print(f"  total            RSS {_mb(rss)}  PSS {_mb(pss)}")
    print(
        f"  per run          RSS {_mb(rss / max(1, len(figures)))}  "
        f"PSS {_mb(pss / max(1, len(figures)))}"
    )
    _stop_all(ids)
    print(f"  stopped: all final after {_wait(ids, FINAL, 900, None):.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=600, help="each job sleeps this long")
    parser.add_argument("--way", choices=("pool", "detached", "both"), default="both")
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for all to be running"
    )
    args = parser.parse_args()
    ways = ("pool", "detached") if args.way == "both" else (args.way,)
    for way in ways:
        work = Path(tempfile.mkdtemp(prefix=f"iacrun-bench-{way}-"))
        os.environ.update(HOME=str(work), IACRUN_HOME=str(work / ".iacrun"))
        os.environ["IACRUN_SERVER_LEASE_SECONDS"] = "30"
        if args.database_url:
            os.environ["IACRUN_DATABASE_URL"] = args.database_url
        try:
            (bench_pool if way == "pool" else bench_detached)(args.runs, args.seconds, args.timeout)
        finally:
            subprocess.run(
                [sys.executable, "-m", "iacrun.cli.main", "down", "--all"],
                capture_output=True,
                check=False,
            )
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
