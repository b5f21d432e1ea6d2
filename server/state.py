"""Everything a server's routes work with, in one object: the Orchestrator (the same one the CLI
uses), its Registry, the accounts, the uploads, the supervision pool, the scheduler of
scheduled tasks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from starlette.requests import HTTPConnection

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.models.runspec import RunSpec
from iacrun.orchestrator.registry import Registry, RunRecord
from iacrun.orchestrator.registry.schedules import ScheduleRecord
from iacrun.server.accounts import Accounts
from iacrun.server.config import ServerConfig
from iacrun.server.scheduler import Scheduler, clock_from_env
from iacrun.server.supervision import SupervisionPool
from iacrun.server.tunnels import PortRelay
from iacrun.server.uploads import Uploads

if TYPE_CHECKING:
    from fastapi import FastAPI

    from iacrun.orchestrator.offers.plan import OfferPlan


class ServerState:
    """One per server process. `orchestrator` may be given (tests inject backends); otherwise it
    is made over the config's home and database."""

    def __init__(self, config: ServerConfig, orchestrator: Orchestrator | None = None) -> None:
        self.config = config
        if orchestrator is None:
            self.registry = Registry(config.database)
            orchestrator = Orchestrator(home=config.home, registry=self.registry)
        else:
            self.registry = orchestrator.registry
        self.orchestrator = orchestrator
        self.accounts = Accounts(self.registry.db)
        self.uploads = Uploads(config.home / "uploads", orchestrator.settings.upload_limit_gb)
        #: the runs this server supervises, in threads, under leases (server/supervision.py)
        self.supervision = SupervisionPool(orchestrator, ttl=config.lease_seconds)
        #: tunnels to runs' ports (`WS /runs/{name}/ports/{port}`), one transport per host
        self.ports = PortRelay()
        self.scheduler = Scheduler(orchestrator, clock=clock_from_env(), start=self.start_scheduled)

    def start_scheduled(self, schedule: ScheduleRecord, spec: RunSpec) -> RunRecord:
        """A scheduled task's run at one of its times, submitted as `POST /runs` submits one
        (its spec already points at the server's copy of its upload), by the schedule's user."""
        return self.start_run(
            spec,
            self.orchestrator.plan(spec),
            submitted_by=schedule.submitted_by,
            schedule_id=schedule.id,
        )

    def start_run(
        self,
        spec: RunSpec,
        plan: OfferPlan,
        *,
        submitted_by: str | None,
        schedule_id: int | None = None,
    ) -> RunRecord:
        """Record a run and hand it to this server's supervision pool: a submit's, a schedule's."""
        run = self.orchestrator.submit(
            spec, plan, submitted_by=submitted_by, schedule_id=schedule_id, supervise=False
        )
        self.supervision.wake()
        return run

    def uploads_in_use(self) -> set[str]:
        """The uploads an active run or an active schedule of this server uses (their specs
        point into the upload's folder here)."""
        root = self.uploads.root.resolve()
        used: set[str] = set()
        specs = [run.spec for run in self.registry.page(active=True, limit=1_000_000)]
        for schedule in self.orchestrator.schedule_store.listing():
            if schedule.upload is not None:
                used.add(schedule.upload)
            specs.append(schedule.spec)
        for spec in specs:
            for path in (spec.repo_dir, spec.config_path):
                try:
                    used.add(Path(path).resolve().relative_to(root).parts[0])
                except (ValueError, IndexError):
                    continue  # a run of the embedded mode, in the same registry
        return used

    def sweep_uploads(self) -> list[str]:
        """Remove the uploads nothing uses and no client named for the grace period; their
        hashes (the server does it every hour: `app.create_app`)."""
        grace = self.config.upload_grace_hours * 3600
        return self.uploads.sweep(self.uploads_in_use(), grace)

    def start(self) -> None:
        """At start: the pool takes over the server's runs that no one supervises (a server
        that stopped or died: once their leases expire), and a run of the embedded mode in the
        same registry whose supervisor process died gets a new one, as the CLI does when it
        notices (Orchestrator.refresh)."""
        for run in self.registry.page(active=True, limit=100_000):
            self.orchestrator.refresh(run)
        self.supervision.start()

    def stop(self) -> None:
        """At shutdown. Runs go on: their jobs keep running, and the next server on this
        database (this one restarted, or another) takes them over when their leases expire
        (IACRUN_SERVER_LEASE_SECONDS, 30 by default)."""
        self.supervision.stop()


def state_of(conn: HTTPConnection) -> ServerState:
    return cast(ServerState, conn.app.state.iacrun)


def attach_state(app: FastAPI, state: ServerState) -> None:
    app.state.iacrun = state
