"""CLI speed on the local backend. Prints medians; asserts nothing (targets are in the issue).

    .venv/bin/python tests/bench/bench_cli.py [--repeat 7]

- `iacrun --help` and `iacrun ps` with 200 runs recorded (target: under 0.25 s each)
- `iacrun up -y` of an echo task, end to end (target: under 1.5 s)
- a job printing 1,000,000 lines, followed live by `iacrun up` and read back by `iacrun logs`
  (target: every line delivered, at least 50 MB/s)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IACRUN = [str(Path(sys.executable).with_name("iacrun"))]


def timed(
    argv: list[str], env: dict[str, str], cwd: Path
) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
    return time.perf_counter() - start, done


def median_of(argv: list[str], env: dict[str, str], cwd: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        elapsed, done = timed(argv, env, cwd)
        if done.returncode != 0:
            raise SystemExit(f"{argv} failed: {done.stderr.decode()}")
        times.append(elapsed)
    return statistics.median(times)


def seed_runs(home: Path, count: int) -> None:
    sys.path.insert(0, str(ROOT))
    from iacrun.orchestrator.registry import Registry

    registry = Registry(home / "registry.db")
    for i in range(count):
        run = registry.create(f"seed-{i}", {"commands": ["true"]}, home / "runs")
        registry.update(
            run.id,
            status="done",
            reason="exited (0)",
            exit_code=0,
            backend="local",
            price=0.0,
            started_at=time.time(),
            finished_at=time.time(),
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="iacrun-bench-"))
    env = dict(os.environ, IACRUN_HOME=str(work / "home"), HOME=str(work))
    project = work / "project"
    project.mkdir()
    (project / "echo.dstack.yml").write_text("type: task\ncommands: ['echo hello']\n")
    (project / "lines.dstack.yml").write_text(
        "type: task\n"
        "commands:\n"
        "  - seq -f 'line-%07g of the benchmark log, padded to a useful length' 1 1000000\n"
    )
    try:
        helped = median_of([*IACRUN, "--help"], env, project, args.repeat)
        print(f"iacrun --help            median {helped:.3f} s")
        seed_runs(work / "home", 200)
        listed = median_of([*IACRUN, "ps", "-a"], env, project, args.repeat)
        print(f"iacrun ps -a (200 runs)  median {listed:.3f} s")
        ups = []
        for i in range(args.repeat):
            elapsed, done = timed(
                [*IACRUN, "up", "-y", "-n", f"echo-{i}", "echo.dstack.yml"], env, project
            )
            assert done.returncode == 0 and b"hello" in done.stdout, done.stderr
            ups.append(elapsed)
        print(f"iacrun up -y (echo)      median {statistics.median(ups):.3f} s")
        elapsed, done = timed(
            [*IACRUN, "up", "-y", "-n", "lines", "lines.dstack.yml"], env, project
        )
        lines = [x for x in done.stdout.splitlines() if x.startswith(b"line-")]
        size = len(done.stdout)
        print(
            f"1M-line job, attached    {len(lines)} lines, {size / 1e6:.1f} MB in {elapsed:.2f} s "
            f"({size / 1e6 / elapsed:.1f} MB/s end to end, including running the job)"
        )
        elapsed, done = timed([*IACRUN, "logs", "lines"], env, project)
        lines = [x for x in done.stdout.splitlines() if x.startswith(b"line-")]
        print(
            f"iacrun logs (1M lines)   {len(lines)} lines, {len(done.stdout) / 1e6:.1f} MB in "
            f"{elapsed:.2f} s ({len(done.stdout) / 1e6 / elapsed:.1f} MB/s)"
        )
    finally:
        subprocess.run(
            [*IACRUN, "down", "--all"], env=env, cwd=project, capture_output=True, check=False
        )
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
