"""A run's port through the server's WebSocket tunnel, against the same port reached directly,
on loopback. Prints figures; asserts nothing.

    .venv/bin/python tests/bench/bench_port_tunnel.py [--mb 256] [--connects 200]

A real `iacrun server` (SQLite, a temporary home) runs a local-backend task serving HTTP
(tests/server/serving.py); the tunnel is `Client.forward_ports`, the code `iacrun attach --port`
runs in remote mode: a listener on 127.0.0.1 here, a WebSocket to the server per connection, the
server's relay to the job's port.

- throughput: one connection reading `--mb` MB (`/zeros/N`), best of 3, MB/s
- 20 connections at once, each reading `--mb`/20 MB: the aggregate MB/s, best of 3
- connect latency: a new connection, a small request and its whole answer, `--connects` times
  one after another: p50 and p99 in ms
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.server.conftest import ADMIN_TOKEN, start_server, stop_server  # noqa: E402
from tests.server.serving import write_serving_task  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str) -> int:
    """An HTTP/1.0 GET on a new connection; the bytes of the whole answer."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        total = 0
        while data := sock.recv(1 << 20):
            total += len(data)
        return total


def throughput(port: int, size: int) -> float:
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        got = get(port, f"/zeros/{size}")
        seconds = time.perf_counter() - start
        assert got > size, got
        best = max(best, size / seconds / 1e6)
    return best


def parallel(port: int, size: int, count: int = 20) -> float:
    each, best = size // count, 0.0
    with ThreadPoolExecutor(count) as pool:
        for _ in range(3):
            start = time.perf_counter()
            got = sum(pool.map(lambda _: get(port, f"/zeros/{each}"), range(count)))
            seconds = time.perf_counter() - start
            assert got > each * count
            best = max(best, each * count / seconds / 1e6)
    return best


def latency(port: int, count: int) -> tuple[float, float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        get(port, "/")
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--connects", type=int, default=200)
    args = parser.parse_args()
    size = args.mb * 1024 * 1024

    from iacrun.client import Client
    from iacrun.orchestrator.models.runspec import Overrides, build_run_spec

    with tempfile.TemporaryDirectory(prefix="iacrun-bench-") as tmp:
        root = Path(tmp)
        env = dict(os.environ, IACRUN_SERVER_ADMIN_TOKEN=ADMIN_TOKEN, IACRUN_HOME=str(root / "h"))
        env.pop("IACRUN_DATABASE_URL", None)
        os.environ["IACRUN_HOME"] = str(root / "client-home")
        server = start_server(root / "server-home", env)
        client = Client(server.url, ADMIN_TOKEN)
        try:
            project = root / "project"
            project.mkdir()
            task_port, local = free_port(), free_port()
            write_serving_task(project, task_port)
            client.submit(build_run_spec(project / "task.dstack.yml", Overrides(name="bench")))
            while client.get("bench").status != "running":
                time.sleep(0.1)
            with client.forward_ports("bench") as forwards:
                forwards.forward(local, task_port)
                end = time.monotonic() + 60
                while True:  # until the task's server answers through the tunnel
                    try:
                        if get(local, "/") > 0:
                            break
                    except OSError:
                        pass
                    assert time.monotonic() < end, "the task's server never answered"
                    time.sleep(0.2)
                rows = []
                for label, port in (("direct", task_port), ("tunnel", local)):
                    mbps = throughput(port, size)
                    many = parallel(port, size)
                    p50, p99 = latency(port, args.connects)
                    rows.append((label, mbps, many, p50, p99))
            print(
                f"{args.mb} MB per read, {args.connects} connects, loopback, {os.cpu_count()} CPUs"
            )
            print(f"{'':8} {'1 conn MB/s':>12} {'20 conns MB/s':>14} {'p50 ms':>8} {'p99 ms':>8}")
            for label, mbps, many, p50, p99 in rows:
                print(f"{label:8} {mbps:12.0f} {many:14.0f} {p50:8.2f} {p99:8.2f}")
        finally:
            # whatever happened, the task's server ends before the bench's (an interrupted try
            # once left it running)
            with contextlib.suppress(Exception):
                if client.get("bench").active:
                    client.stop("bench", abort=True)
                    while client.get("bench").active:
                        time.sleep(0.1)
            client.close()
            stop_server(server)


if __name__ == "__main__":
    main()
