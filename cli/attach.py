"""Following a run from the terminal: progress notes, the live log, Ctrl-C, the exit code.

The following itself (waiting for the host, the resumable log offset, forwarded ports, replacing
a dead supervisor) is `Orchestrator.attach`; this module only prints and asks."""

from __future__ import annotations

import sys

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.host.ports import check_local_ports_free
from iacrun.orchestrator.models.taskfile import PortMapping
from iacrun.orchestrator.registry import RunRecord


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_ports(ports: list[PortMapping], backends: set[str]) -> None:
    """Refuse busy local ports before the job starts (the task's own ports too, when local)."""
    wanted = {p.local_port for p in ports if p.local_port is not None}
    if "local" in backends:
        wanted |= {p.container_port for p in ports}
    check_local_ports_free(sorted(wanted))


def exit_code_of(run: RunRecord) -> int:
    if run.status == "done":
        return 0
    if run.exit_code not in (None, 0):
        return int(run.exit_code or 1)
    return 1


def show(data: bytes) -> None:
    """Log bytes to the terminal as they come."""
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def attach(orch: Orchestrator, run: RunRecord, ports: list[PortMapping], offset: int | None) -> int:
    """Follow until the run ends; Ctrl-C asks whether to stop it or detach.

    `offset` None goes on where the last attach stopped. Returns the exit code the CLI should
    end with: the job's."""
    try:
        final = orch.attach(
            run.name, show, ports=ports, offset=offset, on_event=lambda line: note(f"  {line}")
        )
    except KeyboardInterrupt:
        if _ask_stop():
            note(f"Stopping {run.name}...")
            final = orch.stop(run.name)
            note(f"Run {final.name} {final.status}: {final.reason}")
            return exit_code_of(final)
        note(f"Detached; the run goes on. Reattach with: iacrun attach {run.name}")
        return 0
    note(f"Run {final.name} {final.status}: {final.reason or ''}".rstrip(": "))
    return exit_code_of(final)


def _ask_stop() -> bool:
    if not sys.stdin.isatty():
        return True  # a CI job being cancelled must not leave its run behind
    try:
        answer = input("\nStop the run? [y/n] (n detaches and leaves it running): ")
    except (KeyboardInterrupt, EOFError):
        return True
    return answer.strip().lower().startswith("y")
