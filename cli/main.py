"""The `iacrun` command. Thin: parse options, call iacrun.orchestrator, print the result.

Only typer is imported at start-up; every command imports what it needs when it runs.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer

app = typer.Typer(
    name="iacrun",
    help="Run tasks on this machine, your SSH hosts, or ephemeral cloud GPU machines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts and CI.")]


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Plan and run a task. Extra arguments fill ${{ run.args }} in its commands.",
)
def up(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="The task file, NAME.dstack.yml.")],
    yes: Annotated[bool, typer.Option("-y", "--yes", help="Do not ask for confirmation.")] = False,
    detach: Annotated[bool, typer.Option("-d", "--detach", help="Submit and return.")] = False,
    name: Annotated[str | None, typer.Option("-n", "--name", help="The run's name.")] = None,
    env: Annotated[
        list[str] | None, typer.Option("-e", "--env", help="K=V, or K from here.")
    ] = None,
    port: Annotated[list[str] | None, typer.Option("--port", help="LOCAL:TASK port.")] = None,
    gpu: Annotated[str | None, typer.Option("--gpu", help="e.g. 80GB, A100:2.")] = None,
    cpu: Annotated[str | None, typer.Option("--cpu", help="e.g. 4..")] = None,
    memory: Annotated[str | None, typer.Option("--memory", help="e.g. 16GB..")] = None,
    disk: Annotated[str | None, typer.Option("--disk", help="e.g. 200GB..")] = None,
    spot: Annotated[bool, typer.Option("--spot", help="Spot instances only.")] = False,
    on_demand: Annotated[bool, typer.Option("--on-demand", help="On-demand only.")] = False,
    spot_auto: Annotated[bool, typer.Option("--spot-auto", help="Spot or on-demand.")] = False,
    max_price: Annotated[float | None, typer.Option("--max-price", help="$/hour.")] = None,
    max_duration: Annotated[str | None, typer.Option("--max-duration", help="e.g. 2h.")] = None,
    retry: Annotated[bool | None, typer.Option("--retry/--no-retry", help="Retry.")] = None,
    retry_duration: Annotated[str | None, typer.Option("--retry-duration")] = None,
    backend: Annotated[list[str] | None, typer.Option("-b", "--backend")] = None,
    region: Annotated[list[str] | None, typer.Option("-r", "--region")] = None,
    instance_type: Annotated[list[str] | None, typer.Option("--instance-type")] = None,
    profile: Annotated[str | None, typer.Option("--profile")] = None,
    max_offers: Annotated[int, typer.Option("--max-offers", help="Offers to show.")] = 3,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show what would be created; run nothing."),
    ] = False,
    json_out: Json = False,
) -> None:
    from iacrun.cli.attach import attach, check_ports, note
    from iacrun.cli.render import plan_text, run_json
    from iacrun.cli.signals import catch as catch_stop_signals
    from iacrun.cli.tables import offers_table
    from iacrun.orchestrator.api import Orchestrator
    from iacrun.orchestrator.models.runspec import Overrides, build_run_spec

    if sum((spot, on_demand, spot_auto)) > 1:
        raise _fail("choose one of --spot, --on-demand and --spot-auto", 2)
    policy = "spot" if spot else "on-demand" if on_demand else "auto" if spot_auto else None
    overrides = Overrides(
        name=name,
        env=env or [],
        ports=port or [],
        gpu=gpu,
        cpu=cpu,
        memory=memory,
        disk=disk,
        spot_policy=policy,
        max_price=max_price,
        max_duration=max_duration,
        retry=retry,
        retry_duration=retry_duration,
        backends=backend,
        regions=region,
        instance_types=instance_type,
        profile=profile,
    )
    spec = build_run_spec(file, overrides, args=list(ctx.args))
    orch = Orchestrator()
    if spec.run_name is not None:
        orch.ensure_name_free(spec.run_name)
    if dry_run:
        plan, created = orch.dry_run(spec)
        typer.echo(plan_text(spec) + "\n")
        typer.echo(offers_table(plan.offers, max_offers) + "\n")
        typer.echo(created)
        return
    plan = orch.plan(spec)
    orch.ready_offers(o for o in plan.offers if o.available)  # credentials, tools: before we talk
    if not json_out:
        note(plan_text(spec) + "\n")
        note(offers_table(plan.offers, max_offers) + "\n")
        for line in plan.notes:
            note(line)
    if not yes:
        if not sys.stdin.isatty():
            raise _fail("not a terminal: pass -y to run without confirmation", 2)
        if not typer.confirm("Continue?", default=False):
            raise typer.Exit(1)
    check_ports(spec.ports, {o.backend for o in plan.offers})
    if not detach:
        catch_stop_signals()  # from the submit on, SIGTERM and SIGHUP stop the run
    run = orch.submit(spec, plan)
    if detach:
        if json_out:
            typer.echo(json.dumps(run_json(run)))
        else:
            note(f"Submitted run {run.name}; follow it with: iacrun attach {run.name}")
        return
    note(f"Submitted run {run.name}")
    raise typer.Exit(attach(orch, run, spec.ports, 0, started=True))


@app.command(help="List runs.")
def ps(
    all_runs: Annotated[bool, typer.Option("-a", "--all", help="Include old runs.")] = False,
    watch: Annotated[bool, typer.Option("-w", "--watch", help="Refresh every 2s.")] = False,
    json_out: Json = False,
) -> None:
    from iacrun.cli.render import run_json, runs_table
    from iacrun.orchestrator.api import Orchestrator

    orch = Orchestrator()
    while True:
        runs = orch.runs(all_runs=all_runs)
        if json_out:
            typer.echo(json.dumps([run_json(r) for r in runs], indent=2))
        else:
            if watch:
                typer.echo("\x1b[2J\x1b[H", nl=False)
            typer.echo(runs_table(runs) if runs else "No runs. Start one with: iacrun up FILE")
        if not watch:
            return
        try:
            time.sleep(2)
        except KeyboardInterrupt:
            return


@app.command(help="Print a run's log; -f follows it live.")
def logs(
    run_name: Annotated[str, typer.Argument(metavar="RUN")],
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Follow until the run ends.")
    ] = False,
    offset: Annotated[int, typer.Option("--offset", help="Start at this byte.")] = 0,
) -> None:
    from iacrun.orchestrator.api import Orchestrator

    out = sys.stdout.buffer

    def sink(data: bytes) -> None:
        out.write(data)
        out.flush()

    try:
        Orchestrator().logs(run_name, sink, offset=offset, follow=follow)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command(help="Follow a running run again: its log from where you left it, and its ports.")
def attach(
    run_name: Annotated[str, typer.Argument(metavar="RUN")],
    port: Annotated[list[str] | None, typer.Option("--port", help="LOCAL:TASK port.")] = None,
    from_start: Annotated[bool, typer.Option("--from-start", help="Replay the log.")] = False,
) -> None:
    from iacrun.cli.attach import attach as do_attach
    from iacrun.orchestrator.api import Orchestrator
    from iacrun.orchestrator.models.runspec import merge_ports

    orch = Orchestrator()
    run = orch.get(run_name)
    ports = merge_ports(run.spec.ports, port or [])
    raise typer.Exit(do_attach(orch, run, ports, 0 if from_start else None))


def _names(names: list[str] | None, all_runs: bool) -> list[str]:
    from iacrun.orchestrator.api import Orchestrator

    if all_runs:
        return [r.name for r in Orchestrator().runs() if r.active]
    if not names:
        raise _fail("name a run, or pass --all", 2)
    return names


@app.command(help="Stop runs and tear down their machines. Safe to repeat.")
def stop(
    runs: Annotated[list[str] | None, typer.Argument(metavar="RUN...")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Every active run.")] = False,
) -> None:
    from iacrun.orchestrator.api import Orchestrator

    orch = Orchestrator()
    for name in _names(runs, all_runs):
        run = orch.stop(name)
        typer.echo(f"{run.name}: {run.status}" + (f" ({run.reason})" if run.reason else ""))


@app.command(help="Stop runs and destroy what they created, or a leftover stack. Repeatable.")
def down(
    runs: Annotated[list[str] | None, typer.Argument(metavar="RUN|STACK...")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Every active run.")] = False,
) -> None:
    from iacrun.orchestrator.api import Orchestrator

    orch = Orchestrator()
    for name in _names(runs, all_runs):
        typer.echo(orch.down(name))


def _register_groups() -> None:
    from iacrun.cli import offers, stacks

    offers.register(app)
    stacks.register(app)


_register_groups()


def run() -> None:
    """Console entry point: one line for errors iacrun raises on purpose, never a traceback."""
    from iacrun.orchestrator.errors import IacrunError

    try:
        app()
    except IacrunError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    run()
