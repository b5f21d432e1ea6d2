"""Following a run from the terminal: progress, then the live log, with ports forwarded."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from iacrun.orchestrator.api import EventLog, Orchestrator
from iacrun.orchestrator.host.ports import check_local_ports_free
from iacrun.orchestrator.host.reconnecting import open_transport
from iacrun.orchestrator.host.runner_client import follow_log
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.models.taskfile import PortMapping
from iacrun.orchestrator.registry import FINAL_STATUSES, RunRecord


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


class Attachment:
    """One attached session: what it has shown so far, so it can resume after a detach."""

    def __init__(self, orch: Orchestrator, run: RunRecord, offset: int = 0) -> None:
        self.orch = orch
        self.run = run
        self.offset = offset
        self.events = EventLog(Path(run.local_dir) / "events")
        self.events_offset = 0
        self.out = sys.stdout.buffer

    def sink(self, data: bytes) -> None:
        """Show log bytes; the offset counts only what was shown (resumes after a Ctrl-C)."""
        self.out.write(data)
        self.out.flush()
        self.offset += len(data)

    def _show_events(self) -> None:
        self.events_offset, lines = self.events.read_from(self.events_offset)
        for line in lines:
            note(f"  {line}")

    def _refresh(self) -> RunRecord:
        self.run = self.orch.registry.get_by_id(self.run.id)
        return self.run

    async def _wait_for_host(self) -> Host | None:
        while True:
            self._show_events()
            run = self._refresh()
            if run.host and run.status not in ("submitted", "provisioning"):
                return run.host
            if run.status in FINAL_STATUSES:
                return None
            if run.supervisor_pid is not None:
                self.orch.refresh(run)  # a supervisor that died is replaced
            await asyncio.sleep(0.05)

    async def follow(self, ports: list[PortMapping]) -> RunRecord:
        host = await self._wait_for_host()
        if host is None:
            self._show_events()
            return self.run
        if self.run.status in FINAL_STATUSES and host.kind != "local":
            # the machine is gone: what is left is the copy kept here at teardown
            self.orch.logs(self.run.name, self.sink, offset=self.offset)
            return self.run
        transport = await open_transport(host)
        stops: list[Callable[[], Awaitable[None]]] = []
        try:
            for port in ports:
                local = port.local_port or free_port()
                stops.append(await transport.forward(local, port.container_port))
                note(f"  port {port.container_port} of the task is at http://127.0.0.1:{local}")
            await follow_log(
                transport,
                host,
                self.offset,
                self.sink,
                until=lambda: self._refresh().status in FINAL_STATUSES,
            )
        finally:
            for stop in stops:
                with contextlib.suppress(Exception):
                    await stop()
            await transport.close()
        final = await self._wait_final()
        if host.kind != "local":
            # whatever the machine wrote after our last read is in the copy kept at teardown
            self.orch.logs(self.run.name, self.sink, offset=self.offset)
        return final

    async def _wait_final(self, timeout: float = 600.0) -> RunRecord:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            run = self._refresh()
            if run.status in FINAL_STATUSES:
                break
            if (run.reason or "").startswith("teardown failed"):
                break  # shown as it is; `iacrun down` (or any later command) retries it
            if run.supervisor_pid is not None:
                self.orch.refresh(run)
            await asyncio.sleep(0.05)
        self._show_events()
        return self.run

    def save_offset(self) -> None:
        with contextlib.suppress(OSError):
            (Path(self.run.local_dir) / "attach.offset").write_text(str(self.offset))


def saved_offset(run: RunRecord) -> int:
    try:
        return int((Path(run.local_dir) / "attach.offset").read_text())
    except (OSError, ValueError):
        return 0


def attach(orch: Orchestrator, run: RunRecord, ports: list[PortMapping], offset: int) -> int:
    """Follow until the run ends; Ctrl-C asks whether to stop it or detach.

    Returns the exit code the CLI should end with: the job's."""
    session = Attachment(orch, run, offset)
    try:
        final = asyncio.run(session.follow(ports))
    except KeyboardInterrupt:
        session.save_offset()
        if _ask_stop():
            note(f"Stopping {run.name}...")
            final = orch.stop(run.name)
            note(f"Run {final.name} {final.status}: {final.reason}")
            return exit_code_of(final)
        note(f"Detached; the run goes on. Reattach with: iacrun attach {run.name}")
        return 0
    session.save_offset()
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
