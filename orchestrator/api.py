"""The Python API: plan, submit, follow, stop and tear down runs. The CLI is a thin layer on it.

orch = Orchestrator()
spec = build_run_spec("train.dstack.yml", Overrides(gpu="24GB.."), args=["--epochs", "3"])
plan = orch.plan(spec)                 # offers, cheapest first
run = orch.submit(spec, plan)          # recorded, then provisioned by a detached supervisor
code = orch.attach(run.name, sys.stdout.buffer.write)   # live log; the job's exit code
orch.down(run.name)                    # stop and tear down; safe to repeat
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iacrun.orchestrator.backends.base import (
    Backend,
    DryRunnable,
    Preflight,
    ProgressCallback,
    StackBacked,
)
from iacrun.orchestrator.errors import (
    IacrunError,
    InputError,
    NoOfferError,
    RunError,
    RunNameTakenError,
    RunNotFoundError,
)
from iacrun.orchestrator.host.reconnecting import open_transport
from iacrun.orchestrator.host.runner_client import (
    build_job,
    follow_log,
    keep_log,
    read_state,
    ship_and_start,
    stop_job,
)
from iacrun.orchestrator.host.transport import Host, Transport
from iacrun.orchestrator.models.names import generate_name
from iacrun.orchestrator.paths import iacrun_home
from iacrun.orchestrator.registry import ACTIVE_STATUSES, FINAL_STATUSES, Registry, RunRecord

if TYPE_CHECKING:  # planning needs models that listing runs does not: imported where used
    from iacrun.orchestrator.backends.stack_inventory import (
        StackDetail,
        StackEngineFactory,
        StackRow,
    )
    from iacrun.orchestrator.models.runspec import RunSpec
    from iacrun.orchestrator.models.settings import Settings
    from iacrun.orchestrator.offers.model import Offer, Requirements
    from iacrun.orchestrator.offers.plan import OfferPlan
    from iacrun.stacks.engine import StackEngine

#: seconds past max_duration after which any iacrun command tears a run down itself
REAPER_MARGIN = 120.0
#: seconds between the attempts to give a machine back before the failure is shown
TEARDOWN_RETRIES = (5.0, 15.0)


class Orchestrator:
    def __init__(
        self,
        home: Path | None = None,
        settings: Settings | None = None,
        backends: list[Backend] | None = None,
        stack_engine: StackEngineFactory | None = None,
    ) -> None:
        self.home = home or iacrun_home()
        self._settings = settings
        self._backends = backends
        self._registry: Registry | None = None
        self._stack_engine_factory = stack_engine
        self._stack_engine: StackEngine | None = None

    # ------------------------------------------------------------------ collaborators

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from iacrun.orchestrator.models.settings import load_settings

            self._settings = load_settings(self.home / "config.yml")
        return self._settings

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.home / "registry.db")
        return self._registry

    @property
    def runs_root(self) -> Path:
        path = self.home / "runs"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def backends(self) -> list[Backend]:
        if self._backends is None:
            self._backends = configured_backends(self.settings, self.runs_root, self.registry)
        return self._backends

    def backend(self, name: str) -> Backend:
        for backend in self.backends():
            if backend.name == name:
                return backend
        raise InputError(f"backend {name!r} is not configured; see ~/.iacrun/config.yml")

    # ------------------------------------------------------------------ planning and submitting

    def plan(self, spec: RunSpec) -> OfferPlan:
        from iacrun.orchestrator.offers.plan import collect_offers

        return collect_offers(self.backends(), spec.requirements)

    def dry_run(self, spec: RunSpec) -> tuple[OfferPlan, str]:
        """The plan, and what the first offer's backend would create for it.

        Clouds not configured yet take part too, so a user can see what a run would create
        before setting them up; no credentials are needed."""
        from iacrun.orchestrator.offers.plan import collect_offers

        backends = list(self.backends())
        names = {b.name for b in backends}
        if "aws" not in names:
            from iacrun.orchestrator.backends.aws import AWSBackend

            backends.append(AWSBackend(home=self.home))
        if "azure" not in names:
            from iacrun.orchestrator.backends.azure import AzureBackend

            backends.append(AzureBackend(home=self.home))
        plan = collect_offers(backends, spec.requirements)
        offer = plan.available[0]
        backend = next(b for b in backends if b.name == offer.backend)
        if isinstance(backend, DryRunnable):
            return plan, backend.dry_run(spec, offer).render()
        where = "a folder under ~/.iacrun/runs" if offer.backend == "local" else offer.region
        return plan, f"{offer.backend}: nothing is created; the run goes to {where}"

    def ensure_name_free(self, name: str) -> None:
        """Refuse early (before planning) a name that an active run holds."""
        try:
            run = self.refresh(self.registry.get(name))
        except RunNotFoundError:
            return
        if run.active:
            raise RunNameTakenError(
                f"a run named {name!r} is still active; stop it first (iacrun stop {name}) "
                "or choose another name with -n"
            )

    def submit(self, spec: RunSpec, plan: OfferPlan, *, supervise: bool = True) -> RunRecord:
        """Record the run, then hand it to a detached supervisor that provisions and watches it."""
        offers = self.ready_offers(o for o in plan.offers if o.available)
        name = spec.run_name or generate_name(self.registry.names_in_use)
        spec = spec.model_copy(update={"run_name": name})
        run = self.registry.create(name, spec.model_dump(mode="json"), self.runs_root)
        local = Path(run.local_dir)
        local.mkdir(parents=True, exist_ok=True, mode=0o700)
        (local / "offers.json").write_text(json.dumps([o.model_dump(mode="json") for o in offers]))
        if supervise:
            self._spawn_supervisor(run)
        return run

    def ready_offers(self, offers: Iterable[Offer]) -> list[Offer]:
        """The offers whose backend passes its preflight; the first failure when none does."""
        offers = list(offers)
        problems: dict[str, IacrunError | None] = {}
        for name in dict.fromkeys(o.backend for o in offers):
            backend = self.backend(name)
            try:
                if isinstance(backend, Preflight):
                    backend.preflight()
                problems[name] = None
            except IacrunError as exc:
                problems[name] = exc
        ready = [o for o in offers if problems[o.backend] is None]
        if not ready:
            raise next((p for p in problems.values() if p), NoOfferError("no offer is available"))
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

    # ------------------------------------------------------------------ supervising

    def supervise(self, run_id: int) -> None:
        """Provision, ship, start and watch one run until it ends, then tear it down."""
        from iacrun.orchestrator.offers.model import Offer

        run = self.registry.get_by_id(run_id)
        events = EventLog(Path(run.local_dir) / "events")
        try:
            offers = [
                Offer.model_validate(o)
                for o in json.loads((Path(run.local_dir) / "offers.json").read_text())
            ]
            host = self._provision(run, offers, events)
            if host is None:
                return
            run = self.registry.get_by_id(run_id)
            asyncio.run(self._start_and_watch(run, host, events))
        except IacrunError as exc:  # the teardown's last line says it
            self._finish(run_id, "failed", str(exc), None)
        except Exception as exc:  # the supervisor must record what killed it
            events.write(f"failed: internal error: {exc!r}")
            self._finish(run_id, "failed", f"internal error: {exc!r}", None)
            raise
        finally:
            self._teardown(self.registry.get_by_id(run_id), events)

    def _provision(self, run: RunRecord, offers: list[Offer], events: EventLog) -> Host | None:
        """Try the offers in failover order; each attempt is recorded before it starts."""
        from iacrun.orchestrator.models.taskfile import RetrySpec
        from iacrun.orchestrator.offers.failover import provision_with_failover

        recording = {b.name: _Recording(b, self.registry) for b in self.backends()}
        retry = RetrySpec.model_validate(run.spec["retry"]) if run.spec.get("retry") else None

        def waiting(seconds: float, reason: str) -> None:
            self.registry.transition(run.id, ("provisioning",), status="pending", reason=reason)

        try:
            _, host = provision_with_failover(
                recording, offers, run, retry, events.write, on_wait=waiting
            )
        except _Stopped:
            return None
        self.registry.update(run.id, host=host.model_dump(mode="json"))
        return host

    async def _start_and_watch(self, run: RunRecord, host: Host, events: EventLog) -> None:
        from iacrun.orchestrator.host.workdir import pack

        transport = await open_transport(host)
        try:
            archive = Path(run.local_dir) / "code.tar.gz"
            files, size = pack(
                Path(run.spec["repo_dir"]),
                archive,
                self.settings.upload_limit_gb,
                exclude=(self.home,),
            )
            events.write(f"uploading {files} files ({_human(size)})")
            await ship_and_start(transport, host, build_job(run, host), str(archive))
            archive.unlink(missing_ok=True)
            if (
                self.registry.transition(
                    run.id, ("provisioning",), status="running", started_at=time.time()
                )
                is None
            ):
                await stop_job(transport, host, "stopped by user")
                return
            events.write("running")
            await self._watch(run, host, transport)
        finally:
            await transport.close()

    async def _watch(self, run: RunRecord, host: Host, transport: Transport) -> None:
        """Follow the runner until the run ends; record how, keeping the log of a remote host."""
        state = await self._until_final(run, host, transport)
        if host.kind != "local":
            await keep_log(transport, host, Path(run.local_dir) / "log")
        self.registry.update(run.id, attempt=int(state.get("attempt") or run.attempt or 1))
        self._finish(run.id, state["status"], state.get("reason"), state.get("exit_code"))

    async def _until_final(
        self, run: RunRecord, host: Host, transport: Transport
    ) -> dict[str, Any]:
        deadline = None
        if run.spec.get("max_duration"):
            deadline = time.time() + float(run.spec["max_duration"]) + REAPER_MARGIN
        seen_attempts = 0
        while True:
            state = await read_state(transport, host)
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
            if reason is not None:
                final = await stop_job(transport, host, reason)
                return {**final, "status": "terminated", "reason": final.get("reason") or reason}
            await asyncio.sleep(0.2)

    def _finish(self, run_id: int, status: str, reason: str | None, exit_code: int | None) -> None:
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

    def _teardown(self, run: RunRecord, events: EventLog) -> None:
        """Give the machine back, then close the record; a failed teardown stays visible."""
        if run.status in FINAL_STATUSES:
            return
        final_path = Path(run.local_dir) / "final"
        final = json.loads(final_path.read_text()) if final_path.exists() else {}
        if run.backend is not None:
            for wait in (*TEARDOWN_RETRIES, None):
                try:
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
                    time.sleep(wait)
        self.registry.transition(
            run.id,
            ACTIVE_STATUSES,
            status=final.get("status", "terminated"),
            reason=final.get("reason", run.reason),
            exit_code=final.get("exit_code", run.exit_code),
            finished_at=time.time(),
        )
        events.write(f"{final.get('status', 'terminated')}: {final.get('reason', run.reason)}")

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
        if self.registry.claim_supervisor(run.id, run.supervisor_pid, os.getpid()):
            self._spawn_supervisor(run, resume=True)
        return self.registry.get_by_id(run.id)

    def resume(self, run_id: int) -> None:
        """Take over a run whose supervisor died, where it was."""
        run = self.registry.get_by_id(run_id)
        events = EventLog(Path(run.local_dir) / "events")
        events.write("the previous supervisor exited; taking the run over")
        host = Host.model_validate(run.host) if run.host else None
        try:
            if host is None or run.status == "provisioning":
                self._finish(run.id, "failed", "interrupted while provisioning", None)
            else:
                asyncio.run(self._resume_watch(run, host))
        except IacrunError as exc:  # the teardown's last line says it
            status = "terminated" if run.status == "terminating" else "failed"
            self._finish(run_id, status, str(exc), None)
        finally:
            self._teardown(self.registry.get_by_id(run_id), events)

    async def _resume_watch(self, run: RunRecord, host: Host) -> None:
        transport = await open_transport(host)
        try:
            await self._watch(run, host, transport)
        finally:
            await transport.close()

    def logs(
        self,
        name: str,
        sink: Callable[[bytes], None],
        *,
        offset: int = 0,
        follow: bool = False,
    ) -> tuple[int, RunRecord]:
        run = self.registry.get(name)
        host = Host.model_validate(run.host) if run.host else None
        if host is None or (not run.active and host.kind != "local"):
            kept = Path(run.local_dir) / "log"
            data = kept.read_bytes()[offset:] if kept.exists() else b""
            if data:
                sink(data)
            return offset + len(data), run
        reached, _ = asyncio.run(_follow(host, offset, sink, follow))
        return reached, self.get(name)

    # ------------------------------------------------------------------ stopping

    def stop(self, name: str, *, reason: str = "stopped by user", wait: float = 60.0) -> RunRecord:
        """Stop the job and tear the run down. Idempotent: a finished run is left as it is."""
        run = self.registry.get(name)
        if not run.active:
            return run
        self.registry.transition(run.id, ACTIVE_STATUSES, status="terminating", reason=reason)
        supervised = run.supervisor_pid is not None and _alive(run.supervisor_pid)
        end = time.time() + wait
        while supervised and time.time() < end:
            run = self.registry.get_by_id(run.id)
            if not run.active:
                return run
            supervised = run.supervisor_pid is not None and _alive(run.supervisor_pid)
            time.sleep(0.1)
        # no supervisor (or it hung): stop and tear down from here
        run = self.registry.get_by_id(run.id)
        host = Host.model_validate(run.host) if run.host else None
        state: dict[str, Any] = {}
        events = EventLog(Path(run.local_dir) / "events")
        if host is not None:
            try:
                state = asyncio.run(_stop(host, reason, Path(run.local_dir) / "log"))
            except IacrunError as exc:  # an unreachable machine is still torn down
                events.write(f"could not stop the job on its host: {exc}")
        self._finish(run.id, "terminated", reason, state.get("exit_code"))
        self._teardown(self.registry.get_by_id(run.id), events)
        final = self.registry.get_by_id(run.id)
        if final.active:
            raise RunError(f"{name}: {final.reason}")
        return final

    def down(self, name: str, *, reason: str = "stopped by user") -> str:
        """Stop a run and destroy what it created; or destroy a leftover stack of that name.

        Safe to repeat: a finished run's stack is destroyed again (idempotent), which is how a
        failed or interrupted teardown is finished."""
        try:
            run = self.registry.get(name)
        except RunNotFoundError:
            return self.destroy_stack(name)
        if run.active:
            run = self.stop(name, reason=reason)
        elif run.stack_name and run.backend:
            self.backend(run.backend).terminate(run)
        return f"{run.name}: {run.status}" + (f" ({run.reason})" if run.reason else "")

    def destroy_stack(self, stack_name: str) -> str:
        """Destroy and remove a stack that no recorded run owns (a leak `iacrun stacks` found)."""
        engine = self.stack_engine()
        if stack_name not in engine.stack_names():
            raise RunNotFoundError(f"no run or stack named {stack_name!r}; see iacrun ps -a")
        engine.destroy(stack_name)
        return f"{stack_name}: stack destroyed and removed"

    # ------------------------------------------------------------------ stacks in the state backend
    # What `iacrun stacks` and `iacrun state` show: every stack with the run that owns it, leaks
    # flagged (see backends/stack_inventory.py), and one stack's resources and outputs.

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
        `StackRow.leak` marks a stack no live run owns."""
        from iacrun.orchestrator.backends.stack_inventory import link_runs

        return link_runs(self.stack_engine().list_stacks(), self.registry.runs(all_runs=True))

    def stack_state(self, run_or_stack: str) -> StackDetail:
        """The stack of the run called `run_or_stack`, else the stack of that name, with its run.

        Raises RunNotFoundError when neither exists, BackendError when the run has no stack."""
        from iacrun.orchestrator.backends.stack_inventory import StackDetail, find_stack

        engine = self.stack_engine()
        run, stack_name = find_stack(run_or_stack, engine.stack_names(), self.registry)
        return StackDetail(state=engine.state(stack_name), run=run, backend_url=engine.backend_url)


