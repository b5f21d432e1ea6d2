"""`iacrun offers`: what the task could run on and what it costs, before anything is created.

Works with no cloud account (AWS and Azure come from the catalog). Only typer is imported here
at start-up; the orchestrator is imported when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from iacrun.cli.options import (
    Backends,
    Cpu,
    Disk,
    Gpu,
    InstanceTypes,
    Json,
    MaxPrice,
    Memory,
    OnDemand,
    Profile,
    Regions,
    Spot,
    SpotAuto,
    check_max_offers,
    spot_policy,
)
from iacrun.cli.usage import Command

if TYPE_CHECKING:
    from collections.abc import Callable

    from iacrun.cli.remote import RemoteService
    from iacrun.orchestrator.models.runspec import Overrides
    from iacrun.orchestrator.models.settings import Settings
    from iacrun.orchestrator.offers.plan import OfferPlan, OfferSource

HELP = """Show the offers a task could run on, cheapest first, with no cloud account needed.

Requirements come from -f TASK.dstack.yml (and its profile) and/or the flags, which win.
AWS and Azure offers come from the price catalog shipped with iacrun (refresh it with --refresh);
backends not configured in config.yml ($IACRUN_HOME, default ~/.iacrun) are shown for
comparison unless --configured-only.
"""


def register(app: typer.Typer) -> None:
    """Add `iacrun offers` to the CLI."""
    app.command(
        "offers",
        cls=Command,
        help=HELP,
        short_help="Show what a task could run on, cheapest first.",
    )(offers)


def offers(
    file: Annotated[
        Path | None,
        typer.Option("-f", "--file", metavar="FILE", help="A task file, NAME.dstack.yml."),
    ] = None,
    gpu: Gpu = None,
    cpu: Cpu = None,
    memory: Memory = None,
    disk: Disk = None,
    spot: Spot = False,
    on_demand: OnDemand = False,
    spot_auto: SpotAuto = False,
    max_price: MaxPrice = None,
    backend: Backends = None,
    region: Regions = None,
    instance_type: InstanceTypes = None,
    profile: Profile = None,
    max_offers: Annotated[
        int, typer.Option("--max-offers", "-n", metavar="N", help="Rows to show.")
    ] = 20,
    group_by: Annotated[
        str | None,
        typer.Option(
            "--group-by",
            metavar="KEYS",
            help="gpu, backend, region, instance; comma-separated.",
        ),
    ] = None,
    json_out: Json = False,
    refresh: Annotated[
        bool,
        typer.Option("--refresh", help="Rebuild the catalog from the clouds' price lists first."),
    ] = False,
    configured_only: Annotated[
        bool, typer.Option("--configured-only", help="Only backends configured for `iacrun up`.")
    ] = False,
) -> None:
    from iacrun.orchestrator.errors import IacrunError
    from iacrun.orchestrator.models.runspec import Overrides

    try:
        policy = spot_policy(spot, on_demand, spot_auto)
        check_max_offers(max_offers)
        overrides = Overrides(
            gpu=gpu,
            cpu=cpu,
            memory=memory,
            disk=disk,
            spot_policy=policy,
            max_price=max_price,
            backends=backend or None,
            regions=region or None,
            instance_types=instance_type or None,
            profile=profile,
        )
        text = run_offers(
            overrides,
            file=file,
            max_offers=max_offers,
            group_by=group_by,
            json_out=json_out,
            refresh=refresh,
            configured_only=configured_only,
        )
    except IacrunError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(err.exit_code) from None
    typer.echo(text)


def run_offers(
    overrides: Overrides,
    *,
    file: Path | None = None,
    max_offers: int = 20,
    group_by: str | None = None,
    json_out: bool = False,
    refresh: bool = False,
    configured_only: bool = False,
    settings: Settings | None = None,
    sources: list[OfferSource] | None = None,
    progress: Callable[[str], None] | None = None,
) -> str:
    """Everything `iacrun offers` does, returning the text it prints."""
    from iacrun.cli.mode import remote_service
    from iacrun.cli.tables import groups_table, offers_json, offers_table, parse_group_by
    from iacrun.orchestrator.errors import InputError

    try:
        keys = parse_group_by(group_by)
    except ValueError as exc:
        raise InputError(f"--group-by: {exc}") from exc
    remote = remote_service() if settings is None and sources is None else None
    if remote is not None:
        plan, nodes = _remote_offers(remote, overrides, file, refresh, configured_only), 1
    else:
        plan, nodes = _offers_here(
            overrides, file, refresh, configured_only, settings, sources, progress
        )
    if json_out:
        return offers_json(plan.offers, max_offers, notes=plan.notes)
    if keys:
        body = groups_table(plan.offers, keys, max_offers)
    else:
        body = offers_table(plan.offers, max_offers, nodes)
    return "\n".join([body, "", *plan.notes] if plan.notes else [body])


def _remote_offers(
    remote: RemoteService,
    overrides: Overrides,
    file: Path | None,
    refresh: bool,
    configured_only: bool,
) -> OfferPlan:
    """The server's offers for the flags (the same filters, as its API's query parameters)."""
    from iacrun.cli.mode import local_only

    if refresh:
        local_only("offers --refresh", "it rebuilds this machine's price catalog")
    if file is not None or overrides.profile is not None:
        local_only("offers -f/--profile", "the server's offers take the flags, not a file")
    return remote.offers(
        gpu=overrides.gpu,
        cpu=overrides.cpu,
        memory=overrides.memory,
        disk=overrides.disk,
        spot=overrides.spot_policy,
        max_price=overrides.max_price,
        backend=overrides.backends,
        region=overrides.regions,
        instance_type=overrides.instance_types,
        configured_only=configured_only,
    )


def _offers_here(
    overrides: Overrides,
    file: Path | None,
    refresh: bool,
    configured_only: bool,
    settings: Settings | None,
    sources: list[OfferSource] | None,
    progress: Callable[[str], None] | None,
) -> tuple[OfferPlan, int]:
    from iacrun.orchestrator.api import Orchestrator
    from iacrun.orchestrator.models.runspec import requirements_for

    orch = Orchestrator(settings=settings)
    settings = orch.settings  # a bad config.yml is reported before anything else is done
    if refresh:
        _refresh(settings, progress)
    req = requirements_for(file, overrides)
    return orch.offers(req, configured_only=configured_only, sources=sources), req.nodes


def _refresh(settings: Settings, progress: Callable[[str], None] | None) -> None:
    import sys

    from iacrun.orchestrator.offers.catalog import refresh
    from iacrun.orchestrator.offers.model import CLOUDS

    def say(message: str) -> None:
        print(message, file=sys.stderr)

    regions: dict[str, list[str] | None] = {}
    for cloud in CLOUDS:
        conf = getattr(settings.backends, cloud)
        regions[cloud] = conf.regions if conf is not None else None
    azure = settings.backends.azure
    refresh(
        regions=regions,
        progress=progress or say,
        azure_subscription=azure.subscription_id if azure is not None else None,
    )
