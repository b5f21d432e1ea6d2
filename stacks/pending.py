"""Pending creates of an interrupted update: found, destroyed, or named; never forgotten.

When `pulumi` dies while a resource is being created, the state keeps the resource only as a
pending operation, without an id: the cloud may hold it (a VM that bills) while nothing else in the
state says so. Before a stack is destroyed, `settle` turns each pending create (and pending import)
into one of three outcomes, on the exported deployment (plain data, no cloud reached here):

* **adopted**: its id is known, so it is put into the state's resources (outputs = its inputs) and
  the destroy that follows deletes it like any other resource. A Python dynamic resource (the
  stand-in VM) is adopted as it is: its provider deletes by its inputs and tolerates a resource
  that was never finished. An Azure resource group or VM is adopted by its deterministic id when
  the subscription is known. Any type may be given a `Lookup` (inputs -> id, or None when the
  cloud says it does not exist; LookupError when it cannot tell).
* **dropped**: a lookup said the cloud does not hold it.
* **leak**: it cannot be looked up: it is named with its type, name, the cloud's console link and
  the exact command that deletes it (`Leak`), and recorded in the stack's workspace folder
  (`unresolved.json`: `pulumi stack import` drops pending operations, so the state cannot keep
  it). The stack is kept: `iacrun stacks` shows it, and the next destroy (`iacrun down`) tries
  again from the record.

Pending updates and deletes name resources the state still holds: they are dropped (the destroy
deletes those resources).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from iacrun.stacks.progress import urn_name

#: inputs of a pending create -> the cloud's id of it; None: it does not exist; LookupError: unknown
Lookup = Callable[[Mapping[str, Any]], str | None]

DYNAMIC = "pulumi-python:dynamic:Resource"
AZURE_GROUP = "azure-native:resources:ResourceGroup"
AZURE_VM = "azure-native:compute:VirtualMachine"
LEDGER = "unresolved.json"  # in the stack's workspace folder, read by `list_stacks`


@dataclass(frozen=True)
class Leak:
    """A resource an interrupted update may have made that iacrun could not find: what to do."""

    type: str
    name: str
    urn: str
    console: str
    command: str
    #: what a later lookup needs: the pending resource (type, urn, inputs) and its provider's
    #: region and subscription (the provider itself is gone once the stack was destroyed)
    resource: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    provider: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def line(self, stack: str) -> str:
        return (
            f"{self.type} {self.name} of stack {stack} may exist (its create was interrupted): "
            f"check {self.console} and delete it with `{self.command}`, then run "
            f"`iacrun down {stack}`"
        )


@dataclass
class Settlement:
    deployment: dict[str, Any]
    changed: bool = False
    adopted: list[str] = field(default_factory=list)  # urns put into the state, to destroy
    dropped: list[dict[str, Any]] = field(default_factory=list)  # looked up: not in the cloud
    leaks: list[Leak] = field(default_factory=list)


def settle(
    deployment: Mapping[str, Any],
    stack: str,
    lookups: Mapping[str, Lookup] | None = None,
    recorded: list[Leak] | None = None,
) -> Settlement:
    """The deployment with every pending operation, and every leak `recorded` by an earlier
    destroy, settled (see the module docstring)."""
    data: dict[str, Any] = json.loads(json.dumps(deployment))  # a deep copy
    body = data.setdefault("deployment", {})
    pending = body.get("pending_operations") or []
    settlement = Settlement(deployment=data)
    if not pending and not recorded:
        return settlement
    settlement.changed = bool(pending)
    resources = body.setdefault("resources", [])
    providers = {
        f"{r.get('urn')}::{r.get('id')}": _provider_facts(r.get("inputs") or {}) for r in resources
    }
    creates: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
        (dict(op.get("resource") or {}), None)
        for op in pending
        # an update or delete names a resource the state holds: the destroy deletes it
        if op.get("type") in ("creating", "importing")
    ]
    seen = {str(r.get("urn")) for r, _ in creates}
    creates += [
        (dict(leak.resource), leak.provider) for leak in recorded or [] if leak.urn not in seen
    ]
    for resource, known in creates:
        provider = known if known is not None else providers.get(str(resource.get("provider")), {})
        try:
            found = _find(resource, provider, lookups or {})
        except LookupError:
            settlement.leaks.append(name_leak(resource, provider, stack))
            continue
        if found is None:
            settlement.dropped.append(resource)
            continue
        resource["id"] = found
        resource["outputs"] = {**(resource.get("inputs") or {}), **(resource.get("outputs") or {})}
        resources.append(resource)
        settlement.changed = True
        settlement.adopted.append(str(resource.get("urn", "")))
    body["pending_operations"] = []
    return settlement


def _provider_facts(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What naming or finding a resource needs of its provider: never its credentials."""
    return {k: inputs[k] for k in ("region", "subscriptionId") if isinstance(inputs.get(k), str)}


