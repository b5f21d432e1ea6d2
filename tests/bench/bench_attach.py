"""What saving the attach offset after every chunk costs. Prints figures; asserts nothing.

    .venv/bin/python -m tests.bench.bench_attach [--lines 100000] [--repeat 3]

`iacrun attach` saves its log offset after each chunk it prints (api._save_offset: a small file
written and renamed); `iacrun logs` follows the same log the same way without saving anything.
Printed: the cost of one save; lines/s through `attach` and through `logs` of a finished run (a
few 4 MB chunks); and both following a job live while it prints (one chunk per poll), with the
number of saves that made.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IACRUN = [sys.executable, "-m", "iacrun.cli.main"]


def save_cost(folder: Path, count: int = 2000) -> float:
    from iacrun.orchestrator.api import _save_offset
    from iacrun.orchestrator.registry import RunRecord

    run = RunRecord.model_construct(local_dir=str(folder))
    start = time.perf_counter()
    for i in range(count):
        _save_offset(run, i)
    return (time.perf_counter() - start) / count


def run_cli(argv: list[str], env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run([*IACRUN, *argv], env=env, cwd=cwd, capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"iacrun {argv} failed: {done.stderr.decode()}")


GEN = """import sys, time
lines, pause_every = int(sys.argv[1]), int(sys.argv[2])
for i in range(1, lines + 1):
    print("line", i)
    if i % pause_every == 0:
        sys.stdout.flush()
        time.sleep(0.01)
"""


def task(lines: int, pause_every: int) -> str:
    return f"type: task\ncommands:\n  - python3 gen.py {lines} {pause_every}\n"


class Counting:
    """A sink that drops the data and counts lines and chunks (each chunk: one offset save)."""

    def __init__(self) -> None:
        self.lines = 0
        self.chunks = 0
        self.tail = b""  # a chunk may end inside "line ": too short to hold one itself

    def __call__(self, data: bytes) -> None:
        seen = self.tail + data
        self.lines += seen.count(b"line ")
        self.tail = seen[-4:]
        self.chunks += 1


def follow(what: str, name: str, live: bool) -> tuple[float, Counting]:
    from iacrun.orchestrator.api import Orchestrator

    orch, sink = Orchestrator(), Counting()
    start = time.perf_counter()
    if what == "attach":
        orch.attach(name, sink, offset=0)
    else:
        orch.logs(name, sink, follow=live)
    return time.perf_counter() - start, sink


def running(name: str) -> None:
    from iacrun.orchestrator.api import Orchestrator

    orch = Orchestrator()
    while orch.get(name).status in ("submitted", "provisioning"):
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        home = root / "home"
        project = root / "project"
        project.mkdir()
        (project / "gen.py").write_text(GEN)
        env = dict(os.environ, HOME=str(home), IACRUN_HOME=str(home / ".iacrun"))
        os.environ.update(HOME=env["HOME"], IACRUN_HOME=env["IACRUN_HOME"])
        print(f"one offset save (write + rename)  {save_cost(root) * 1e6:.0f} µs")

        (project / "task.dstack.yml").write_text(task(args.lines, args.lines))
        run_cli(["up", "-y", "-n", "done", "task.dstack.yml"], env, project)
        for what in ("attach", "logs"):
            results = [follow(what, "done", live=False) for _ in range(args.repeat)]
            best = statistics.median(t for t, _ in results)
            sink = results[0][1]
            assert sink.lines == args.lines, sink.lines
            print(
                f"{what:<6} a finished run    {args.lines} lines in {best * 1000:.0f} ms "
                f"({args.lines / best:,.0f} lines/s, {sink.chunks} chunks)"
            )

        # live: the job pauses every 500 lines, so the follower gets many small chunks
        (project / "task.dstack.yml").write_text(task(args.lines, 500))
        for what in ("attach", "logs"):
            times, chunks = [], []
            for i in range(args.repeat):
                name = f"live-{what}-{i}"
                run_cli(["up", "-y", "-d", "-n", name, "task.dstack.yml"], env, project)
                running(name)  # `logs -f` reads a run's host, known once it runs
                elapsed, sink = follow(what, name, live=True)
                assert sink.lines == args.lines, sink.lines
                times.append(elapsed)
                chunks.append(sink.chunks)
            saves = "one offset save each" if what == "attach" else "no saves"
            print(
                f"{what:<6} a live job        {args.lines} lines in "
                f"{statistics.median(times):.2f} s (the job's own pace; "
                f"{statistics.median(chunks):.0f} chunks, {saves})"
            )


if __name__ == "__main__":
    main()
