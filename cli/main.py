"""The `iacrun` command. Thin: parse options, call iacrun.orchestrator, print the result.

Only typer is imported at start-up; every command imports what it needs when it runs.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
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
    Ports,
    Profile,
    Regions,
    Run,
    Spot,
    SpotAuto,
    check_max_offers,
    spot_policy,
)
from iacrun.cli.usage import Command

if TYPE_CHECKING:
    from iacrun.orchestrator.service import RunService

UP_HELP = """Plan and run a task: show the offers, ask, then follow its log until it ends.

Everything after FILE belongs to the task: it fills ${{ run.args }} in its commands (iacrun's
options go before FILE, as in `docker run IMAGE ARGS`). `iacrun up -f FILE` and dstack's
`iacrun up . -f FILE` work too. An attached `up` exits with the job's exit code; Ctrl-C asks
whether to stop the run, and without a terminal (CI) Ctrl-C, SIGTERM and SIGHUP stop it.
"""

app = typer.Typer(
    name="iacrun",
    help="Run tasks on this machine, your SSH hosts, or ephemeral cloud GPU machines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"iacrun {version('iacrun')}")
        raise typer.Exit()


@app.callback()
def _main(
    show_version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_version, help="Print the version."),
    ] = False,
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            help="Run in this process on this home, even when a server is set (iacrun login, "
            "IACRUN_SERVER_URL).",
        ),
    ] = False,
) -> None:
    """Run tasks on this machine, your SSH hosts, or ephemeral cloud GPU machines."""
    from iacrun.cli.mode import force_local

    force_local(local)


@app.command(
    cls=Command,
    help=UP_HELP,
    short_help="Plan and run a task, then follow it.",
    context_settings={"allow_interspersed_args": False},
)
def up(
    ctx: typer.Context,
    file: Annotated[
        str | None,
        typer.Argument(metavar="FILE", help="The task file, NAME.dstack.yml.", show_default=False),
    ] = None,
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ARGS", help="The task's arguments: ${{ run.args }}.", show_default=False
        ),
    ] = None,
    file_option: Annotated[
        str | None,
        typer.Option("-f", "--file", metavar="FILE", help="The task file (dstack's habit)."),
    ] = None,
    yes: Annotated[bool, typer.Option("-y", "--yes", help="Do not ask for confirmation.")] = False,
    detach: Annotated[
        bool, typer.Option("-d", "--detach", help="Submit the run and return.")
    ] = False,
    name: Annotated[
        str | None, typer.Option("-n", "--name", metavar="NAME", help="The run's name.")
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("-e", "--env", metavar="K=V", help="Set K=V, or pass K from here."),
    ] = None,
    port: Ports = None,
    gpu: Gpu = None,
    cpu: Cpu = None,
    memory: Memory = None,
    disk: Disk = None,
    spot: Spot = False,
    on_demand: OnDemand = False,
    spot_auto: SpotAuto = False,
    max_price: MaxPrice = None,
    max_duration: Annotated[
        str | None,
        typer.Option(
            "--max-duration", metavar="DURATION", help="End the run after this: 90s, 30m, 2h."
        ),
    ] = None,
    retry: Annotated[
        bool | None,
        typer.Option("--retry/--no-retry", help="Retry on no capacity, interruption, error."),
    ] = None,
    retry_duration: Annotated[
        str | None,
        typer.Option("--retry-duration", metavar="DURATION", help="How long to keep retrying: 1h."),
    ] = None,
    backend: Backends = None,
    region: Regions = None,
    instance_type: InstanceTypes = None,
    profile: Profile = None,
    max_offers: Annotated[
        int, typer.Option("--max-offers", metavar="N", help="Offers to show.")
    ] = 3,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show what would be created; run nothing."),
    ] = False,
    json_out: Json = False,
) -> None:
    from iacrun.cli.attach import attach, check_ports, note
    from iacrun.cli.mode import is_remote, service
    from iacrun.cli.render import plan_text, run_json, utc_minute
    from iacrun.cli.signals import catch as catch_stop_signals
    from iacrun.cli.tables import offers_table
    from iacrun.orchestrator.models.runspec import Overrides, build_run_spec

    file, task_args = _task_file(file, file_option, list(args or []))
    check_max_offers(max_offers)
    policy = spot_policy(spot, on_demand, spot_auto)
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
    spec = build_run_spec(file, overrides, args=task_args)
    for word in sorted(set(task_args) & _option_names(ctx)):
        note(f"note: {word} comes after the task file, so it goes to the task, not to iacrun")
    orch = service()
    if spec.run_name is not None:
        orch.ensure_name_free(spec.run_name)
    if not dry_run:
        orch.refuse_schedule(spec)
        orch.check_upload(spec)
    if dry_run:
        plan, created = orch.dry_run(spec)
        typer.echo(plan_text(spec) + "\n")
        typer.echo(offers_table(plan.offers, max_offers, spec.nodes) + "\n")
        typer.echo(created)
        return
    plan = orch.plan(spec)
    # credentials, tools, provider plugins: before anything is recorded
    orch.ready_offers((o for o in plan.offers if o.available), note, spec=spec)
    if not json_out:
        note(plan_text(spec) + "\n")
        note(offers_table(plan.offers, max_offers, spec.nodes) + "\n")
        for line in plan.notes:
            note(line)
    if not yes:
        if not sys.stdin.isatty():
            raise _fail("not a terminal: pass -y to run without confirmation", 2)
        if not typer.confirm("Continue?", default=False):
            raise typer.Exit(1)
    if spec.schedule is not None:
        kept = orch.schedule(spec)
        if json_out:
            typer.echo(json.dumps(kept.model_dump(mode="json", exclude={"spec"})))
        else:
            note(
                f"Scheduled {kept.name}: its first run starts {utc_minute(kept.next_at)}; "
                f"see it with: iacrun ps; stop it with: iacrun stop {kept.name}"
            )
        return
    # remote: the server's local backend is the server's machine, not this one
    check_ports(spec.ports, set() if is_remote() else {o.backend for o in plan.offers})
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


def _task_file(file: str | None, file_option: str | None, args: list[str]) -> tuple[str, list[str]]:
    """The task file and the task's arguments, from `up FILE`, `up -f FILE` or `up . -f FILE`."""
    from pathlib import Path

    if file is not None and Path(file).is_dir():
        if file_option is None and args[:1] in (["-f"], ["--file"]) and len(args) > 1:
            file_option, args = args[1], args[2:]  # dstack's `run . -f FILE`: options after "."
        if file_option is not None:
            file = None  # iacrun ships the task file's repository; the folder adds nothing
        else:
            found = sorted(p.name for p in Path(file).glob("*.dstack.yml"))
            hint = f" (there: {', '.join(found)})" if found else ""
            raise _fail(f"{file} is a folder; name the task file: iacrun up FILE{hint}", 2)
    if file is not None and file_option is not None:
        raise _fail(f"two task files ({file} and -f {file_option}); name one", 2)
    chosen = file if file is not None else file_option
    if chosen is None:
        raise _fail("name the task file: iacrun up [OPTIONS] FILE [ARGS]...", 2)
    if args[:1] == ["--"]:
        args = args[1:]  # `up FILE -- ARGS`: the habit from before everything after FILE was ARGS
    return chosen, args


