"""What the `aws` and `azure` backends share: a run's VM as an ephemeral Pulumi stack.

`provision(run, offer)`:

1. checks the cloud's credentials where its tools look for them (one clear line when none);
2. makes the run's SSH key (`<run folder>/id_ed25519` or `id_rsa` on Azure, 0600) and the VM's
   host key, and builds the `StackSpec` (SSH open to `ssh_cidrs` from the config, else to this
   machine's public address as a /32, as two services agree on it: `caller_address`);
3. checks the cloud-init's size, then runs the stack program through the stack engine
   (`stacks/engine.py`, which needs the `pulumi` CLI) in the stack `<run name>-<run id>-<home
   tag>`, recording the owner (`iacrun:owner`: this home's tag and `user@host`) in the stack's
   config and on every resource; the engine refuses a stack another home recorded;
4. on GPU offers, waits for the VM's own check (`machine_check.py`): a machine whose GPUs fail it
   is destroyed at once and reported as `MachineCheckError`, so failover tries the next offer;
5. returns the `Host`: the VM's public address, user `ubuntu`, the run's key, the pinned host key
   and the run folder `/opt/iacrun/run`.

`provision_nodes(run, offer, count)` does the same for a multi-node run: one stack of `count`
VMs (the programs' cluster: placement, a members-only rule, EFA or InfiniBand), every GPU node's
check, and the Hosts in rank order from the stack's `nodes` output, each with its private
address as `internal_ip` (what the other nodes reach it on); `ssh RUN` is the master and
`ssh RUN-node-K` node K while the run lives.

`terminate(run)` destroys the stack (every node) and removes it; what is already gone is no error.
`dry_run(spec, offer)` runs the same program under Pulumi's mocks: no credentials, no `pulumi`.

After `provision`, iacrun follows the start-up contract in `stacks/cloudinit.py` (wait for
`vm.ready`, upload, write `code.ready`); `start_job` below does the last two steps' tail.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from iacrun.orchestrator.backends.base import Backend, ProgressCallback
from iacrun.orchestrator.backends.caller_address import caller_address, host_cidr
from iacrun.orchestrator.backends.stack_spec import build_stack_spec, stack_name_for
from iacrun.orchestrator.errors import (
    BackendError,
    ToolMissingError,
)
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.models.requirements import Requirements
from iacrun.orchestrator.models.settings import UNREACHABLE_AFTER
from iacrun.orchestrator.offers.model import Offer, pick_gpus
from iacrun.stacks.cloudinit import RUN_DIR, SSH_USER
from iacrun.stacks.keys import KeyPair, generate_ed25519, write_private_key
from iacrun.stacks.spec import Cloud, StackSpec

if TYPE_CHECKING:
    from iacrun.orchestrator.host.sshconfig import SSHConfigEntries
    from iacrun.orchestrator.models.runspec import RunSpec
    from iacrun.orchestrator.offers.catalog.match import Shortfall
    from iacrun.orchestrator.registry import RunRecord
    from iacrun.stacks.engine import DestroyResult
    from iacrun.stacks.preview import PlannedResource
    from iacrun.stacks.toolchain import Plugin

#: written in the run's folder just before the stack's first update: a stack may exist
STACK_MARK = "stack.started"
#: how long `provision` lets the stack update run
UP_TIMEOUT = 1800.0
#: how long the first SSH connection keeps trying (a GPU image boots in a few minutes)
CONNECT_TIMEOUT = 900.0
#: shown in a dry run when this machine's public address is unknown
PLACEHOLDER_CIDR = "192.0.2.1/32"


class OfferCatalog(Protocol):
    """Where a cloud backend's offers come from: `catalog.CatalogOfferSource` by default."""

    def offers(self, requirements: Requirements) -> list[Offer]: ...


