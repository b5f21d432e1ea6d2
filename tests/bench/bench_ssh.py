"""Benchmarks of the ssh path on loopback, against a real OpenSSH sshd started here.

    .venv/bin/python tests/bench/bench_ssh.py [--mb 200] [--runs 5]

1. Log throughput: a log on the host read through `SSHTransport.read_from` in the lifecycle's
   chunks, once as a finished file and once live while a writer on the host appends to it.
   Target: at least 20 MB/s, every line delivered exactly once, in order.
2. Time from `iacrun up -y` to the first log line of a task on the ssh backend (a fresh CLI
   process each time, with a temporary IACRUN_HOME and HOME). Target: under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from iacrun.orchestrator.host.connect import connect  # noqa: E402
from tests.orchestrator.host.sshd import Sshd, sshd_missing  # noqa: E402

try:
    from iacrun.orchestrator.host.runner_client import LOG_CHUNK
except ImportError:  # the lifecycle is not there: read in the same 4 MB chunks
    LOG_CHUNK = 4 * 1024 * 1024

LINE = b"%09d the quick brown fox jumps over the lazy dog, lorem ipsum dolor sit amet\n"


def write_log(path: Path, mb: int) -> int:
    lines = 0
    with path.open("wb", buffering=1 << 20) as f:
        while f.tell() < mb * 1024 * 1024:
            f.write(LINE % lines)
            lines += 1
    return lines


def check_lines(data: bytes, expected: int) -> None:
    got = data.split(b"\n")
    assert got[-1] == b"", "the log does not end with a whole line"
    assert len(got) - 1 == expected, f"{len(got) - 1} lines delivered, {expected} written"
    for i in (0, expected // 2, expected - 1):
        assert got[i] == (LINE % i)[:-1], f"line {i} differs"
    assert data == b"".join(LINE % i for i in range(expected)), "lines lost, repeated or reordered"


async def read_all(sshd: Sshd, path: Path, until_size: int | None) -> tuple[bytes, float]:
    transport = await connect(sshd.host())
    chunks: list[bytes] = []
    offset = 0
    try:
        started = time.perf_counter()
        while True:
            chunk = await transport.read_from(str(path), offset, LOG_CHUNK)
            if chunk:
                chunks.append(chunk)
                offset += len(chunk)
                continue
            if until_size is None or offset >= until_size:
                break
            await asyncio.sleep(0.05)  # the lifecycle's poll interval
        return b"".join(chunks), time.perf_counter() - started
    finally:
        await transport.close()


def bench_throughput(sshd: Sshd, folder: Path, mb: int) -> None:
    log = folder / "log"
    lines = write_log(log, mb)
    size = log.stat().st_size
    data, seconds = asyncio.run(read_all(sshd, log, None))
    check_lines(data, lines)
    print(
        f"log throughput, finished file: {size / seconds / 1e6:.1f} MB/s "
        f"({size / 1e6:.0f} MB, {lines} lines, all delivered once, in order)"
    )

    live = folder / "live"
    live.touch()
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            f"line = {LINE!r}\n"
            "with open(sys.argv[1], 'ab', buffering=0) as f:\n"
            f"    for start in range(0, {lines}, 2000):\n"
            f"        end = min(start + 2000, {lines})\n"
            "        f.write(b''.join(line % i for i in range(start, end)))\n",
            str(live),
        ],
    )
    data, seconds = asyncio.run(read_all(sshd, live, size))
    writer.wait()
    check_lines(data, lines)
    print(
        f"log throughput, live (writer appending on the host): {size / seconds / 1e6:.1f} MB/s "
        f"(every line delivered once, in order)"
    )


def bench_first_line(sshd: Sshd, folder: Path, runs: int) -> None:
    iacrun = shutil.which("iacrun", path=str(Path(sys.executable).parent)) or "iacrun"
    home = folder / "home"
    (home / ".iacrun").mkdir(parents=True)
    host = sshd.host_settings(name="loop").model_dump(exclude_none=True)
    config = {"backends": {"local": {"enabled": False}, "ssh": {"hosts": [host]}}}
    (home / ".iacrun" / "config.yml").write_text(yaml.safe_dump(config))
    project = folder / "project"
    project.mkdir()
    (project / "first.dstack.yml").write_text("type: task\ncommands:\n  - echo first-line\n")
    env = dict(os.environ, HOME=str(home), IACRUN_HOME=str(home / ".iacrun"))
    timings = []
    for i in range(runs):
        started = time.perf_counter()
        proc = subprocess.Popen(
            [iacrun, "up", "-y", "-n", f"first-{i}", "first.dstack.yml"],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        elapsed = time.perf_counter() - started
        _, err = proc.communicate(timeout=120)
        if line != b"first-line\n":
            print(f"up -y did not print the task's line (exit {proc.returncode}):\n{err.decode()}")
            return
        timings.append(elapsed)
    print(
        f"iacrun up -y to the first log line (ssh backend, {runs} runs): "
        f"median {statistics.median(timings):.2f}s, min {min(timings):.2f}s, "
        f"max {max(timings):.2f}s"
    )
    for run_dir in Path(os.path.expanduser("~root")).glob(".iacrun/runs/first-*"):
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mb", type=int, default=200, help="size of the log, MB")
    parser.add_argument("--runs", type=int, default=5, help="iacrun up -y runs to time")
    args = parser.parse_args()
    reason = sshd_missing()
    if reason:
        sys.exit(f"cannot benchmark: {reason}")
    with tempfile.TemporaryDirectory() as tmp, Sshd(Path(tmp) / "sshd") as sshd:
        bench_throughput(sshd, Path(tmp), args.mb)
        bench_first_line(sshd, Path(tmp), args.runs)


if __name__ == "__main__":
    main()
