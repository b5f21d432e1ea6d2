"""What a run asks of a machine: its resources and the policies that choose among offers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from iacrun.orchestrator.models.resources import ResourcesSpec

SpotPolicy = Literal["spot", "on-demand", "auto"]
#: every backend iacrun has; `backends:` and `-b` name some of them
BACKEND_NAMES = ("aws", "azure", "local", "ssh")
#: the backends that use machines which exist already (dstack's `creation_policy: reuse`)
OWN_HOST_BACKENDS = ("local", "ssh")


class Requirements(BaseModel):
    """The resources and the offer-selecting policies of a run."""

    resources: ResourcesSpec = ResourcesSpec()
    spot_policy: SpotPolicy = "on-demand"
    max_price: float | None = None
    backends: list[str] | None = None
    regions: list[str] | None = None
    instance_types: list[str] | None = None
    #: machines of one offer the run takes at once (`nodes:`); prices stay per machine
    nodes: int = 1
