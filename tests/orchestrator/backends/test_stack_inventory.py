"""Stacks linked to their runs through the Orchestrator, on a scripted engine (no pulumi)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.backends.stack_inventory import find_stack, ownership
from iacrun.orchestrator.errors import BackendError, RunNotFoundError, StackOwnerError
from iacrun.orchestrator.registry import Registry
from iacrun.stacks.engine import DestroyResult, StackState, StackSummary, UpdateInfo

if TYPE_CHECKING:
    from iacrun.stacks.engine import StackEngine


#: this home's tag in these tests (written into the home before the Orchestrator reads it)
MINE = "k3x9q2ab"
#: another home sharing the state backend, and who ran it there
THEIRS = "m0p4zz71"
THEIR_OWNER = f"{THEIRS} bob@desk"


class ScriptedEngine:
    """The part of StackEngine the Orchestrator reads, over a fixed set of stacks; `owners`
    are the `iacrun:owner` values their last updates recorded."""

    backend_url = "file:///tmp/iacrun-state"

    def __init__(self, *names: str, owners: dict[str, str] | None = None) -> None:
        self.names = list(names)
        self.owners = owners or {}
        self.destroyed: list[str] = []

    def stack_names(self) -> list[str]:
        return list(self.names)

    def list_stacks(self) -> list[StackSummary]:
        return [
            StackSummary(n, 1, None, "succeeded", False, None, self.owners.get(n))
            for n in self.names
        ]

    def owner(self, stack_name: str) -> str | None:
        return self.owners.get(stack_name)

    def state(self, stack_name: str) -> StackState:
        last = UpdateInfo("update", "succeeded", None, None, {}, self.owners.get(stack_name))
        return StackState(stack_name, [], {"public_ip": "127.0.0.1"}, last)

    def destroy(self, stack_name: str, **_: Any) -> DestroyResult:
        self.destroyed.append(stack_name)
        self.names.remove(stack_name)
        return DestroyResult(existed=True)


def orchestrator(home: Path, engine: ScriptedEngine) -> tuple[Orchestrator, list[int]]:
    made: list[int] = []
    (home / "home-id").write_text(MINE + "\n")

    def factory() -> StackEngine:
        made.append(1)
        return cast("StackEngine", engine)

    return Orchestrator(home=home, stack_engine=factory), made


def test_find_stack(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.db")
    record = registry.create("brave-otter-1", {}, tmp_path)
    ours = f"brave-otter-1-{record.id}-{MINE}"
    assert find_stack("brave-otter-1", [ours], registry, MINE) == (record, ours)
    assert find_stack("leftover", ["leftover"], registry, MINE) == (None, "leftover")
    found, _ = find_stack(ours, [ours], registry, MINE)
    assert found is not None and found.id == record.id
    # another home's stack for its own first `brave-otter-1` is not our run's
    theirs = f"brave-otter-1-{record.id}-{THEIRS}"
    assert find_stack(theirs, [theirs], registry, MINE) == (None, theirs)
    with pytest.raises(BackendError, match="has no stack"):
        find_stack("brave-otter-1", [theirs], registry, MINE)
    with pytest.raises(RunNotFoundError):
        find_stack("nothing", ["leftover"], registry, MINE)


@pytest.mark.parametrize(
    ("name", "recorded_owner", "recorded_names", "kind", "label"),
    [
        (f"train-1-{MINE}", f"{MINE} alice@laptop", set(), "me", "me"),
        (f"train-1-{MINE}", None, set(), "me", "me"),  # its first update has not ended
        (f"train-1-{THEIRS}", THEIR_OWNER, set(), "other", f"bob@desk (home {THEIRS})"),
        (f"train-1-{THEIRS}", None, set(), "other", f"home {THEIRS}"),
        # an owner recorded for another home than the name's: the name decides, `who` unknown
        (f"train-1-{THEIRS}", f"{MINE} alice@laptop", set(), "other", f"home {THEIRS}"),
        # made by an older iacrun: ours only when our registry recorded the name
        ("train-1", None, {"train-1"}, "me", "me"),
        ("train-1", None, set(), "unknown", "unknown"),
        ("someone-elses", None, set(), "unknown", "unknown"),
        ("someone-elses", THEIR_OWNER, set(), "other", f"bob@desk (home {THEIRS})"),
        ("garbled", "not an owner", set(), "unknown", "unknown"),
    ],
)
def test_whose_a_stack_is(
    name: str, recorded_owner: str | None, recorded_names: set[str], kind: str, label: str
) -> None:
    owner = ownership(name, recorded_owner, MINE, recorded_names)
    assert (owner.kind, owner.label) == (kind, label)


def test_stacks_link_every_recorded_run_and_flag_only_our_leaks(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.db")
    live = registry.create("brave-otter-1", {}, tmp_path)
    registry.update(live.id, status="running", stack_name=f"brave-otter-1-{live.id}-{MINE}")
    old = registry.create("calm-panda-1", {}, tmp_path)  # finished long ago: `ps` hides it
    registry.update(old.id, status="terminated", finished_at=1.0)
    legacy = registry.create("quick-newt-1", {}, tmp_path)  # made by an older iacrun
    registry.update(legacy.id, status="failed", stack_name=f"quick-newt-1-{legacy.id}")
    engine = ScriptedEngine(
        f"calm-panda-1-{old.id}-{MINE}",
        f"brave-otter-1-{live.id}-{MINE}",
        f"brave-otter-1-{live.id}-{THEIRS}",  # their first run has our run's name and id
        f"quick-newt-1-{legacy.id}",
        f"calm-panda-1-{old.id}",  # untagged, not recorded: not ours to judge
        f"lost-1-{MINE}",  # ours (a registry that was reset): a leak
        owners={f"brave-otter-1-{live.id}-{THEIRS}": THEIR_OWNER},
    )
    orch, made = orchestrator(tmp_path, engine)

    rows = orch.stacks()

    assert [(r.stack.name, r.run.id if r.run else None, r.owner.kind, r.leak) for r in rows] == [
        (f"brave-otter-1-{live.id}-{MINE}", live.id, "me", False),
        (f"brave-otter-1-{live.id}-{THEIRS}", None, "other", False),
        (f"calm-panda-1-{old.id}", None, "unknown", False),
        (f"calm-panda-1-{old.id}-{MINE}", old.id, "me", True),
        (f"lost-1-{MINE}", None, "me", True),
        (f"quick-newt-1-{legacy.id}", legacy.id, "me", True),
    ]
    assert made == [1]


def test_stack_state_of_a_run_a_stack_and_neither(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.db")
    cloud = registry.create("brave-otter-1", {}, tmp_path)
    registry.create("local-run-1", {}, tmp_path)  # a local run has no stack
    theirs = f"brave-otter-1-{cloud.id}-{THEIRS}"
    engine = ScriptedEngine(
        f"brave-otter-1-{cloud.id}-{MINE}", "stray", theirs, owners={theirs: THEIR_OWNER}
    )
    orch, made = orchestrator(tmp_path, engine)

    detail = orch.stack_state("brave-otter-1")
    assert detail.state.name == f"brave-otter-1-{cloud.id}-{MINE}"
    assert detail.run is not None and detail.run.id == cloud.id
    assert detail.backend_url == "file:///tmp/iacrun-state"
    assert detail.owner.kind == "me"
    stray = orch.stack_state("stray")
    assert stray.run is None and stray.state.outputs == {"public_ip": "127.0.0.1"}
    assert stray.owner.kind == "unknown"
    other = orch.stack_state(theirs)
    assert other.run is None and other.owner.label == f"bob@desk (home {THEIRS})"
    with pytest.raises(BackendError, match="has no stack"):
        orch.stack_state("local-run-1")
    with pytest.raises(RunNotFoundError):
        orch.stack_state("nothing")
    assert made == [1]  # one engine per Orchestrator


def test_down_of_a_leftover_stack_of_ours_uses_the_same_engine(tmp_path: Path) -> None:
    engine = ScriptedEngine(f"lost-1-{MINE}")
    orch, _ = orchestrator(tmp_path, engine)
    assert orch.down(f"lost-1-{MINE}") == f"lost-1-{MINE}: stack destroyed and removed"
    assert engine.destroyed == [f"lost-1-{MINE}"]
    with pytest.raises(RunNotFoundError):
        orch.down(f"lost-1-{MINE}")


def test_down_of_a_stack_not_ours_refuses_and_force_says_whose_it_was(tmp_path: Path) -> None:
    theirs = f"train-1-{THEIRS}"
    engine = ScriptedEngine(theirs, "train-1", owners={theirs: THEIR_OWNER})
    orch, _ = orchestrator(tmp_path, engine)

    with pytest.raises(StackOwnerError) as caught:
        orch.down(theirs)
    assert str(caught.value) == (
        f"stack {theirs} belongs to bob@desk (home {THEIRS}), another iacrun home; left alone. "
        f"`iacrun down --force {theirs}` destroys it anyway"
    )
    with pytest.raises(StackOwnerError, match=r"no owner recorded .* --force train-1"):
        orch.down("train-1")
    assert engine.destroyed == []

    notes: list[str] = []
    assert orch.down(theirs, force=True, on_note=notes.append) == (
        f"{theirs}: stack destroyed and removed"
    )
    assert notes == [
        f"stack {theirs} belongs to bob@desk (home {THEIRS}), another iacrun home: destroying "
        "it (--force)"
    ]
    orch.down("train-1", force=True, on_note=notes.append)
    assert engine.destroyed == [theirs, "train-1"]
    assert notes[1] == (
        "stack train-1 has no owner recorded (an older iacrun made it) and no run of this home "
        "made it: destroying it (--force)"
    )
