"""`iacrun stacks` and `iacrun state RUN`: what iacrun's Pulumi state backend holds.

    iacrun stacks [--json]        every stack, whose it is (`me`, another home, or unknown), its
                                  run and the run's status, resource count, last update; a stack
                                  of ours whose run is missing or over is flagged a leak
    iacrun state RUN [--json]     the run's stack: resources (type, name, id), outputs (secrets
                                  masked), the last update's result, pending operations

Thin: ``register(app)`` adds the two commands, which ask the Orchestrator (`stacks`,
`stack_state`; the leak rule lives in orchestrator/backends/stack_inventory.py) and render its
answer with the functions below, which tests call without a terminal. Only typer is imported at
start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from iacrun.cli.options import Json
from iacrun.cli.usage import Command

if TYPE_CHECKING:
    from datetime import datetime

    from iacrun.orchestrator.api import Orchestrator
    from iacrun.orchestrator.backends.stack_inventory import StackDetail, StackRow
    from iacrun.server.schema import StackInfo

_DONE = {
    "create": "created",
    "update": "updated",
    "delete": "deleted",
    "same": "unchanged",
    "replace": "replaced",
}
OrchestratorFactory = Callable[[], "Orchestrator"]


def default_orchestrator() -> Orchestrator:
    from iacrun.orchestrator.api import Orchestrator

    return Orchestrator()


def register(app: typer.Typer, *, orchestrator: OrchestratorFactory = default_orchestrator) -> None:
    """Add `stacks` and `state` to `app`. Tests inject an Orchestrator with their own engine."""

    @app.command(
        "stacks",
        cls=Command,
        help="List the state backend's stacks and their owners; flag our leaks.",
    )
    def stacks(json_out: Json = False) -> None:
        import json

        from iacrun.cli.mode import remote_service

        remote = remote_service()
        if remote is not None:
            infos = remote.stacks()
            if json_out:
                typer.echo(json.dumps([info_json(info) for info in infos], indent=2))
            else:
                typer.echo(stack_infos_text(infos))
            return
        orch = orchestrator()
        if not orch.stacks_possible():
            typer.echo("[]" if json_out else no_cloud_note())
            return
        rows = orch.stacks()
        if json_out:
            typer.echo(json.dumps([row_json(row) for row in rows], indent=2))
            return
        typer.echo(stacks_text(rows))

    @app.command("state", cls=Command, help="Show a run's stack: resources, outputs, last update.")
    def state(
        run: Annotated[
            str, typer.Argument(metavar="RUN", help="The run's name (or a stack's name).")
        ],
        json_out: Json = False,
    ) -> None:
        import json

        from iacrun.cli.mode import local_only

        local_only("state", "the server has no route to a stack's state yet")
        found = orchestrator().stack_state(run)
        if json_out:
            typer.echo(json.dumps(state_json(found), indent=2))
            return
        typer.echo(state_text(found))


# ----------------------------------------------------------------------------- stacks


def no_cloud_note() -> str:
    from iacrun.orchestrator.paths import shown_config_file

    return (
        f"no stacks: no cloud backend is configured in {shown_config_file()}, and only aws and "
        "azure runs make stacks"
    )


def stacks_text(rows: Sequence[StackRow], now: float | None = None) -> str:
    from iacrun.cli.tables import render_table

    if not rows:
        return "no stacks in the state backend"
    table = render_table(
        ["STACK", "OWNER", "RUN", "STATUS", "RESOURCES", "UPDATED", "RESULT", ""],
        [
            [
                row.stack.name,
                row.owner.label,
                row.run.name if row.run else "-",
                row.run.status if row.run else "-",
                _count(row.stack.resource_count),
                _ago(row.stack.last_update, now),
                "updating" if row.stack.update_in_progress else (row.stack.result or "-"),
                row.note.upper() if row.leak else "",
            ]
            for row in rows
        ],
    )
    leaks = [row.stack.name for row in rows if row.leak]
    if leaks:
        word = "stack has" if len(leaks) == 1 else "stacks have"
        table += (
            f"\n\n{len(leaks)} {word} no live run and may still cost money: "
            f"iacrun down {' '.join(leaks)}"
        )
    for row in rows:
        for leak in row.stack.unresolved:
            table += f"\n{leak.line(row.stack.name)}"
    others = sum(1 for row in rows if not row.owner.mine)
    if others:
        word = "stack belongs" if others == 1 else "stacks belong"
        table += (
            f"\n\n{others} {word} to other iacrun homes (or to no known one): their owners "
            "take them down"
        )
    return table


def stack_infos_text(infos: Sequence[StackInfo], now: float | None = None) -> str:
    """`iacrun stacks` of a server: the rows it sends, in the columns of `stacks_text`."""
    from iacrun.cli.render import ago
    from iacrun.cli.tables import render_table

    if not infos:
        return "no stacks in the server's state backend"
    table = render_table(
        ["STACK", "OWNER", "RUN", "STATUS", "RESOURCES", "UPDATED", "RESULT", ""],
        [
            [
                info.name,
                info.owner,
                info.run or "-",
                info.run_status or "-",
                _count(info.resources),
                ago(info.last_update, now) if info.last_update else "-",
                "updating" if info.update_in_progress else (info.result or "-"),
                info.note.upper() if info.leak else "",
            ]
            for info in infos
        ],
    )
    leaks = [info.name for info in infos if info.leak]
    if leaks:
        word = "stack has" if len(leaks) == 1 else "stacks have"
        table += (
            f"\n\n{len(leaks)} {word} no live run and may still cost money: "
            f"iacrun down {' '.join(leaks)}"
        )
    return table


def info_json(info: StackInfo) -> dict[str, Any]:
    """A server's stack row in the keys of `row_json`."""
    data = info.model_dump(mode="json", exclude={"name", "note"})
    return {"stack": info.name, **data}


