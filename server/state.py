"""Everything a server's routes work with, in one object: the Orchestrator (the same one the CLI
uses), its Registry, the accounts, the uploads, the supervision pool."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from starlette.requests import HTTPConnection

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.registry import Registry
from iacrun.server.accounts import Accounts
from iacrun.server.config import ServerConfig
from iacrun.server.supervision import SupervisionPool
from iacrun.server.uploads import Uploads

if TYPE_CHECKING:
    from fastapi import FastAPI


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
        self.supervision = SupervisionPool(orchestrator)

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
