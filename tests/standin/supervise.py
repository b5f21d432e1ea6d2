"""`python -m tests.standin.supervise HOME ROOT RUN_ID SLOW`: a supervisor on the stand-in cloud.

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


def orchestrator(home: Path, root: Path, slow: float = 0.0) -> Orchestrator:
    engine = StackEngine(home, env=OFFLINE_ENV)
    backend = StandinBackend(root, slow_seconds=slow, engine=engine, home=home)
    return Orchestrator(home=home, settings=Settings(), backends=[backend])


if __name__ == "__main__":
    home, root, run_id, slow = sys.argv[1:5]
    orchestrator(Path(home), Path(root), float(slow)).supervisor().supervise(int(run_id))
