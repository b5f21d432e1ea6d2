"""Run a stack program under Pulumi's mocks: what it would create, without a cloud or credentials.

`preview(program)` returns every resource the program declares (its type, name and inputs, in
the wire format: camelCase keys), every data-source call with its arguments, and the stack's
outputs. The tests assert on it; `iacrun up --dry-run` prints `render_resources` of it.

Each call runs in a fresh thread, whose context holds Pulumi's settings and root stack, so calls
can follow each other in one process and never leak mock settings into a real engine run.

The mocks answer data sources with placeholders: an AMI `ami-0123456789abcdef0`, a default VPC
with a default subnet in each of two zones (`zone-a`, `zone-b`) unless `default_vpc=False`, no
kept iacrun VPC, and the instance type offered in both zones (AWS chooses its networking and zone
from these answers). `answers(token, args)` may answer a call instead (None: the placeholder).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PLACEHOLDER_AMI = "ami-0123456789abcdef0"
PLACEHOLDER_IP = "203.0.113.10"
PLACEHOLDER_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


SECRET_SIG = "4dabf18193072939515e22adb298388d"


@dataclass(frozen=True)
class PlannedResource:
    type: str
    name: str
    #: the inputs with secrets unwrapped
    inputs: dict[str, Any]
    #: the top-level inputs that were Pulumi secrets
    secrets: frozenset[str] = frozenset()

    @property
    def is_provider(self) -> bool:
        return self.type.startswith("pulumi:providers:")


@dataclass(frozen=True)
class PlannedCall:
    token: str
    args: dict[str, Any]


@dataclass
class PreviewResult:
    resources: list[PlannedResource] = field(default_factory=list)
    calls: list[PlannedCall] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def cloud_resources(self) -> list[PlannedResource]:
        """The resources a cloud bills or lists (providers left out)."""
        return [r for r in self.resources if not r.is_provider]

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str) -> PlannedResource:
        found = self.of_type(type_)
        if len(found) != 1:
            raise LookupError(f"{len(found)} resources of type {type_}, expected one")
        return found[0]

    def calls_to(self, token: str) -> list[PlannedCall]:
        return [c for c in self.calls if c.token == token]


#: what the mocks answer a data-source call with, instead of the placeholder (None: placeholder)
Answers = Callable[[str, dict[str, Any]], dict[str, Any] | None]
PLACEHOLDER_ZONES = ("zone-a", "zone-b")


def preview(
    program: Callable[[], None],
    *,
    default_vpc: bool = True,
    answers: Answers | None = None,
    project: str = "iacrun",
    stack: str = "dry-run",
) -> PreviewResult:
    """What `program` would create, under mocks. Raises what the program raises."""
    result = PreviewResult()
    failure: list[BaseException] = []

    def work() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            _run(
                program,
                result,
                default_vpc=default_vpc,
                answers=answers,
                project=project,
                stack=stack,
            )
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    thread = threading.Thread(target=work, name="iacrun-preview", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result


def _run(
    program: Callable[[], None],
    result: PreviewResult,
    *,
    default_vpc: bool,
    answers: Answers | None,
    project: str,
    stack: str,
) -> None:
    import pulumi
    from pulumi.runtime.settings import get_root_resource
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            secrets = frozenset(k for k, v in args.inputs.items() if _is_secret(v))
            inputs = {k: _reveal(v) for k, v in args.inputs.items()}
            result.resources.append(PlannedResource(args.typ, args.name, inputs, secrets))
            state = dict(inputs)
            state.update(_computed(args.typ, args.name, args.inputs))
            return state.get("id") or f"{args.name}-id", state

        def call(
            self, args: pulumi.runtime.MockCallArgs
        ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
            call = dict(args.args)
            result.calls.append(PlannedCall(args.token, call))
            given = answers(args.token, call) if answers is not None else None
            return (given if given is not None else _answer(args.token, call, default_vpc)), []

    pulumi.runtime.set_mocks(Mocks(), project=project, stack=stack, preview=False)

    async def body() -> None:
        program()
        root = get_root_resource()
        outputs = getattr(root, "outputs", {})
        resolved = await pulumi.Output.from_input(dict(outputs)).future()
        result.outputs.update(resolved or {})

    _sync_await(run_pulumi_func(body))


def _is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270"


def _reveal(value: Any) -> Any:
    if _is_secret(value):
        return _reveal(value.get("value"))
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v) for v in value]
    return value


def _computed(type_: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Outputs the cloud would compute, as placeholders."""
    if type_ == "aws:ec2/instance:Instance":
        rank = node_rank(name)
        return {
            "id": f"i-0123456789abcdef{rank}",
            "publicIp": placeholder_ip(rank),
            "privateIp": f"10.0.0.{10 + rank}",
            "primaryNetworkInterfaceId": f"eni-{rank}",
        }
    if type_ == "aws:ec2/eip:Eip":
        return {"publicIp": f"198.51.100.{10 + node_rank(name)}"}
    if type_ == "aws:ec2/placementGroup:PlacementGroup":
        return {"name": inputs.get("name") or name}
    if type_ == "aws:ec2/launchTemplate:LaunchTemplate":
        return {"id": "lt-0123456789abcdef0", "latestVersion": 1}
    if type_ == "aws:ec2/keyPair:KeyPair":
        return {"keyName": inputs.get("keyName") or name}
    if type_ == "aws:ec2/vpc:Vpc":
        return {"id": "vpc-new", "mainRouteTableId": "rtb-main"}
    if type_ == "azure-native:resources:ResourceGroup":
        rg = inputs.get("resourceGroupName") or name
        return {"name": rg, "id": f"/subscriptions/{PLACEHOLDER_SUBSCRIPTION}/resourceGroups/{rg}"}
    if type_ == "azure-native:network:PublicIPAddress":
        return {"ipAddress": placeholder_ip(node_rank(name))}
    if type_ == "azure-native:network:NetworkInterface":
        private = f"10.0.0.{4 + node_rank(name)}"
        configs = [
            {**config, "privateIPAddress": private} for config in inputs.get("ipConfigurations", [])
        ]
        return {"name": inputs.get("networkInterfaceName") or name, "ipConfigurations": configs}
    if type_ == "azure-native:compute:VirtualMachine":
        out: dict[str, Any] = {"vmId": "00000000-0000-0000-0000-0000000000aa"}
        if inputs.get("identity"):
            out["identity"] = {**inputs["identity"], "principalId": "principal-of-the-vm"}
        return out
    if type_.startswith("azure-native:"):
        for key, value in inputs.items():
            if key.endswith("Name") and key != "resourceGroupName" and isinstance(value, str):
                return {"name": value}
    return {}