def row_json(row: StackRow) -> dict[str, Any]:
    s = row.stack
    return {
        "stack": s.name,
        "resources": s.resource_count,
        "last_update": s.last_update.isoformat() if s.last_update else None,
        "result": s.result,
        "update_in_progress": s.update_in_progress,
        "run": row.run.name if row.run else None,
        "run_status": row.run.status if row.run else None,
        "owner": row.owner.kind,
        "owner_home": row.owner.owner.home if row.owner.owner else None,
        "owner_user": (row.owner.owner.who or None) if row.owner.owner else None,
        "leak": row.leak,
    }


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _ago(when: datetime | None, now: float | None) -> str:
    from iacrun.cli.render import ago

    return ago(when.timestamp(), now) if when else "-"


# ----------------------------------------------------------------------------- state


def state_text(found: StackDetail) -> str:
    from iacrun.cli.tables import render_table

    state, run = found.state, found.run
    lines = [f"stack   {state.name} ({_safe_url(found.backend_url)})"]
    lines.append(f"owner   {found.owner.label}")
    if run:
        lines.append(f"run     {run.name}, {run.status}")
    elif found.owner.mine:
        lines.append("run     - (no run: a leak)")
    else:
        lines.append("run     - (not a run of this home)")
    last = state.last_update
    if last is None:
        lines.append("last    none recorded (an update was interrupted)")
    else:
        changes = ", ".join(
            f"{n} {_DONE.get(op, op)}" for op, n in sorted(last.resource_changes.items())
        )
        when = last.ended or last.started
        at = f" at {when:%Y-%m-%d %H:%M:%S} UTC" if when else ""
        lines.append(
            f"last    {last.kind} {last.result}{at}" + (f" ({changes})" if changes else "")
        )
    lines += [
        "",
        render_table(
            ["TYPE", "NAME", "ID"], [[r.type, r.name, r.id or "-"] for r in state.resources]
        ),
    ]
    if state.outputs:
        lines += [
            "",
            render_table(
                ["OUTPUT", "VALUE"], [[k, _show(v)] for k, v in sorted(state.outputs.items())]
            ),
        ]
    if state.pending_operations:
        lines += [
            "",
            "pending operations of an interrupted update (`iacrun down` clears them):",
            render_table(["TYPE", "NAME"], [[r.type, r.name] for r in state.pending_operations]),
        ]
    return "\n".join(lines)


def state_json(found: StackDetail) -> dict[str, Any]:
    state, run = found.state, found.run
    last = state.last_update

    def resource(r: Any) -> dict[str, Any]:
        return {"type": r.type, "name": r.name, "id": r.id, "urn": r.urn}

    return {
        "stack": state.name,
        "backend_url": _safe_url(found.backend_url),
        "owner": found.owner.kind,
        "owner_home": found.owner.owner.home if found.owner.owner else None,
        "owner_user": (found.owner.owner.who or None) if found.owner.owner else None,
        "run": {"name": run.name, "status": run.status, "id": run.id} if run else None,
        "resources": [resource(r) for r in state.resources],
        "outputs": state.outputs,
        "last_update": None
        if last is None
        else {
            "kind": last.kind,
            "result": last.result,
            "started": last.started.isoformat() if last.started else None,
            "ended": last.ended.isoformat() if last.ended else None,
            "resource_changes": last.resource_changes,
        },
        "pending_operations": [resource(r) for r in state.pending_operations],
    }


def _show(value: Any) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _safe_url(url: str) -> str:
    """The backend URL without any password in it."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:****@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
