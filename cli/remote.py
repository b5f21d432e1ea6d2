"""Remote mode: `RunService` over an `iacrun server`, so that every command the CLI has prints
the same tables, lines and exit codes through a server as in-process.

`RemoteService` is a thin adapter over `iacrun.client.Client` (the HTTP API's own client): it
maps the verbs the CLI calls (`orchestrator/service.py`) onto the client's, and holds no
orchestration. What it decides, and says:

- the working folder is packed and uploaded by the client at `submit` (skipped when the server
  has its hash); the server plans, preflights and supervises;
- a run is followed through the server's Server-Sent Events log stream; where `iacrun attach`
  left a run's log is kept per server in iacrun's home, as in-process;
- every node of a multi-node run is served: its record (`ps --json`), its log (`logs --node`),
  and all of them at once (`logs --all-nodes`: one stream per node, each line prefixed with its
  rank by the same `RankPrefix` as in-process);
- a run's ports (the task's own, and `--port`) are forwarded to 127.0.0.1 here once its job
  runs: each connection a WebSocket through the server, which reaches the port over the run's
  host's transport as the in-process attach does (client/ports.py, server/routes/ports.py);
- a stop is recorded by the server at once (its supervision ends the job and tears down), so a
  CLI killed right after still leaves nothing running.

Imported only in remote mode: httpx comes with the client, websockets only with a forward.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from iacrun.orchestrator.errors import InputError, RunNotFoundError
from iacrun.orchestrator.registry import RunRecord, name_taken

if TYPE_CHECKING:
    from iacrun.client import Client
    from iacrun.client.ports import Forwards
    from iacrun.orchestrator.host.cluster import NodeRecord
    from iacrun.orchestrator.models.runspec import RunSpec
    from iacrun.orchestrator.models.taskfile import PortMapping
    from iacrun.orchestrator.offers.model import Offer
    from iacrun.orchestrator.offers.plan import OfferPlan
    from iacrun.orchestrator.registry.schedules import ScheduleRecord
    from iacrun.server.schema import StackInfo

#: seconds between two looks at a run that is not running yet
WAIT_POLL = 0.25
#: seconds between two looks at a followed run's history (its progress lines)
HISTORY_POLL = 1.0


def _quiet(line: str) -> None:
    pass


def check_login(url: str, token: str) -> str:
    """Check `token` against the server at `url` (its info, then an authenticated call); what
    to say about it: the server's version and database. Raises the error tree's AuthError for a
    bad token, a one-line error when the server cannot be reached."""
    from iacrun.client import Client

    with Client(url, token) as client:
        info = client.info()
        client.page(limit=1)  # 401 here for a wrong, revoked or expired token
    return f"iacrun server {info.version}, API {info.api}, database {info.database}"


class RemoteService:
    """The verbs of `RunService` through an iacrun server."""

    def __init__(self, client: Client, url: str) -> None:
        self.client = client
        self.url = url

    @classmethod
    def connect(cls, url: str, token: str) -> RemoteService:
        from iacrun.client import Client

        return cls(Client(url, token), url)

    # ------------------------------------------------------------------ before the submit

    def ensure_name_free(self, name: str) -> None:
        """An active run's name refused before the upload; the server refuses the names its
        active schedules hold when the run is submitted (`Orchestrator.ensure_name_free`)."""
        try:
            run = self.client.get(name)
        except RunNotFoundError:
            return
        if run.active:
            raise name_taken(name)

    def check_upload(self, spec: RunSpec) -> int:
        """The bytes the run will ship, checked here against this home's upload limit before
        anything is sent (the server checks its own limit again at the upload)."""
        from iacrun.orchestrator.host.payload import check_run_upload
        from iacrun.orchestrator.models.settings import load_settings
        from iacrun.orchestrator.paths import config_file, iacrun_home

        home = iacrun_home()
        return check_run_upload(spec, load_settings(config_file(home)).upload_limit_gb, (home,))

    def plan(self, spec: RunSpec) -> OfferPlan:
        from iacrun.orchestrator.offers.plan import OfferPlan

        planned = self.client.plan(spec)
        return OfferPlan(offers=planned.offers, notes=planned.notes)

    def dry_run(self, spec: RunSpec) -> tuple[OfferPlan, str]:
        from iacrun.orchestrator.offers.plan import OfferPlan

        planned = self.client.plan(spec, dry_run=True)
        return OfferPlan(offers=planned.offers, notes=planned.notes), planned.dry_run or ""

    def ready_offers(
        self,
        offers: Iterable[Offer],
        on_progress: Callable[[str], None] | None = None,
        *,
        spec: RunSpec | None = None,
    ) -> list[Offer]:
        """All of them: the server preflights its own backends when the run is submitted."""
        return list(offers)

    def submit(self, spec: RunSpec, plan: OfferPlan) -> RunRecord:
        """Upload the run's files (not when the server has them: by content hash), submit."""
        return self.client.submit(spec)

    # ------------------------------------------------------------------ scheduled tasks

    def refuse_schedule(self, spec: RunSpec) -> None:
        """Nothing to refuse: the server keeps schedules."""

    def schedule(self, spec: RunSpec) -> ScheduleRecord:
        return self.client.schedule(spec)

    def schedules(self, *, all_schedules: bool = False) -> list[ScheduleRecord]:
        return self.client.schedules(all_schedules=all_schedules)

    def stop_schedule(self, name: str, *, abort: bool = False) -> ScheduleRecord | None:
        try:
            found = self.client.get_schedule(name)
        except RunNotFoundError:
            return None
        return self.client.stop_schedule(name, abort=abort) if found.active else None

    # ------------------------------------------------------------------ reading and following

    def runs(self, *, all_runs: bool = False) -> list[RunRecord]:
        return self.client.runs(all_runs=all_runs)

    def get(self, name: str) -> RunRecord:
        return self.client.get(name)

    def nodes(self, run: RunRecord) -> list[NodeRecord]:
        """Every node's job of the run, from the server (`Orchestrator.nodes` there)."""
        return self.client.nodes(run.name)

    def attach(
        self,
        name: str,
        sink: Callable[[bytes], None],
        *,
        ports: Sequence[PortMapping] = (),
        offset: int | None = None,
        on_event: Callable[[str], None] = _quiet,
    ) -> RunRecord:
        """Follow the run's log through the server until it ends; its status changes go to
        `on_event` meanwhile. `offset` None goes on where the last attach (to this run on this
        server) stopped."""
        saved = self._offset_file(name)
        reached = _read_offset(saved) if offset is None else offset
        with _History(self.client, name, on_event) as history, contextlib.ExitStack() as forwards:
            self._wait_for_job(name)
            if ports:
                history.show()  # `running` before the ports' lines, as in-process
                forwards.callback(self._forward(name, ports, on_event).close)
            for chunk in self.client.follow(name, reached):
                sink(chunk)
                reached += len(chunk)
                _write_offset(saved, reached)
        return self.client.get(name)

    def _forward(
        self, name: str, ports: Sequence[PortMapping], on_event: Callable[[str], None]
    ) -> Forwards:
        """The run's ports on 127.0.0.1 here, each connection a WebSocket through the server
        (client/ports.py), said in the lines the in-process attach says. LocalPortBusyError
        for a local port something here holds (the caller stops the run, or says how to
        attach elsewhere). None is forwarded for a run that is not running (any more)."""
        from iacrun.orchestrator.host.ports import free_local_port

        run = self.client.get(name)
        forwards = self.client.forward_ports(name, on_note=lambda line: on_event(line))
        if run.status != "running":
            return forwards
        try:
            for port in ports:
                local = port.local_port or free_local_port()
                if not _here_already(self.url, run, local, port.container_port):
                    forwards.forward(local, port.container_port)
                on_event(f"port {port.container_port} of the task is at http://127.0.0.1:{local}")
        except BaseException:
            forwards.close()
            raise
        return forwards

    def _wait_for_job(self, name: str) -> None:
        """Until the run's job has started (or the run ended), as the in-process attach waits
        for its host before following the log: a server log stream opened while the run was
        still provisioning was once seen to deliver nothing after the job started."""
        while True:
            run = self.client.get(name)
            if run.status.is_final or run.status not in ("submitted", "provisioning"):
                return
            time.sleep(WAIT_POLL)

    def logs(
        self,
        name: str,
        sink: Callable[[bytes], None],
        *,
        offset: int = 0,
        follow: bool = False,
        node: int | None = None,
    ) -> tuple[int, RunRecord]:
        """The log of the run's master, or of node `node` (the server checks the rank)."""
        if offset < 0:
            raise InputError(f"--offset {offset}: a byte offset is 0 or more")
        rank = node or 0
        chunks: Iterable[bytes] = (
            self.client.follow(name, offset, node=rank)
            if follow
            else self._read(name, offset, rank)
        )
        for chunk in chunks:
            sink(chunk)
            offset += len(chunk)
        return offset, self.client.get(name)

    def _read(self, name: str, offset: int, node: int = 0) -> Iterator[bytes]:
        while True:
            chunk = self.client.logs(name, offset, node=node)
            if not chunk.data:
                return
            offset = chunk.offset
            yield chunk.data

    def all_node_logs(
        self, name: str, sink: Callable[[bytes], None], *, follow: bool = False
    ) -> RunRecord:
        """Every node's log, each line prefixed with its rank (`[1] ...`): interleaved as the
        lines come while an active run is followed (one log stream per node, each waiting on
        the server for its node's machine); node after node, in rank order, otherwise."""
        from iacrun.orchestrator.host.cluster import RankPrefix

        run = self.client.get(name)
        if not (follow and run.active):
            for rank in [n.rank for n in self.client.nodes(name)] or [0]:
                prefixer = RankPrefix(rank, sink)
                for chunk in self._read(name, 0, rank):
                    prefixer.write(chunk)
                prefixer.flush()
            return self.client.get(name)

        lock = threading.Lock()

        def locked(data: bytes) -> None:
            with lock:  # a line is handed on whole, whichever node's thread wrote it
                sink(data)

        failures: list[BaseException] = []

        def follow_node(rank: int) -> None:
            prefixer = RankPrefix(rank, locked)
            try:
                for chunk in self.client.follow(name, 0, node=rank):
                    prefixer.write(chunk)
            except BaseException as exc:  # raised again in the caller's thread
                failures.append(exc)
            finally:
                prefixer.flush()

        threads = [
            threading.Thread(target=follow_node, args=(rank,), name=f"log-{rank}", daemon=True)
            for rank in range(max(run.spec.nodes, 1))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        return self.client.get(name)

    # ------------------------------------------------------------------ stopping

    def request_stop(
        self, name: str, *, reason: str = "stopped by user", abort: bool = False
    ) -> RunRecord:
        """The server records the stop and answers at once; its supervision does the rest.
        The server says who stopped it; a reason of the CLI's own (a signal) is said after."""
        return self.client.stop(name, abort=abort, wait=False, reason=_why(reason))

    def supervised(self, run: RunRecord) -> bool:
        """Always: the server supervises every run it holds (and takes over a dead one)."""
        return True

    def wait_stopped(
        self, run: RunRecord, timeout: float, *, give_up: Callable[[], bool] = lambda: False
    ) -> RunRecord:
        end = time.monotonic() + timeout
        run = self.client.get(run.name)
        while run.active and time.monotonic() < end and not give_up():
            time.sleep(0.25)
            run = self.client.get(run.name)
        return run

    def stop(
        self, name: str, *, reason: str = "stopped by user", wait: float = 60.0, abort: bool = False
    ) -> RunRecord:
        """Stop and wait for the end, as in-process: the server records the stop (an abort
        answers at once), then the run is followed here until it ended."""
        run = self.client.stop(name, abort=abort, reason=_why(reason))
        return self.wait_stopped(run, wait + (0.0 if run.abort else run.spec.stop_duration))

    def down(
        self,
        name: str,
        *,
        reason: str = "stopped by user",
        force: bool = False,
        on_note: Callable[[str], None] = _quiet,
    ) -> str:
        try:
            return self.client.down(name)
        except RunNotFoundError:
            if force:
                raise InputError(
                    "down --force of another home's stack is local-only: run it on the "
                    "server's machine"
                ) from None
            return self.client.destroy_stack(name)

    # ------------------------------------------------------------------ what only remote has

    def stacks(self) -> list[StackInfo]:
        return self.client.stacks()

    def offers(self, **filters: object) -> OfferPlan:
        from iacrun.orchestrator.offers.plan import OfferPlan

        found = self.client.offers(**filters)
        return OfferPlan(offers=found.offers, notes=found.notes)

    # ------------------------------------------------------------------ where attach left a log

    def _offset_file(self, name: str) -> Path:
        from iacrun.orchestrator.paths import iacrun_home, private_dir

        server = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        return private_dir(iacrun_home() / "remote" / server) / f"{name}.offset"


class _History:
    """While a run is followed, its status changes (from the server's history) as progress
    lines, from a thread: the main thread reads the log stream."""

    def __init__(self, client: Client, name: str, on_event: Callable[[str], None]) -> None:
        self.client = client
        self.name = name
        self.on_event = on_event
        self.seen = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> _History:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=2 * HISTORY_POLL)
        if exc[0] is None:
            self.show()  # the last changes, the final status among them

    def show(self) -> None:
        """The changes not shown yet (from the polling thread, or the follower's)."""
        with self.lock, contextlib.suppress(Exception):  # progress lines: never fail the follow
            events = self.client.history(self.name)
            for event in events[self.seen :]:
                self.on_event(f"{event.status}" + (f": {event.reason}" if event.reason else ""))
            self.seen = max(self.seen, len(events))

    def _poll(self) -> None:
        while not self.done.is_set():
            self.show()
            self.done.wait(HISTORY_POLL)


def _here_already(url: str, run: RunRecord, local: int, task_port: int) -> bool:
    """True when the task's port is this machine's own `local` port already: a local-backend
    run of a server on this machine's loopback, forwarded to the same port number (as
    in-process, where the local backend forwards nothing then: the job listens there itself,
    and a listener of ours would take its port)."""
    from urllib.parse import urlsplit

    if run.host is None or run.host.kind != "local" or local != task_port:
        return False
    try:
        address = ipaddress.ip_address(urlsplit(url).hostname or "")
    except ValueError:
        return urlsplit(url).hostname == "localhost"
    return address.is_loopback


def _read_offset(path: Path) -> int:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 0


def _write_offset(path: Path, offset: int) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}")
    with contextlib.suppress(OSError):
        partial.write_text(str(offset))
        os.replace(partial, path)


def _why(reason: str) -> str | None:
    """What the server adds to `stopped by USER` (`aborted by USER`): nothing for a plain stop
    or abort, else the CLI's reason without its own `stopped: ` (`stopped: iacrun got SIGTERM`
    becomes `stopped by USER: iacrun got SIGTERM`)."""
    if reason in ("stopped by user", "aborted by user"):
        return None
    return reason.removeprefix("stopped: ")
