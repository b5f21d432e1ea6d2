"""The run's state machine: the detached process that owns one run from offers to teardown.

`python -m iacrun.orchestrator.supervisor RUN_ID [--resume]` is started by `Orchestrator.submit`
(and, with `--resume`, by `Orchestrator.refresh` when the previous one died). It walks the run
through its states, each a section of `Supervisor` below::

    submitted ─ provisioning ⇄ pending ─ running ⇄ pending ─ terminating ─ done|failed|terminated
    └ provisioning: the offers in failover order, each attempt recorded before it starts
                    └ running: code shipped, runner started, state followed until final
                                                             └ teardown: machine given back,
                                                                with retries, then the record
                                                                is closed

Every step is written to the registry before it is taken, so that a supervisor that dies can
be replaced (`resume`) and whatever it created found and torn down. Progress lines go to the
run's `EventLog`, which an attached client shows. The collaborators (registry, backends, sleep,
teardown delays) come through the constructor, so tests drive the whole machine in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from iacrun.orchestrator.backends.base import (
    Backend,
    MultiNode,
    ProgressCallback,
    StackBacked,
    backend_named,
    multi_node_backends,
)
from iacrun.orchestrator.errors import BackendError, HostUnreachableError, IacrunError
from iacrun.orchestrator.host.cluster import (
    NodeRecord,
    node_env,
    node_log_name,
    read_nodes,
    write_nodes,
)
from iacrun.orchestrator.host.reconnecting import ReconnectingTransport, open_transport
from iacrun.orchestrator.host.runner_client import (
    build_job,
    keep_log,
    read_state,
    settle_state,
    ship_and_start,
    stop_job,
)
from iacrun.orchestrator.host.transport import Host, Transport
from iacrun.orchestrator.paths import UNREACHED
from iacrun.orchestrator.registry import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    LeaseLost,
    Registry,
    RunRecord,
)

if TYPE_CHECKING:
    from iacrun.orchestrator.backends.failover import Backoff
    from iacrun.orchestrator.models.requirements import Requirements
    from iacrun.orchestrator.offers.model import Offer

T = TypeVar("T")

#: seconds past max_duration after which any iacrun command tears a run down itself
REAPER_MARGIN = 120.0
#: seconds between the attempts to give a machine back before the failure is shown
TEARDOWN_RETRIES = (5.0, 15.0)
#: seconds between the checks that the runner still lives (a dead one is settled on the host)
RUNNER_CHECK_SECONDS = 2.0
#: seconds one answer of a remote host is waited for before it counts as not answering (a
#: stalled connection is dropped and made again), and the window of each reconnection
ANSWER_SECONDS = 20.0
#: seconds between the tries to reach a host that stopped answering
OUTAGE_POLL_SECONDS = 1.0


class EventLog:
    """Progress lines of a run, written by its supervisor and shown by an attached client."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of(cls, run: RunRecord) -> EventLog:
        return cls(Path(run.local_dir) / "events")

    def write(self, message: str) -> None:
        with open(self.path, "a") as f:
            f.write(f"{time.time():.3f} {message}\n")

    def read_from(self, offset: int) -> tuple[int, list[str]]:
        try:
            with open(self.path) as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return offset, []
        complete = data[: data.rfind("\n") + 1]
        lines = [line.split(" ", 1)[1] for line in complete.splitlines() if " " in line]
        return offset + len(complete.encode()), lines


