"""The dashboard under load. Prints figures; asserts nothing.

    .venv/bin/python -m tests.bench.bench_dashboard [--runs 10000] [--log-mb 100] [--repeat 30]

1. The runs page with `--runs` runs recorded: the first screen's time on the server (a GET of
   /runs over loopback, p50/p95/max of `--repeat`), and of the live update's runs.json.
   Target: under 300 ms.
2. A run whose log is `--log-mb` MB, opened in Debian's chromium (headless, Playwright): the time
   until its page shows a log line, until it shows the log's last line (the page starts from
   the log's last 256 KB) and until the log has ended, the main
   thread's long tasks meanwhile (PerformanceObserver 'longtask': count, total, longest), the
   JS heap at the end (performance.memory, with --enable-precise-memory-info), the lines kept
   in the page, and whether the page still answers (a click's round trip) while it streams.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from iacrun.orchestrator.registry import Registry

ADMIN = "iacrun_bench-admin-token-0123456789abcdefghijklmnopqrstu"


def record_runs(registry: Registry, count: int) -> None:
    """`count` finished runs with offers and prices, as a busy team's registry holds them."""
    offer = {
        "backend": "aws",
        "region": "us-east-1",
        "instance_type": "g5.xlarge",
        "resources": {"cpus": 4, "memory_gb": 16, "gpus": [{"name": "A10G", "memory_gb": 24}]},
        "spot": False,
        "price": 1.006,
    }
    spec = {"run_name": None, "config_path": "/x/task.dstack.yml", "repo_dir": "/x",
            "working_dir": ".", "image": None, "python": None, "commands": ["python train.py"],
            "env": {}, "ports": [], "requirements": {}, "retry": None, "max_duration": None,
            "stop_duration": 15}  # fmt: skip
    now = time.time()
    with registry.db.transaction() as db:
        for i in range(count):
            start = now - (count - i) * 60
            db.execute(
                "INSERT INTO runs (name, status, reason, backend, region, instance_type, price, "
                "offer, spec, submitted_at, started_at, finished_at, submitted_by, local_dir) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (f"train-{i}", "done" if i % 7 else "failed", None if i % 7 else "exit code 1",
                 "aws", "us-east-1", "g5.xlarge", 1.006, json.dumps(offer), json.dumps(spec),
                 start - 30, start, start + 3000, f"user{i % 9}", f"/x/train-{i}"),
            )  # fmt: skip


def timings(client: httpx.Client, path: str, repeat: int) -> list[float]:
    client.get(path)  # warm
    out = []
    for _ in range(repeat):
        began = time.perf_counter()
        answer = client.get(path)
        out.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200, answer.text[:200]
    return out


def show(label: str, values: list[float]) -> None:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    print(
        f"{label:44} p50 {statistics.median(values):7.1f} ms   p95 {p95:7.1f} ms   "
        f"max {max(values):7.1f} ms"
    )


OBSERVER = """
window.__long = [];
new PerformanceObserver(list => {
  for (const e of list.getEntries()) window.__long.push(e.duration);
}).observe({type: 'longtask', buffered: true});
"""


#: true once the page shows a line with this text (the log's last line)
LAST_LINE = (
    "t => Array.from(document.querySelectorAll('#log-lines .l')).some(e => e.textContent === t)"
)


