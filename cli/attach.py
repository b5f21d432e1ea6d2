"""Following a run from the terminal: progress notes, the live log, Ctrl-C, SIGTERM and SIGHUP
(caught in cli/signals.py), a local port taken meanwhile, the exit code.

The following itself (waiting for the host, the resumable log offset, forwarded ports, replacing
a dead supervisor) is `RunService.attach`, in this process or through a server; this module
only prints and asks."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from iacrun.cli import signals
from iacrun.cli.signals import StopSignal
from iacrun.orchestrator.host.ports import (
    LocalPortBusyError,
    check_local_ports_free,
    free_local_port,
)
from iacrun.orchestrator.models.taskfile import PortMapping
from iacrun.orchestrator.registry import RunRecord

if TYPE_CHECKING:
    from iacrun.orchestrator.service import RunService

#: seconds a stop asked by a signal waits for the run to end before leaving it to the run's
#: supervisor: well inside the grace CI systems give between SIGTERM and SIGKILL
SIGNAL_STOP_WAIT = 5.0


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


def attach(
    orch: RunService,
    run: RunRecord,
    ports: list[PortMapping],
    offset: int | None,
    *,
    started: bool = False,
) -> int:
    """Follow until the run ends; Ctrl-C asks whether to stop it or detach.

    `offset` None goes on where the last attach stopped. Returns the exit code the CLI should
    end with: the job's; 128 + N when signal N stopped the run (SIGTERM, SIGHUP, and SIGINT
    without a terminal: see cli/signals.py). `started`: this CLI (`up`) started the run, so a
    local port that cannot be forwarded stops it; otherwise the run goes on, and the error says
    how to attach with another port."""
    signals.catch()
    try:
        return _follow(orch, run, ports, offset, started)
    except StopSignal as sig:
        note(f"\nGot {sig.name}: stopping {run.name}")
        _stop(orch, run, f"stopped: iacrun got {sig.name}", SIGNAL_STOP_WAIT)
        return sig.exit_code
    finally:
        signals.release()


def _follow(
    orch: RunService, run: RunRecord, ports: list[PortMapping], offset: int | None, started: bool
) -> int:
    try:
        signals.arm()  # a SIGTERM that came while `up` submitted stops the run here
        final = orch.attach(
            run.name, show, ports=ports, offset=offset, on_event=lambda line: note(f"  {line}")
        )
    except StopSignal:
        raise
    except KeyboardInterrupt:
        if not sys.stdin.isatty():  # a CI job being cancelled must not leave its run behind
            note(f"\nInterrupted: stopping {run.name}")
            _stop(orch, run, "stopped by user", SIGNAL_STOP_WAIT)
            return 130
        if _ask_stop():
            note(f"Stopping {run.name}...")
            return exit_code_of(_stop(orch, run, "stopped by user", 60.0))
        note(f"Detached; the run goes on. Reattach with: iacrun attach {run.name}")
        return 0
    except LocalPortBusyError as exc:
        return _port_taken(orch, run, exc, started)
    note(f"Run {final.name} {final.status}: {final.reason or ''}".rstrip(": "))
    return exit_code_of(final)


def _stop(orch: RunService, run: RunRecord, reason: str, wait: float) -> RunRecord:
    """Hand the stop to the run's supervisor, then wait at most `wait` seconds for the end.

    The stop is recorded first, so whatever happens to this process next (another signal,
    SIGKILL), the run's supervisor ends the job and tears down; from here only when there is
    no supervisor alive to do it."""
    signals.stopping()
    final = orch.request_stop(run.name, reason=reason)
    if final.active and orch.supervised(final):
        note(f"  the run's supervisor is stopping it; waiting up to {wait:.0f}s")
        final = orch.wait_stopped(final, wait, give_up=signals.signalled_again)
    if final.active and not orch.supervised(final):
        note("  no supervisor is running for it: stopping it from here")
        final = orch.stop(run.name, reason=reason, wait=0)
    if final.active:
        note(f"{run.name} is still stopping; its supervisor finishes that (see: iacrun ps)")
    else:
        note(f"Run {final.name} {final.status}: {final.reason or ''}".rstrip(": "))
    return final


def _port_taken(orch: RunService, run: RunRecord, busy: LocalPortBusyError, started: bool) -> int:
    """A local port was taken after the check: stop the run `up` started, else say how to go on."""
    task_port = busy.task_port
    other = f"--port {free_local_port()}:{task_port}" if task_port is not None else "--port"
    if started:
        note(
            f"error: {busy}; stopping run {run.name}, which this iacrun up started (run it again "
            f"with {other})"
        )
        port = busy.ports[0]
        _stop(
            orch,
            run,
            f"stopped: local port {port} was taken before it could be forwarded",
            SIGNAL_STOP_WAIT,
        )
    else:
        note(f"error: {busy}; the run goes on: iacrun attach {run.name} {other}")
    return 1


def _ask_stop() -> bool:
    try:
        answer = input("\nStop the run? [y/n] (n detaches and leaves it running): ")
    except StopSignal:
        raise
    except (KeyboardInterrupt, EOFError):
        return True
    return answer.strip().lower().startswith("y")