def node_rank(name: str) -> int:
    """The rank a resource's name says (`...-node-K`; rank 0 has no suffix)."""
    match = re.search(r"-node-(\d+)$", name)
    return int(match.group(1)) if match else 0


def placeholder_ip(rank: int) -> str:
    """The public address the mocks give rank `rank`'s machine (rank 0: PLACEHOLDER_IP)."""
    return f"203.0.113.{10 + rank}"


def _answer(token: str, args: dict[str, Any], default_vpc: bool) -> dict[str, Any]:
    if token == "aws:ec2/getAmi:getAmi":
        return {"id": PLACEHOLDER_AMI, "imageId": PLACEHOLDER_AMI, "name": "(looked up at up)"}
    if token == "aws:ec2/getVpcs:getVpcs":
        names = {f.get("name") for f in args.get("filters") or []}
        default = "is-default" in names and default_vpc
        return {"id": "vpcs", "ids": ["vpc-default"] if default else []}
    if token == "aws:ec2/getSubnets:getSubnets":
        return {"id": "subnets", "ids": ["subnet-a", "subnet-b"] if default_vpc else []}
    if token == "aws:ec2/getSubnet:getSubnet":
        subnet = str(args.get("id"))
        return {"id": subnet, "availabilityZone": f"zone-{subnet.rsplit('-', 1)[-1]}"}
    if token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
        filters = {f.get("name"): f.get("values") for f in args.get("filters") or []}
        types = list(filters.get("instance-type") or [])
        zones = list(PLACEHOLDER_ZONES)
        return {
            "id": "offerings",
            "locations": [z for z in zones for _ in types],
            "locationTypes": ["availability-zone" for _ in zones for _ in types],
            "instanceTypes": [t for _ in zones for t in types],
        }
    if token == "aws:ec2/getInstanceType:getInstanceType":
        # EFA as one interface: how many the type really has is EC2's answer at `up`
        return {
            "id": str(args.get("instanceType")),
            "instanceType": args.get("instanceType"),
            "efaSupported": True,
            "efaMaximumInterfaces": 1,
            "supportedPlacementStrategies": ["cluster", "partition", "spread"],
        }
    if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
        return {"id": "zones", "names": list(PLACEHOLDER_ZONES), "zoneIds": ["az1", "az2"]}
    return {}


def render_resources(result: PreviewResult) -> str:
    """One line per resource the stack would create: type, then name."""
    rows = [(r.type, r.name) for r in result.cloud_resources]
    width = max((len(t) for t, _ in rows), default=0)
    return "\n".join(f"{t.ljust(width)}  {n}" for t, n in rows)
