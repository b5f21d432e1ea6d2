"""Memory of a cloud run's supervisor while its job runs, on the stand-in cloud: RSS and PSS of
the supervisor process (`python -m tests.standin.supervise`, the production supervisor with the
stand-in backend) once the run is `running`, with and without `Supervisor.shed` (the supervisor
replacing itself once the VM is up, so that the Pulumi engine it loaded to provision is not held
while the job runs). Prints figures; asserts nothing. Needs `pulumi` on PATH and sshd.

    .venv/bin/python -m tests.bench.bench_cloud_memory
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from iacrun.orchestrator.models.runspec import build_run_spec
from tests.bench.bench_memory import memory_kb
from tests.standin.supervise import orchestrator

REPO = Path(__file__).resolve().parents[2]


def loaded(pid: int, library: str) -> bool:
    """Whether process `pid` mapped a shared library whose path holds `library`."""
    return library in Path(f"/proc/{pid}/maps").read_text()


def measure(work: Path, keep_engine: bool) -> None:
    home, root, gate = work / "home", work / "vm", work / "gate"
    home.mkdir()
    # never the real home: `ssh RUN` entries go to $HOME/.ssh/config
    os.environ.update(HOME=str(work), IACRUN_HOME=str(home))
    project = work / "project"
    project.mkdir()
    task = project / "wait.dstack.yml"
    task.write_text(f"type: task\ncommands:\n  - while [ ! -e {gate} ]; do sleep 0.1; done\n")
    orch = orchestrator(home, root)
    spec = build_run_spec(task, environ={})
    run = orch.submit(spec, orch.plan(spec), supervise=False)
    argv = [sys.executable, "-m", "tests.standin.supervise", str(home), str(root), str(run.id)]
    supervisor = subprocess.Popen(
        [*argv, "0", *(["--keep-engine"] if keep_engine else [])],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        end = time.monotonic() + 180
        while orch.registry.get_by_id(run.id).status != "running":
            if time.monotonic() > end or supervisor.poll() is not None:
                raise SystemExit(f"the run did not start: {orch.registry.get_by_id(run.id)}")
            time.sleep(0.2)
        time.sleep(2)  # the supervisor follows the job
        rss, pss = memory_kb(supervisor.pid)
        engine = "loaded" if loaded(supervisor.pid, "cygrpc") else "not loaded"
        mode = "engine kept" if keep_engine else "shed (default)"
        print(f"{mode:<15} RSS {rss / 1024:6.1f} MB  PSS {pss / 1024:6.1f} MB  (grpc {engine})")
        gate.touch()
        supervisor.wait(timeout=180)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        orch.down(run.name)


def main() -> None:
    print("cloud supervisor (stand-in VM) while its job runs:")
    for keep_engine in (True, False):
        with tempfile.TemporaryDirectory(prefix="iacrun-bench-cloud-mem-") as work:
            measure(Path(work), keep_engine)


if __name__ == "__main__":
    main()
