"""`iacrun doctor`: one line per check, and what to do about each that fails."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from iacrun.cli.options import Json
from iacrun.cli.usage import Command

if TYPE_CHECKING:
    from iacrun.orchestrator.doctor import Check

MARKS = {True: "ok  ", False: "FAIL", None: "--  "}


def register(app: typer.Typer) -> None:
    """Add `iacrun doctor` to the CLI."""

    @app.command(
        "doctor",
        cls=Command,
        help="Check that every configured backend can run: tools, credentials, quotas, hosts. "
        "Exits 0 only when all can.",
        short_help="Check that every configured backend can run.",
    )
    def doctor(
        fix: Annotated[
            bool, typer.Option("--fix", help="Install what is missing: the pulumi CLI, plugins.")
        ] = False,
        json_out: Json = False,
    ) -> None:
        import json
        import sys

        from iacrun.cli.mode import local_only
        from iacrun.orchestrator.api import Orchestrator
        from iacrun.orchestrator.doctor import Doctor

        local_only("doctor", "it checks the backends this machine's home configures")

        def note(line: str) -> None:
            print(f"  {line}", file=sys.stderr, flush=True)

        checks = Doctor(Orchestrator()).run(fix=fix, on_progress=note)
        if json_out:
            typer.echo(json.dumps([_as_json(c) for c in checks], indent=2))
        else:
            typer.echo(render(checks))
        raise typer.Exit(1 if any(c.ok is False for c in checks) else 0)


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        line = f"{MARKS[c.ok]}  {c.name.ljust(width)}  {c.detail}"
        if c.ok is False and c.fix:
            line += f"  → {c.fix}"
        lines.append(line)
    return "\n".join(lines)


def _as_json(check: Check) -> dict[str, object]:
    return {"name": check.name, "ok": check.ok, "detail": check.detail, "fix": check.fix}
