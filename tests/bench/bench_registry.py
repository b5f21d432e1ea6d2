"""The registry with 10,000 runs recorded, on SQLite and on PostgreSQL (a throw-away server
started as the tests start theirs): p50/p99 of the reads that `iacrun ps` and the server's runs
list make, and what one shared connection serves to many threads. Prints figures; asserts
nothing (the issue's target: list p99 under 50 ms).

    .venv/bin/python -m tests.bench.bench_registry [--runs 10000] [--repeat 300]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from iacrun.orchestrator.registry import Registry


def seed(registry: Registry, count: int, root: Path) -> None:
    """`count` finished runs (a day old) and 20 active ones, as `iacrun ps` finds them."""
    long_ago = time.time() - 86400
    with registry.db.transaction():
        for i in range(count):
            run = registry.create(f"seed-{i}", {"commands": ["true"]}, root)
            registry.update(
                run.id,
                status="done",
                reason="exited (0)",
                exit_code=0,
                backend="local",
                price=0.0,
                started_at=long_ago,
                finished_at=long_ago + 5,
            )
        for i in range(20):
            registry.create(f"active-{i}", {"commands": ["sleep 600"]}, root)


def percentiles(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def throughput(registry: Registry, threads: int, seconds: float = 2.0) -> float:
    """Reads of one run by id per second, from `threads` threads sharing the registry."""
    counts = [0] * threads
    end = time.monotonic() + seconds

    def read(slot: int) -> None:
        while time.monotonic() < end:
            registry.get_by_id(1)
            counts[slot] += 1

    workers = [threading.Thread(target=read, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / seconds


def bench(label: str, target: str, count: int, repeat: int, root: Path) -> None:
    registry = Registry(target)
    start = time.perf_counter()
    seed(registry, count, root)
    took = time.perf_counter() - start
    print(f"{label}: {count} finished + 20 active runs recorded in {took:.1f} s")
    for what, call, reps in (
        ("ps (active + last hour)", lambda: registry.runs(), repeat),
        ("list page (50 newest)", lambda: registry.runs(all_runs=True, limit=50), repeat),
        ("get one by name", lambda: registry.get("seed-5000"), repeat),
        ("pool scan (unsupervised)", registry.unsupervised, repeat),
        (f"all {count + 20} runs", lambda: registry.runs(all_runs=True), 10),
    ):
        p50, p99 = percentiles(call, reps)
        print(f"  {what:<26} p50 {p50:8.2f} ms  p99 {p99:8.2f} ms")
    for threads in (1, 16):
        per_second = throughput(registry, threads)
        print(f"  get_by_id, {threads:>2} threads, one connection: {per_second:8.0f}/s")
    registry.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="iacrun-bench-registry-"))
    try:
        bench("SQLite", str(work / "registry.db"), args.runs, args.repeat, work)
        from tests.pg import PostgresServer, postgres_bin

        bindir = postgres_bin()
        if bindir is None:
            print("PostgreSQL: not installed (no /usr/lib/postgresql/*/bin)")
            return
        server = PostgresServer(bindir)
        try:
            server.start()
            bench("PostgreSQL", server.create_database(), args.runs, args.repeat, work)
        finally:
            server.remove()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
