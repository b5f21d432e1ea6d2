"""Fault points for the harness: `IACRUN_FAULT_HOLD=PHASE:GATE` holds a supervisor at PHASE.

Put on PYTHONPATH by tests/faults/test_phase_faults.py (Python imports `sitecustomize` at start);
nothing of iacrun itself changes. When a supervisor process (`-m iacrun.orchestrator.supervisor`)
reaches PHASE it writes GATE.reached (its pid) and waits while the file GATE exists, so that a
test can kill -9 whichever process it likes while the phase is open, then delete GATE. A process
that reaches PHASE after GATE is gone (the successor of a killed supervisor) goes straight on.

Phases: `provision` (the machine is set up, not yet recorded), `upload` (the code is on the
host, the runner not yet started), `teardown` (the job's end is recorded, the machine not yet
given back).
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from typing import Any

SETTING = os.environ.get("IACRUN_FAULT_HOLD", "")


def hold(phase: str) -> None:
    wanted, _, gate = SETTING.partition(":")
    if wanted != phase or not sys.argv or "supervisor" not in sys.argv[0]:
        return
    path = Path(gate)
    if not path.exists():
        return
    Path(f"{gate}.reached").write_text(str(os.getpid()))
    end = time.monotonic() + 120  # a test that dies never leaves a supervisor held for long
    while path.exists() and time.monotonic() < end:
        time.sleep(0.02)


def after(phase: str, function: Any) -> Any:
    @functools.wraps(function)
    def held(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        hold(phase)
        return result

    return held


def before(phase: str, function: Any) -> Any:
    @functools.wraps(function)
    def held(*args: Any, **kwargs: Any) -> Any:
        hold(phase)
        return function(*args, **kwargs)

    return held


def after_code_shipped(function: Any) -> Any:
    @functools.wraps(function)
    async def held(*args: Any, **kwargs: Any) -> Any:
        await function(*args, **kwargs)
        if kwargs.get("into", "code") == "code":
            hold("upload")

    return held


if SETTING:
    from iacrun.orchestrator.backends import local, ssh
    from iacrun.orchestrator.host import runner_client

    for backend in (local.LocalBackend, ssh.SSHBackend):
        backend.provision = after("provision", backend.provision)  # type: ignore[method-assign]
        backend.terminate = before("teardown", backend.terminate)  # type: ignore[method-assign]
    runner_client._ship_code = after_code_shipped(runner_client._ship_code)