def _option_names(ctx: typer.Context) -> set[str]:
    return {name for p in ctx.command.params for name in (*p.opts, *p.secondary_opts)}


@app.command(cls=Command, help="List runs: the active ones, or all with -a.")
def ps(
    all_runs: Annotated[bool, typer.Option("-a", "--all", help="Include old runs.")] = False,
    watch: Annotated[
        bool, typer.Option("-w", "--watch", help="Refresh every 2 seconds until Ctrl-C.")
    ] = False,
    json_out: Json = False,
) -> None:
    from iacrun.cli.mode import is_remote, service
    from iacrun.cli.render import run_json, runs_table, schedule_json, schedules_table

    orch, remote = service(), is_remote()
    while True:
        runs = orch.runs(all_runs=all_runs)
        if json_out:
            # the runs, then the schedules (kept by a server), as `ps` lists them: `type` says
            shown = [run_json(r, orch.nodes(r), remote=remote) for r in runs]
            shown += [schedule_json(s) for s in orch.schedules(all_schedules=all_runs)]
            typer.echo(json.dumps(shown, indent=2))
        else:
            if watch:
                typer.echo("\x1b[2J\x1b[H", nl=False)
            table = runs_table(runs, users=remote)
            typer.echo(table if runs else "No runs. Start one with: iacrun up FILE")
            schedules = orch.schedules(all_schedules=all_runs)
            if schedules:
                typer.echo("\n" + schedules_table(schedules))
        if not watch:
            return
        try:
            time.sleep(2)
        except KeyboardInterrupt:
            return


