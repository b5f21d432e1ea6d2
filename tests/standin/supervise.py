"""`python -m tests.standin.supervise HOME ROOT RUN_ID SLOW [HOLD] [--resume|--provisioned]
[--keep-engine] [--hold-delete=GATE]`: a supervisor on the stand-in cloud (HOLD: a file holding
the VM's create open, GATE one holding its delete, see StandinVM; --keep-engine: no `shed`, for
tests/bench/bench_cloud_memory.py).

What `python -m iacrun.orchestrator.supervisor RUN_ID` does, with the stand-in backend in place of
the configured clouds, so that a test can kill it midway through the stack's update: like it, it
replaces itself once the VM is up (`--provisioned`, see Supervisor.shed), and `--resume` takes a
run over from a supervisor that died."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.models.settings import Settings
from iacrun.orchestrator.registry import RunRecord
from iacrun.orchestrator.supervisor import Supervisor, shed_engine
from iacrun.stacks.engine import StackEngine
from tests.stacks.engine.support import OFFLINE_ENV
from tests.standin.backend import StandinBackend

REPO = Path(__file__).resolve().parents[2]
HOLD_DELETE = "--hold-delete="


class StandinOrchestrator(Orchestrator):
    """An Orchestrator whose supervisors, and the successors `refresh` starts for dead ones, are
    stand-in supervisors (this module as a process): a run can be left to them as to the real
    ones, and any of them killed."""

    def __init__(
        self, home: Path, root: Path, slow: float, hold: Path | None, hold_delete: Path | None
    ) -> None:
        engine = StackEngine(home, env=OFFLINE_ENV)
        backend = StandinBackend(
            root,
            slow_seconds=slow,
            hold_create=hold,
            hold_delete=hold_delete,
            engine=engine,
            home=home,
        )
        super().__init__(home=home, settings=Settings(), backends=[backend])
        self.argv = [str(home), str(root), "RUN", str(slow), *([str(hold)] if hold else [])]
        self.argv += [f"{HOLD_DELETE}{hold_delete}"] if hold_delete else []

    def _spawn_supervisor(self, run: RunRecord, *, resume: bool = False) -> None:
        argv = [str(run.id) if a == "RUN" else a for a in self.argv]
        with open(Path(run.local_dir) / "supervisor.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.standin.supervise", *argv]
                + (["--resume"] if resume else []),
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.registry.update(run.id, supervisor_pid=proc.pid)


def orchestrator(
    home: Path,
    root: Path,
    slow: float = 0.0,
    hold: Path | None = None,
    *,
    hold_delete: Path | None = None,
) -> StandinOrchestrator:
    return StandinOrchestrator(home, root, slow, hold, hold_delete)


def main(argv: list[str]) -> None:
    flags = {a for a in argv if a.startswith("--")}
    home, root, run_id, slow, *rest = [a for a in argv if not a.startswith("--")]
    hold = Path(rest[0]) if rest else None
    gates = [a for a in flags if a.startswith(HOLD_DELETE)]
    hold_delete = Path(gates[0].removeprefix(HOLD_DELETE)) if gates else None
    orch = orchestrator(Path(home), Path(root), float(slow), hold, hold_delete=hold_delete)
    supervisor: Supervisor = orch.supervisor()
    module = ["-m", "tests.standin.supervise"]
    if "--keep-engine" not in flags:
        supervisor.shed = lambda run: shed_engine(
            [*module, home, root, str(run), slow, *rest[:1], *gates, "--provisioned"]
        )
    if "--resume" in flags:
        supervisor.resume(int(run_id))
    elif "--provisioned" in flags:
        supervisor.supervise_provisioned(int(run_id))
    else:
        supervisor.supervise(int(run_id))


if __name__ == "__main__":
    main(sys.argv[1:])
