"""`iacrun stacks` and `iacrun state`: linking stacks to runs, leaks, and the real commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pulumi
import pytest
import typer
from typer.testing import CliRunner

from iacrun.cli.stacks import register, stacks_text
from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.backends.stack_inventory import StackRow, link_runs
from iacrun.orchestrator.errors import RunNotFoundError
from iacrun.orchestrator.registry import Registry, RunRecord
from iacrun.stacks.engine import StackEngine, StackSummary
from tests.stacks.engine.resources import Marker


def summary(name: str, resources: int = 3) -> StackSummary:
    return StackSummary(
        name=name,
        resource_count=resources,
        last_update=datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
        result="succeeded",
        update_in_progress=False,
        url=None,
    )


def run(id_: int, name: str, status: str, stack_name: str | None = None) -> RunRecord:
    return RunRecord(
        id=id_, name=name, status=status, spec={}, stack_name=stack_name, submitted_at=0.0
    )


def test_stacks_are_linked_to_their_runs_and_leaks_flagged() -> None:
    runs = [
        run(7, "brave-otter-1", "running", stack_name="brave-otter-1-7"),
        run(3, "calm-panda-1", "terminated"),  # its stack calm-panda-1-3 should be gone
        run(5, "quick-newt-2", "provisioning"),  # no recorded stack name: <name>-<id>
        run(2, "brave-otter-1", "failed", stack_name="brave-otter-1-2"),
    ]
    stacks = [
        summary("brave-otter-1-7"),
        summary("calm-panda-1-3"),
        summary("quick-newt-2-5"),
        summary("someone-elses", 0),
        summary("brave-otter-1-2"),
    ]
    rows = {row.stack.name: row for row in link_runs(stacks, runs)}
    assert rows["brave-otter-1-7"].run is not None and rows["brave-otter-1-7"].run.id == 7
    assert not rows["brave-otter-1-7"].leak
    assert not rows["quick-newt-2-5"].leak
    assert rows["calm-panda-1-3"].leak and rows["calm-panda-1-3"].note == "leak: run terminated"
    assert rows["brave-otter-1-2"].leak and rows["brave-otter-1-2"].run.id == 2  # type: ignore[union-attr]
    assert rows["someone-elses"].run is None and rows["someone-elses"].note == "leak: no run"

    text = stacks_text(
        list(rows.values()), now=datetime(2026, 11, 27, 12, 5, tzinfo=UTC).timestamp()
    )
    assert "LEAK: RUN TERMINATED" in text
    assert "5 min ago" in text
    assert text.endswith(
        "3 stacks have no live run and may still cost money: "
        "iacrun down brave-otter-1-2 calm-panda-1-3 someone-elses"
    )


def test_no_stacks() -> None:
    assert stacks_text([]) == "no stacks in the state backend"
    assert StackRow(stack=summary("x"), run=None).leak


@pytest.mark.engine
def test_stacks_and_state_commands(engine: StackEngine, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.db")
    live = registry.create("brave-otter-1", {}, tmp_path)
    live_stack = f"brave-otter-1-{live.id}"
    registry.update(live.id, status="running", stack_name=live_stack)

    def program() -> None:
        made = Marker("vm", str(tmp_path / "vm"), "x")
        pulumi.export("public_ip", "127.0.0.1")
        pulumi.export("ssh_port", 2222)
        pulumi.export("token", pulumi.Output.secret("hunter2"))
        pulumi.export("vm", made.value)

    engine.up(live_stack, program)
    engine.up("old-leak-9", lambda: pulumi.export("n", 1))

    app = typer.Typer()
    register(app, orchestrator=lambda: Orchestrator(home=tmp_path, stack_engine=lambda: engine))
    cli = CliRunner()

    result = cli.invoke(app, ["stacks"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["STACK", "RUN", "STATUS", "RESOURCES", "UPDATED", "RESULT"]
    assert lines[1].split()[:4] == [live_stack, "brave-otter-1", "running", "3"]
    assert lines[1].split()[5:8] == ["sec", "ago", "succeeded"]
    assert lines[2].split()[:3] == ["old-leak-9", "-", "-"]
    assert lines[2].endswith("LEAK: NO RUN")
    assert "iacrun down old-leak-9" in result.output

    data = json.loads(cli.invoke(app, ["stacks", "--json"]).output)
    assert [(d["stack"], d["leak"], d["run_status"]) for d in data] == [
        (live_stack, False, "running"),
        ("old-leak-9", True, None),
    ]

    result = cli.invoke(app, ["state", "brave-otter-1"])
    assert result.exit_code == 0, result.output
    assert f"stack   {live_stack} (file://" in result.output
    assert "run     brave-otter-1, running" in result.output
    assert "last    update succeeded at " in result.output
    assert "pulumi-python:dynamic:Resource  vm" in result.output
    assert "token      [secret]" in result.output
    assert "hunter2" not in result.output

    data = json.loads(cli.invoke(app, ["state", "brave-otter-1", "--json"]).output)
    assert data["outputs"] == {
        "public_ip": "127.0.0.1",
        "ssh_port": 2222,
        "token": "[secret]",
        "vm": "x",
    }
    assert data["run"]["status"] == "running"
    assert data["last_update"]["result"] == "succeeded"
    vm = next(r for r in data["resources"] if r["name"] == "vm")
    assert vm["id"].startswith("marker-")

    result = cli.invoke(app, ["state", "nothing"])
    assert isinstance(result.exception, RunNotFoundError)