@app.command(cls=Command, help="Print a run's log; -f follows it live.")
def logs(
    run_name: Run,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Follow until the run ends.")
    ] = False,
    offset: Annotated[
        int, typer.Option("--offset", metavar="BYTES", help="Start at this byte of the log.")
    ] = 0,
    node: Annotated[
        int | None,
        typer.Option("--node", metavar="RANK", help="A multi-node run's node (default: 0)."),
    ] = None,
    all_nodes: Annotated[
        bool,
        typer.Option("--all-nodes", help="Every node's log, each line prefixed with its rank."),
    ] = False,
) -> None:
    from iacrun.cli.mode import service
    from iacrun.orchestrator.errors import InputError

    out = sys.stdout.buffer

    def sink(data: bytes) -> None:
        out.write(data)
        out.flush()

    try:
        if all_nodes and (node is not None or offset):
            raise InputError("--all-nodes shows every node from the start; drop --node/--offset")
        if all_nodes:
            service().all_node_logs(run_name, sink, follow=follow)
        else:
            service().logs(run_name, sink, offset=offset, follow=follow, node=node)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command(
    cls=Command,
    help="Follow a run again: its log from where you left it, its ports, its exit code.",
    short_help="Follow a run again: its log from where you left it, and its ports.",
)
def attach(
    run_name: Run,
    port: Ports = None,
    from_start: Annotated[
        bool, typer.Option("--from-start", help="Replay the log from its start.")
    ] = False,
) -> None:
    from iacrun.cli.attach import attach as do_attach
    from iacrun.cli.mode import service
    from iacrun.orchestrator.models.runspec import merge_ports

    orch = service()
    run = orch.get(run_name)
    ports = merge_ports(run.spec.ports, port or [])
    raise typer.Exit(do_attach(orch, run, ports, 0 if from_start else None))


def _names(
    orch: RunService, names: list[str] | None, all_runs: bool, *, schedules: bool = False
) -> list[str]:
    """The names named, or with `--all` every active run's (and, with `schedules`, every
    active schedule's first: a schedule left going would start new runs right after)."""
    if all_runs:
        active = [s.name for s in orch.schedules()] if schedules else []
        return active + [r.name for r in orch.runs() if r.active]
    if not names:
        raise _fail("name a run, or pass --all", 2)
    return names


def _each(names: list[str], act: Callable[[str], str]) -> None:
    """`act` on every name, in order: one that fails is reported (one line) and the others
    are still acted on; the exit code is the first failure's."""
    from iacrun.cli.render import one_line
    from iacrun.orchestrator.errors import IacrunError

    code = 0
    for name in names:
        try:
            typer.echo(one_line(act(name)))
        except IacrunError as exc:
            typer.echo(f"error: {one_line(str(exc))}", err=True)
            code = code or exc.exit_code
    if code:
        raise typer.Exit(code)


@app.command(
    cls=Command,
    help="Stop runs and tear down their machines. Safe to repeat. A job gets its stop_duration "
    "(SIGTERM, then SIGKILL) unless -x.",
)
def stop(
    runs: Annotated[
        list[str] | None, typer.Argument(metavar="RUN", help="Runs to stop.", show_default=False)
    ] = None,
    all_runs: Annotated[
        bool, typer.Option("-a", "--all", help="Every active run, and every active schedule.")
    ] = False,
    abort: Annotated[
        bool,
        typer.Option(
            "-x",
            "--abort",
            help="Don't wait for a graceful stop: kill the job at once (SIGKILL, no "
            "stop_duration), then tear down. Cuts short a stop still waiting.",
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("-y", "--yes", help="Accepted for dstack scripts; iacrun stop never asks."),
    ] = False,
) -> None:
    from iacrun.cli.mode import service

    orch = service()
    reason = "aborted by user" if abort else "stopped by user"

    def act(name: str) -> str:
        # a schedule's name ends the schedule and its run
        schedule = orch.stop_schedule(name, abort=abort)
        if schedule is not None:
            return f"{schedule.name}: schedule stopped (no run starts from it any more)"
        run = orch.stop(name, reason=reason, abort=abort)
        return f"{run.name}: {run.status}" + (f" ({run.reason})" if run.reason else "")

    _each(_names(orch, runs, all_runs, schedules=True), act)


@app.command(
    cls=Command,
    help="Stop runs and destroy what they created, or a leftover stack. Safe to repeat.",
)
def down(
    runs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="RUN|STACK", help="Runs or stacks to take down.", show_default=False
        ),
    ] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Every active run of this home.")] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Also a stack another iacrun home made (says whose first)."),
    ] = False,
) -> None:
    from iacrun.cli.mode import service

    orch = service()
    names = _names(orch, runs, all_runs)
    _each(names, lambda name: orch.down(name, force=force, on_note=typer.echo))


