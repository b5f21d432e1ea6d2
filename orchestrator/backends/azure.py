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
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from iacrun.orchestrator.backends.pulumi_cloud import PulumiCloudBackend
from iacrun.orchestrator.errors import CredentialsError
from iacrun.orchestrator.models.settings import AzureSettings
from iacrun.stacks.keys import KeyPair, generate_rsa
from iacrun.stacks.spec import StackSpec

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
        **kwargs: Any,
    ) -> None:
        self.settings = settings or AzureSettings()
        self.which = which
        self.self_delete = self_delete
        super().__init__(ssh_cidrs=self.settings.ssh_cidrs, regions=self.settings.regions, **kwargs)

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
        subscription = (
            self.settings.subscription_id
            or self.environ.get("ARM_SUBSCRIPTION_ID")
            or self.environ.get("AZURE_SUBSCRIPTION_ID")
        )
        return {"azure_subscription_id": subscription, "azure_self_delete": self.self_delete}

    def plan_notes(self, spec: StackSpec, stack_label: str) -> list[str]:
        from iacrun.stacks.azure import image_reference

        ref = image_reference(spec)
        image = ":".join(str(ref.get(k)) for k in ("publisher", "offer", "sku", "version"))
        notes = [f"resource group iacrun-{stack_label}; image {image} ({spec.vm_image.label})"]
        if spec.vm_image.driver_extension and not spec.machine_image:
            notes.append(
                "GPU driver: NVIDIA GRID, installed at first boot by Azure's NVIDIA GPU Driver "
                "Extension (the A10 sizes cannot run the datacenter driver)"
            )
        if spec.azure_self_delete:
            notes.append(
                "self-destruct: the VM's identity may only delete this VM (a custom role on the "
                "resource group; needs Owner or User Access Administrator to create)"
            )
        else:
            notes.append(
                "self-destruct: powers the VM off only, which Azure still bills until iacrun "
                "deletes the stack"
            )
        return notes