class StackEngineLike(Protocol):
    """What the backends use of `stacks.engine.StackEngine`; tests inject a recording double."""

    def up(
        self,
        stack_name: str,
        program: Callable[[], None],
        config: Mapping[str, str] | None = None,
        *,
        secrets: Mapping[str, str] | None = None,
        on_progress: Callable[[Any], None] | None = None,
        timeout: float = ...,
    ) -> dict[str, Any]: ...

    def destroy(
        self,
        stack_name: str,
        program: Callable[[], None] | None = None,
        *,
        on_progress: Callable[[Any], None] | None = None,
        timeout: float = ...,
        force: bool = ...,
    ) -> DestroyResult: ...

    def plugins(self) -> list[Plugin]: ...

    def install_plugins(
        self,
        plugins: list[Plugin],
        *,
        server: str | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> None: ...


EngineFactory = Callable[[], StackEngineLike]
#: reads a new VM's own check: None when it passed, else its one-line reason (machine_check.py)
MachineCheck = Callable[[Host, float], "str | None"]


def read_machine_check_now(host: Host, timeout: float) -> str | None:
    """The VM's check result over SSH (see `backends/machine_check.py`)."""
    import asyncio

    from iacrun.orchestrator.backends.machine_check import read_machine_check

    return asyncio.run(read_machine_check(host, timeout))


def default_engine_factory(home: Path | None, backend_url: str | None) -> EngineFactory:
    """Makes `stacks.engine.StackEngine` on `home` (default: iacrun's home) when first needed."""

    def make() -> StackEngineLike:
        from iacrun.orchestrator.paths import iacrun_home
        from iacrun.stacks.engine import StackEngine

        engine: StackEngineLike = StackEngine(home or iacrun_home(), backend_url)
        return engine

    return make


@dataclass
class StackPlan:
    """What `iacrun up --dry-run` shows for a cloud offer."""

    offer: Offer
    stack_name: str
    spec: StackSpec
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    user_data_bytes: int
    user_data_limit: int
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        from iacrun.stacks.preview import PreviewResult, render_resources

        offer = self.offer
        kind = "spot" if offer.spot else "on-demand"
        nodes = self.spec.nodes
        if nodes > 1:
            machines = (
                f"{nodes} x {offer.instance_type} ({kind}, ${offer.price:g}/h each, "
                f"${offer.price * nodes:g}/h in all)"
            )
        else:
            machines = f"{offer.instance_type} ({kind}, ${offer.price:g}/h)"
        lines = [
            f"stack {self.stack_name} on {offer.backend} {offer.region}: {machines}, "
            f"disk {self.spec.disk_gb} GB",
        ]
        lines += [f"  {note}" for note in self.notes]
        lines.append("  resources it would create:")
        table = render_resources(PreviewResult(resources=list(self.resources)))
        lines += [f"    {row}" for row in table.splitlines()]
        return "\n".join(lines)


class PulumiCloudBackend(Backend):
    """A cloud reached through a stack program. Subclasses say which cloud and how to check it."""

    name: str
    cloud: Cloud
    key_file = "id_ed25519"
    #: the run folder on the VM, where cloud-init puts the runner and the job
    run_dir = RUN_DIR
    #: seconds a silent VM is waited for while its job runs (the settings' `unreachable_after`;
    #: the VM's own guard ends it at max_duration anyway)
    unreachable_after: float = float(UNREACHABLE_AFTER)

    def __init__(
        self,
        *,
        ssh_cidrs: list[str] | None,
        engine: StackEngineLike | None = None,
        engine_factory: EngineFactory | None = None,
        home: Path | None = None,
        backend_url: str | None = None,
        environ: Mapping[str, str] | None = None,
        user_home: Path | None = None,
        public_ip: Callable[[], str] = caller_address,
        catalog: OfferCatalog | None = None,
        regions: list[str] | None = None,
        up_timeout: float = UP_TIMEOUT,
        machine_check: MachineCheck | None = None,
    ) -> None:
        self.ssh_cidrs = ssh_cidrs
        self.environ = os.environ if environ is None else environ
        self.user_home = user_home or Path.home()
        self.public_ip = public_ip
        self.regions = regions
        self._catalog = catalog
        self.up_timeout = up_timeout
        self.machine_check = machine_check or read_machine_check_now
        self._engine = engine
        self._engine_factory = engine_factory or default_engine_factory(home, backend_url)
        self.home = home

    # ------------------------------------------------------------------ per cloud

    def check_credentials(self) -> str:
        """Where the cloud's credentials come from; CredentialsError when nowhere."""
        raise NotImplementedError

    def program(self, spec: StackSpec) -> Callable[[], None]:
        raise NotImplementedError

    def spec_options(self) -> dict[str, Any]:
        """Extra `StackSpec` fields from this backend's settings."""
        return {}

    def make_client_key(self, comment: str) -> KeyPair:
        return generate_ed25519(comment)

    def host_from_outputs(self, outputs: dict[str, Any]) -> tuple[str, str]:
        address = outputs.get("public_ip")
        if not address:
            raise BackendError(f"the {self.name} stack gave no public IP address")
        return str(address), str(outputs.get("ssh_user") or SSH_USER)

    # ------------------------------------------------------------------ Backend

    def offers(self, requirements: Requirements) -> list[Offer]:
        """The catalog's offers for this cloud, in the configured regions; those the vCPU
        quotas `iacrun doctor` last read rule out are marked unavailable, with the reason."""
        from iacrun.orchestrator.offers.quotas import mark_quota_shortfalls
        from iacrun.orchestrator.paths import iacrun_home

        offers = [o for o in self.catalog().offers(requirements) if o.backend == self.name]
        return mark_quota_shortfalls(offers, self.cloud, self.home or iacrun_home())

    def shortfall(self, requirements: Requirements) -> Shortfall | None:
        """Which resource requirement ruled out every instance type (for the planner)."""
        catalog = self.catalog()
        explain = getattr(catalog, "shortfall", None)
        return explain(requirements) if explain is not None else None

    def catalog(self) -> OfferCatalog:
        if self._catalog is None:
            from iacrun.orchestrator.offers.catalog import CatalogOfferSource

            self._catalog = CatalogOfferSource(self.name, regions=self.regions)
        return self._catalog

    def preflight(self, on_progress: Callable[[str], None] | None = None) -> None:
        """What `up` checks before it records a run: the cloud's credentials, `pulumi`, and the
        provider plugin at exactly its version (installed now, not inside the first update)."""
        from iacrun.stacks.toolchain import find_pulumi, missing_cli_hint

        self.check_credentials()
        if self._engine is None and find_pulumi(self.home) is None:
            raise ToolMissingError(missing_cli_hint(self.home))
        self.ensure_plugin(on_progress)

    def provider_plugin(self) -> Plugin | None:
        """The provider plugin this cloud's program needs, at the SDK's exact version."""
        from iacrun.stacks.toolchain import required_plugin

        return required_plugin(self.cloud)

    def ensure_plugin(self, on_progress: Callable[[str], None] | None = None) -> None:
        """Install the provider plugin into the engine's PULUMI_HOME when it is missing."""
        from iacrun.stacks.toolchain import missing_plugins

        plugin = self.provider_plugin()
        if plugin is None:
            return
        engine = self.engine()
        missing = missing_plugins([plugin], engine.plugins())
        if missing:
            server = self.environ.get("IACRUN_PULUMI_PLUGIN_SERVER") or None
            engine.install_plugins(missing, server=server, on_progress=on_progress)

    def provision(self, run: RunRecord, offer: Offer, progress: ProgressCallback) -> Host:
        return self.provision_nodes(run, offer, 1, progress)[0]

    def provision_nodes(
        self, run: RunRecord, offer: Offer, count: int, progress: ProgressCallback
    ) -> list[Host]:
        """`count` machines of `offer` in one stack (a cluster when count > 1: see the stack
        programs), as Hosts in rank order; `terminate(run)` destroys them all together."""
        from iacrun.stacks.cloudinit import user_data

        self.check_credentials()
        engine = self.engine()
        local = Path(run.local_dir)
        client = self.make_client_key(f"iacrun-{run.name}")
        key_path = write_private_key(local / self.key_file, client)
        spec = self.stack_spec(run, offer, client.public_openssh, self.caller_cidrs(), count)
        user_data(spec)  # the size check, with its clear error, before any resource
        machines = f"{count} x {offer.instance_type}, " if count > 1 else ""
        progress(f"creating stack {spec.stack_name} ({machines}{self.name} {offer.region})")
        (local / STACK_MARK).write_text(spec.stack_name)  # from here on, terminate destroys
        outputs = self.up_stack(engine, spec.stack_name, spec, progress)
        hosts = self.hosts_from_outputs(outputs, spec, offer, key_path)
        if len(hosts) != count:
            raise BackendError(
                f"the {self.name} stack {spec.stack_name} gave {len(hosts)} machine(s) "
                f"for {count} node(s)"
            )
        config = self.ssh_config()
        for rank, host in enumerate(hosts):  # `ssh RUN-NAME` (`ssh RUN-NAME-node-K`)
            config.add(node_alias(run.name, rank), host)
        if spec.gpu:
            for host in hosts:
                self.check_machine(run, spec, host, progress)
        return hosts

    def hosts_from_outputs(
        self, outputs: dict[str, Any], spec: StackSpec, offer: Offer, key_path: Path
    ) -> list[Host]:
        """The stack's machines as Hosts, in rank order: its `nodes` output (a stack made by a
        program without it: the one machine of `public_ip`)."""
        address, user = self.host_from_outputs(outputs)
        nodes = outputs.get("nodes") or [{"rank": 0, "public_ip": address}]
        hosts = []
        for node in sorted(nodes, key=lambda n: int(n.get("rank") or 0)):
            public = node.get("public_ip")
            if not public:
                raise BackendError(
                    f"the {self.name} stack gave no public IP address for node {node.get('rank')}"
                )
            private = node.get("private_ip")
            hosts.append(
                Host(
                    kind="ssh",
                    run_dir=self.run_dir,
                    address=str(public),
                    port=int(node.get("ssh_port") or outputs.get("ssh_port") or 22),
                    user=user,
                    identity_file=str(key_path),
                    host_key=spec.host_key.public_key_only,
                    connect_timeout=CONNECT_TIMEOUT,
                    unreachable_after=self.unreachable_after,
                    gpus=gpu_indices(offer),
                    boot="cloud-init",
                    internal_ip=str(private) if private else None,
                )
            )
        return hosts

    def up_stack(
        self, engine: StackEngineLike, stack_name: str, spec: StackSpec, progress: ProgressCallback
    ) -> dict[str, Any]:
        """Create the run's stack from `spec`; its outputs. AWS tries zone after zone here."""
        return engine.up(
            stack_name,
            self.program(spec),
            owner_config(spec),
            on_progress=lambda p: progress(p.render() if hasattr(p, "render") else str(p)),
            timeout=self.up_timeout,
        )

    def check_machine(
        self, run: RunRecord, spec: StackSpec, host: Host, progress: ProgressCallback
    ) -> None:
        """Wait for the VM's own GPU check; a broken machine is torn down at once and reported
        as MachineCheckError, on which failover tries the next offer."""
        from iacrun.orchestrator.backends.machine_check import CHECK_MARGIN
        from iacrun.orchestrator.errors import MachineCheckError

        progress("waiting for the machine to check its GPUs")
        failure = self.machine_check(host, spec.vm_image.gpu_wait + CHECK_MARGIN)
        if failure is None:
            return
        progress(f"{failure}; tearing the machine down")
        self.terminate(run)
        raise MachineCheckError(failure)

    def terminate(self, run: RunRecord) -> None:
        if (Path(run.local_dir) / STACK_MARK).exists():
            self.check_credentials()
            stack = self.stack_name(run)  # the recorded name: ours
            result = self.engine().destroy(stack)
            if result.leaks:  # what an interrupted update may have made, not found: named
                raise BackendError(result.leak_text(stack))
        # else no update ever started (no credentials, no pulumi, cloud-init too big): nothing
        # was created, and nothing is needed to give it back
        config = self.ssh_config()
        config.remove(run.name)
        for name in config.names():
            if NODE_ALIAS.fullmatch(name) and name.rsplit("-node-", 1)[0] == run.name:
                config.remove(name)

    def ssh_config(self) -> SSHConfigEntries:
        from iacrun.orchestrator.host.sshconfig import SSHConfigEntries

        return SSHConfigEntries(iacrun_dir=self.home, home=self.user_home)

    # ------------------------------------------------------------------ helpers

    def engine(self) -> StackEngineLike:
        """The stack engine, made on first use (it raises ToolMissingError without `pulumi`)."""
        if self._engine is None:
            self._engine = self._engine_factory()
        return self._engine

    def stack_name(self, run: RunRecord) -> str:
        """The run's stack: the name the registry recorded, else `<run>-<id>-<home tag>`."""
        return run.stack_name or stack_name_for(run.name, run.id, self.home_tag())

    def home_tag(self) -> str:
        from iacrun.orchestrator.paths import home_tag, iacrun_home

        return home_tag(self.home or iacrun_home())

    def owner(self) -> str:
        """What the stack and its resources record as their owner: this home, and who."""
        from iacrun.stacks.owner import Owner, this_user

        return Owner(self.home_tag(), this_user()).value

    def caller_cidrs(self) -> list[str]:
        if self.ssh_cidrs:
            return list(self.ssh_cidrs)
        return [host_cidr(self.public_ip())]

    def stack_spec(
        self,
        run: RunRecord,
        offer: Offer,
        ssh_public_key: str,
        ssh_cidrs: list[str],
        nodes: int = 1,
    ) -> StackSpec:
        from iacrun.orchestrator.host.runner_client import build_job

        host = Host(kind="ssh", run_dir=self.run_dir, gpus=gpu_indices(offer))
        job = build_job(run.name, run.spec, host)
        requirements = run.spec.requirements
        disk = offer.resources.disk_gb or requirements.resources.disk.min
        return build_stack_spec(
            offer,
            job,
            stack_name=self.stack_name(run),
            ssh_public_key=ssh_public_key,
            host_key=generate_ed25519(f"iacrun-{run.name}-host"),
            ssh_cidrs=ssh_cidrs,
            disk_gb=int(disk) if disk else None,
            max_price=requirements.max_price,
            owner=self.owner(),
            nodes=nodes,
            **self.spec_options(),
        )

    def dry_run(self, spec: RunSpec, offer: Offer, *, name: str | None = None) -> StackPlan:
        """The stack `up` would create for `offer`, from the program under mocks."""
        from iacrun.orchestrator.registry import RunRecord, RunStatus
        from iacrun.stacks import cloudinit
        from iacrun.stacks.preview import preview

        run_name = name or spec.run_name or "dry-run"
        run = RunRecord(
            id=0,
            name=run_name,
            status=RunStatus.SUBMITTED,
            spec=spec,
            submitted_at=time.time(),
        )
        notes: list[str] = []
        try:
            cidrs = self.caller_cidrs()
        except BackendError as exc:
            cidrs = [PLACEHOLDER_CIDR]
            notes.append(f"SSH: {exc}")
        client = self.make_client_key(f"iacrun-{run_name}")
        stack_spec = self.stack_spec(run, offer, client.public_openssh, cidrs, spec.nodes)
        data = cloudinit.user_data(stack_spec)
        result = preview(self.program(stack_spec))
        notes.append(f"SSH (port 22) open to {', '.join(cidrs)} only")
        stack_label = stack_name_for(run_name, "<id>", self.home_tag())
        notes += self.plan_notes(stack_spec, stack_label)
        limit = (
            cloudinit.AWS_USER_DATA_LIMIT
            if self.cloud == "aws"
            else cloudinit.AZURE_CUSTOM_DATA_LIMIT
        )
        notes.append(f"cloud-init: {len(data)} of {limit} bytes")
        return StackPlan(
            offer=offer,
            stack_name=stack_label,
            spec=stack_spec,
            resources=result.cloud_resources,
            outputs=result.outputs,
            user_data_bytes=len(data),
            user_data_limit=limit,
            notes=notes,
        )

    def plan_notes(self, spec: StackSpec, stack_label: str) -> list[str]:
        """Lines of the dry-run plan about this cloud (networking, image...)."""
        return []


def owner_config(spec: StackSpec) -> dict[str, str]:
    """The stack config that records the owner; the engine checks it before touching a stack."""
    from iacrun.stacks.owner import OWNER_KEY

    return {OWNER_KEY: spec.owner} if spec.owner else {}


#: the ssh alias of a cluster's node k >= 1 (rank 0 is the run's name itself)
NODE_ALIAS = re.compile(r".+-node-[1-9]\d*")


def node_alias(run_name: str, rank: int) -> str:
    """The `ssh` alias of rank `rank`: the run's name for the master, `RUN-node-K` for the rest."""
    return f"{run_name}-node-{rank}" if rank else run_name


def gpu_indices(offer: Offer) -> str | None:
    return pick_gpus(offer.resources.gpus, None, "all")
