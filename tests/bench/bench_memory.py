"""Memory per active run on the local backend: the resident memory (RSS, and PSS, which splits
shared pages fairly) of each run's supervisor and runner while N runs sleep. Prints figures;
asserts nothing.

    .venv/bin/python -m tests.bench.bench_memory [--runs 10]

Each active run costs one supervisor (a Python process holding the orchestrator) and one runner
(stdlib only) on the machine that runs it; a cloud run's supervisor also loads the Pulumi engine
while it provisions and tears down (measured by bench_engine's stand-in runs, not here).
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

IACRUN = [sys.executable, "-m", "iacrun.cli.main"]


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in kB, from /proc (PSS from smaps_rollup, 0 if unreadable)."""
    rss = pss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="iacrun-bench-mem-"))
    env = dict(os.environ, HOME=str(work), IACRUN_HOME=str(work / ".iacrun"))
    project = work / "project"
    project.mkdir()
    (project / "task.dstack.yml").write_text("type: task\ncommands: [sleep 600]\n")
    try:
        for i in range(args.runs):
            done = subprocess.run(
                [*IACRUN, "up", "-y", "-d", "-n", f"mem-{i}", "task.dstack.yml"],
                env=env,
                cwd=project,
                capture_output=True,
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(done.stderr.decode())
        time.sleep(3)  # every supervisor is watching its running job
        from iacrun.orchestrator.registry import Registry

        records = Registry(work / ".iacrun" / "registry.db").runs()
        supervisors, runners = [], []
        for record in records:
            if record.supervisor_pid:
                supervisors.append(memory_kb(record.supervisor_pid))
            runners.append(memory_kb(int((Path(record.local_dir) / "pid").read_text())))

        def show(what: str, values: list[tuple[int, int]]) -> None:
            if not values:
                print(f"{what}: not found")
                return
            rss = sum(v[0] for v in values) / len(values) / 1024
            pss = sum(v[1] for v in values) / len(values) / 1024
            print(
                f"{what:<12} {len(values):>3} processes  RSS {rss:6.1f} MB  PSS {pss:6.1f} MB each"
            )

        print(f"{len(records)} active local runs (sleep 600)")
        show("supervisor", supervisors)
        show("runner", runners)
    finally:
        subprocess.run([*IACRUN, "down", "--all"], env=env, cwd=project, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
