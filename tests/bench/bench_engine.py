"""Benchmark: one stack up/destroy cycle with the real engine, and a stand-in VM's.

    python -m tests.bench.bench_engine [ROUNDS]

Prints the median of ROUNDS (default 3) for: `up` of an inline program with one dynamic
resource, `destroy` (with remove), `list_stacks`, `state`; then `up` and `destroy` of a stand-in
VM (sshd started and stopped). Needs `pulumi` on PATH (or built by tests/tools/get-pulumi).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pulumi

from tests.stacks.engine.support import engine_for, ensure_pulumi


def timed(fn: Callable[..., object], *args: object) -> float:
    start = time.monotonic()
    fn(*args)
    return time.monotonic() - start


def main(rounds: int = 3) -> None:
    reason = ensure_pulumi()
    if reason:
        raise SystemExit(reason)
    version = subprocess.run(
        ["pulumi", "version"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"},
    ).stdout.strip()
    from tests.stacks.engine.resources import Marker
    from tests.standin.vm import StandinVM

    figures: dict[str, list[float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="iacrun-bench-") as tmp,
        engine_for(Path(tmp) / "h") as engine,
    ):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{tmp}/k"], check=True
        )
        public = Path(f"{tmp}/k.pub").read_text().strip()
        for i in range(rounds):
            name = f"bench-{i}"

            def program(i: int = i) -> None:
                made = Marker("marker", f"{tmp}/m{i}", "x")
                pulumi.export("value", made.value)

            figures.setdefault("up (1 dynamic resource)", []).append(
                timed(engine.up, name, program)
            )
            figures.setdefault("list_stacks (1 stack)", []).append(timed(engine.list_stacks))
            figures.setdefault("state", []).append(timed(engine.state, name))
            figures.setdefault("destroy + remove", []).append(timed(engine.destroy, name))

            def vm(i: int = i) -> None:
                made = StandinVM("vm", root_dir=f"{tmp}/vm{i}", authorized_key=public)
                pulumi.export("ssh_port", made.ssh_port)

            figures.setdefault("stand-in VM up (sshd started)", []).append(
                timed(engine.up, f"vm-{i}", vm)
            )
            figures.setdefault("stand-in VM destroy + remove", []).append(
                timed(engine.destroy, f"vm-{i}")
            )
    print(f"pulumi {version}, Python {sys.version.split()[0]}, median of {rounds} rounds")
    for label, values in figures.items():
        print(f"  {label:32} {statistics.median(values):6.2f}s   (min {min(values):.2f}s)")
    cycle = statistics.median(figures["up (1 dynamic resource)"]) + statistics.median(
        figures["destroy + remove"]
    )
    print(f"  {'one up/destroy cycle':32} {cycle:6.2f}s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
