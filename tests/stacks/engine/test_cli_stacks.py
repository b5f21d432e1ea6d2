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
from iacrun.orchestrator.paths import home_tag
from iacrun.orchestrator.registry import Registry, RunRecord
from iacrun.stacks.engine import StackEngine, StackSummary
from iacrun.stacks.owner import OWNER_KEY
from tests.stacks.engine.resources import Marker

MINE = "k3x9q2ab"
THEIRS = "m0p4zz71"


def summary(name: str, resources: int = 3, owner: str | None = None) -> StackSummary:
    return StackSummary(
        name=name,
        resource_count=resources,
        last_update=datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
        result="succeeded",
        update_in_progress=False,
        url=None,
        owner=owner,
    )


def run(id_: int, name: str, status: str, stack_name: str | None = None) -> RunRecord:
    return RunRecord(
        id=id_, name=name, status=status, spec={}, stack_name=stack_name, submitted_at=0.0
    )


def test_stacks_are_linked_to_their_runs_and_only_our_leaks_flagged() -> None:
    runs = [
        run(7, "brave-otter-1", "running", stack_name=f"brave-otter-1-7-{MINE}"),
        run(3, "calm-panda-1", "terminated"),  # its stack calm-panda-1-3-<ours> should be gone
        run(5, "quick-newt-2", "provisioning"),  # no recorded stack name: <name>-<id>-<ours>
        run(2, "brave-otter-1", "failed", stack_name="brave-otter-1-2"),  # an older iacrun's
    ]
    stacks = [
        summary(f"brave-otter-1-7-{MINE}", owner=f"{MINE} alice@laptop"),
        summary(f"calm-panda-1-3-{MINE}"),
        summary(f"quick-newt-2-5-{MINE}"),
        summary("someone-elses", 0),
        summary("brave-otter-1-2"),
        summary(f"brave-otter-1-7-{THEIRS}", owner=f"{THEIRS} bob@desk"),
        summary("calm-panda-1-3"),  # untagged, and not recorded by our run 3
    ]
    rows = {row.stack.name: row for row in link_runs(stacks, runs, MINE)}
    ours = rows[f"brave-otter-1-7-{MINE}"]
    assert ours.run is not None and ours.run.id == 7 and not ours.leak
    assert not rows[f"quick-newt-2-5-{MINE}"].leak
    calm = rows[f"calm-panda-1-3-{MINE}"]
    assert calm.leak and calm.note == "leak: run terminated"
    assert rows["brave-otter-1-2"].leak and rows["brave-otter-1-2"].run.id == 2  # type: ignore[union-attr]
    for name in ("someone-elses", "calm-panda-1-3", f"brave-otter-1-7-{THEIRS}"):
        assert rows[name].run is None and not rows[name].leak and rows[name].note == ""

    text = stacks_text(
        list(rows.values()), now=datetime(2026, 11, 27, 12, 5, tzinfo=UTC).timestamp()
    )
    lines = text.splitlines()
    assert lines[0].split() == [
        "STACK", "OWNER", "RUN", "STATUS", "RESOURCES", "UPDATED", "RESULT"
    ]  # fmt: skip
    theirs = next(line for line in lines if line.startswith(f"brave-otter-1-7-{THEIRS}"))
    assert theirs.split()[1:6] == ["bob@desk", "(home", f"{THEIRS})", "-", "-"]
    assert "LEAK" not in theirs
    assert next(line for line in lines if line.startswith("someone-elses")).split()[1] == "unknown"
    assert "LEAK: RUN TERMINATED" in text
    assert "5 min ago" in text
    assert (
        "3 stacks have no live run and may still cost money: "
        f"iacrun down brave-otter-1-2 calm-panda-1-3-{MINE} quick-newt-2-5-{MINE}"
    ) not in text  # quick-newt's run is live
    assert (
        "2 stacks have no live run and may still cost money: "
        f"iacrun down brave-otter-1-2 calm-panda-1-3-{MINE}\n"
    ) in text
    assert text.endswith(
        "3 stacks belong to other iacrun homes (or to no known one): their owners take them down"
    )


def test_no_stacks() -> None:
    from iacrun.orchestrator.backends.stack_inventory import Ownership

    assert stacks_text([]) == "no stacks in the state backend"
    assert StackRow(stack=summary("x"), run=None, owner=Ownership("me")).leak
    assert not StackRow(stack=summary("x"), run=None, owner=Ownership("unknown")).leak


@pytest.mark.engine
def test_stacks_and_state_commands(engine: StackEngine, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.db")
    live = registry.create("brave-otter-1", {}, tmp_path)
    live_stack = f"brave-otter-1-{live.id}-{home_tag(tmp_path)}"
    registry.update(live.id, status="running", stack_name=live_stack)

    def program() -> None:
        made = Marker("vm", str(tmp_path / "vm"), "x")
        pulumi.export("public_ip", "127.0.0.1")
        pulumi.export("ssh_port", 2222)
        pulumi.export("token", pulumi.Output.secret("hunter2"))
        pulumi.export("vm", made.value)

    mine = home_tag(tmp_path)
    engine.up(live_stack, program, {OWNER_KEY: f"{mine} alice@laptop"})
    engine.up(f"old-leak-9-{mine}", lambda: pulumi.export("n", 1))
    engine.up("old-run-9", lambda: pulumi.export("n", 1))  # an older iacrun's, of no run of ours

    app = typer.Typer()
    register(app, orchestrator=lambda: Orchestrator(home=tmp_path, stack_engine=lambda: engine))
    cli = CliRunner()

    result = cli.invoke(app, ["stacks"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "STACK", "OWNER", "RUN", "STATUS", "RESOURCES", "UPDATED", "RESULT"
    ]  # fmt: skip
    assert lines[1].split()[:5] == [live_stack, "me", "brave-otter-1", "running", "3"]
    assert lines[1].split()[6:9] == ["sec", "ago", "succeeded"]
    assert lines[2].split()[:4] == [f"old-leak-9-{mine}", "me", "-", "-"]
    assert lines[2].endswith("LEAK: NO RUN")
    assert lines[3].split()[:4] == ["old-run-9", "unknown", "-", "-"]
    assert "LEAK" not in lines[3]
    assert f"iacrun down old-leak-9-{mine}\n" in result.output

    data = json.loads(cli.invoke(app, ["stacks", "--json"]).output)
    assert [(d["stack"], d["owner"], d["leak"], d["run_status"]) for d in data] == [
        (live_stack, "me", False, "running"),
        (f"old-leak-9-{mine}", "me", True, None),
        ("old-run-9", "unknown", False, None),
    ]
    assert data[0]["owner_home"] is None  # ours: no other home to name

    result = cli.invoke(app, ["state", "brave-otter-1"])
    assert result.exit_code == 0, result.output
    assert f"stack   {live_stack} (file://" in result.output
    assert "owner   me\n" in result.output
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
