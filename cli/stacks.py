"""`iacrun stacks` and `iacrun state RUN`: what iacrun's Pulumi state backend holds.

    iacrun stacks [--json]        every stack, its run and the run's status, resource count, last
                                  update; a stack whose run is missing or over is flagged a leak
    iacrun state RUN [--json]     the run's stack: resources (type, name, id), outputs (secrets
                                  masked), the last update's result, pending operations

Thin: ``register(app)`` adds the two commands; rows and text are built by the functions below,
which tests call without a terminal. Only typer is imported at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from datetime import datetime

    from iacrun.orchestrator.registry import Registry, RunRecord
    from iacrun.stacks.engine import StackEngine, StackState, StackSummary

_DONE = {
    "create": "created",
    "update": "updated",
    "delete": "deleted",
    "same": "unchanged",
    "replace": "replaced",
}
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts and CI.")]
EngineFactory = Callable[[], "StackEngine"]
RegistryFactory = Callable[[], "Registry"]


def default_engine() -> StackEngine:
    """The engine on the configured state backend (`state.backend_url` in config.yml)."""
    from iacrun.orchestrator.models.settings import load_settings
    from iacrun.orchestrator.paths import iacrun_home
    from iacrun.stacks.engine import StackEngine

    return StackEngine(iacrun_home(), load_settings().state.backend_url)


def default_registry() -> Registry:
    from iacrun.orchestrator.paths import iacrun_home
    from iacrun.orchestrator.registry import Registry

    return Registry(iacrun_home() / "registry.db")


def register(
    app: typer.Typer,
    *,
    engine: EngineFactory = default_engine,
    registry: RegistryFactory = default_registry,
) -> None:
    """Add `stacks` and `state` to `app`. Tests inject the engine and the registry."""

    @app.command("stacks", help="List the stacks in the Pulumi state backend; flag leaks.")
    def stacks(json_out: Json = False) -> None:
        import json

        rows = link_runs(engine().list_stacks(), registry().runs(all_runs=True))
        if json_out:
            typer.echo(json.dumps([row_json(row) for row in rows], indent=2))
            return
        typer.echo(stacks_text(rows))

    @app.command("state", help="Show a run's stack: resources, outputs, last update.")
    def state(
        run: Annotated[str, typer.Argument(help="The run's name (or a stack's name).")],
        json_out: Json = False,
    ) -> None:
        import json

        eng = engine()
        record, stack_name = find_stack(run, eng.stack_names(), registry())
        found = eng.state(stack_name)
        if json_out:
            typer.echo(json.dumps(state_json(found, record, eng.backend_url), indent=2))
            return
        typer.echo(state_text(found, record, eng.backend_url))


# ----------------------------------------------------------------------------- stacks


@dataclass(frozen=True)
class StackRow:
    stack: StackSummary
    run: RunRecord | None

    @property
    def leak(self) -> bool:
        """No live run owns the stack: its run is unknown here, or over."""
        from iacrun.orchestrator.registry import FINAL_STATUSES

        return self.run is None or self.run.status in FINAL_STATUSES

    @property
    def note(self) -> str:
        if self.run is None:
            return "leak: no run"
        if self.leak:
            return f"leak: run {self.run.status}"
        return ""


def stack_keys(run: RunRecord) -> list[str]:
    """The stack names a run may own: the recorded one, else `<name>-<id>` (the cloud backends'
    choice), else the run's name."""
    keys = [run.stack_name] if run.stack_name else []
    return [*keys, f"{run.name}-{run.id}", run.name]


def owners(runs: Sequence[RunRecord]) -> dict[str, RunRecord]:
    """Stack name → the run it belongs to (the latest such run)."""
    latest_first = sorted(runs, key=lambda r: r.id, reverse=True)
    owner: dict[str, RunRecord] = {}
    for run in latest_first:  # a recorded stack name beats a derived one
        if run.stack_name:
            owner.setdefault(run.stack_name, run)
    for derive in (lambda r: f"{r.name}-{r.id}", lambda r: r.name):
        for run in latest_first:
            owner.setdefault(derive(run), run)
    return owner


def link_runs(summaries: Sequence[StackSummary], runs: Sequence[RunRecord]) -> list[StackRow]:
    """Each stack with the run it belongs to, or None."""
    owner = owners(runs)
    return [StackRow(stack=s, run=owner.get(s.name)) for s in sorted(summaries, key=_name)]


def _name(summary: StackSummary) -> str:
    return summary.name


def stacks_text(rows: Sequence[StackRow], now: float | None = None) -> str:
    from iacrun.cli.tables import render_table

    if not rows:
        return "no stacks in the state backend"
    table = render_table(
        ["STACK", "RUN", "STATUS", "RESOURCES", "UPDATED", "RESULT", ""],
        [
            [
                row.stack.name,
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
    return table


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
        "leak": row.leak,
    }


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _ago(when: datetime | None, now: float | None) -> str:
    from iacrun.cli.render import ago

    return ago(when.timestamp(), now) if when else "-"


# ----------------------------------------------------------------------------- state


def find_stack(
    name: str, stacks: Sequence[str], registry: Registry
) -> tuple[RunRecord | None, str]:
    """The run called `name` and its stack; else the stack called `name` and its run, if any."""
    from iacrun.orchestrator.errors import BackendError, RunNotFoundError

    try:
        run: RunRecord | None = registry.get(name)
    except RunNotFoundError:
        run = None
    if run is not None:
        for candidate in stack_keys(run):
            if candidate in stacks:
                return run, candidate
    if name in stacks:
        return owners(registry.runs(all_runs=True)).get(name), name
    if run is None:
        raise RunNotFoundError(f"no run and no stack named {name!r}; see iacrun stacks")
    raise BackendError(
        f"run {name} has no stack in the state backend (a local or SSH run has none, and a "
        "cloud run's stack is removed at teardown)"
    )


def state_text(state: StackState, run: RunRecord | None, backend_url: str) -> str:
    from iacrun.cli.tables import render_table

    lines = [f"stack   {state.name} ({_safe_url(backend_url)})"]
    lines.append(f"run     {run.name}, {run.status}" if run else "run     - (no run: a leak)")
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


def state_json(state: StackState, run: RunRecord | None, backend_url: str) -> dict[str, Any]:
    last = state.last_update

    def resource(r: Any) -> dict[str, Any]:
        return {"type": r.type, "name": r.name, "id": r.id, "urn": r.urn}

    return {
        "stack": state.name,
        "backend_url": _safe_url(backend_url),
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
