"""`priority`: among runs waiting for the same machine, the higher one gets it first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from iacrun.orchestrator.registry import RunRecord, RunStatus
from tests.orchestrator.test_supervisor import NO_CAPACITY, FakeClock, World


@pytest.fixture(name="world")
def _world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    yield made
    made.orch.registry.close()


def _submit(world: World, command: str, priority: int) -> RunRecord:
    spec = world.spec(command, retry=NO_CAPACITY).model_copy(update={"priority": priority})
    return world.orch.submit(spec, world.plan(), supervise=False)


def _pending(world: World, run: RunRecord) -> None:
    world.orch.registry.transition(
        run.id, ("submitted",), status="pending", reason="waiting for a machine: busy"
    )


def test_a_lower_priority_run_leaves_the_free_machine_to_a_waiting_higher_one(
    world: World,
) -> None:
    high = _submit(world, "true", 80)
    _pending(world, high)  # its supervisor waits between two rounds
    low = _submit(world, "echo low ran", 10)
    clock = FakeClock()

    def high_took_it() -> None:  # the higher run's next round got the machine
        world.orch.registry.transition(high.id, ("pending",), status="provisioning")

    clock.on_sleep = high_took_it
    world.waiting_supervisor(clock).supervise(low.id)
    final = world.record(low)
    assert (final.status, final.exit_code) == (RunStatus.DONE, 0)
    assert world.backend.provisioned == ["box"]  # only after the higher run stopped waiting
    waits = [e for e in world.events(low) if e.startswith("waiting")]
    assert len(waits) == 1 and f"kept for {high.name} (priority 80)" in waits[0], waits


def test_equal_or_lower_priority_runs_do_not_hold_a_machine_back(world: World) -> None:
    same = _submit(world, "true", 10)
    _pending(world, same)
    lower = _submit(world, "true", 0)
    _pending(world, lower)
    run = _submit(world, "echo ran", 10)
    clock = FakeClock()
    world.waiting_supervisor(clock).supervise(run.id)
    assert world.record(run).status == RunStatus.DONE
    assert world.backend.provisioned == ["box"] and clock.slept == []


def test_priority_defaults_to_dstacks_zero(world: World) -> None:
    assert world.spec("true").priority == 0