class Supervisor:
    """Takes one run through its states; see the module's docstring."""

    def __init__(
        self,
        registry: Registry,
        backends: Sequence[Backend],
        *,
        home: Path,
        upload_limit_gb: float,
        sleep: Callable[[float], None] = time.sleep,
        teardown_retries: Sequence[float] = TEARDOWN_RETRIES,
        poll: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff | None = None,
        shed: Callable[[int], None] | None = None,
    ) -> None:
        self.registry = registry
        self.shed = shed
        self.backends = list(backends)
        self.home = home
        self.upload_limit_gb = upload_limit_gb
        self.sleep = sleep
        self.teardown_retries = tuple(teardown_retries)
        self.poll = poll
        self.clock = clock
        self.backoff = backoff

    def backend(self, name: str) -> Backend:
        return backend_named(self.backends, name)

    # ------------------------------------------------------------------ the whole run

    def supervise(self, run_id: int) -> None:
        """Provision, ship, start and watch one run until it ends, then tear it down."""
        from iacrun.orchestrator.offers.model import Offer

        run = self.registry.get_by_id(run_id)
        events = EventLog.of(run)
        try:
            offers = [
                Offer.model_validate(o)
                for o in json.loads((Path(run.local_dir) / "offers.json").read_text())
            ]
            host = self.provision(run, offers, events)
            if host is None:
                return
            if self.shed is not None and "pulumi" in sys.modules:
                # the stack engine is loaded (a cloud VM's stack): a fresh process watches the
                # job without it, from what the registry holds (see `main`, `--provisioned`)
                self.shed(run_id)
            run = self.registry.get_by_id(run_id)
            nodes = read_nodes(run.local_dir)
            if len(nodes) > 1:
                asyncio.run(self._start_and_watch_nodes(run, nodes, events))
            else:
                asyncio.run(self._start_and_watch(run, host, events))
        except LeaseLost:  # another server supervises the run now: not a failure of it
            raise
        except IacrunError as exc:  # the teardown's last line says it
            self.finish(run_id, "failed", str(exc), None)
        except Exception as exc:  # the supervisor must record what killed it
            events.write(f"failed: internal error: {exc!r}")
            self.finish(run_id, "failed", f"internal error: {exc!r}", None)
            raise
        finally:
            self.teardown(self.registry.get_by_id(run_id), events)

    def supervise_provisioned(self, run_id: int) -> None:
        """`supervise` after provisioning: ship, start and watch the job on the recorded host,
        then tear down (the process a supervisor replaced itself with, see `shed`)."""
        run = self.registry.get_by_id(run_id)
        events = EventLog.of(run)
        try:
            if run.host is None:  # `shed` is called only once the host is recorded
                raise IacrunError("the run's machine was not recorded")
            asyncio.run(self._start_and_watch(run, run.host, events))
        except LeaseLost:
            raise
        except IacrunError as exc:
            self.finish(run_id, "failed", str(exc), None)
        except Exception as exc:
            events.write(f"failed: internal error: {exc!r}")
            self.finish(run_id, "failed", f"internal error: {exc!r}", None)
            raise
        finally:
            self.teardown(self.registry.get_by_id(run_id), events)

    def resume(self, run_id: int) -> None:
        """Take over a run whose supervisor died, where it was."""
        run = self.registry.get_by_id(run_id)
        events = EventLog.of(run)
        events.write("the previous supervisor exited; taking the run over")
        ended = (Path(run.local_dir) / "final").exists()
        try:
            if run.status == "terminating" and ended:
                # killed during teardown: how the job ended is recorded, and giving the machine
                # back resumes from the stack's state (destroy is idempotent), never by
                # reconnecting to a host that may already be deleted
                pass
            elif run.host is None and run.status == "terminating":  # stopped before it started
                self.finish(run.id, "terminated", run.reason or "stopped by user", None)
            elif run.status == "terminating" and self._machine_ends_job(run):
                # stopped, and the supervisor died before stopping the job: deleting the VM ends
                # it (its log is kept only as far as a follower read it)
                self.finish(run.id, "terminated", run.reason or "stopped by user", None)
            elif run.host is None:
                self.finish(run.id, "failed", "interrupted while provisioning", None)
            elif run.status == "provisioning" and len(nodes := read_nodes(run.local_dir)) > 1:
                asyncio.run(self._resume_starting_nodes(run, nodes, events))
            elif run.status == "provisioning":
                # died between starting the job and recording it: a job that started is watched
                # on, never failed behind its back
                if asyncio.run(self._job_started(run.host)) and self.registry.transition(
                    run.id, ("provisioning",), status="running", started_at=time.time()
                ):
                    events.write("running (the job had started before the supervisor exited)")
                    asyncio.run(self._resume_watch(self.registry.get_by_id(run.id), run.host))
                else:  # the machine was up: its code was being shipped
                    why = "interrupted while uploading the code; the job never started"
                    self.finish(run.id, "failed", why, None)
            else:
                asyncio.run(self._resume_watch(run, run.host))
        except IacrunError as exc:  # the teardown's last line says it
            status = "terminated" if run.status == "terminating" else "failed"
            self.finish(run_id, status, str(exc), None)
        finally:
            self.teardown(self.registry.get_by_id(run_id), events)

    async def _resume_starting_nodes(
        self, run: RunRecord, nodes: list[NodeRecord], events: EventLog
    ) -> None:
        """A multi-node run whose supervisor died while starting its nodes' jobs: watched on
        when every job had started; otherwise failed, and the jobs that did start are stopped
        (a node never runs alone: the others would wait for the missing one forever)."""
        started = [await self._job_started(node.host) for node in nodes]
        if all(started):
            if self.registry.transition(
                run.id, ("provisioning",), status="running", started_at=time.time()
            ):
                events.write("running (the jobs had started before the supervisor exited)")
                await self._resume_watch(self.registry.get_by_id(run.id), nodes[0].host)
            return
        if not any(started):
            why = "interrupted while uploading the code; the job never started"
            self.finish(run.id, "failed", why, None)
            return
        missing = [str(node.rank) for node, up in zip(nodes, started, strict=True) if not up]
        why = (
            f"interrupted while starting the nodes; node {missing[0]}'s job never started"
            if len(missing) == 1
            else f"interrupted while starting the nodes; the jobs of nodes {', '.join(missing)} "
            "never started"
        )
        events.write(f"{why}; stopping the nodes that started")
        for node, up in zip(nodes, started, strict=True):
            if not up:
                continue
            transport = await open_transport(node.host, reconnect_for=ANSWER_SECONDS)
            try:
                state = await stop_job(transport, node.host, why)
                self._record_node_end(
                    run,
                    node.rank,
                    {**state, "status": "terminated", "reason": state.get("reason") or why},
                )
                if node.host.kind != "local":
                    with contextlib.suppress(IacrunError):
                        await keep_log(
                            transport, node.host, Path(run.local_dir) / node_log_name(node.rank)
                        )
            finally:
                await transport.close()
        self.finish(run.id, "failed", why, None)

    async def _job_started(self, host: Host) -> bool:
        """Whether the runner on `host` has started the job (it wrote its state)."""
        try:
            transport = await open_transport(host, reconnect_for=ANSWER_SECONDS)
        except IacrunError:
            return False
        try:
            return bool(await read_state(transport, host))
        finally:
            await transport.close()

    def _machine_ends_job(self, run: RunRecord) -> bool:
        """Whether giving the run's machine back ends its job too (a cloud VM's stack)."""
        return run.backend is not None and isinstance(self.backend(run.backend), StackBacked)

    # ------------------------------------------------------------------ provisioning

    def provision(self, run: RunRecord, offers: list[Offer], events: EventLog) -> Host | None:
        """Try the offers in failover order; each attempt is recorded before it starts.

        With `retry` on `no-capacity`, a run none of whose offers is available (every host busy
        or unreachable, every cloud out of capacity) goes `pending` and waits, re-planning its
        offers each round, until one works or the retry duration is spent (see
        backends/failover.py). A waiting run holds no machine, and a stop ends the wait at once.
        None when the run was stopped meanwhile (nothing is left to watch)."""
        from iacrun.orchestrator.backends.failover import provision_with_failover
        from iacrun.orchestrator.offers.plan import collect_offers

        recording = {b.name: _Recording(b, self.registry) for b in self.backends}

        def waiting(seconds: float, reason: str) -> None:
            # no machine is held while waiting: other runs' plans must not count this one
            pending = self.registry.transition(
                run.id,
                ("submitted", "provisioning", "pending"),
                status="pending",
                reason=reason,
                **_NO_MACHINE,
            )
            if pending is None:
                raise _Stopped()

        def replan() -> list[Offer]:
            able = multi_node_backends(self.backends, run.spec.requirements)
            plan = collect_offers(able, run.spec.requirements, raise_on_empty=False)
            return plan.offers

        try:
            _, host = provision_with_failover(
                recording,
                offers,
                run,
                run.spec.retry,
                events.write,
                on_wait=waiting,
                replan=replan,
                sleep=lambda seconds: self._sleep_unless_stopped(run.id, seconds),
                clock=self.clock,
                backoff=self.backoff,
                outranked=lambda offer: self._outranked(run, offer),
            )
        except _Stopped:
            return None
        self.registry.update(run.id, host=host)
        return host

    def _outranked(self, run: RunRecord, offer: Offer) -> str | None:
        """Why `offer` is left to another run: a `pending` run of higher priority waits for the
        same machine (the same backend, instance type and region among its offers)."""
        from iacrun.orchestrator.offers.model import Offer

        mine = (offer.backend, offer.instance_type, offer.region)
        for other in self.registry.runs():
            if other.id == run.id or other.status != "pending":
                continue
            if other.spec.priority <= run.spec.priority:
                continue
            try:
                wanted = json.loads((Path(other.local_dir) / "offers.json").read_text())
            except (OSError, ValueError):
                continue
            for raw in wanted:
                o = Offer.model_validate(raw)
                if (o.backend, o.instance_type, o.region) == mine:
                    return f"kept for {other.name} (priority {other.spec.priority})"
        return None

    def _sleep_unless_stopped(self, run_id: int, seconds: float) -> None:
        """Sleep, a second at a time, ending early with _Stopped once a stop is recorded."""
        end = self.clock() + seconds
        while True:
            self.registry.check_lease(run_id)
            if self.registry.get_by_id(run_id).status == "terminating":
                raise _Stopped()
            left = end - self.clock()
            if left <= 0:
                return
            self.sleep(min(1.0, left))

    # ------------------------------------------------------------------ running

    async def _start_and_watch(self, run: RunRecord, host: Host, events: EventLog) -> None:
        from iacrun.orchestrator.host.gitauth import git_auth_for
        from iacrun.orchestrator.host.payload import pack_run

        if self._stop_requested(run):  # stopped while the machine came up: no job starts
            return
        transport = await open_transport(host, reconnect_for=ANSWER_SECONDS)
        try:
            archive, payload, files, size = pack_run(
                run.spec, Path(run.local_dir), self.upload_limit_gb, exclude=(self.home,)
            )
            if self._stop_requested(run):
                archive.unlink(missing_ok=True)
                if payload is not None:
                    payload.unlink(missing_ok=True)
                return
            events.write(f"uploading {files} files ({_human(size)})")
            await ship_and_start(
                transport,
                host,
                build_job(run.name, run.spec, host),
                str(archive),
                payload=None if payload is None else str(payload),
                git_auth=git_auth_for(run.spec),
            )
            archive.unlink(missing_ok=True)
            if payload is not None:
                payload.unlink(missing_ok=True)
            if (
                self.registry.transition(
                    run.id, ("provisioning",), status="running", started_at=time.time()
                )
                is None
            ):
                # stopped while the job started: it is stopped as asked, and how it ended kept
                why = self.registry.get_by_id(run.id).reason or "stopped by user"
                final = await self._stop_job(run, host, transport, why)
                if host.kind != "local":
                    await keep_log(transport, host, Path(run.local_dir) / "log")
                self.finish(
                    run.id, "terminated", final.get("reason") or why, final.get("exit_code")
                )
                return
            events.write("running")
            await self._watch(run, host, transport)
        finally:
            await transport.close()

    async def _start_and_watch_nodes(
        self, run: RunRecord, nodes: list[NodeRecord], events: EventLog
    ) -> None:
        """A multi-node run: the working folder shipped to every node, each job started with
        its rank's variables (host/cluster.py), then every node watched (`_watch_nodes`)."""
        from iacrun.orchestrator.host.gitauth import git_auth_for
        from iacrun.orchestrator.host.payload import pack_run

        if self._stop_requested(run):
            return
        transports: list[Transport] = []
        try:
            for node in nodes:
                transports.append(await open_transport(node.host, reconnect_for=ANSWER_SECONDS))
            archive, payload, files, size = pack_run(
                run.spec, Path(run.local_dir), self.upload_limit_gb, exclude=(self.home,)
            )
            try:
                if self._stop_requested(run):
                    return
                events.write(f"uploading {files} files ({_human(size)}) to {len(nodes)} nodes")
                hosts = [n.host for n in nodes]
                gpus = _gpus_per_node(run, hosts[0])
                git_auth = git_auth_for(run.spec)

                async def start(node: NodeRecord) -> None:
                    job = build_job(run.name, run.spec, node.host)
                    # one node is never restarted alone: the others would wait for it forever
                    job["retry"] = None
                    job["env"] = {**job["env"], **node_env(hosts, node.rank, gpus)}
                    await ship_and_start(
                        transports[node.rank],
                        node.host,
                        job,
                        str(archive),
                        payload=None if payload is None else str(payload),
                        git_auth=git_auth,
                    )

                order = run.spec.startup_order
                if order == "any":
                    await asyncio.gather(*(start(n) for n in nodes))
                else:  # one after the other: the master first, or last
                    ranked = nodes if order == "master-first" else [*nodes[1:], nodes[0]]
                    for node in ranked:
                        await start(node)
            finally:
                archive.unlink(missing_ok=True)
                if payload is not None:
                    payload.unlink(missing_ok=True)
            running = self.registry.transition(
                run.id, ("provisioning",), status="running", started_at=time.time()
            )
            if running is None:
                await asyncio.gather(
                    *(
                        self._stop_job(run, node.host, transport, "stopped by user")
                        for node, transport in zip(nodes, transports, strict=True)
                    )
                )
                return
            events.write(f"running on {len(nodes)} nodes")
            await self._watch_nodes(run, nodes, transports)
        finally:
            for transport in transports:
                await transport.close()

    async def _watch_nodes(
        self, run: RunRecord, nodes: list[NodeRecord], transports: list[Transport]
    ) -> None:
        """Follow every node until the run ends, as dstack does: the run's status and exit code
        follow the master (rank 0); a node that fails fails the run and stops the others; with
        `stop_criteria: master-done` the master's end stops the others, with `all-done` (the
        default) the run waits for every node. Each node's end is recorded in nodes.json."""
        events = EventLog.of(run)
        stopping: list[str] = []  # why the other nodes are being stopped, once they are
        ended: dict[int, dict[str, Any]] = {}
        failure: tuple[int, dict[str, Any]] | None = None
        lost: IacrunError | None = None

        async def watch(node: NodeRecord, transport: Transport) -> dict[str, Any] | None:
            def elsewhere() -> str | None:
                return stopping[0] if stopping else None

            return await self._until_final(run, node.host, transport, elsewhere)

        tasks = {
            asyncio.ensure_future(watch(n, t)): n for n, t in zip(nodes, transports, strict=True)
        }
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                node = tasks[task]
                try:
                    state = task.result()
                except IacrunError as exc:  # the node's host was out of reach too long
                    lost = lost or exc
                    if not stopping:
                        stopping.append(f"node {node.rank} was lost: {exc}")
                    continue
                if state is None:  # settled by another process
                    continue
                ended[node.rank] = state
                self._record_node_end(run, node.rank, state)
                if stopping or self._stop_requested(run):
                    continue
                if state.get("status") != "done":
                    failure = (node.rank, state)
                    why = _node_end(node.rank, state)
                    events.write(f"{why}; stopping the other nodes")
                    stopping.append(f"stopped: {why}")
                elif node.rank == 0 and run.spec.stop_criteria == "master-done":
                    stopping.append("the master is done (stop_criteria: master-done)")
                elif node.rank == 0 and len(pending) > 0:
                    others = f"{len(pending)} other node{'s' if len(pending) > 1 else ''}"
                    events.write(f"the master is done; waiting for {others}")
        for node, transport in zip(nodes, transports, strict=True):
            if node.host.kind != "local":
                kept = Path(run.local_dir) / node_log_name(node.rank)
                with contextlib.suppress(IacrunError):  # a host that is gone loses that copy
                    await keep_log(transport, node.host, kept)
        if lost is not None:
            raise lost
        master = ended.get(0)
        if master is None:  # settled by another process while a host was out of reach
            return
        self.registry.update(run.id, attempt=1)
        if failure is not None and failure[0] != 0:
            rank, state = failure
            self.finish(run.id, "failed", _node_end(rank, state), state.get("exit_code"))
            return
        self.finish(run.id, master["status"], master.get("reason"), master.get("exit_code"))

    def _record_node_end(self, run: RunRecord, rank: int, state: dict[str, Any]) -> None:
        nodes = read_nodes(run.local_dir)
        for node in nodes:
            if node.rank == rank:
                node.status = state.get("status")
                node.exit_code = state.get("exit_code")
                node.reason = state.get("reason")
        write_nodes(run.local_dir, nodes)

    def _stop_requested(self, run: RunRecord) -> bool:
        """`iacrun stop` (or a signalled CLI) asked for the run to end: see `request_stop`."""
        return self.registry.get_by_id(run.id).status == "terminating"

    async def _resume_watch(self, run: RunRecord, host: Host) -> None:
        nodes = read_nodes(run.local_dir)
        if len(nodes) > 1:
            transports = [
                ReconnectingTransport(n.host, reconnect_for=ANSWER_SECONDS) for n in nodes
            ]
            try:
                await self._watch_nodes(run, nodes, list(transports))
            finally:
                for each in transports:
                    await each.close()
            return
        # connected on first use: a host out of reach now is an outage to wait out, not a failure
        transport: Transport
        if host.kind == "local":
            transport = await open_transport(host)
        else:
            transport = ReconnectingTransport(host, reconnect_for=ANSWER_SECONDS)
        try:
            await self._watch(run, host, transport)
        finally:
            await transport.close()

    async def _watch(self, run: RunRecord, host: Host, transport: Transport) -> None:
        """Follow the runner until the run ends; record how, keeping the log of a remote host."""
        state = await self._until_final(run, host, transport)
        if state is None:  # settled by another process while the host was out of reach
            return
        if host.kind != "local":
            await keep_log(transport, host, Path(run.local_dir) / "log")
        self.registry.update(run.id, attempt=int(state.get("attempt") or run.attempt or 1))
        self.finish(run.id, state["status"], state.get("reason"), state.get("exit_code"))

    async def _until_final(
        self,
        run: RunRecord,
        host: Host,
        transport: Transport,
        ended_elsewhere: Callable[[], str | None] = lambda: None,
    ) -> dict[str, Any] | None:
        """The runner's final state; None when another process settled the run meanwhile.
        `ended_elsewhere` gives why the job must stop though nothing here asked (another node
        of the run ended it), or None."""
        deadline = None
        if run.spec.max_duration:
            deadline = time.time() + float(run.spec.max_duration) + REAPER_MARGIN
        seen_attempts = 0
        checked = self.clock()
        outage = _Outage(run, host, EventLog.of(run), self.registry)
        while True:
            try:
                state = await _answer(read_state(transport, host), host, transport)
                if state.get("status") not in FINAL_STATUSES and (
                    self.clock() - checked >= RUNNER_CHECK_SECONDS
                ):
                    # a runner that died leaves the state as it was: settle it from its files
                    checked = self.clock()
                    settled = await _answer(settle_state(transport, host), host, transport)
                    state = settled or state
            except HostUnreachableError as exc:
                # the job goes on without us: wait for the host within its limit (a stop
                # recorded meanwhile is carried out once it answers)
                outage.lost(exc)  # raises once the limit is past
                if self.registry.get_by_id(run.id).status.is_final:
                    return None
                await asyncio.sleep(OUTAGE_POLL_SECONDS)
                continue
            outage.back()
            if state.get("status") in FINAL_STATUSES:
                return state
            # every failed attempt that the runner retries is one line of the run's history
            attempts = state.get("attempts") or []
            for failed in attempts[seen_attempts:]:
                self.registry.transition(
                    run.id,
                    ("running", "pending"),
                    status="pending",
                    reason=f"attempt {failed['attempt']} {failed['reason']}; retrying",
                    attempt=failed["attempt"],
                )
            seen_attempts = len(attempts)
            if state.get("status") == "running" and len(attempts) + 1 > run.attempt:
                run = (
                    self.registry.transition(
                        run.id,
                        ("running", "pending"),
                        status="running",
                        reason=None,
                        attempt=len(attempts) + 1,
                    )
                    or run
                )
            reason = None
            current = self.registry.get_by_id(run.id)
            if current.status == "terminating":  # `iacrun stop` recorded why
                reason = current.reason or "stopped by user"
            elif deadline is not None and time.time() > deadline:
                reason = "max duration exceeded"
            else:
                reason = ended_elsewhere()
            # a server that lost the run's lease stops here: the run's new supervisor acts
            self.registry.check_lease(run.id)
            if reason is not None:
                final = await self._stop_job(run, host, transport, reason)
                return {**final, "status": "terminated", "reason": final.get("reason") or reason}
            await asyncio.sleep(self.poll)

    async def _stop_job(
        self, run: RunRecord, host: Host, transport: Transport, reason: str
    ) -> dict[str, Any]:
        """Stop the job on `host`: killed at once when the run's stop is an abort (`iacrun stop
        -x`), else given its stop_duration grace, cut short as soon as an abort is recorded
        meanwhile (the user's "it hangs, kill it now")."""
        current = self.registry.get_by_id(run.id)
        if current.abort:
            return await stop_job(transport, host, current.reason or reason, abort=True)
        graceful = asyncio.ensure_future(stop_job(transport, host, reason))
        try:
            while not graceful.done():
                await asyncio.wait({graceful}, timeout=self.poll)
                current = self.registry.get_by_id(run.id)
                if not graceful.done() and current.abort:
                    await stop_job(transport, host, current.reason or reason, abort=True)
                    break
            return await graceful
        finally:
            if not graceful.done():  # this stop failed or was cancelled: so is the graceful one
                graceful.cancel()

    # ------------------------------------------------------------------ teardown

    def finish(self, run_id: int, status: str, reason: str | None, exit_code: int | None) -> None:
        """Record how the job ended (`terminating`); the status becomes final at teardown."""
        self.registry.transition(
            run_id,
            ACTIVE_STATUSES,
            status="terminating",
            reason=reason,
            exit_code=exit_code,
        )
        record = self.registry.get_by_id(run_id)
        (Path(record.local_dir) / "final").write_text(
            json.dumps({"status": status, "reason": reason, "exit_code": exit_code})
        )

    def teardown(self, run: RunRecord, events: EventLog) -> None:
        """Give the machine back, then close the record; a failed teardown stays visible."""
        from iacrun.orchestrator.host.payload import remove_packed

        if run.status.is_final:
            return
        self.registry.check_lease(run.id)  # never give back a machine another server watches
        remove_packed(Path(run.local_dir))  # left by a supervisor killed while shipping them
        final_path = Path(run.local_dir) / "final"
        final = json.loads(final_path.read_text()) if final_path.exists() else {}
        if run.backend is not None:
            for wait in (*self.teardown_retries, None):
                try:
                    self.registry.check_lease(run.id)
                    self.backend(run.backend).terminate(run)
                    break
                except IacrunError as exc:
                    events.write(f"teardown failed: {exc}")
                    if wait is None:
                        self.registry.update(
                            run.id,
                            status="terminating",
                            reason=f"teardown failed: {exc}; retry with iacrun down {run.name}",
                        )
                        return
                    self.sleep(wait)
        self.registry.transition(
            run.id,
            ACTIVE_STATUSES,
            status=final.get("status", "terminated"),
            reason=final.get("reason", run.reason),
            exit_code=final.get("exit_code", run.exit_code),
            finished_at=time.time(),
        )
        events.write(f"{final.get('status', 'terminated')}: {final.get('reason', run.reason)}")