@app.command(
    cls=Command,
    help="Serve the REST API (/api/v1) on this home's registry and backends, for teams and CI. "
    "Binds 127.0.0.1 unless told otherwise: put TLS in front before opening it to a network.",
    short_help="Serve the REST API for teams and CI.",
)
def server(
    host: Annotated[
        str, typer.Option("--host", metavar="ADDRESS", help="The address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="The port.")] = 3000,
    lease_seconds: Annotated[
        float | None,
        typer.Option(
            "--lease-seconds",
            metavar="SECONDS",
            help="How long a run's lease lasts: a server that stops answering loses its runs to "
            "another on the same database after this long (default: "
            "$IACRUN_SERVER_LEASE_SECONDS, else 30).",
            show_default=False,
        ),
    ] = None,
) -> None:
    from iacrun.server.config import ServerConfig
    from iacrun.server.main import serve

    serve(ServerConfig.from_env(host=host, port=port, lease_seconds=lease_seconds))


@app.command(
    cls=Command,
    help="Use an iacrun server from now on: check the token against it, then keep the URL and "
    "the token (0600) in iacrun's home. The token is asked without echo, or read from stdin "
    "with --token-stdin. IACRUN_SERVER_URL and IACRUN_TOKEN, when set, win over it.",
    short_help="Use an iacrun server from now on.",
)
def login(
    url: Annotated[
        str, typer.Argument(metavar="URL", help="The server: http://HOST:PORT.", show_default=False)
    ],
    token_stdin: Annotated[
        bool, typer.Option("--token-stdin", help="Read the token from stdin (scripts, CI).")
    ] = False,
) -> None:
    from iacrun.cli.mode import normal_url, save_login
    from iacrun.cli.remote import check_login
    from iacrun.orchestrator.errors import InputError
    from iacrun.orchestrator.paths import shown_path

    url = normal_url(url)
    if token_stdin:
        token = sys.stdin.readline().strip()
    elif sys.stdin.isatty():
        from getpass import getpass

        token = getpass("Token: ").strip()
    else:
        raise InputError("not a terminal: pass the token on stdin with --token-stdin")
    if not token:
        raise InputError("no token given; an admin makes one with: POST /api/v1/tokens")
    who = check_login(url, token)
    saved = save_login(url, token)
    typer.echo(f"Logged in to {url} ({who}); saved in {shown_path(saved)} (0600)")


@app.command(cls=Command, help="Forget the server `iacrun login` stored; work in-process again.")
def logout() -> None:
    import contextlib
    import os

    from iacrun.cli.mode import TOKEN_ENV, URL_ENV, forget_login, login_file, read_login
    from iacrun.orchestrator.errors import IacrunError

    path = login_file()
    stored = None
    with contextlib.suppress(IacrunError):  # an unreadable file is removed all the same
        stored = read_login(path)
    if not forget_login(path):
        typer.echo("Not logged in to a server")
    else:
        where = stored.url if stored else "the server"
        typer.echo(f"Logged out of {where} (the token stays valid there until it is revoked)")
    if os.environ.get(URL_ENV) or os.environ.get(TOKEN_ENV):
        typer.echo(f"note: {URL_ENV}/{TOKEN_ENV} are set in the environment and still apply")


def _register_groups() -> None:
    from iacrun.cli import doctor, offers, stacks

    offers.register(app)
    stacks.register(app)
    doctor.register(app)


_register_groups()


def run() -> None:
    """Console entry point: one line for errors iacrun raises on purpose, never a traceback."""
    from iacrun.orchestrator.errors import IacrunError
    from iacrun.orchestrator.paths import use_private_umask

    use_private_umask()  # registry, logs, keys, state: the user's alone
    try:
        app()
    except IacrunError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    run()