def browser_log(url: str, name: str, size_mb: int, last_line: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-dev-shm-usage", "--enable-precise-memory-info"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": "iacrun_session", "value": ADMIN, "url": url}])
        page = context.new_page()
        page.add_init_script(OBSERVER)
        began = time.perf_counter()
        page.goto(f"{url}/runs/{name}")
        page.wait_for_selector("#log-lines .l", timeout=120_000)
        first = time.perf_counter() - began
        page.wait_for_function(LAST_LINE, arg=last_line, timeout=600_000)
        last = time.perf_counter() - began
        # the page answers while the log streams: a click's handler runs within this time
        probes = []
        while page.get_attribute("#log", "data-ended") != "true":
            t = time.perf_counter()
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => r(1)))")
            probes.append((time.perf_counter() - t) * 1000)
            if time.perf_counter() - began > 600:
                print("the log did not end within 10 minutes")
                break
            time.sleep(0.1)
        whole = time.perf_counter() - began
        long_tasks = page.evaluate("window.__long")
        heap = page.evaluate("performance.memory.usedJSHeapSize") / 1e6
        kept = page.evaluate("document.querySelectorAll('#log-lines .l').length")
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        metrics = cdp.send("Performance.getMetrics")
        print(f"log of {size_mb} MB in the browser:")
        print(f"  first line shown after          {first * 1000:8.0f} ms")
        print(f"  the log's last line shown after {last * 1000:8.0f} ms")
        print(f"  the log's end event after       {whole * 1000:8.0f} ms")
        total = sum(long_tasks)
        longest = max(long_tasks, default=0)
        print(f"  long tasks (>50 ms)             {len(long_tasks):8d}   total {total:.0f} ms   "
              f"longest {longest:.0f} ms")  # fmt: skip
        if probes:
            print(f"  a frame while streaming         p50 {statistics.median(probes):.0f} ms   "
                  f"max {max(probes):.0f} ms ({len(probes)} probes)")  # fmt: skip
        print(f"  JS heap at the end              {heap:8.1f} MB")
        nodes = next((m["value"] for m in metrics["metrics"] if m["name"] == "Nodes"), 0)
        print(f"  log lines kept in the page      {kept:8d}   DOM nodes {nodes:.0f}")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--log-mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    from tests.server.conftest import start_server, stop_server

    with tempfile.TemporaryDirectory(prefix="iacrun-bench-dash-") as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "IACRUN_SERVER_ADMIN_TOKEN": ADMIN, "HOME": tmp}
        env.pop("IACRUN_DATABASE_URL", None)
        server = start_server(home, env)  # makes the database at head
        try:
            registry = Registry(home / "registry.db")
            began = time.perf_counter()
            record_runs(registry, args.runs)
            print(f"{args.runs} runs recorded in {time.perf_counter() - began:.1f} s")
            with httpx.Client(base_url=server.url, cookies={"iacrun_session": ADMIN}) as client:
                rows = client.get("/runs").text.count('<tr id="run-')
                print(f"the first screen lists {rows} runs, newest first (the rest: paged)")
                show(f"GET /runs ({args.runs} runs, first screen)", timings(client, "/runs",
                     args.repeat))  # fmt: skip
                show("GET /runs.json (the live update)", timings(client, "/runs.json",
                     args.repeat))  # fmt: skip
                show("GET /runs?show=active (none active)", timings(client, "/runs?show=active",
                     args.repeat))  # fmt: skip
                show("GET /cost (30 days of those runs)", timings(client, "/cost", 5))
            name = log_run(server.url, Path(tmp), args.log_mb)
            registry.close()
            browser_log(server.url, name, args.log_mb, last_line(args.log_mb))
        finally:
            stop_server(server)


def last_line(size_mb: int) -> str:
    """The last line `log_run`'s task writes."""
    return f"{size_mb * 1024 * 1024 // 100 - 1:09d} " + "x" * 80


def log_run(url: str, tmp: Path, size_mb: int) -> str:
    """A run on the local backend that writes `size_mb` MB of log (lines of ~100 bytes, some in
    colour) and ends; returns its name once it has ended."""
    from iacrun.client import Client
    from iacrun.orchestrator.models.runspec import Overrides, build_run_spec

    project = tmp / "project"
    project.mkdir()
    lines = size_mb * 1024 * 1024 // 100
    (project / "write.py").write_text(
        "import sys\n"
        "out = sys.stdout\n"
        f"for i in range({lines}):\n"
        "    c = '\\x1b[32m' if i % 10 == 0 else ''\n"
        "    out.write(f'{c}{i:09d} ' + 'x' * 80 + ('\\x1b[0m' if c else '') + '\\n')\n"
    )
    (project / "task.dstack.yml").write_text(
        "type: task\nname: biglog\ncommands:\n  - python3 write.py\n"
    )
    spec = build_run_spec(project / "task.dstack.yml", Overrides(name="biglog"))
    with Client(url, ADMIN) as client:
        client.submit(spec)
        began = time.perf_counter()
        while client.get("biglog").active:
            time.sleep(0.5)
        print(f"a run wrote a {size_mb} MB log in {time.perf_counter() - began:.1f} s "
              f"({client.get('biglog').status})")  # fmt: skip
    return "biglog"


if __name__ == "__main__":
    sys.exit(main())