#: the fields of a run that say which machine it holds, cleared while it waits for one
_NO_MACHINE: dict[str, Any] = {
    "backend": None,
    "region": None,
    "instance_type": None,
    "price": None,
    "offer": None,
    "node_hosts": None,
}


class _Stopped(Exception):
    """The run was stopped while its machine was being provisioned."""


async def _answer(call: Awaitable[T], host: Host, transport: Transport) -> T:
    """`call`'s result, or HostUnreachableError when the host gives no answer in time (a
    stalled connection, e.g. a host or network that froze, is dropped: the next call reconnects)."""
    if host.kind == "local":
        return await call
    try:
        return await asyncio.wait_for(call, ANSWER_SECONDS)
    except TimeoutError:
        if isinstance(transport, ReconnectingTransport):
            transport.abort()
        raise HostUnreachableError(
            f"{host.address}:{host.port} gave no answer within {ANSWER_SECONDS:.0f}s"
        ) from None


class _Outage:
    """A running job's host that stopped answering: shown, waited for `unreachable_after`
    seconds from its last answer, then the run is failed and marked `UNREACHED`."""

    def __init__(self, run: RunRecord, host: Host, events: EventLog, registry: Registry) -> None:
        self.run = run
        self.host = host
        self.events = events
        self.registry = registry
        self.last_answer = time.time()
        self.since: float | None = None

    def lost(self, exc: HostUnreachableError) -> None:
        now = time.time()
        if self.since is None:
            self.since = self.last_answer
            until = self.since + self.host.unreachable_after
            line = f"host unreachable since {_clock(self.since)}; waiting until {_clock(until)}"
            self.events.write(f"{line} ({exc})")
            self.registry.transition(self.run.id, ("running", "pending"), reason=line)
        if now - self.since < self.host.unreachable_after:
            return
        from iacrun.orchestrator.models.units import format_duration

        reason = (
            f"{self.host.address}:{self.host.port} unreachable since {_clock(self.since)}, "
            f"longer than unreachable_after ({format_duration(self.host.unreachable_after)}); "
            f"the job may still run there: iacrun stop {self.run.name} stops it once the host "
            "answers"
        )
        (Path(self.run.local_dir) / UNREACHED).write_text(reason)
        raise HostUnreachableError(reason) from exc

    def back(self) -> None:
        self.last_answer = time.time()
        if self.since is None:
            return
        self.events.write(
            f"host answers again after {self.last_answer - self.since:.0f}s; following on"
        )
        current = self.registry.get_by_id(self.run.id)
        if (current.reason or "").startswith("host unreachable since"):
            self.registry.transition(self.run.id, ("running", "pending"), reason=None)
        self.since = None