def _find(
    resource: Mapping[str, Any], provider: Mapping[str, Any], lookups: Mapping[str, Lookup]
) -> str | None:
    kind = str(resource.get("type", ""))
    inputs: Mapping[str, Any] = resource.get("inputs") or {}
    if kind in lookups:
        return lookups[kind](inputs)
    if kind == DYNAMIC:
        return f"adopted-{urn_name(str(resource.get('urn', '')))}"
    subscription = provider.get("subscriptionId")
    group = inputs.get("resourceGroupName")
    if subscription and group and kind == AZURE_GROUP:
        return f"/subscriptions/{subscription}/resourceGroups/{group}"
    if subscription and group and kind == AZURE_VM and inputs.get("vmName"):
        return (
            f"/subscriptions/{subscription}/resourceGroups/{group}"
            f"/providers/Microsoft.Compute/virtualMachines/{inputs['vmName']}"
        )
    raise LookupError(kind)


def name_leak(resource: Mapping[str, Any], provider: Mapping[str, Any], stack: str) -> Leak:
    """Where to see the resource and the exact command that deletes it, from its inputs and its
    provider's (region, subscription) and the tags every iacrun resource carries."""
    kind = str(resource.get("type", ""))
    urn = str(resource.get("urn", ""))
    inputs: Mapping[str, Any] = resource.get("inputs") or {}
    tags: Mapping[str, Any] = inputs.get("tags") or {}
    tag = str(tags.get("iacrun:stack") or stack)
    if kind.startswith("aws:"):
        region = str(provider.get("region") or "")
        zone = str(inputs.get("availabilityZone") or "")
        if not region and zone:
            region = zone[:-1]
        region = region or "REGION"
        where = f"--region {region}"
        if kind == "aws:ec2/instance:Instance":
            console = (
                f"https://{region}.console.aws.amazon.com/ec2/home?region={region}"
                f"#Instances:tag:iacrun:stack={tag}"
            )
            command = (
                f"aws ec2 terminate-instances {where} --instance-ids $(aws ec2 describe-instances "
                f"{where} --filters Name=tag:iacrun:stack,Values={tag} "
                "--query 'Reservations[].Instances[].InstanceId' --output text)"
            )
        else:
            console = (
                f"https://{region}.console.aws.amazon.com/resource-groups/tag-editor/find-resources"
                f"?region={region}"
            )
            command = (
                f"aws resourcegroupstaggingapi get-resources {where} "
                f"--tag-filters Key=iacrun:stack,Values={tag} (then delete each ARN listed)"
            )
    elif kind.startswith("azure-native:"):
        group = str(inputs.get("resourceGroupName") or f"iacrun-{stack}")
        console = "https://portal.azure.com/#browse/resourcegroups"
        command = f"az group delete --name {group} --yes"
        if provider.get("subscriptionId"):
            command += f" --subscription {provider['subscriptionId']}"
    else:
        console = f"the cloud's console (resources tagged iacrun:stack={tag})"
        command = f"delete {urn_name(urn)} ({kind}) by hand"
    return Leak(kind, urn_name(urn), urn, console, command, dict(resource), dict(provider))


def write_ledger(folder: Path, leaks: list[Leak]) -> None:
    """Record the stack's unresolved pending creates (or remove the record when there are none)."""
    path = folder / LEDGER
    if not leaks:
        path.unlink(missing_ok=True)
        return
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps([asdict(leak) for leak in leaks], indent=1))
    tmp.replace(path)


def read_ledger(folder: Path) -> list[Leak]:
    try:
        items = json.loads((folder / LEDGER).read_text())
        names = {f.name for f in fields(Leak)}
        return [Leak(**{k: v for k, v in item.items() if k in names}) for item in items]
    except (OSError, ValueError, TypeError):
        return []
