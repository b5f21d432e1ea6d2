"""`python -m tests.standin.supervise HOME ROOT RUN_ID SLOW [HOLD]`: a supervisor on the stand-in
cloud (HOLD: a file holding the VM's create open, see StandinVM).

What `python -m iacrun.orchestrator.supervisor RUN_ID` does, with the stand-in backend in place of
the configured clouds, so that a test can kill it midway through the stack's update."""

from __future__ import annotations

import sys
from pathlib import Path

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.models.settings import Settings
from iacrun.stacks.engine import StackEngine
from tests.stacks.engine.support import OFFLINE_ENV
from tests.standin.backend import StandinBackend


def orchestrator(
    home: Path, root: Path, slow: float = 0.0, hold: Path | None = None
) -> Orchestrator:
    engine = StackEngine(home, env=OFFLINE_ENV)
    backend = StandinBackend(root, slow_seconds=slow, hold_create=hold, engine=engine, home=home)
    return Orchestrator(home=home, settings=Settings(), backends=[backend])


if __name__ == "__main__":
    home, root, run_id, slow = sys.argv[1:5]
    hold = Path(sys.argv[5]) if len(sys.argv) > 5 else None
    orchestrator(Path(home), Path(root), float(slow), hold).supervisor().supervise(int(run_id))
