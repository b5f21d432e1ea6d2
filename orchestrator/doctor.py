"""`iacrun doctor`: can every configured backend run? One check a line, each with what to do.

Checks, in order: the config file; the `pulumi` CLI (when a cloud is configured); per cloud: its
provider plugin at the pinned version, its credentials, the caller's address for port 22, and
(once those pass) a read-only probe through the same provider — the account the credentials
resolve to and the vCPU quotas of the GPU families in the configured regions; the state backend
and the stacks it holds; per SSH host, whether it answers; this machine. `fix=True` installs
what can be installed (the CLI, plugins). The quotas a probe read are cached in
``<home>/quotas.json`` so that `offers` can mark families below one instance as unavailable.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from iacrun.orchestrator.errors import IacrunError
from iacrun.orchestrator.paths import config_file

if TYPE_CHECKING:
    from iacrun.orchestrator.api import Orchestrator
    from iacrun.orchestrator.backends.base import Backend
    from iacrun.orchestrator.backends.pulumi_cloud import PulumiCloudBackend

#: a probe's stack: created empty, read, removed
PROBE_PREFIX = "iacrun-doctor-"

Probe = Callable[["PulumiCloudBackend", list[str]], dict[str, Any]]
Note = Callable[[str], None]


@dataclass(frozen=True)
class Check:
    """One line of `iacrun doctor`: `ok` None means not applicable here."""

    name: str
    ok: bool | None
    detail: str
    fix: str | None = None


def _default_probe(backend: PulumiCloudBackend, regions: list[str]) -> dict[str, Any]:
    """Run the cloud's read-only probe program in a throwaway stack, then remove it."""
    from iacrun.stacks import probe

    if backend.cloud == "aws":
        program = probe.aws_program(regions)
        config = {"aws:region": regions[0]}
    else:
        program = probe.azure_program(regions)
        config = {}
    engine = backend.engine()
    name = PROBE_PREFIX + secrets.token_hex(4)
    try:
        return engine.up(name, program, config, timeout=300)
    finally:
        engine.destroy(name, timeout=300)


