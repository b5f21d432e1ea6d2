"""Options that more than one command takes, declared once with their metavar and help."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from iacrun.orchestrator.models.requirements import SpotPolicy

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts and CI.")]
Gpu = Annotated[
    str | None,
    typer.Option("--gpu", metavar="SPEC", help="GPUs: 80GB, A100, A100:2, 24GB.., A10G,L4."),
]
Cpu = Annotated[str | None, typer.Option("--cpu", metavar="SPEC", help="CPUs: 4, 4.., arm:8.")]
Memory = Annotated[
    str | None, typer.Option("--memory", metavar="SIZE", help="Memory: 16GB, 16GB..64GB.")
]
Disk = Annotated[
    str | None, typer.Option("--disk", metavar="SIZE", help="Root volume: 200GB, 100GB...")
]
Spot = Annotated[bool, typer.Option("--spot", help="Spot instances only.")]
OnDemand = Annotated[bool, typer.Option("--on-demand", help="On-demand instances only.")]
SpotAuto = Annotated[
    bool, typer.Option("--spot-auto", help="Spot or on-demand, whichever is cheaper.")
]
MaxPrice = Annotated[
    float | None,
    typer.Option("--max-price", metavar="USD", help="Most to pay per hour, in dollars."),
]
Backends = Annotated[
    list[str] | None,
    typer.Option(
        "-b", "--backend", metavar="NAME", help="Only this backend (repeatable): local, ssh, ..."
    ),
]
Regions = Annotated[
    list[str] | None,
    typer.Option("-r", "--region", metavar="REGION", help="Only this region (repeatable)."),
]
InstanceTypes = Annotated[
    list[str] | None,
    typer.Option("--instance-type", metavar="TYPE", help="Only this instance type (repeatable)."),
]
Profile = Annotated[
    str | None,
    typer.Option("--profile", metavar="NAME", help="A profile from .dstack/profiles.yml."),
]
Run = Annotated[str, typer.Argument(metavar="RUN", help="The run's name.", show_default=False)]
Ports = Annotated[
    list[str] | None,
    typer.Option(
        "-p",
        "--port",
        metavar="LOCAL:TASK",
        help="Forward the task's port TASK to localhost:LOCAL (repeatable).",
    ),
]


def spot_policy(spot: bool, on_demand: bool, spot_auto: bool) -> SpotPolicy | None:
    """The policy the three flags ask for (None: the file's or profile's); two at once is an
    InputError."""
    from iacrun.orchestrator.errors import InputError

    if sum((spot, on_demand, spot_auto)) > 1:
        raise InputError("choose one of --spot, --on-demand and --spot-auto")
    return "spot" if spot else "on-demand" if on_demand else "auto" if spot_auto else None


def check_max_offers(max_offers: int) -> int:
    from iacrun.orchestrator.errors import InputError

    if max_offers < 1:
        raise InputError(f"--max-offers {max_offers}: show at least 1 offer")
    return max_offers
