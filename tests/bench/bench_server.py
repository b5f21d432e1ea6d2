"""The server's speed. Prints figures; asserts nothing (targets are in issue 15).

    .venv/bin/python tests/bench/bench_server.py [--runs 10000] [--log-mb 200]

- `GET /api/v1/runs` (a page of 50, and filtered by user) with 10,000 runs recorded: p50 and
  p99 over 500 requests on one keep-alive connection (target: p99 under 50 ms)
- a finished run's log through Server-Sent Events, read whole by `Client.follow`, decoded
  (target: at least 50 MB/s)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.server.conftest import ADMIN_TOKEN, start_server, stop_server  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def record_runs(home: Path, count: int, spec_json: str) -> None:
    from iacrun.orchestrator.registry import Registry

    registry = Registry(home / "registry.db")
    now = time.time()
    with registry.db.transaction() as db:
        for index in range(count):
            db.execute(
                "INSERT INTO runs (name, status, spec, submitted_at, finished_at, local_dir, "
                "submitted_by, exit_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    f"bench-{index}",
                    "done",
                    spec_json,
                    now - count + index,
                    now - count + index + 1,
                    str(home / "runs" / f"bench-{index}-{index + 1}"),
                    ("ann", "bob", "cyd")[index % 3],
                    0,
                ),
            )
    registry.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--log-mb", type=int, default=200)
    args = parser.parse_args()

    import httpx

    from iacrun.client import Client
    from iacrun.orchestrator.models.runspec import build_run_spec

    tmp = Path(tempfile.mkdtemp(prefix="iacrun-bench-server-"))
    project = tmp / "project"
    project.mkdir()
    task = project / "task.dstack.yml"
    size = args.log_mb * 1024 * 1024
    task.write_text(
        "type: task\ncommands:\n"
        f"  - yes 'the quick brown fox jumps over the lazy dog 0123456789' | head -c {size}\n"
    )
    env = {
        **os.environ,
        "HOME": str(tmp),
        "IACRUN_SERVER_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    os.environ["IACRUN_HOME"] = str(tmp / "client-home")
    home = tmp / "server-home"
    spec = build_run_spec(task)
    server = start_server(home, env)
    try:
        record_runs(home, args.runs, spec.model_dump_json())
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=server.url + "/api/v1", headers=headers) as http:
            for label, params in [
                ("a page of 50", {}),
                ("user=bob, a page of 50", {"user": "bob"}),
                ("a page of 500", {"limit": 500}),
            ]:
                times = []
                for _ in range(args.requests):
                    start = time.perf_counter()
                    response = http.get("/runs", params=params)
                    times.append((time.perf_counter() - start) * 1000)
                    response.raise_for_status()
                print(
                    f"GET /runs ({label}) with {args.runs} runs: "
                    f"p50 {statistics.median(times):.1f} ms, p99 {percentile(times, 0.99):.1f} ms"
                )
        client = Client(server.url, ADMIN_TOKEN)
        client.submit(spec.model_copy(update={"run_name": "big-log"}))
        deadline = time.monotonic() + 600
        while client.get("big-log").active and time.monotonic() < deadline:
            time.sleep(0.5)
        start = time.perf_counter()
        received = sum(len(chunk) for chunk in client.follow("big-log"))
        elapsed = time.perf_counter() - start
        print(
            f"SSE log stream: {received / 1e6:.0f} MB in {elapsed:.2f} s: "
            f"{received / 1e6 / elapsed:.0f} MB/s"
        )
        client.close()
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
