"""Stacks linked to their runs through the Orchestrator, on a scripted engine (no pulumi)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.backends.stack_inventory import find_stack
from iacrun.orchestrator.errors import BackendError, RunNotFoundError
from iacrun.orchestrator.registry import Registry
from iacrun.stacks.engine import DestroyResult, StackState, StackSummary

if TYPE_CHECKING:
    from iacrun.stacks.engine import StackEngine


class ScriptedEngine:
    """The part of StackEngine the Orchestrator reads, over a fixed set of stacks."""

    backend_url = "file:///tmp/iacrun-state"

    def __init__(self, *names: str) -> None:
        self.names = list(names)
        self.destroyed: list[str] = []

    def stack_names(self) -> list[str]:
        return list(self.names)

    def list_stacks(self) -> list[StackSummary]:
        return [StackSummary(n, 1, None, "succeeded", False, None) for n in self.names]

    def state(self, stack_name: str) -> StackState:
        return StackState(stack_name, [], {"public_ip": "127.0.0.1"}, None)

    def destroy(self, stack_name: str, **_: Any) -> DestroyResult:
        self.destroyed.append(stack_name)
        self.names.remove(stack_name)
        return DestroyResult(existed=True)


def orchestrator(home: Path, engine: ScriptedEngine) -> tuple[Orchestrator, list[int]]:
    made: list[int] = []

    def factory() -> StackEngine:
        made.append(1)
        return cast("StackEngine", engine)

    return Orchestrator(home=home, stack_engine=factory), made


def test_find_stack(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.db")
    record = registry.create("brave-otter-1", {}, tmp_path)
    assert find_stack("brave-otter-1", [f"brave-otter-1-{record.id}"], registry) == (
        record,
        f"brave-otter-1-{record.id}",
    )
    assert find_stack("leftover", ["leftover"], registry) == (None, "leftover")
    found, _ = find_stack(f"brave-otter-1-{record.id}", [f"brave-otter-1-{record.id}"], registry)
    assert found is not None and found.id == record.id
    with pytest.raises(RunNotFoundError):
        find_stack("nothing", ["leftover"], registry)


def test_stacks_link_every_recorded_run_and_flag_leaks(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.db")
    live = registry.create("brave-otter-1", {}, tmp_path)
    registry.update(live.id, status="running", stack_name=f"brave-otter-1-{live.id}")
    old = registry.create("calm-panda-1", {}, tmp_path)  # finished long ago: `ps` hides it
    registry.update(old.id, status="terminated", finished_at=1.0)
    engine = ScriptedEngine(f"calm-panda-1-{old.id}", f"brave-otter-1-{live.id}", "stray")
    orch, made = orchestrator(tmp_path, engine)

    rows = orch.stacks()

    assert [(r.stack.name, r.run.id if r.run else None, r.leak) for r in rows] == [
        (f"brave-otter-1-{live.id}", live.id, False),
        (f"calm-panda-1-{old.id}", old.id, True),
        ("stray", None, True),
    ]
    assert made == [1]


def test_stack_state_of_a_run_a_stack_and_neither(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.db")
    cloud = registry.create("brave-otter-1", {}, tmp_path)
    registry.create("local-run-1", {}, tmp_path)  # a local run has no stack
    engine = ScriptedEngine(f"brave-otter-1-{cloud.id}", "stray")
    orch, made = orchestrator(tmp_path, engine)

    detail = orch.stack_state("brave-otter-1")
    assert detail.state.name == f"brave-otter-1-{cloud.id}"
    assert detail.run is not None and detail.run.id == cloud.id
    assert detail.backend_url == "file:///tmp/iacrun-state"
    stray = orch.stack_state("stray")
    assert stray.run is None and stray.state.outputs == {"public_ip": "127.0.0.1"}
    with pytest.raises(BackendError, match="has no stack"):
        orch.stack_state("local-run-1")
    with pytest.raises(RunNotFoundError):
        orch.stack_state("nothing")
    assert made == [1]  # one engine per Orchestrator


def test_down_of_a_leftover_stack_uses_the_same_engine(tmp_path: Path) -> None:
    engine = ScriptedEngine("stray")
    orch, _ = orchestrator(tmp_path, engine)
    assert orch.down("stray") == "stray: stack destroyed and removed"
    assert engine.destroyed == ["stray"]
    with pytest.raises(RunNotFoundError):
        orch.down("stray")
