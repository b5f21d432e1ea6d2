"""The Python API: plan, submit, follow, stop and tear down runs. The CLI is a thin layer on it.

orch = Orchestrator()
spec = build_run_spec("train.dstack.yml", Overrides(gpu="24GB.."), args=["--epochs", "3"])
plan = orch.plan(spec)                 # offers, cheapest first
run = orch.submit(spec, plan)          # recorded, then provisioned by a detached supervisor
final = orch.attach(run.name, sys.stdout.buffer.write)  # live log until the run ends
print(final.status, final.exit_code)   # done 0
orch.down(run.name)                    # stop and tear down; safe to repeat

`attach` can be left (Ctrl-C, or even kill -9) and called again: it goes on from the last chunk the
sink got.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iacrun.orchestrator.backends.base import (
    Backend,
    DryRunnable,
    Preflight,
    RunPreflight,
    StackBacked,
    backend_named,
    multi_node_backends,
)
from iacrun.orchestrator.errors import (
    BackendError,
    ConfigError,
    HostUnreachableError,
    IacrunError,
    InputError,
    NoOfferError,
    RunError,
    RunNotFoundError,
    RunNotRunningError,
)
from iacrun.orchestrator.host.cluster import (
    NodeRecord,
    RankPrefix,
    node_log_name,
    read_nodes,
)
from iacrun.orchestrator.host.ports import LocalPortBusyError, free_local_port
from iacrun.orchestrator.host.reconnecting import open_transport
from iacrun.orchestrator.host.runner_client import (
    follow_log,
    keep_log,
    log_size,
    stop_job,
)
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.models.names import generate_name, run_name_problem
from iacrun.orchestrator.paths import (
    UNREACHED,
    config_file,
    iacrun_home,
    registry_target,
    runs_dir,
)
from iacrun.orchestrator.registry import (
    ACTIVE_STATUSES,
    Registry,
    RunRecord,
    name_taken,
    schedule_name_taken,
)

if TYPE_CHECKING:  # planning needs models that listing runs does not: imported where used
    from iacrun.orchestrator.backends.stack_inventory import (
        Ownership,
        StackDetail,
        StackEngineFactory,
        StackRow,
    )
    from iacrun.orchestrator.models.requirements import Requirements
    from iacrun.orchestrator.models.runspec import RunSpec
    from iacrun.orchestrator.models.settings import Settings
    from iacrun.orchestrator.models.taskfile import PortMapping
    from iacrun.orchestrator.offers.model import Offer
    from iacrun.orchestrator.offers.plan import OfferPlan, OfferSource
    from iacrun.orchestrator.registry.schedules import ScheduleRecord, Schedules
    from iacrun.orchestrator.supervisor import Supervisor
    from iacrun.stacks.engine import StackEngine

#: the file in a run's folder where the last attach stopped in its log
ATTACH_OFFSET = "attach.offset"
#: how often `logs -f` on a run still provisioning looks again for its machines
MACHINES_POLL = 0.25


class Orchestrator:
    def __init__(
        self,
        home: Path | None = None,
        settings: Settings | None = None,
        backends: list[Backend] | None = None,
        stack_engine: StackEngineFactory | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.home = home or iacrun_home()
        self._settings = settings
        self._backends = backends
        #: the registry in the home's SQLite file, unless one is given (a server's database)
        self._registry: Registry | None = registry
        self._stack_engine_factory = stack_engine
        self._stack_engine: StackEngine | None = None

    # ------------------------------------------------------------------ collaborators

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from iacrun.orchestrator.models.settings import load_settings

            self._settings = load_settings(config_file(self.home))
        return self._settings

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(registry_target(self.home))
        return self._registry

    @property
    def schedule_store(self) -> Schedules:
        """The scheduled tasks in this registry (kept and started by `iacrun server`)."""
        from iacrun.orchestrator.registry.schedules import Schedules

        return Schedules(self.registry.db)

    @property
    def runs_root(self) -> Path:
        return runs_dir(self.home)

    def backends(self, *, include_unconfigured: bool = False) -> list[Backend]:
        """The backends `up` may use (given to the constructor, or made from config.yml).

        With `include_unconfigured`, also the clouds config.yml does not set up, shown for
        comparison by `iacrun offers` and `up --dry-run` (see `backends/assemble.py`)."""
        from iacrun.orchestrator.backends.assemble import make_backends
        from iacrun.orchestrator.offers.model import is_cloud

        if self._backends is None:
            self._backends = make_backends(self.settings, self.runs_root, registry=self.registry)
        if not include_unconfigured:
            return self._backends
        names = {b.name for b in self._backends}
        shown = make_backends(self.settings, self.runs_root, include_unconfigured=True)
        return [*self._backends, *(b for b in shown if is_cloud(b.name) and b.name not in names)]

    def backend(self, name: str) -> Backend:
        return backend_named(self.backends(), name, config_file(self.home))

    def supervisor(self) -> Supervisor:
        """The state machine of runs, over this orchestrator's registry and backends."""
        from iacrun.orchestrator.supervisor import Supervisor

        return Supervisor(
            self.registry,
            self.backends(),
            home=self.home,
            upload_limit_gb=self.settings.upload_limit_gb,
        )

    # ------------------------------------------------------------------ planning and submitting

    def plan(self, spec: RunSpec) -> OfferPlan:
        """The offers for `spec`; NoOfferError when none is available now, unless the run
        waits for capacity (`retry` on `no-capacity`): then busy or unreachable machines are a
        plan too, and the run is submitted and waits for one of them."""
        from iacrun.orchestrator.offers.plan import collect_offers

        backends = multi_node_backends(self.backends(), spec.requirements, spec.config_path)
        return collect_offers(backends, spec.requirements, listing=waits_for_capacity(spec))

    def offers(
        self,
        requirements: Requirements,
        *,
        configured_only: bool = False,
        sources: Sequence[OfferSource] | None = None,
    ) -> OfferPlan:
        """What `iacrun offers` lists: every machine that fits, unavailable ones too (with why),
        your own machines first, then the clouds' cheapest first; the clouds not configured are
        shown for comparison unless `configured_only`. NoOfferError when none is left."""
        from iacrun.orchestrator.backends.assemble import comparison_note, unconfigured_clouds
        from iacrun.orchestrator.offers.model import is_cloud
        from iacrun.orchestrator.offers.plan import catalog_notes, collect_offers

        comparing = sources is None and not configured_only
        if sources is None:
            sources = list(self.backends(include_unconfigured=not configured_only))
        plan = collect_offers(sources, requirements, listing=True)
        shown = {o.backend for o in plan.offers}
        notes: list[str] = []
        note = comparison_note(self.settings) if comparing else None
        if note and shown & set(unconfigured_clouds(self.settings)):
            notes.append(note)
        notes += catalog_notes([s.name for s in sources if is_cloud(s.name) and s.name in shown])
        # your own machines first, the unreachable or busy ones too (with why): a few rows that
        # hundreds of cloud offers would otherwise push past the cut
        own = [o for o in plan.offers if not is_cloud(o.backend)]
        offers = [*own, *(o for o in plan.offers if is_cloud(o.backend))]
        return plan.model_copy(update={"offers": offers, "notes": [*notes, *plan.notes]})

    def dry_run(self, spec: RunSpec) -> tuple[OfferPlan, str]:
        """The plan, and what the first offer's backend would create for it.

        Clouds not configured yet take part too, so a user can see what a run would create
        before setting them up; no credentials are needed."""
        from iacrun.orchestrator.offers.plan import collect_offers

        backends = multi_node_backends(
            self.backends(include_unconfigured=True), spec.requirements, spec.config_path
        )
        plan = collect_offers(backends, spec.requirements)
        offer = plan.available[0]
        backend = next(b for b in backends if b.name == offer.backend)
        if isinstance(backend, DryRunnable):
            return plan, backend.dry_run(spec, offer).render()
        where = "a folder under ~/.iacrun/runs" if offer.backend == "local" else offer.region
        return plan, f"{offer.backend}: nothing is created; the run goes to {where}"

    def ensure_name_free(self, name: str) -> None:
        """Refuse early (before planning) a name that an active run holds, or an active
        schedule (its own name, or one its runs take: `Schedules.holding`)."""
        self.ensure_no_active_run(name)
        schedule = self.schedule_store.holding(name)
        if schedule is not None:
            raise schedule_name_taken(name, schedule.name)

    def ensure_no_active_run(self, name: str) -> None:
        """Refuse a name that an active run holds."""
        try:
            run = self.refresh(self.registry.get(name))
        except RunNotFoundError:
            return
        if run.active:
            raise name_taken(name)

    def check_upload(self, spec: RunSpec) -> int:
        """The bytes the run will ship; an InputError when that is over `upload_limit`, said
        before anything is recorded or created (the supervisor packs the same files later)."""
        from iacrun.orchestrator.host.payload import check_run_upload

        return check_run_upload(spec, self.settings.upload_limit_gb, (self.home,))

    def refuse_schedule(self, spec: RunSpec) -> None:
        """A task with `schedule` is started at each of its times by `iacrun server`; in-process
        nothing stays up to do it, so it is refused here in one line (planning still works)."""
        if spec.schedule is None:
            return
        from iacrun.orchestrator.models.loader import key_position

        line, column = key_position(Path(spec.config_path), ("schedule",)) or (None, None)
        raise ConfigError(
            "a scheduled task is started at each of its times by `iacrun server`, and this "
            "iacrun runs in-process: submit it to a server (iacrun login URL, or set "
            "IACRUN_SERVER_URL and IACRUN_TOKEN), or remove schedule to run the task once now",
            file=spec.config_path,
            line=line,
            column=column,
            field="schedule",
        )

    def submit(
        self,
        spec: RunSpec,
        plan: OfferPlan,
        *,
        supervise: bool = True,
        submitted_by: str | None = None,
        schedule_id: int | None = None,
    ) -> RunRecord:
        """Record the run, then hand it to a detached supervisor that provisions and watches it
        (with `supervise=False`, to a server's pool: server/supervision.py).

        `submitted_by`: the server user who asked for it (None in embedded mode). A spec with a
        `schedule` is refused (`refuse_schedule`): a scheduler submits each of its runs
        without one, naming the schedule that started it (`schedule_id`)."""
        self.refuse_schedule(spec)
        offers = self.ready_offers((o for o in plan.offers if o.available), spec=spec)
        if not offers and waits_for_capacity(spec):
            offers = list(plan.offers)  # none available now: the supervisor waits for one
        elif not offers:
            raise NoOfferError("no offer is available")
        self.check_upload(spec)
        name = spec.run_name or generate_name(self.registry.names_in_use)
        spec = spec.model_copy(update={"run_name": name})
        # a run for a detached supervisor is this process's until it has one (no server's pool
        # takes it meanwhile); without, it waits for a server's pool (server/supervision.py)
        run = self.registry.create(
            name,
            spec,
            self.runs_root,
            submitted_by=submitted_by,
            schedule_id=schedule_id,
            supervisor_pid=os.getpid() if supervise else None,
        )
        local = Path(run.local_dir)
        local.mkdir(parents=True, exist_ok=True, mode=0o700)
        (local / "offers.json").write_text(json.dumps([o.model_dump(mode="json") for o in offers]))
        if supervise:
            self._spawn_supervisor(run)
        return run

    def ready_offers(
        self,
        offers: Iterable[Offer],
        on_progress: Callable[[str], None] | None = None,
        *,
        spec: RunSpec | None = None,
    ) -> list[Offer]:
        """The offers whose backend passes its preflight (and, given `spec`, can run it: see
        `RunPreflight`); the first failure when none does (none given, none returned). What a
        preflight sets up on the way (a provider plugin) is told to `on_progress`."""
        offers = list(offers)
        problems: dict[str, IacrunError | None] = {}
        for name in dict.fromkeys(o.backend for o in offers):
            backend = self.backend(name)
            try:
                if isinstance(backend, Preflight):
                    backend.preflight(on_progress)
                if spec is not None and isinstance(backend, RunPreflight):
                    backend.check_run(spec)
                problems[name] = None
            except IacrunError as exc:
                problems[name] = exc
        ready = [o for o in offers if problems[o.backend] is None]
        if offers and not ready:
            raise next(p for p in problems.values() if p)
        return ready

    def _spawn_supervisor(self, run: RunRecord, *, resume: bool = False) -> None:
        env = dict(os.environ, IACRUN_HOME=str(self.home))
        argv = [sys.executable, "-m", "iacrun.orchestrator.supervisor", str(run.id)]
        with open(Path(run.local_dir) / "supervisor.log", "ab") as log:
            proc = subprocess.Popen(
                [*argv, "--resume"] if resume else argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        self.registry.update(run.id, supervisor_pid=proc.pid)

    # ------------------------------------------------------------------ reading

    def get(self, name: str) -> RunRecord:
        return self.refresh(self.registry.get(name))

    def runs(self, *, all_runs: bool = False) -> list[RunRecord]:
        return [self.refresh(r) for r in self.registry.runs(all_runs=all_runs)]

    def refresh(self, run: RunRecord) -> RunRecord:
        """Notice an active run whose supervisor died, and start a new one that takes it over.

        Cheap (a process check) for every healthy run, so `iacrun ps` stays fast; the new
        supervisor stops an expired or stopped job, tears down, or goes on watching."""
        if not run.active or run.supervisor_pid is None or _alive(run.supervisor_pid):
            return run
        if self.broken(run) is not None:
            return run  # shown as it is; `stop` settles it
        if self.registry.claim_supervisor(run.id, run.supervisor_pid, os.getpid()):
            self._spawn_supervisor(run, resume=True)
        return self.registry.get_by_id(run.id)

    def nodes(self, run: RunRecord) -> list[NodeRecord]:
        """Every node's job of the run, in rank order: the master alone for a one-node run.
        A node whose end is not recorded yet shows the run's status while the run is active."""
        nodes = read_nodes(run.local_dir)
        if len(nodes) <= 1:
            if run.host is None:
                return []
            nodes = [NodeRecord(rank=0, host=run.host)]
            if not run.active:
                nodes[0].status, nodes[0].exit_code = str(run.status), run.exit_code
                nodes[0].reason = run.reason
        for node in nodes:
            if node.status is None and run.active:
                node.status = str(run.status)
        return nodes

    def check_node(self, name: str, node: int) -> RunRecord:
        """The run `name`, when it has a node of rank `node`; else one InputError that names
        its ranks (`run x has 2 nodes (ranks 0..1)`)."""
        run = self.registry.get(name)
        if node != 0:
            check_rank(run, node)
        return run

    def attach(
        self,
        name: str,
        sink: Callable[[bytes], None],
        *,
        ports: Sequence[PortMapping] = (),
        offset: int | None = None,
        on_event: Callable[[str], None] = lambda line: None,
    ) -> RunRecord:
        """Follow a run until it ends, its log to `sink`; returns the final record.

        While the machine is provisioned, the run's progress lines go to `on_event` (a dead
        supervisor is replaced meanwhile); then the log, from `offset` (default: where the last
        attach to this run stopped), with `ports` forwarded to 127.0.0.1. The offset reached is
        saved in the run folder after every chunk `sink` returns from, so an attach killed
        with SIGKILL is followed again from there: nothing is lost, and at most the chunk being
        handed on when it died comes again. A remote run's last lines come from the copy kept
        at teardown.

        Raises LocalPortBusyError when a local port cannot be forwarded because something here
        took it; the run goes on (the caller stops it, or tells how to attach elsewhere)."""
        run = self.registry.get(name)
        follow = _Follow(
            self, run, sink, on_event, _saved_offset(run) if offset is None else offset
        )
        try:
            return asyncio.run(follow.follow(ports))
        finally:
            _save_offset(run, follow.offset)

    def port_host(self, name: str, port: int) -> tuple[RunRecord, Host]:
        """The run and the host to reach its task port `port` on (127.0.0.1:`port` there,
        through `Transport.connect_port`), for a server that relays it. Only a port the run
        lists (its task's `ports:`, or a `--port` it was submitted with), only while it runs:
        InputError for another port, RunNotRunningError before or after."""
        run = self.registry.get(name)
        listed = [p.container_port for p in run.spec.ports]
        if port not in listed:
            ports = ", ".join(str(p) for p in listed)
            raise InputError(
                f"port {port} is not one of the run's ports ({ports}); forward one of those"
                if listed
                else f"port {port} is not one of the run's ports: {name} lists none "
                "(a task's ports: [...] lists them)"
            )
        if run.status != "running" or run.host is None:
            if run.status.is_final:
                raise RunNotRunningError(
                    f"run {name} has ended ({run.status}): its port {port} is gone"
                )
            raise RunNotRunningError(
                f"run {name} is {run.status}: its port {port} is reachable once it runs; "
                "try again then"
            )
        return run, run.host

    def logs(
        self,
        name: str,
        sink: Callable[[bytes], None],
        *,
        offset: int = 0,
        follow: bool = False,
        node: int | None = None,
        limit: int | None = None,
        give_up: Callable[[], bool] = lambda: False,
    ) -> tuple[int, RunRecord]:
        """The log of the run's master (rank 0), or of node `node` of a multi-node run; at
        most `limit` bytes from `offset` when it is given (and not following). Following a run
        whose machines are not up yet waits for them, until `give_up()`."""
        if offset < 0:
            raise InputError(f"--offset {offset}: a byte offset is 0 or more")
        run = self.registry.get(name)
        if follow:
            if node:  # a rank the run lacks is refused before any wait
                check_rank(run, node)
            run = self._wait_for_machines(run, give_up)
        host, kept = _node_log(run, node or 0)
        if host is None or (not run.active and host.kind != "local"):
            data = _read_part(kept, offset, limit)
            if data:
                sink(data)
            return offset + len(data), run

        def ended() -> bool:
            return self.registry.get_by_id(run.id).status.is_final

        counted = _Counted(sink, offset)
        try:
            reached, _ = asyncio.run(_follow(host, offset, counted, follow, ended, limit))
        except HostUnreachableError:
            if not ended():
                raise
            # the run ended while its machine was out of reach: the rest is in the kept copy
            left = None if limit is None else limit - (counted.reached - offset)
            return self.logs(name, sink, offset=counted.reached, node=node, limit=left)
        return reached, self.get(name)

    def _wait_for_machines(
        self, run: RunRecord, give_up: Callable[[], bool] = lambda: False
    ) -> RunRecord:
        """The run once its machines are up (its master's host recorded, and every node's for
        a multi-node run), once it has ended, or once `give_up()`: following the log of a run
        still provisioning waits for its job."""

        def up(run: RunRecord) -> bool:
            if run.host is None:
                return False
            return run.spec.nodes == 1 or len(read_nodes(run.local_dir)) >= run.spec.nodes

        while run.active and not up(run) and not give_up():
            time.sleep(MACHINES_POLL)
            run = self.registry.get_by_id(run.id)
        return run

    def log_size(self, name: str, *, node: int | None = None) -> int:
        """How many bytes the log holds now (where its tail ends): read from the run's host
        while it is there, else from the copy kept here."""
        run = self.registry.get(name)
        host, kept = _node_log(run, node or 0)
        if host is not None and (run.active or host.kind == "local"):

            def ended() -> bool:
                return self.registry.get_by_id(run.id).status.is_final

            async def measure(host: Host) -> int:
                transport = await open_transport(
                    host, give_up=ended, reconnect_for=host.unreachable_after
                )
                try:
                    return await log_size(transport, host)
                finally:
                    await transport.close()

            try:
                return asyncio.run(measure(host))
            except HostUnreachableError:
                if not ended():
                    raise
        try:
            return kept.stat().st_size
        except FileNotFoundError:
            return 0

    def all_node_logs(
        self, name: str, sink: Callable[[bytes], None], *, follow: bool = False
    ) -> RunRecord:
        """Every node's log, each line prefixed with its rank (`[1] ...`): interleaved as the
        lines come while the run is followed; node after node, in rank order, otherwise."""
        run = self.registry.get(name)
        if follow:
            run = self._wait_for_machines(run)
        ranks = [n.rank for n in read_nodes(run.local_dir)] or [0]
        prefixers = {rank: RankPrefix(rank, sink) for rank in ranks}
        live = follow and run.active and run.host is not None
        if not live:
            for rank in ranks:
                self.logs(name, prefixers[rank].write, node=rank)
                prefixers[rank].flush()
            return self.get(name)

        def ended() -> bool:
            return self.registry.get_by_id(run.id).status.is_final

        counted = {rank: _Counted(prefixers[rank].write) for rank in ranks}

        async def every() -> None:
            follows = []
            for rank in ranks:
                host, _ = _node_log(run, rank)
                if host is not None:
                    follows.append(_follow(host, 0, counted[rank], True, ended))
            await asyncio.gather(*follows)

        try:
            asyncio.run(every())
        except HostUnreachableError:
            if not ended():
                raise
            # the run ended while a machine was out of reach: each node's rest is in its copy
            for rank in ranks:
                self.logs(name, prefixers[rank].write, offset=counted[rank].reached, node=rank)
        for prefixer in prefixers.values():
            prefixer.flush()
        return self.get(name)

    # ------------------------------------------------------------------ stopping

    def schedule(self, spec: RunSpec) -> ScheduleRecord:
        """Keep a task with `schedule`: only a server can (`iacrun server` starts its runs), so
        in-process this is the one-line refusal (`refuse_schedule`)."""
        self.refuse_schedule(spec)
        raise InputError("the task has no schedule: submit it as a run")

    def schedules(self, *, all_schedules: bool = False) -> list[ScheduleRecord]:
        """The active schedules of this registry (and the stopped ones with `all_schedules`):
        none unless a server keeps them in this home's database."""
        return self.schedule_store.listing(include_stopped=all_schedules)

    def stop_schedule(
        self,
        name: str,
        *,
        by: str | None = None,
        now: float | None = None,
        abort: bool = False,
    ) -> ScheduleRecord | None:
        """End the active schedule `name` and ask its active runs to stop (as `dstack stop`
        ends a scheduled run for good; at once, without their grace, with `abort`); None when
        no active schedule holds the name. Whoever runs the schedule (a server on this
        database) sees it stopped at its next look."""
        found = self.schedule_store.find(name)
        if found is None or not found.active:
            return None
        stopped = self.schedule_store.stop(name, now)
        reason = f"schedule {name} stopped" + (f" by {by}" if by else "")
        for run in self.schedule_store.active_runs(stopped.id):
            self.request_stop(run.name, reason=reason, abort=abort)
        return self.schedule_store.get_by_id(stopped.id)

    def request_stop(
        self, name: str, *, reason: str = "stopped by user", abort: bool = False
    ) -> RunRecord:
        """Record that the run must stop, and return at once: its supervisor stops the job and
        tears the run down, even if this process is killed the next moment (a supervisor that
        died is replaced by the next `iacrun` command, and takes the stop over). A finished
        run is returned as it is.

        `abort` (`iacrun stop -x`, dstack's abort): the job is killed at once, without its
        `stop_duration` grace; recorded with the stop, so whoever carries it out does so, and
        a plain stop still in its grace is cut short. A plain stop after an abort stays one."""
        run = self.registry.get(name)
        if not run.active:
            return run
        stopping = self.registry.request_stop(run.id, reason, abort=abort)
        return stopping or self.registry.get_by_id(run.id)

    def supervised(self, run: RunRecord) -> bool:
        """Whether the run's supervisor is alive (and so acts on a stop request): its process,
        or a server's pool that holds an unexpired lease on it."""
        if run.lease_owner is not None and (run.lease_expires or 0) > self.registry.clock():
            return True
        return run.supervisor_pid is not None and _alive(run.supervisor_pid)

    def wait_stopped(
        self, run: RunRecord, timeout: float, *, give_up: Callable[[], bool] = lambda: False
    ) -> RunRecord:
        """Wait until the run has ended, for at most `timeout` seconds, while its supervisor
        works on it (or until `give_up()`); returns the latest record."""
        end = time.monotonic() + timeout
        run = self.registry.get_by_id(run.id)
        while run.active and self.supervised(run) and time.monotonic() < end and not give_up():
            time.sleep(0.1)
            run = self.registry.get_by_id(run.id)
        return run

    def stop(
        self,
        name: str,
        *,
        reason: str = "stopped by user",
        wait: float = 60.0,
        abort: bool = False,
    ) -> RunRecord:
        """Stop the job and tear the run down. Idempotent: a finished run is left as it is.

        The stop goes to the run's supervisor first (`request_stop`); when it has not ended the
        run within `wait` seconds (beyond the job's `stop_duration`, which a graceful stop
        gives it), or there is none, it is done from here. `abort`: see `request_stop`."""
        from iacrun.orchestrator.supervisor import EventLog

        run = self.request_stop(name, reason=reason, abort=abort)
        if not run.active:
            return self.stop_left_job(run, reason)
        broken = self.broken(run)
        if broken is not None and not self.supervised(run):
            return self._settle_broken(run, reason, broken)
        grace = 0.0 if run.abort else float(run.spec.stop_duration or 0)
        run = self.wait_stopped(run, wait + grace)
        if not run.active:
            return run
        # no supervisor (or it hung): stop and tear down from here
        run = self.registry.get_by_id(run.id)
        if run.abort:  # an abort recorded first keeps its reason
            reason = run.reason or reason
        state: dict[str, Any] = {}
        events = EventLog.of(run)
        for rank, host in _every_node(run):
            try:
                kept = Path(run.local_dir) / node_log_name(rank)
                ended = asyncio.run(_stop(host, reason, kept, abort=run.abort))
                state = ended if rank == 0 else state
            except IacrunError as exc:  # an unreachable machine is still torn down
                events.write(f"could not stop the job on its host: {exc}")
                if not self._machine_ends_job(run):  # the next stop/down tries it again
                    (Path(run.local_dir) / UNREACHED).write_text(str(exc))
        supervisor = self.supervisor()
        supervisor.finish(run.id, "terminated", reason, state.get("exit_code"))
        supervisor.teardown(self.registry.get_by_id(run.id), events)
        final = self.registry.get_by_id(run.id)
        if final.active:
            raise RunError(f"{name}: {final.reason}")
        return final

    def broken(self, run: RunRecord) -> str | None:
        """Why a run's row cannot be acted on as usual (a bad name, a folder outside iacrun's
        runs folder or missing), or None. Such a row was written by an older version or by
        hand; it is settled on its own (`_settle_broken`), never followed into its folder."""
        problem = run_name_problem(run.name)
        if problem is not None:
            return problem
        folder = Path(run.local_dir)
        if folder.resolve().parent != self.runs_root.resolve():
            return f"its folder {run.local_dir!r} is not under {self.runs_root}"
        if not folder.is_dir():
            return f"its folder {run.local_dir} is missing"
        return None

    def _settle_broken(self, run: RunRecord, reason: str, problem: str) -> RunRecord:
        """Close a broken row without touching its folder: what it created in a cloud is
        destroyed through its stack (idempotent), nothing is written on disk."""
        if run.stack_name and run.backend:
            try:
                self.backend(run.backend).terminate(run)
            except IacrunError as exc:
                self.registry.update(run.id, reason=f"teardown failed: {exc}")
                return self.registry.get_by_id(run.id)
        self.registry.transition(
            run.id,
            ACTIVE_STATUSES,
            status="terminated",
            reason=f"{reason}; its registry row is broken: {problem}",
            finished_at=time.time(),
        )
        return self.registry.get_by_id(run.id)

    def stop_left_job(self, run: RunRecord, reason: str) -> RunRecord:
        """Stop the job of an ended run whose host was out of reach when it ended (marked
        `UNREACHED` by its supervisor or a stop): once the host answers, the job left there is
        stopped and its log kept here. Raises HostUnreachableError while it still does not."""
        from iacrun.orchestrator.supervisor import EventLog

        marker = Path(run.local_dir) / UNREACHED
        if run.host is None or not marker.exists():
            return run
        try:
            for rank, host in reversed(_every_node(run)):  # the master's state is the one shown
                kept = Path(run.local_dir) / node_log_name(rank)
                state = asyncio.run(_stop(host, reason, kept, abort=run.abort))
        except HostUnreachableError as exc:
            raise HostUnreachableError(
                f"{run.name} ended while its host was out of reach, and its job may still run "
                f"there; the host still does not answer ({exc}); run iacrun stop {run.name} "
                "again once it does"
            ) from exc
        marker.unlink(missing_ok=True)
        EventLog.of(run).write(
            f"the job left on the host was stopped once it answered (exit {state.get('exit_code')})"
        )
        return run

    def _machine_ends_job(self, run: RunRecord) -> bool:
        return run.backend is not None and isinstance(self.backend(run.backend), StackBacked)

    def down(
        self,
        name: str,
        *,
        reason: str = "stopped by user",
        force: bool = False,
        on_note: Callable[[str], None] = lambda line: None,
    ) -> str:
        """Stop a run and destroy what it created; or destroy a leftover stack of that name.

        Safe to repeat: a finished run's stack is destroyed again (idempotent), which is how a
        failed or interrupted teardown is finished. A stack this home did not make is left alone
        (StackOwnerError, saying whose it is) unless `force`: see `destroy_stack`."""
        try:
            run = self.registry.get(name)
        except RunNotFoundError:
            if not self.stacks_possible():  # then no stack to look for, and no pulumi needed
                from iacrun.orchestrator.backends.stack_inventory import no_run_or_stack

                raise no_run_or_stack(name, stacks=False) from None
            return self.destroy_stack(name, force=force, on_note=on_note)
        if run.active:
            run = self.stop(name, reason=reason)
        else:
            run = self.stop_left_job(run, reason)
            if run.stack_name and run.backend:
                self.backend(run.backend).terminate(run)
        return f"{run.name}: {run.status}" + (f" ({run.reason})" if run.reason else "")

    def destroy_stack(
        self,
        stack_name: str,
        *,
        force: bool = False,
        on_note: Callable[[str], None] = lambda line: None,
    ) -> str:
        """Destroy and remove a stack that no live run owns (a leak `iacrun stacks` found).

        Only a stack of this home (`stack_inventory.ownership`): another home's, or one of no
        known owner, raises StackOwnerError saying whose it is, unless `force`; then whose it is
        goes to `on_note` before it is destroyed."""
        from iacrun.orchestrator.backends.stack_inventory import (
            no_run_or_stack,
            refuse_unless_mine,
        )

        if not self.stacks_possible():  # then no stack to look for, and no pulumi needed
            raise no_run_or_stack(stack_name, stacks=False)
        engine = self.stack_engine()
        if stack_name not in engine.stack_names():
            raise no_run_or_stack(stack_name, stacks=True)
        owner = self.stack_owner(stack_name, engine.owner(stack_name))
        if not force:
            refuse_unless_mine(stack_name, owner)
        elif not owner.mine:
            on_note(f"stack {stack_name} {owner.whose}: destroying it (--force)")
        result = engine.destroy(stack_name)
        if result.leaks:
            raise BackendError(result.leak_text(stack_name))
        return f"{stack_name}: stack destroyed and removed"

    def home_tag(self) -> str:
        """This home's tag: the end of every stack name it makes (see `paths.home_tag`)."""
        from iacrun.orchestrator.paths import home_tag

        return home_tag(self.home)

    def stack_owner(self, stack_name: str, recorded_owner: str | None) -> Ownership:
        """Whose the stack is, from its name, the owner it recorded and this home's runs."""
        from iacrun.orchestrator.backends.stack_inventory import (
            ownership,
            recorded_stack_names,
        )

        recorded = recorded_stack_names(self.registry.runs(all_runs=True))
        return ownership(stack_name, recorded_owner, self.home_tag(), recorded)

    # ------------------------------------------------------------------ stacks in the state backend
    # What `iacrun stacks` and `iacrun state` show: every stack with the run that owns it, leaks
    # flagged (see backends/stack_inventory.py), and one stack's resources and outputs.

    def stacks_possible(self) -> bool:
        """Whether iacrun may have stacks here: a cloud backend is configured, a state backend
        is named, or the default one's folder exists (a cloud was used before). Only then do
        `down`, `stacks` and `state` look for stacks, and need the `pulumi` CLI."""
        if self._stack_engine_factory is not None or self._stack_engine is not None:
            return True
        from iacrun.orchestrator.backends.assemble import unconfigured_clouds
        from iacrun.orchestrator.offers.model import CLOUDS
        from iacrun.stacks.engine import default_state_dir

        settings = self.settings
        return (
            len(unconfigured_clouds(settings)) < len(CLOUDS)
            or settings.state.backend_url is not None
            or default_state_dir(self.home).exists()
        )

    def stack_engine(self) -> StackEngine:
        """The engine on the configured state backend (`state.backend_url`), made on first use;
        the constructor's `stack_engine` factory replaces it (tests use a temporary backend)."""
        if self._stack_engine is None:
            if self._stack_engine_factory is not None:
                self._stack_engine = self._stack_engine_factory()
            else:
                from iacrun.stacks.engine import StackEngine

                self._stack_engine = StackEngine(self.home, self.settings.state.backend_url)
        return self._stack_engine

    def stacks(self) -> list[StackRow]:
        """Every stack in the state backend, sorted by name, with the run that owns it (if any);
        `StackRow.leak` marks a stack no live run owns. None without `stacks_possible()`."""
        from iacrun.orchestrator.backends.stack_inventory import link_runs

        if not self.stacks_possible():
            return []
        return link_runs(
            self.stack_engine().list_stacks(), self.registry.runs(all_runs=True), self.home_tag()
        )

    def stack_state(self, run_or_stack: str) -> StackDetail:
        """The stack of the run called `run_or_stack`, else the stack of that name, with its run.

        Raises RunNotFoundError when neither exists, BackendError when the run has no stack
        (a local or SSH run never has one: said without asking the state backend)."""
        from iacrun.orchestrator.backends.stack_inventory import (
            StackDetail,
            find_stack,
            no_run_or_stack,
            stackless_reason,
        )

        try:
            run: RunRecord | None = self.registry.get(run_or_stack)
        except RunNotFoundError:
            run = None
        reason = stackless_reason(run) if run is not None else None
        if reason is not None:
            raise BackendError(reason)
        if run is None and not self.stacks_possible():
            raise no_run_or_stack(run_or_stack, stacks=False)
        engine = self.stack_engine()
        run, stack_name = find_stack(
            run_or_stack, engine.stack_names(), self.registry, self.home_tag()
        )
        state = engine.state(stack_name)
        owner = self.stack_owner(stack_name, state.last_update.owner if state.last_update else None)
        return StackDetail(state=state, run=run, backend_url=engine.backend_url, owner=owner)


class _Follow:
    """One attach: the events shown and the log offset reached, polling the registry."""

    def __init__(
        self,
        orch: Orchestrator,
        run: RunRecord,
        sink: Callable[[bytes], None],
        on_event: Callable[[str], None],
        offset: int,
        poll: float = 0.05,
    ) -> None:
        self.orch = orch
        self.run = run
        self._sink = sink
        self.on_event = on_event
        self.offset = offset
        from iacrun.orchestrator.supervisor import EventLog

        self.events = EventLog.of(run)
        self.events_offset = 0
        self.poll = poll

    def sink(self, data: bytes) -> None:
        self._sink(data)
        self.offset += len(data)
        # saved once the data was handed on: a kill before this line repeats this chunk on the
        # next attach, it never loses it (a chunk is what one read of the log returned)
        _save_offset(self.run, self.offset)

    def _show_events(self) -> None:
        self.events_offset, lines = self.events.read_from(self.events_offset)
        for line in lines:
            self.on_event(line)

    def _refresh(self) -> RunRecord:
        self.run = self.orch.registry.get_by_id(self.run.id)
        return self.run

    async def follow(self, ports: Sequence[PortMapping]) -> RunRecord:
        host = await self._wait_for_host()
        if host is None:
            self._show_events()
            return self.run
        if self.run.status.is_final and host.kind != "local":
            # the machine is gone: what is left is the copy kept here at teardown
            self.orch.logs(self.run.name, self.sink, offset=self.offset)
            return self.run
        try:
            await self._follow_host(host, ports)
        except HostUnreachableError:
            # a machine that is gone (or never ran the job) ends the follow once the run is
            # final; while it is not, the outage is the run's to judge, and is shown
            if not self._refresh().status.is_final:
                raise
        final = await self._wait_final()
        if host.kind != "local":
            # whatever the machine wrote after our last read is in the copy kept at teardown
            self.orch.logs(self.run.name, self.sink, offset=self.offset)
        return final

    async def _follow_host(self, host: Host, ports: Sequence[PortMapping]) -> None:
        """Ports forwarded and the log followed until the run ends, with every reconnection
        given up as soon as the registry says the run is final."""
        # a host out of reach is waited for as long as the run's supervisor waits for it
        transport = await open_transport(
            host,
            give_up=lambda: self._refresh().status.is_final,
            reconnect_for=host.unreachable_after,
        )
        stops: list[Callable[[], Awaitable[None]]] = []
        try:
            for port in ports:
                local = port.local_port or free_local_port()
                try:
                    stops.append(await transport.forward(local, port.container_port))
                except OSError as exc:  # a transport's listener found the port taken
                    if exc.errno != errno.EADDRINUSE:
                        raise
                    raise LocalPortBusyError([local], task_port=port.container_port) from exc
                except LocalPortBusyError as exc:  # checked before listening
                    raise LocalPortBusyError([local], task_port=port.container_port) from exc
                self.on_event(
                    f"port {port.container_port} of the task is at http://127.0.0.1:{local}"
                )
            await follow_log(
                transport,
                host,
                self.offset,
                self.sink,
                until=lambda: self._refresh().status.is_final,
            )
        finally:
            for stop in stops:
                with contextlib.suppress(Exception):
                    await stop()
            await transport.close()

    async def _wait_for_host(self) -> Host | None:
        while True:
            self._show_events()
            run = self._refresh()
            if run.host and run.status not in ("submitted", "provisioning"):
                return run.host
            if run.status.is_final:
                return None
            if run.supervisor_pid is not None:
                self.orch.refresh(run)  # a supervisor that died is replaced
            await asyncio.sleep(self.poll)

    async def _wait_final(self, timeout: float = 600.0) -> RunRecord:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            run = self._refresh()
            if run.status.is_final:
                break
            if (run.reason or "").startswith("teardown failed"):
                break  # shown as it is; `iacrun down` (or any later command) retries it
            if run.supervisor_pid is not None:
                self.orch.refresh(run)
            await asyncio.sleep(self.poll)
        self._show_events()
        return self.run


def _node_log(run: RunRecord, rank: int) -> tuple[Host | None, Path]:
    """Node `rank`'s host and the local copy of its log; an InputError for a rank the run
    does not have."""
    if rank == 0:
        return run.host, Path(run.local_dir) / node_log_name(0)
    nodes = read_nodes(run.local_dir)
    check_rank(run, rank, nodes)
    host = next((n.host for n in nodes if n.rank == rank), None)
    return host, Path(run.local_dir) / node_log_name(rank)


def check_rank(run: RunRecord, rank: int, nodes: list[NodeRecord] | None = None) -> None:
    """An InputError, in one line that names the run's ranks, for a rank the run does not have
    (`logs --node`, and the API's `?node=`)."""
    count = max(len(read_nodes(run.local_dir) if nodes is None else nodes), run.spec.nodes)
    if not 0 <= rank < count:
        raise InputError(
            f"node {rank}: run {run.name} has {count} node{'s' if count > 1 else ''} "
            f"(ranks 0..{count - 1})"
        )


def _every_node(run: RunRecord) -> list[tuple[int, Host]]:
    """(rank, host) of each node of the run: the master alone for a one-node run."""
    nodes = read_nodes(run.local_dir)
    if len(nodes) > 1:
        return [(n.rank, n.host) for n in nodes]
    return [(0, run.host)] if run.host is not None else []


def _saved_offset(run: RunRecord) -> int:
    try:
        return int((Path(run.local_dir) / ATTACH_OFFSET).read_text())
    except (OSError, ValueError):
        return 0


def _save_offset(run: RunRecord, offset: int) -> None:
    """Write the attach offset whole or not at all (a temporary file renamed over it)."""
    path = Path(run.local_dir) / ATTACH_OFFSET
    partial = path.with_name(f"{ATTACH_OFFSET}.{os.getpid()}")
    with contextlib.suppress(OSError):
        partial.write_text(str(offset))
        os.replace(partial, path)


def waits_for_capacity(spec: RunSpec) -> bool:
    """Whether the run waits when no machine is free (its retry covers `no-capacity`)."""
    return spec.retry is not None and "no-capacity" in spec.retry.on_events


def _alive(pid: int) -> bool:
    from iacrun.orchestrator.runner.runner import pid_alive

    return pid_alive(pid)


async def _stop(host: Host, reason: str, kept_log: Path, *, abort: bool) -> dict[str, Any]:
    transport = await open_transport(host)
    try:
        state = await stop_job(transport, host, reason, abort=abort)
        if host.kind != "local":
            await keep_log(transport, host, kept_log)
        return state
    finally:
        await transport.close()


def _read_part(path: Path, offset: int, limit: int | None) -> bytes:
    """The bytes of a file from `offset` (at most `limit`); none when it does not exist."""
    try:
        with path.open("rb") as file:
            file.seek(offset)
            return file.read() if limit is None else file.read(limit)
    except FileNotFoundError:
        return b""


class _Counted:
    """A sink that counts the bytes it handed on: where a follow the machine cut short goes on
    from, in the copy kept at teardown."""

    def __init__(self, sink: Callable[[bytes], None], offset: int = 0) -> None:
        self.sink = sink
        self.reached = offset

    def __call__(self, chunk: bytes) -> None:
        self.sink(chunk)
        self.reached += len(chunk)


async def _follow(
    host: Host,
    offset: int,
    sink: Callable[[bytes], None],
    follow: bool,
    ended: Callable[[], bool],
    limit: int | None = None,
) -> tuple[int, dict[str, Any]]:
    """The log from `offset`; following stops once the runner or the registry says the run
    ended, and no reconnection outlives the run."""
    transport = await open_transport(host, give_up=ended, reconnect_for=host.unreachable_after)
    try:
        return await follow_log(
            transport, host, offset, sink, follow=follow, until=ended, limit=limit
        )
    finally:
        await transport.close()
