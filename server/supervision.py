"""Supervision in a server: the runs of the registry supervised by threads of the server's own
process, not by a detached process (~40 MB) each (tests/bench/bench_supervision.py).

A `SupervisionPool` scans the registry for active runs that no one supervises (submitted with
`Orchestrator.submit(..., supervise=False)`, or whose lease expired because the server holding
it died), takes each one's lease (`Registry.acquire_lease`: one owner wins, across servers on one
database) and runs the same state machine as the CLI's detached supervisor in a thread:
`Supervisor.supervise` for a run not started yet, `Supervisor.resume` for one that had progressed
(as `Orchestrator.refresh` takes over a run whose supervisor process died). A heartbeat renews
its leases every third of their time; a finished run's lease is released.

`stop()` leaves the runs running: their jobs go on, and when this process exits, the next server
takes them over once their leases expire. The owner id is unique per process (host, pid and a
random part), so a restarted server never mistakes another's lease, or an old one, for its own.

    python -m iacrun.server.supervision     a pool alone over $IACRUN_HOME / $IACRUN_DATABASE_URL,
                                            until SIGTERM or SIGINT (the server runs the same)
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from iacrun.orchestrator.paths import use_private_umask
from iacrun.orchestrator.registry.runs import Lease, LeaseLost

if TYPE_CHECKING:
    from iacrun.orchestrator.api import Orchestrator
    from iacrun.orchestrator.supervisor import Supervisor

#: seconds a lease lasts unless renewed; a server that dies loses its runs after this long
LEASE_SECONDS = 30.0
#: the environment variable that changes it (short in tests; a ServerConfig field may set it)
LEASE_SECONDS_ENV = "IACRUN_SERVER_LEASE_SECONDS"

log = logging.getLogger("iacrun.server.supervision")


def new_owner() -> str:
    """This process's lease owner id: `host:pid:random`."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def lease_seconds() -> float:
    """The lease time from $IACRUN_SERVER_LEASE_SECONDS, else `LEASE_SECONDS`."""
    raw = os.environ.get(LEASE_SECONDS_ENV, "").strip()
    if not raw:
        return LEASE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        from iacrun.orchestrator.errors import ConfigError

        raise ConfigError(f"{LEASE_SECONDS_ENV}={raw!r} is not a number of seconds above 0")
    return value


class SupervisionPool:
    """Supervises the registry's unsupervised runs in threads of this process (see the module's
    docstring). `supervisor`: makes the state machine (default: the orchestrator's own)."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        *,
        owner: str | None = None,
        ttl: float | None = None,
        scan_every: float = 5.0,
        supervisor: Callable[[], Supervisor] | None = None,
    ) -> None:
        self.orchestrator = orchestrator
        self.registry = orchestrator.registry
        self.owner = owner or new_owner()
        self.ttl = lease_seconds() if ttl is None else ttl
        #: seconds between two heartbeats (renewal, then a scan for runs to take)
        self.heartbeat = min(scan_every, self.ttl / 3)
        self._make_supervisor = supervisor or orchestrator.supervisor
        self._supervisor: Supervisor | None = None
        self._workers: dict[int, threading.Thread] = {}
        #: the lease each worker acts under: a lost one stops its thread at its next step
        self._leases: dict[int, Lease] = {}
        #: runs whose lease another owner took (this process stalled past it): not released
        self.lost: set[int] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the server's verbs ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the heartbeat thread (it takes over what no one supervises at once)."""
        # the umask is the process's, not a thread's: the runs' logs, events and stack state
        # are the user's alone, as in a detached supervisor (which sets the same)
        use_private_umask()
        with self._lock:
            if self._supervisor is None:  # one state machine: backends are made once, here
                self._supervisor = self._make_supervisor()
                # a detached supervisor sheds the Pulumi engine by exec'ing itself anew; in a
                # server that would replace the whole process, so a thread keeps the engine
                self._supervisor.shed = None
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="iacrun-supervision", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for new runs now (after a submit) rather than at the next heartbeat."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking and renewing; the runs go on (their leases expire, another server takes
        them over). Supervisor threads end with the process."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def supervising(self) -> list[int]:
        """The ids of the runs this pool supervises now."""
        with self._lock:
            return sorted(self._workers)

    # -- the heartbeat --------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.renew()
                self.scan()
            except Exception:  # the database may be restarting: the next beat tries again
                log.warning("supervision heartbeat failed:\n%s", traceback.format_exc())
            self._wake.wait(self.heartbeat)
            self._wake.clear()

    def renew(self) -> None:
        """Extend this pool's leases; a run whose lease another owner took is noted as lost, and
        its thread stops acting on it (it writes nothing more to the run, touches its host no
        more: `Registry.acting_for`)."""
        ours = set(self.registry.renew_leases(self.owner, self.ttl))
        with self._lock:
            for run_id in self._workers:
                if run_id not in ours and run_id not in self.lost:
                    self.lost.add(run_id)
                    self._leases[run_id].lost.set()
                    log.error("run %s: its lease was taken over by another server", run_id)

    def scan(self) -> list[int]:
        """Take the lease of every run no one supervises and start supervising it; their ids."""
        taken: list[int] = []
        for run in self.registry.unsupervised():
            if self._stopping.is_set():
                break
            with self._lock:
                if run.id in self._workers:
                    continue
            if self.orchestrator.broken(run) is not None:
                continue  # shown as it is; `iacrun stop` settles it
            if not self.registry.acquire_lease(run.id, self.owner, self.ttl):
                continue  # another server was quicker
            # not started yet: from the top; else where the previous supervisor left it
            resume = run.status != "submitted"
            thread = threading.Thread(
                target=self._supervise,
                args=(run.id, resume),
                name=f"iacrun-run-{run.id}",
                daemon=True,
            )
            with self._lock:
                self._workers[run.id] = thread
                self._leases[run.id] = Lease(run.id, self.owner)
            thread.start()
            taken.append(run.id)
        return taken

    def _supervise(self, run_id: int, resume: bool) -> None:
        from iacrun.orchestrator.supervisor import EventLog

        with self._lock:
            lease = self._leases[run_id]
        try:
            assert self._supervisor is not None, "start() makes the supervisor"
            # the run's events say which server supervised it, and from when
            events = EventLog.of(self.registry.get_by_id(run_id))
            events.write(f"supervised by {self.owner}")
            with self.registry.acting_for(lease):
                try:
                    if resume:
                        self._supervisor.resume(run_id)
                    else:
                        self._supervisor.supervise(run_id)
                except LeaseLost:
                    events.write(f"{self.owner} lost the run's lease to another server")
                    log.error("run %s: lease lost; this server stopped supervising it", run_id)
        except Exception:  # recorded on the run by the supervisor; the server's log says more
            log.error("run %s: supervisor failed:\n%s", run_id, traceback.format_exc())
        finally:
            with self._lock:
                self._workers.pop(run_id, None)
                self._leases.pop(run_id, None)
                lost = run_id in self.lost or lease.lost.is_set()
            if not lost:
                try:
                    self.registry.release_lease(run_id, self.owner)
                except Exception:  # it expires on its own
                    log.warning("run %s: lease not released:\n%s", run_id, traceback.format_exc())


def main() -> int:
    """A pool alone: supervises the runs of $IACRUN_HOME's registry until SIGTERM/SIGINT."""
    import signal

    from iacrun.orchestrator.api import Orchestrator

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    pool = SupervisionPool(Orchestrator())
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    pool.start()
    print(f"supervising as {pool.owner}", flush=True)
    done.wait()
    pool.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