def _clock(moment: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(moment))


class _Recording(Backend):
    """A backend whose every provisioning attempt is written to the registry first, so that
    whatever it creates can be found and torn down even if this process dies midway."""

    def __init__(self, inner: Backend, registry: Registry) -> None:
        self.inner = inner
        self.registry = registry
        self.name = inner.name

    def offers(self, requirements: Requirements) -> list[Offer]:
        return self.inner.offers(requirements)

    def provision(self, run: RunRecord, offer: Offer, progress: ProgressCallback) -> Host:
        current = self.registry.transition(
            run.id,
            ("submitted", "provisioning", "pending"),
            status="provisioning",
            reason=None,
            backend=offer.backend,
            region=offer.region,
            instance_type=offer.instance_type,
            spot=offer.spot,
            price=offer.price * run.spec.nodes,  # what the run costs: every node's machine
            offer=offer,
        )
        if current is None:
            raise _Stopped()
        if isinstance(self.inner, StackBacked):
            current = self.registry.update(run.id, stack_name=self.inner.stack_name(current))
        if run.spec.nodes == 1:
            return self.inner.provision(current, offer, progress)
        if not isinstance(self.inner, MultiNode):
            raise BackendError(f"the {self.name} backend cannot give a run several machines")
        hosts = self.inner.provision_nodes(current, offer, run.spec.nodes, progress)
        if len(hosts) != run.spec.nodes:
            raise BackendError(
                f"the {self.name} backend gave {len(hosts)} machines for nodes: {run.spec.nodes}"
            )
        # recorded before any job starts: stop, resume and logs reach every node from here on
        write_nodes(current.local_dir, [NodeRecord(rank=i, host=h) for i, h in enumerate(hosts)])
        return hosts[0]

    def terminate(self, run: RunRecord) -> None:
        self.inner.terminate(run)


