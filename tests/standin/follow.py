"""`python -m tests.standin.follow HOME ROOT NAME`: an attached CLI on the stand-in cloud.

What `iacrun up` (attached) or `iacrun attach NAME` does once the run is submitted: follow the run
with `Orchestrator.attach` (progress lines while the VM is provisioned, then the job's log), a
dead supervisor replaced by a stand-in one (see StandinOrchestrator). Progress lines go to stdout
as `[iacrun] LINE`, the log as it comes; so that a test can kill it at any point of the run."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.standin.supervise import orchestrator


def main(argv: list[str]) -> int:
    home, root, name = argv
    out = sys.stdout.buffer

    def sink(data: bytes) -> None:
        out.write(data)
        out.flush()

    def event(line: str) -> None:
        sink(f"[iacrun] {line}\n".encode())

    run = orchestrator(Path(home), Path(root)).attach(name, sink, on_event=event)
    event(f"run {run.status}")
    return 0 if run.status == "done" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
