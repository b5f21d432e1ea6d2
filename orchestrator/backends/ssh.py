"""The `ssh` backend: servers you already own, listed in `~/.iacrun/config.yml`.

::

    backends:
      ssh:
        hosts:
          - name: box1                      # the label shown in offers (default: host)
            host: 10.0.0.5
            port: 22
            user: ubuntu
            identity_file: ~/.ssh/id_ed25519
            proxy_jump: ubuntu@bastion.example.com   # optional, [user@]host[:port][,...]
            host_key: ssh-ed25519 AAAA...     # optional; otherwise known_hosts is checked
            known_hosts: ~/.ssh/known_hosts   # optional, the default
            keep_run_dirs: 24h                # optional; the section's below by default
        keep_run_dirs: 24h                  # how long ended runs' folders stay on the hosts
        unreachable_after: 10m              # how long a silent host is waited for (docs/ssh.md)

Each host is one offer at price 0, with the resources detected over SSH (CPUs, memory, free disk
in the home folder, NVIDIA GPUs) and cached for ten minutes. A host runs one run at a time, unless
both runs take some of its GPUs: then each gets its own `CUDA_VISIBLE_DEVICES`. A host that cannot
be reached, or that is busy, is still offered, as unavailable with the reason, so one dead host
never hides the others. Runs live in `~/.iacrun/runs/NAME-ID-TAG` on the host (TAG: the home's
tag, as at the end of its stack names, so two homes' runs never share a folder); the next run on a
host removes the folders of runs that ended more than `keep_run_dirs` ago (their logs were copied to
the local run folder when they ended).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import getpass
import os
import posixpath
import time
from collections.abc import Coroutine
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from iacrun.orchestrator.backends.base import Backend, ProgressCallback
from iacrun.orchestrator.errors import (
    BackendError,
    CapacityError,
    ConfigError,
    HostUnreachableError,
    IacrunError,
)
from iacrun.orchestrator.host.cluster import node_run_dir, read_nodes
from iacrun.orchestrator.host.detect import HostFacts, HostFactsCache
from iacrun.orchestrator.host.sshconfig import SSHConfigEntries
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.models.requirements import Requirements
from iacrun.orchestrator.models.resources import ResourcesSpec
from iacrun.orchestrator.models.settings import SSHHostSettings, SSHSettings
from iacrun.orchestrator.models.units import format_duration
from iacrun.orchestrator.offers.model import InstanceResources, Offer, pick_gpus, unmet_requirement
from iacrun.orchestrator.paths import home_tag, iacrun_home
from iacrun.orchestrator.registry.records import HostClaim

if TYPE_CHECKING:
    from iacrun.orchestrator.registry import Registry, RunRecord

T = TypeVar("T")

#: how long `offers` waits for each host before showing it as unreachable
PROBE_SECONDS = 5.0
#: how long `provision` keeps trying to reach the chosen host
PROVISION_CONNECT_SECONDS = 20.0


class SSHBackend(Backend):
    """Your own hosts over SSH. See the module docstring for the configuration."""

    name = "ssh"

    def __init__(
        self,
        settings: SSHSettings,
        *,
        home: Path | None = None,
        registry: Registry | None = None,
        cache: HostFactsCache | None = None,
        ssh_config: SSHConfigEntries | None = None,
        probe_seconds: float = PROBE_SECONDS,
        connect_seconds: float = PROVISION_CONNECT_SECONDS,
    ) -> None:
        self.settings = settings
        self.home = home or iacrun_home()
        self.registry = registry
        self.cache = cache or HostFactsCache(self.home / "ssh-hosts.json")
        self.ssh_config = ssh_config or SSHConfigEntries()
        self.probe_seconds = probe_seconds
        self.connect_seconds = connect_seconds
        self._hosts: dict[str, SSHHostSettings] = {}
        for entry in settings.hosts:
            if entry.label in self._hosts:
                raise ConfigError(
                    f"two ssh hosts are named {entry.label!r}; give each a distinct name",
                    field="backends.ssh.hosts",
                )
            self._hosts[entry.label] = entry

    # ------------------------------------------------------------------ offers

    def offers(self, requirements: Requirements) -> list[Offer]:
        if not self.settings.enabled or not self._hosts:
            return []
        probed = _run_sync(self._probe_all(list(self._hosts.values())))
        offers = []
        for entry, (facts, problem) in zip(self._hosts.values(), probed, strict=True):
            offer = self._offer(entry, facts, problem, requirements.resources)
            if offer is not None:
                offers.append(offer)
        return _enough_for(offers, requirements.nodes)

    def _offer(
        self,
        entry: SSHHostSettings,
        facts: HostFacts | None,
        problem: str | None,
        spec: ResourcesSpec,
    ) -> Offer | None:
        if facts is None:
            # never reached: nothing known to match on, shown so the user sees why it is missing
            resources = InstanceResources(cpus=0, memory_gb=0)
            return self._make_offer(entry, resources, available=False, note=problem)
        if unmet_requirement(spec, facts.resources, own_host=True) is not None:
            return None
        resources = facts.resources
        if problem is None:
            problem = self._busy(entry, facts, spec)
            free = self._free_gpu_indices(entry, facts)
            if problem is None and free is not None:
                resources = _with_gpus(facts.resources, free)  # what is left for this task
        return self._make_offer(entry, resources, available=problem is None, note=problem)

    def _make_offer(
        self,
        entry: SSHHostSettings,
        resources: InstanceResources,
        *,
        available: bool,
        note: str | None,
    ) -> Offer:
        return Offer(
            backend=self.name,
            region=entry.label,
            instance_type=entry.label,
            resources=resources,
            price=0.0,
            available=available,
            note=note,
        )

    async def _probe_all(
        self, entries: list[SSHHostSettings]
    ) -> list[tuple[HostFacts | None, str | None]]:
        return list(await asyncio.gather(*(self._probe(e) for e in entries)))

    async def _probe(self, entry: SSHHostSettings) -> tuple[HostFacts | None, str | None]:
        """(facts, None) when reachable; (cached facts or None, why) when not."""
        try:
            facts = await self._facts(entry, self.probe_seconds)
        except BackendError as exc:
            return self.cache.get(host_key(entry), stale_ok=True), _short(exc)
        return facts, None

    async def _facts(self, entry: SSHHostSettings, seconds: float) -> HostFacts:
        """Connect (proving the host is reachable now), detecting only when the cache is stale."""
        from iacrun.orchestrator.host.connect import connect
        from iacrun.orchestrator.host.detect import detect

        transport = await connect(host_for(entry, run_dir=""), deadline=time.monotonic() + seconds)
        try:
            key = host_key(entry)
            facts = self.cache.get(key)
            if facts is None:
                facts = await detect(transport, label=entry.label)
                self.cache.put(key, facts)
            return facts
        finally:
            await transport.close()

    # ------------------------------------------------------------------ sharing a host

    def _runs_on(
        self,
        entry: SSHHostSettings,
        exclude: int | None = None,
        runs: list[RunRecord] | None = None,
    ) -> list[RunRecord]:
        """The active runs that hold `entry`, among `runs` (default: the registry's)."""
        if runs is None:
            runs = self.registry.runs() if self.registry is not None else []
        return [
            run
            for run in runs
            if run.active
            and run.backend == self.name
            and run.id != exclude
            and (run.instance_type == entry.label or _holds_as_node(run, entry))
        ]

    def _free_gpu_indices(
        self,
        entry: SSHHostSettings,
        facts: HostFacts,
        exclude: int | None = None,
        runs: list[RunRecord] | None = None,
    ) -> list[int] | None:
        """Indices of the GPUs no run holds, or None when no run holds any part of the host."""
        runs = self._runs_on(entry, exclude, runs)
        if not runs:
            return None
        taken: set[int] = set()
        for run in runs:
            gpus = _gpus_held(run, entry)
            if not gpus:
                return []  # a run holds the whole host
            taken.update(int(i) for i in str(gpus).split(",") if i.strip().isdigit())
        return [i for i in range(len(facts.resources.gpus)) if i not in taken]

    def _busy(
        self,
        entry: SSHHostSettings,
        facts: HostFacts,
        spec: ResourcesSpec,
        exclude: int | None = None,
        runs: list[RunRecord] | None = None,
    ) -> str | None:
        runs = self._runs_on(entry, exclude, runs)
        if not runs:
            return None
        free = self._free_gpu_indices(entry, facts, runs=runs)
        if spec.gpu is not None and free:
            left = _with_gpus(facts.resources, free)
            if unmet_requirement(spec, left, own_host=True) is None:
                return None  # the GPUs no run holds are enough: split them by count
        names = ", ".join(run.name for run in runs)
        return f"busy with {names}"

    # ------------------------------------------------------------------ provisioning

    def provision(self, run: RunRecord, offer: Offer, progress: ProgressCallback) -> Host:
        entry = self._hosts.get(offer.instance_type)
        if entry is None:
            raise BackendError(f"ssh host {offer.instance_type!r} is no longer configured")
        return self._provision_entry(run, entry, progress)

    def provision_nodes(
        self, run: RunRecord, offer: Offer, count: int, progress: ProgressCallback
    ) -> list[Host]:
        """`count` hosts for a multi-node run: the offer's host as the master (rank 0), then the
        other configured hosts that meet the run's resources and are free, in config order.

        The hosts are reached first (which also checks what each must have), then claimed in
        one registry transaction that checks no other active run holds them
        (`Registry.claim_hosts`): two runs provisioning at once never get the same host, and a
        one-node run sees the claim at once. Each node gets its own run folder, so two nodes
        on one machine never share one."""
        first = self._hosts.get(offer.instance_type)
        if first is None:
            raise BackendError(f"ssh host {offer.instance_type!r} is no longer configured")
        spec = run.spec.requirements.resources
        reached: list[tuple[SSHHostSettings, HostFacts]] = []
        skipped: list[str] = []
        for entry in [first, *(e for e in self._hosts.values() if e is not first)]:
            if len(reached) == count:
                break
            try:
                facts = self._reach(run, entry, progress, master=entry is first)
            except (CapacityError, BackendError) as exc:
                if entry is first:
                    raise
                skipped.append(f"{entry.label}: {_short(exc)}")
                continue
            busy = self._busy(entry, facts, spec, exclude=run.id)  # a first look; see choose
            if busy is not None and entry is first:
                raise CapacityError(f"{entry.label} is {busy}")
            if busy is not None:
                skipped.append(f"{entry.label}: {busy}")
                continue
            reached.append((entry, facts))
        found = [0]

        def choose(others: list[RunRecord]) -> list[HostClaim]:
            """The claims, made while no other run can claim or record a host (or none)."""
            claims: list[HostClaim] = []
            for entry, facts in reached:
                runs = self._runs_on(entry, runs=others)
                busy = self._busy(entry, facts, spec, runs=runs)
                if busy is not None:
                    if entry is first:
                        raise CapacityError(f"{entry.label} is {busy}")
                    skipped.append(f"{entry.label}: {busy}")
                    continue
                free = self._free_gpu_indices(entry, facts, runs=runs)
                gpus = pick_gpus(facts.resources.gpus, spec.gpu, "split", free)
                claims.append(
                    HostClaim(label=entry.label, address=entry.host, port=entry.port, gpus=gpus)
                )
            found[0] = len(claims)
            return claims if len(claims) == count else []  # all of them, or none held

        claims = choose([]) if self.registry is None else self.registry.claim_hosts(run.id, choose)
        if len(claims) < count:
            why = f" ({'; '.join(skipped)})" if skipped else ""
            raise CapacityError(
                f"nodes: {count} needs {count} free ssh hosts that meet the resources; "
                f"{found[0]} found{why}"
            )
        facts_of = {entry.label: facts for entry, facts in reached}
        return [
            self._host(run, self._hosts[c.label], facts_of[c.label], c.gpus, rank, progress)
            for rank, c in enumerate(claims)
        ]

    def _provision_entry(
        self, run: RunRecord, entry: SSHHostSettings, progress: ProgressCallback
    ) -> Host:
        facts = self._reach(run, entry, progress, master=True)
        spec = run.spec.requirements.resources
        busy = self._busy(entry, facts, spec, exclude=run.id)
        if busy is not None:
            raise CapacityError(f"{entry.label} is {busy}")
        free = self._free_gpu_indices(entry, facts, run.id)
        gpus = pick_gpus(facts.resources.gpus, spec.gpu, "split", free)
        return self._host(run, entry, facts, gpus, 0, progress)

    def _reach(
        self, run: RunRecord, entry: SSHHostSettings, progress: ProgressCallback, *, master: bool
    ) -> HostFacts:
        """Connect to `entry` and check it has what the run needs (the offer's host was matched
        to the resources when offered; another node's is matched here)."""
        progress(f"connecting to {entry.label} ({entry.host}:{entry.port})")
        try:
            facts = _run_sync(self._facts(entry, self.connect_seconds))
        except HostUnreachableError as exc:
            # like a cloud without capacity: the run may go to its next offer
            raise CapacityError(f"{entry.label} cannot be reached now ({exc})") from exc
        if not facts.python3:
            raise BackendError(
                f"{entry.label} has no python3 on its PATH; the iacrun runner needs Python 3.8+"
            )
        if run.spec.needs_container_engine and not facts.container_engine:
            raise BackendError(
                f"{entry.label} has no running container engine (docker or podman), which "
                "'image:' and 'docker: true' need; install one there, or use 'python:'"
            )
        if run.spec.nvcc and not facts.nvcc:
            raise BackendError(
                f"nvcc: true needs the CUDA compiler, and {entry.label} has no nvcc on PATH or "
                "in /usr/local/cuda/bin; install the CUDA toolkit there, or remove nvcc"
            )
        spec = run.spec.requirements.resources
        if not master and (unmet := unmet_requirement(spec, facts.resources, own_host=True)):
            raise CapacityError(f"{entry.label} lacks {unmet}")
        return facts

    def _host(
        self,
        run: RunRecord,
        entry: SSHHostSettings,
        facts: HostFacts,
        gpus: str | None,
        rank: int,
        progress: ProgressCallback,
    ) -> Host:
        """Rank `rank`'s Host on `entry`, its folder's old neighbours cleaned up."""
        runs_root = posixpath.join(facts.home, ".iacrun", "runs")
        # the home's tag too: another home's run of this name and id (a laptop's and a team
        # server's first `train`) must not ship into this one's folder or read its log
        folder = f"{run.name}-{run.id}-{home_tag(self.home)}"
        run_dir = node_run_dir(posixpath.join(runs_root, folder), rank)
        self._remove_old_run_dirs(entry, facts, runs_root, keep=run_dir, progress=progress)
        host = host_for(entry, run_dir=run_dir).model_copy(
            update={
                "gpus": gpus,
                "container_engine": facts.container_engine,
                "unreachable_after": float(self.settings.unreachable_after),
                "internal_ip": entry.internal_ip or entry.host,
            }
        )
        if rank == 0:
            self.ssh_config.add(run.name, host)
        shown = f"{entry.label}: {facts.resources.render()}" + (f", GPUs {gpus}" if gpus else "")
        progress(shown if run.spec.nodes == 1 else f"node {rank} on {shown}")
        return host

    def _remove_old_run_dirs(
        self,
        entry: SSHHostSettings,
        facts: HostFacts,
        runs_root: str,
        *,
        keep: str,
        progress: ProgressCallback,
    ) -> None:
        """Remove the folders of runs that ended more than `keep_run_dirs` ago; say which.

        Only direct subfolders of iacrun's runs root, never through a link, and only those
        whose runner state is final and was last written before the keep time: a running
        job's folder is never touched. A failure here is reported, and the run goes on."""
        seconds = self.settings.keep_for(entry)
        python = facts.python3 or "python3"
        argv = [python, "-c", _CLEAN_RUNS, runs_root, str(seconds), posixpath.basename(keep)]
        try:
            code, out, err = _run_sync(self._run_on(entry, argv))
        except BackendError as exc:
            progress(f"{entry.label}: could not look for old run folders ({_short(exc)})")
            return
        if code != 0:
            why = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {code}"]
            progress(f"{entry.label}: could not look for old run folders ({why[0]})")
            return
        removed = out.decode(errors="replace").split()
        if removed:
            progress(
                f"{entry.label}: removed the folders of {len(removed)} "
                f"run{'s' if len(removed) > 1 else ''} that ended more than "
                f"{format_duration(seconds)} ago: {', '.join(removed)}"
            )

    async def _run_on(self, entry: SSHHostSettings, argv: list[str]) -> tuple[int, bytes, bytes]:
        from iacrun.orchestrator.host.connect import connect

        deadline = time.monotonic() + self.connect_seconds
        transport = await connect(host_for(entry, run_dir=""), deadline=deadline)
        try:
            return await transport.run(argv)
        finally:
            await transport.close()

    def terminate(self, run: RunRecord) -> None:
        """Remove the run's `ssh RUN-NAME` entry, and its folder on each host where its job never
        started (the code was being shipped when the run ended, a supervisor killed midway, say):
        nothing in it is worth keeping, and the clean-up of ended runs' folders goes only by the
        runner's state. The host itself is yours: nothing else is done there. A host out of reach
        keeps such a folder until a later run's clean-up there (after `keep_run_dirs`)."""
        if run.started_at is None:  # a job that started has its state there: its folder stays
            hosts = [n.host for n in read_nodes(run.local_dir)]
            hosts = hosts or ([run.host] if run.host is not None else [])
            for host in hosts:
                if host.kind == "ssh" and host.run_dir:
                    with suppress(IacrunError):
                        _run_sync(self._remove_unstarted(host))
        self.ssh_config.remove(run.name)

    async def _remove_unstarted(self, host: Host) -> None:
        from iacrun.orchestrator.host.connect import connect

        deadline = time.monotonic() + self.connect_seconds
        transport = await connect(host, deadline=deadline)
        try:
            await transport.run(["sh", "-c", _REMOVE_UNSTARTED, "sh", host.run_dir])
        finally:
            await transport.close()


# ----------------------------------------------------------------------------- helpers

#: run on the host with sh: RUN_DIR; removes that folder unless its job was started (the runner's
#: pid or state, or the go-ahead a VM's runner waits for, is in it); never through a link
_REMOVE_UNSTARTED = (
    'd="$1"; [ -d "$d" ] && [ ! -L "$d" ] || exit 0; '
    'for f in pid state.json code.ready; do [ -e "$d/$f" ] && exit 0; done; rm -rf -- "$d"'
)

#: run on the host with python3 (any 3.x): ROOT KEEP_SECONDS SKIP; prints the names removed
_CLEAN_RUNS = """
import json, os, shutil, sys, time
root, keep, skip = sys.argv[1], float(sys.argv[2]), sys.argv[3]
try:
    names = sorted(os.listdir(root))
except OSError:
    names = []
for name in names:
    path = os.path.join(root, name)
    if name == skip or os.path.islink(path) or not os.path.isdir(path):
        continue
    state = os.path.join(path, "state.json")
    if not any(os.path.lexists(os.path.join(path, f)) for f in ("state.json", "pid", "code.ready")):
        # a job that never started (its code was being shipped when its run ended): gone once
        # the folder was last changed before the keep time
        if time.time() - os.lstat(path).st_mtime > keep:
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.lexists(path):
                print(name)
        continue
    try:
        with open(state) as f:
            status = json.load(f).get("status")
        age = time.time() - os.stat(state).st_mtime
    except (OSError, ValueError, AttributeError):
        continue
    if status in ("done", "failed", "terminated") and age > keep:
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            print(name)
"""


def host_for(entry: SSHHostSettings, *, run_dir: str) -> Host:
    """The Host of a configured entry; without a pinned key, known_hosts decides."""
    identity = os.path.expanduser(entry.identity_file) if entry.identity_file else None
    known_hosts = None
    if not entry.host_key:
        known_hosts = os.path.expanduser(entry.known_hosts or "~/.ssh/known_hosts")
    return Host(
        kind="ssh",
        run_dir=run_dir,
        address=entry.host,
        port=entry.port,
        user=entry.user or getpass.getuser(),
        identity_file=identity,
        host_key=entry.host_key,
        known_hosts=known_hosts,
        proxy_jump=entry.proxy_jump,
        connect_timeout=PROVISION_CONNECT_SECONDS,
    )


def _enough_for(offers: list[Offer], nodes: int) -> list[Offer]:
    """The offers as they are when `nodes` of them can be had at once; otherwise each free
    one is shown unavailable, with how many hosts the run needs."""
    free = [o for o in offers if o.available]
    if nodes <= 1 or len(free) >= nodes:
        return offers
    note = f"nodes: {nodes} needs {nodes} free hosts that fit; {len(free)} found"
    return [
        o.model_copy(update={"available": False, "note": note}) if o.available else o
        for o in offers
    ]


def _same(entry: SSHHostSettings, address: str | None, port: int | None) -> bool:
    return (address, port) == (entry.host, entry.port)


def _gpus_held(run: RunRecord, entry: SSHHostSettings) -> str | None:
    """The GPUs `run` holds on `entry` (None: the whole host): as one of its claimed nodes, as a
    recorded node, or as its one machine."""
    for claim in run.node_hosts or []:
        if _same(entry, claim.address, claim.port):
            return claim.gpus
    for node in read_nodes(run.local_dir)[1:]:
        if _same(entry, node.host.address, node.host.port):
            return node.host.gpus
    return run.host.gpus if run.host is not None else None


def _holds_as_node(run: RunRecord, entry: SSHHostSettings) -> bool:
    """Whether a multi-node run holds `entry` as one of its nodes: claimed (from before any
    node is used) or recorded in its nodes.json."""
    return any(_same(entry, c.address, c.port) for c in run.node_hosts or []) or any(
        _same(entry, n.host.address, n.host.port) for n in read_nodes(run.local_dir)[1:]
    )


def _with_gpus(resources: InstanceResources, indices: list[int]) -> InstanceResources:
    return resources.model_copy(update={"gpus": tuple(resources.gpus[i] for i in indices)})


def host_key(entry: SSHHostSettings) -> str:
    """The cache key of a host."""
    return f"{entry.user or getpass.getuser()}@{entry.host}:{entry.port}"


def _short(exc: BaseException) -> str:
    """A reason short enough for the offers table's note."""
    text = str(exc)
    if isinstance(exc, HostUnreachableError) and ": " in text:
        return "unreachable: " + text.split("): ", 1)[-1]
    return text.split(";", 1)[0]


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from sync code, also when called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