def _node_end(rank: int, state: dict[str, Any]) -> str:
    """How a node's job ended, in words: `node 1 failed: exited (137)`."""
    text = f"node {rank} {state.get('status')}"
    if state.get("reason"):
        return f"{text}: {state['reason']}"
    code = state.get("exit_code")
    return text if code is None else f"{text} (exit {code})"


def _gpus_per_node(run: RunRecord, master: Host) -> int:
    """The GPUs each node's job gets: the master's share (its CUDA_VISIBLE_DEVICES), else
    every GPU of the offer's machine."""
    if master.gpus:
        return len([g for g in master.gpus.split(",") if g.strip()])
    return len(run.offer.resources.gpus) if run.offer is not None else 0


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GB"


def main(argv: list[str]) -> int:
    from iacrun.orchestrator.backends.assemble import make_backends
    from iacrun.orchestrator.models.settings import load_settings
    from iacrun.orchestrator.paths import (
        config_file,
        iacrun_home,
        registry_target,
        runs_dir,
        use_private_umask,
    )

    use_private_umask()  # its logs, events and the stack state: the user's alone
    # the same home, settings and backends as the Orchestrator that spawned this process
    home = iacrun_home()
    settings = load_settings(config_file(home))
    registry = Registry(registry_target(home))
    supervisor = Supervisor(
        registry,
        make_backends(settings, runs_dir(home), registry=registry),
        home=home,
        upload_limit_gb=settings.upload_limit_gb,
        shed=lambda run_id: shed_engine(
            ["-m", "iacrun.orchestrator.supervisor", str(run_id), "--provisioned"]
        ),
    )
    if "--resume" in argv:
        supervisor.resume(int(argv[0]))
    elif "--provisioned" in argv:
        supervisor.supervise_provisioned(int(argv[0]))
    else:
        supervisor.supervise(int(argv[0]))
    return 0


def shed_engine(argv: list[str]) -> None:
    """Replace this process (the same pid: the registry's `supervisor_pid` stays true) with a
    fresh supervisor of the provisioned run, `python ARGV...` (`--provisioned`), so that the
    Pulumi engine a cloud VM's stack loaded (about 20 MB of modules Python cannot unload) is not
    held while the job runs; teardown loads it again."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
