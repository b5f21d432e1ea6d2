"""From an offer and a run to the `StackSpec` a stack program takes, and the stack's name.

This is the one step between the orchestrator's models (`Offer`, the run) and `stacks`, which
knows only its own spec: the cloud backend calls `build_stack_spec`, never a stack program.

The stack-name rule lives here too: `<run name>-<run id>-<home tag>` (`train-1-k3x9q2ab`). The run
id is unique in one iacrun home and the home tag (`stacks/owner.py`) tells homes apart, so two
homes that share a state backend never pick the same name. Older versions named stacks
`<run name>-<run id>`; `parse_stack_name` reads both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from iacrun.orchestrator.errors import NoOfferError
from iacrun.orchestrator.offers.model import Offer, is_cloud
from iacrun.stacks.images import NotOffered, image_for
from iacrun.stacks.keys import KeyPair
from iacrun.stacks.owner import HOME_TAG
from iacrun.stacks.spec import DEFAULT_SELF_DESTRUCT_MARGIN, StackSpec

_TAGGED = re.compile(rf"(?P<run>[a-z][a-z0-9-]*)-(?P<id>\d+)-(?P<home>{HOME_TAG.pattern})")
_UNTAGGED = re.compile(r"(?P<run>[a-z][a-z0-9-]*)-(?P<id>\d+)")


def stack_name_for(run_name: str, run_id: int | str, home_tag: str) -> str:
    """The Pulumi stack of a run: `<run name>-<run id>-<home tag>`, unique across homes."""
    return f"{run_name}-{run_id}-{home_tag}"


@dataclass(frozen=True)
class StackName:
    """What a stack's name says: the run, its id, and the home that made it (None for a name
    made by a version before home tags)."""

    run: str
    run_id: int
    home: str | None


def parse_stack_name(name: str) -> StackName | None:
    """The parts of an iacrun stack name; None for a name of another form.

    A tag begins with a letter, and an untagged name ends in the run id's digits, so no name
    reads both ways."""
    if match := _TAGGED.fullmatch(name):
        return StackName(match["run"], int(match["id"]), match["home"])
    if match := _UNTAGGED.fullmatch(name):
        return StackName(match["run"], int(match["id"]), None)
    return None


def build_stack_spec(
    offer: Offer,
    job: dict[str, Any],
    *,
    stack_name: str,
    ssh_public_key: str,
    host_key: KeyPair,
    ssh_cidrs: list[str],
    disk_gb: int | None = None,
    max_price: float | None = None,
    now: datetime | None = None,
    **options: Any,
) -> StackSpec:
    """The spec of the stack that runs `job` on `offer`.

    `disk_gb` defaults to the offer's disk (the requested size), else 100 GB. `options` are the
    remaining `StackSpec` fields (machine_image, network, aws_profile, azure_subscription_id...).
    """
    cloud = offer.backend
    if not is_cloud(cloud):
        raise ValueError(f"{cloud!r} is not a cloud backend with a stack program")
    max_duration = job.get("max_duration")
    margin = int(options.get("self_destruct_margin", DEFAULT_SELF_DESTRUCT_MARGIN))
    now = now or datetime.now(UTC)
    expires_at = now + timedelta(seconds=max_duration + margin) if max_duration else None
    size = disk_gb if disk_gb is not None else offer.resources.disk_gb
    gpus = offer.resources.gpus
    image = image_for(cloud, offer.instance_type, gpu=bool(gpus), arch=offer.resources.cpu_arch)
    if isinstance(image, NotOffered):
        raise NoOfferError(f"{cloud} {offer.instance_type} is not offered: {image.reason}")
    return StackSpec(
        run_name=job["run_name"],
        stack_name=stack_name,
        cloud=cloud,
        region=offer.region,
        instance_type=offer.instance_type,
        spot=offer.spot,
        max_price=max_price if offer.spot else None,
        disk_gb=round(size) if size else 100,
        gpu=bool(gpus),
        gpu_count=len(gpus),
        cpu_arch=offer.resources.cpu_arch,
        vm_image=image,
        python=job.get("python"),
        image=job.get("image"),
        ssh_public_key=ssh_public_key,
        host_key=host_key,
        ssh_cidrs=ssh_cidrs,
        expires_at=expires_at,
        max_duration=max_duration,
        job=job,
        # the type's cluster network, from the catalog (EFA, InfiniBand): the programs use it
        # only for a multi-node stack
        cluster_network=offer.cluster_network,
        **options,
    )
