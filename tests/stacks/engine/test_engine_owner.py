"""The engine never updates a stack another iacrun home recorded: two homes, one file:// backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pulumi
import pytest

from iacrun.orchestrator.errors import StackOwnerError
from iacrun.stacks.engine import StackEngine
from iacrun.stacks.owner import OWNER_KEY
from tests.stacks.engine.resources import Marker
from tests.stacks.engine.support import OFFLINE_ENV

pytestmark = pytest.mark.engine

ALICE = "k3x9q2ab alice@laptop"
BOB = "m0p4zz71 bob@desk"


@pytest.fixture
def two_homes(tmp_path: Path) -> Iterator[tuple[StackEngine, StackEngine]]:
    shared = f"file://{tmp_path / 'shared-state'}"
    engines = []
    for name in ("alice", "bob"):
        home = tmp_path / name
        home.mkdir()
        engines.append(StackEngine(home, shared, env=OFFLINE_ENV, cancel_grace=5))
    alice, bob = engines
    # a team that shares a backend shares the passphrase of its secrets (docs/stacks.md)
    bob.passphrase_file.write_text(alice.passphrase_file.read_text())
    yield alice, bob
    for name in alice.stack_names():
        alice.destroy(name)


def marker(path: Path, value: str) -> object:
    def program() -> None:
        made = Marker("vm", str(path), value)
        pulumi.export("vm", made.value)

    return program


def test_an_update_of_a_stack_another_home_recorded_is_refused(
    two_homes: tuple[StackEngine, StackEngine], tmp_path: Path
) -> None:
    alice, bob = two_homes
    vm = tmp_path / "alice-vm"
    alice.up("train-1", marker(vm, "alice"), {OWNER_KEY: ALICE})  # type: ignore[arg-type]
    assert bob.owner("train-1") == ALICE
    assert [(s.name, s.owner) for s in bob.list_stacks()] == [("train-1", ALICE)]

    with pytest.raises(StackOwnerError) as caught:
        bob.up("train-1", marker(tmp_path / "bob-vm", "bob"), {OWNER_KEY: BOB})  # type: ignore[arg-type]
    assert str(caught.value) == (
        "stack train-1 belongs to alice@laptop (home k3x9q2ab), not to this iacrun home "
        "(home m0p4zz71); it is left alone"
    )
    # nothing of alice's changed: her VM, her outputs, her last update, no folder left in bob's
    assert vm.read_text() == "alice" and not (tmp_path / "bob-vm").exists()
    assert alice.outputs("train-1") == {"vm": "alice"}
    assert alice.owner("train-1") == ALICE
    assert alice.state("train-1").last_update.kind == "update"  # type: ignore[union-attr]
    assert not bob.workspace_dir("train-1").exists()

    # the same home may update its own stack again (what a retried update does)
    alice.up("train-1", marker(vm, "alice"), {OWNER_KEY: "k3x9q2ab alice@other-host"})  # type: ignore[arg-type]
    assert bob.owner("train-1") == "k3x9q2ab alice@other-host"


def test_a_stack_without_a_recorded_owner_is_not_refused_by_the_engine(
    two_homes: tuple[StackEngine, StackEngine], tmp_path: Path
) -> None:
    """An older iacrun recorded no owner: the engine cannot tell, the orchestrator decides by
    the name (its home tag) and the registry before it gets here."""
    alice, bob = two_homes
    alice.up("legacy-1", lambda: pulumi.export("n", 1))
    assert bob.owner("legacy-1") is None
    bob.up("legacy-1", lambda: pulumi.export("n", 2), {OWNER_KEY: BOB})
    assert alice.owner("legacy-1") == BOB