class Doctor:
    """Runs the checks for one Orchestrator; the cloud probe is injected in tests."""

    def __init__(
        self,
        orch: Orchestrator,
        *,
        probe: Probe | None = None,
        backends: list[Backend] | None = None,
    ) -> None:
        self.orch = orch
        self.probe = probe or _default_probe
        self._backends = backends

    def run(self, *, fix: bool = False, on_progress: Note | None = None) -> list[Check]:
        from iacrun.orchestrator.backends.pulumi_cloud import PulumiCloudBackend

        checks = [self._config()]
        backends = self._backends if self._backends is not None else self.orch.backends()
        clouds = [b for b in backends if isinstance(b, PulumiCloudBackend)]
        cli = self._pulumi_cli(needed=bool(clouds), fix=fix)
        checks.append(cli)
        for cloud in clouds:
            checks += self._cloud(cloud, cli_ok=cli.ok is True, fix=fix, note=on_progress)
        if clouds and cli.ok:
            checks.append(self._state_backend())
        for backend in backends:
            if backend.name in ("local", "ssh"):
                checks += self._own_machines(backend)
        return checks

    # ------------------------------------------------------------------ checks

    def _config(self) -> Check:
        path = config_file(self.orch.home)
        if not path.exists():
            return Check("config", True, f"{path} does not exist: the local backend only")
        try:
            self.orch.settings  # noqa: B018 - loading is the check
        except IacrunError as exc:
            return Check("config", False, str(exc), f"fix {path}")
        return Check("config", True, str(path))

    def _pulumi_cli(self, *, needed: bool, fix: bool) -> Check:
        from iacrun.stacks.engine import install_cli
        from iacrun.stacks.toolchain import find_pulumi, missing_cli_hint, sdk_version

        found = find_pulumi(self.orch.home)
        if found is None and fix and needed:
            try:
                found = install_cli(self.orch.home)
            except IacrunError as exc:
                return Check("pulumi CLI", False, str(exc), "install it by hand")
        if found is None:
            if not needed:
                return Check("pulumi CLI", None, "not installed; needed only for aws and azure")
            return Check("pulumi CLI", False, "not found", missing_cli_hint(self.orch.home))
        try:
            version = subprocess.run(
                [found, "version"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            return Check("pulumi CLI", False, f"{found} does not run ({exc})", "reinstall it")
        return Check("pulumi CLI", True, f"{version} at {found} (SDK {sdk_version()})")

    def _cloud(
        self, backend: PulumiCloudBackend, *, cli_ok: bool, fix: bool, note: Note | None
    ) -> list[Check]:
        name = backend.name
        checks: list[Check] = []
        plugin = backend.provider_plugin()
        plugin_ok = plugin is None
        if plugin is not None and cli_ok:
            try:
                if fix:
                    backend.ensure_plugin(note)
                installed = plugin in backend.engine().plugins()
            except IacrunError as exc:
                checks.append(Check(f"{name} plugin", False, str(exc), "iacrun doctor --fix"))
            else:
                plugin_ok = installed
                checks.append(
                    Check(f"{name} plugin", True, f"pulumi {plugin} installed")
                    if installed
                    else Check(
                        f"{name} plugin",
                        False,
                        f"pulumi {plugin} is not installed",
                        "iacrun doctor --fix (or the first `iacrun up` installs it)",
                    )
                )
        elif plugin is not None:
            checks.append(Check(f"{name} plugin", None, f"pulumi {plugin}: needs the CLI first"))
        try:
            source = backend.check_credentials()
        except IacrunError as exc:
            checks.append(Check(f"{name} credentials", False, str(exc)))
            credentials_ok = False
        else:
            checks.append(Check(f"{name} credentials", True, f"from {source}"))
            credentials_ok = True
        checks.append(self._caller(backend))
        decide = getattr(backend, "self_delete_decision", None)
        if decide is not None and credentials_ok:
            try:
                allowed, why = decide()
            except IacrunError as exc:
                checks.append(Check(f"{name} role rights", False, str(exc)))
            else:
                detail = "may give the VM its self-delete role" if allowed else str(why)
                checks.append(Check(f"{name} role rights", True, detail))
        if not (cli_ok and plugin_ok and credentials_ok):
            checks.append(
                Check(f"{name} account", None, "not probed: needs the CLI, plugin and credentials")
            )
            return checks
        return checks + self._probe(backend)

    def _caller(self, backend: PulumiCloudBackend) -> Check:
        name = f"{backend.name} ssh access"
        if backend.ssh_cidrs:
            return Check(name, True, f"port 22 open to {', '.join(backend.ssh_cidrs)} (ssh_cidrs)")
        try:
            cidrs = backend.caller_cidrs()
        except IacrunError as exc:
            return Check(name, False, str(exc))
        return Check(name, True, f"port 22 open to this machine's address {', '.join(cidrs)}")

    def _probe(self, backend: PulumiCloudBackend) -> list[Check]:
        from iacrun.orchestrator.models.requirements import Requirements
        from iacrun.orchestrator.models.resources import ResourcesSpec
        from iacrun.orchestrator.offers.quotas import low_quotas, quota_needs, save_quota_cache

        name = backend.name
        any_gpu = Requirements(resources=ResourcesSpec.model_validate({"gpu": "1.."}))
        offered = backend.catalog().offers(any_gpu)
        regions = list(backend.regions or sorted({o.region for o in offered}))
        try:
            outputs = self.probe(backend, regions)
        except IacrunError as exc:
            return [Check(f"{name} account", False, str(exc))]
        save_quota_cache(self.orch.home, backend.cloud, outputs)
        account = f"{outputs.get('account')} as {outputs.get('identity')}"
        checks = [Check(f"{name} account", True, account)]
        needs = quota_needs(offered, backend.cloud, outputs.get("sizes") or {})
        low = low_quotas(outputs.get("quotas") or {}, needs)
        if low:
            checks.append(
                Check(
                    f"{name} quotas",
                    False,
                    "; ".join(low),
                    "request more vCPUs in the provider's quota console (see docs/clouds.md)",
                )
            )
        else:
            checks.append(
                Check(f"{name} quotas", True, "every offered GPU family fits one machine")
            )
        return checks

    def _state_backend(self) -> Check:
        try:
            engine = self.orch.stack_engine()
            names = engine.stack_names()
        except IacrunError as exc:
            return Check("state backend", False, str(exc), "check state.backend_url in config.yml")
        from collections import Counter

        from iacrun.orchestrator.backends.stack_inventory import ownership, recorded_stack_names

        tag = self.orch.home_tag()
        recorded = recorded_stack_names(self.orch.runs(all_runs=True))
        kinds = Counter(ownership(n, None, tag, recorded).kind for n in names)
        return Check(
            "state backend",
            True,
            f"{engine.backend_url}: {len(names)} stacks, {kinds['me']} of this home "
            f"(home {tag}), {kinds['other']} of other homes, {kinds['unknown']} of no known "
            "owner",
        )

    def _own_machines(self, backend: Any) -> list[Check]:
        from iacrun.orchestrator.models.requirements import Requirements

        try:
            offers = backend.offers(Requirements())
        except IacrunError as exc:
            return [Check(backend.name, False, str(exc))]
        checks = []
        for offer in offers:
            label = f"{backend.name} {offer.instance_type}" if backend.name == "ssh" else "local"
            if offer.available:
                checks.append(Check(label, True, offer.resources.render()))
            else:
                checks.append(Check(label, False, offer.note or "unavailable"))
        return checks