class _Stopped(Exception):
    """The run was stopped while its machine was being provisioned."""


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
            price=offer.price,
            offer=offer.model_dump(mode="json"),
        )
        if current is None:
            raise _Stopped()
        if isinstance(self.inner, StackBacked):
            current = self.registry.update(run.id, stack_name=self.inner.stack_name(current))
        return self.inner.provision(current, offer, progress)

    def terminate(self, run: RunRecord) -> None:
        self.inner.terminate(run)


class EventLog:
    """Progress lines of a run, written by its supervisor and shown by an attached CLI."""

    def __init__(self, path: Path) -> None:
        self.path = path

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


def configured_backends(settings: Settings, runs_root: Path, registry: Registry) -> list[Backend]:
    """The backends `up` may use: this machine unless disabled, and what config.yml lists."""
    backends: list[Backend] = []
    conf = settings.backends
    if conf.local.enabled:
        from iacrun.orchestrator.backends.local import LocalBackend

        backends.append(LocalBackend(runs_root))
    if conf.ssh is not None and conf.ssh.enabled and conf.ssh.hosts:
        from iacrun.orchestrator.backends.ssh import SSHBackend

        backends.append(SSHBackend(conf.ssh, registry=registry))
    state_url = settings.state.backend_url
    if conf.aws is not None and conf.aws.enabled:
        from iacrun.orchestrator.backends.aws import AWSBackend

        backends.append(AWSBackend(conf.aws, home=runs_root.parent, backend_url=state_url))
    if conf.azure is not None and conf.azure.enabled:
        from iacrun.orchestrator.backends.azure import AzureBackend

        backends.append(
            AzureBackend(
                conf.azure,
                self_delete=conf.azure.self_delete,
                home=runs_root.parent,
                backend_url=state_url,
            )
        )
    return backends


def _alive(pid: int) -> bool:
    from iacrun.orchestrator.runner.runner import pid_alive

    return pid_alive(pid)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GB"


async def _stop(host: Host, reason: str, kept_log: Path) -> dict[str, Any]:
    transport = await open_transport(host)
    try:
        state = await stop_job(transport, host, reason)
        if host.kind != "local":
            await keep_log(transport, host, kept_log)
        return state
    finally:
        await transport.close()


async def _follow(
    host: Host,
    offset: int,
    sink: Callable[[bytes], None],
    follow: bool,
) -> tuple[int, dict[str, Any]]:
    transport = await open_transport(host)
    try:
        return await follow_log(transport, host, offset, sink, follow=follow)
    finally:
        await transport.close()
