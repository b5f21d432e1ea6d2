"""The `azure` backend: one VM per run in its own resource group, in an ephemeral Pulumi stack.

::

    backends:
      azure:
        regions: [eastus, westeurope]
        subscription_id: 00000000-0000-0000-0000-000000000000   # optional: else the CLI default
        ssh_cidrs: [203.0.113.0/24]   # optional: who may reach port 22; else this machine's address

Credentials come from where the Azure provider looks: a service principal in the environment
(ARM_CLIENT_ID with ARM_CLIENT_SECRET, a certificate or OIDC, plus ARM_TENANT_ID; the AZURE_*
names work too), a managed identity (ARM_USE_MSI=true), or `az login` (the `az` CLI must then be
on PATH). What the stack creates: see `stacks/azure.py`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iacrun.orchestrator.backends.base import ProgressCallback
from iacrun.orchestrator.backends.pulumi_cloud import PulumiCloudBackend
from iacrun.orchestrator.errors import CredentialsError
from iacrun.orchestrator.models.settings import AzureSettings
from iacrun.stacks.keys import KeyPair, generate_rsa
from iacrun.stacks.spec import StackSpec

if TYPE_CHECKING:
    from iacrun.orchestrator.host.transport import Host
    from iacrun.orchestrator.offers.model import Offer
    from iacrun.orchestrator.registry import RunRecord

NO_CREDENTIALS = (
    "no Azure credentials found: run `az login`, or set ARM_CLIENT_ID, ARM_CLIENT_SECRET, "
    "ARM_TENANT_ID and ARM_SUBSCRIPTION_ID for a service principal"
)


def _env(environ: Mapping[str, str], name: str) -> str | None:
    return environ.get(f"ARM_{name}") or environ.get(f"AZURE_{name}")


def azure_credentials_source(
    environ: Mapping[str, str],
    home: Path,
    which: Callable[[str], str | None] = shutil.which,
) -> str | None:
    """Where the Azure provider would find credentials, in words; None when nowhere.

    Raises CredentialsError for a half-configured service principal or `az` missing."""
    if _env(environ, "CLIENT_ID"):
        secret = _env(environ, "CLIENT_SECRET") or _env(environ, "CLIENT_CERTIFICATE_PATH")
        oidc = (
            environ.get("ARM_USE_OIDC") == "true"
            or environ.get("ARM_OIDC_TOKEN")
            or environ.get("ARM_OIDC_TOKEN_FILE_PATH")
            or environ.get("AZURE_FEDERATED_TOKEN_FILE")
        )
        if secret or oidc:
            if not _env(environ, "TENANT_ID"):
                raise CredentialsError(
                    "a service principal is set (ARM_CLIENT_ID) without its tenant: "
                    "set ARM_TENANT_ID"
                )
            return "service principal (ARM_CLIENT_ID)"
    if environ.get("ARM_USE_MSI") == "true":
        return "managed identity (ARM_USE_MSI)"
    config = Path(environ.get("AZURE_CONFIG_DIR") or home / ".azure")
    try:
        profile = json.loads((config / "azureProfile.json").read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    if not profile.get("subscriptions"):
        return None
    if which("az") is None:
        raise CredentialsError(
            f"found an Azure CLI login in {config} but no `az` on PATH, which Pulumi needs to "
            "use it; install the Azure CLI or set ARM_CLIENT_ID/ARM_CLIENT_SECRET/ARM_TENANT_ID"
        )
    return f"Azure CLI login ({config})"


# ---------------------------------------------------------------------------- role rights

#: what giving the VM's identity a role on its resource group needs
ASSIGN_ROLES = "Microsoft.Authorization/roleAssignments/write"
ARM_URL = "https://management.azure.com"
LOGIN_URL = "https://login.microsoftonline.com"
PERMISSIONS_API = "2022-04-01"
#: the caller's permissions at a scope: Resource Manager's `permissions` list, or None: unknown
RoleRights = Callable[[str | None], list[dict[str, Any]] | None]


def _action_re(pattern: str) -> re.Pattern[str]:
    return re.compile(
        "^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$", re.IGNORECASE
    )


def permits(permissions: list[dict[str, Any]], action: str) -> bool:
    """Whether Resource Manager's permission entries allow `action`: an entry whose `actions`
    match it (with `*` wildcards, case-insensitive) and whose `notActions` do not."""
    for entry in permissions:
        allowed = any(_action_re(a).match(action) for a in entry.get("actions") or [])
        denied = any(_action_re(n).match(action) for n in entry.get("notActions") or [])
        if allowed and not denied:
            return True
    return False


def decide_self_delete(
    wanted: bool, permissions: list[dict[str, Any]] | None, why_unknown: str = ""
) -> tuple[bool, str | None]:
    """(whether the VM gets its self-delete role, the one line that says why not, or None)."""
    if not wanted:
        return False, None
    after = (
        "the VM's own timer will only power it off, which Azure bills until iacrun deletes the "
        "stack (iacrun still tears it down at the end of the run and at max_duration)"
    )
    if permissions is None:
        return False, (
            f"azure: could not check whether you may assign roles{why_unknown}; {after}. "
            "Set self_delete: false under backends.azure to silence this"
        )
    if permits(permissions, ASSIGN_ROLES):
        return True, None
    return False, (
        f"azure: your identity may not assign roles ({ASSIGN_ROLES}: Owner, User Access "
        f"Administrator or Role Based Access Control Administrator), so {after}"
    )


def caller_permissions(
    environ: Mapping[str, str],
    subscription: str | None,
    *,
    which: Callable[[str], str | None] = shutil.which,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
    login_url: str = LOGIN_URL,
    arm_url: str = ARM_URL,
) -> list[dict[str, Any]] | None:
    """The caller's permissions on `subscription`, as Pulumi will act: a service principal with
    a secret in the environment, else the `az login` account; None when they cannot be read."""
    try:
        if _env(environ, "CLIENT_ID"):
            if not (_env(environ, "CLIENT_SECRET") and _env(environ, "TENANT_ID") and subscription):
                return None
            form = urllib.parse.urlencode(
                {
                    "grant_type": "client_credentials",
                    "client_id": _env(environ, "CLIENT_ID"),
                    "client_secret": _env(environ, "CLIENT_SECRET"),
                    "scope": f"{ARM_URL}/.default",
                }
            ).encode()
            tenant = _env(environ, "TENANT_ID")
            with urllib.request.urlopen(
                f"{login_url}/{tenant}/oauth2/v2.0/token", data=form, timeout=20
            ) as resp:
                token = json.loads(resp.read())["access_token"]
            request = urllib.request.Request(
                _permissions_url(arm_url, subscription),
                headers={"Authorization": f"Bearer {token}"},
            )
            with urllib.request.urlopen(request, timeout=20) as resp:
                listed: list[dict[str, Any]] = json.loads(resp.read())["value"]
            return listed
        az = which("az")
        if az is None:
            return None
        if subscription is None:
            shown = run(
                [az, "account", "show", "--query", "id", "-o", "tsv"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            subscription = shown.stdout.strip() if shown.returncode == 0 else None
            if not subscription:
                return None
        done = run(
            [az, "rest", "--method", "get", "--url", _permissions_url(arm_url, subscription)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            return None
        value: list[dict[str, Any]] = json.loads(done.stdout)["value"]
        return value
    except (OSError, ValueError, KeyError, subprocess.SubprocessError):
        return None


def _permissions_url(arm_url: str, subscription: str) -> str:
    return (
        f"{arm_url}/subscriptions/{subscription}/providers/Microsoft.Authorization/permissions"
        f"?api-version={PERMISSIONS_API}"
    )


class AzureBackend(PulumiCloudBackend):
    """Azure VMs through Pulumi. See the module docstring for the configuration."""

    name = "azure"
    cloud = "azure"
    key_file = "id_rsa"

    def __init__(
        self,
        settings: AzureSettings | None = None,
        *,
        which: Callable[[str], str | None] = shutil.which,
        self_delete: bool = True,
        rights: RoleRights | None = None,
        **kwargs: Any,
    ) -> None:
        self.settings = settings or AzureSettings()
        self.which = which
        self.self_delete = self_delete
        super().__init__(ssh_cidrs=self.settings.ssh_cidrs, regions=self.settings.regions, **kwargs)
        self.unreachable_after = float(self.settings.unreachable_after)
        self.rights: RoleRights = rights or (
            lambda sub: caller_permissions(self.environ, sub, which=self.which)
        )
        self._self_delete: tuple[bool, str | None] | None = None
        self._noted = False

    def subscription(self) -> str | None:
        return (
            self.settings.subscription_id
            or self.environ.get("ARM_SUBSCRIPTION_ID")
            or self.environ.get("AZURE_SUBSCRIPTION_ID")
        )

    def self_delete_decision(self) -> tuple[bool, str | None]:
        """Whether the VM gets its self-delete role, and why not; checked once per backend."""
        if self._self_delete is None:
            permissions = self.rights(self.subscription()) if self.self_delete else None
            self._self_delete = decide_self_delete(self.self_delete, permissions)
        return self._self_delete

    def preflight(self, on_progress: Callable[[str], None] | None = None) -> None:
        """Credentials, `pulumi` and the plugin, then whether this identity may assign roles
        (cached)."""
        super().preflight(on_progress)
        self.self_delete_decision()

    def provision(self, run: RunRecord, offer: Offer, progress: ProgressCallback) -> Host:
        _, note = self.self_delete_decision()
        if note and not self._noted:
            progress(note)  # once per run's backend: every offer of the run is the same case
            self._noted = True
        return super().provision(run, offer, progress)

    def check_credentials(self) -> str:
        source = azure_credentials_source(self.environ, self.user_home, self.which)
        if source is None:
            raise CredentialsError(NO_CREDENTIALS)
        return source

    def program(self, spec: StackSpec) -> Callable[[], None]:
        from iacrun.stacks import azure

        return azure.program(spec)

    def make_client_key(self, comment: str) -> KeyPair:
        # RSA: every Azure image and API version takes it for the VM's SSH settings
        return generate_rsa(3072, comment)

    def spec_options(self) -> dict[str, Any]:
        enabled, _ = self.self_delete_decision()
        return {"azure_subscription_id": self.subscription(), "azure_self_delete": enabled}

    def plan_notes(self, spec: StackSpec, stack_label: str) -> list[str]:
        from iacrun.stacks.azure import accelerated_networking, image_reference

        ref = image_reference(spec)
        image = ":".join(str(ref.get(k)) for k in ("publisher", "offer", "sku", "version"))
        notes = [f"resource group iacrun-{stack_label}; image {image} ({spec.vm_image.label})"]
        if spec.cluster:
            accelerated = "with" if accelerated_networking(spec.instance_type) else "without"
            own = "; each VM's own timer deletes that VM only" if spec.azure_self_delete else ""
            notes.append(
                f"cluster: {spec.nodes} VMs in one proximity placement group and subnet, "
                f"{accelerated} accelerated networking; all traffic allowed within the subnet, "
                f"nothing more from outside{own}"
            )
            notes.append(
                "InfiniBand: the VMs share one availability set, hence one InfiniBand fabric"
                if spec.cluster_network == "infiniband"
                else f"no InfiniBand on {spec.instance_type}: TCP over the virtual network"
            )
        if spec.vm_image.driver_extension and not spec.machine_image:
            notes.append(
                "GPU driver: NVIDIA GRID, installed at first boot by Azure's NVIDIA GPU Driver "
                "Extension (the A10 sizes cannot run the datacenter driver)"
            )
        if spec.azure_self_delete:
            notes.append(
                "self-destruct: the VM's identity gets the built-in Contributor role on this "
                "resource group only, and deletes the whole group at its deadline"
            )
        else:
            _, why = self.self_delete_decision()
            notes.append(
                why
                or "self-destruct: powers the VM off only, which Azure still bills until iacrun "
                "deletes the stack"
            )
        return notes
