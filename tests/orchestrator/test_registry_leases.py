"""Leases: which server supervises a run (compare-and-set across processes, on both databases)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from iacrun.orchestrator.registry import Registry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_lease_is_free_expired_or_already_ours(registry_target: str, tmp_path: Path) -> None:
    clock = Clock()
    registry = Registry(registry_target, clock=clock)
    run = registry.create("leased", {}, tmp_path)
    assert registry.acquire_lease(run.id, "a", ttl=30)
    assert not registry.acquire_lease(run.id, "b", ttl=30)  # held by a
    assert registry.acquire_lease(run.id, "a", ttl=30)  # a again: renewed
    clock.now += 29
    assert not registry.acquire_lease(run.id, "b", ttl=30)  # a's lease runs until 1030
    clock.now += 2
    assert registry.acquire_lease(run.id, "b", ttl=30)  # expired: b takes it over
    record = registry.get_by_id(run.id)
    assert (record.lease_owner, record.lease_expires) == ("b", clock.now + 30)
    assert registry.renew_leases("a", ttl=30) == []  # a learns it lost the run
    assert registry.renew_leases("b", ttl=60) == [run.id]
    assert registry.get_by_id(run.id).lease_expires == clock.now + 60


def test_release_frees_only_the_owners_lease(registry_target: str, tmp_path: Path) -> None:
    registry = Registry(registry_target)
    run = registry.create("released", {}, tmp_path)
    assert registry.acquire_lease(run.id, "a", ttl=30)
    registry.release_lease(run.id, "b")
    assert registry.get_by_id(run.id).lease_owner == "a"
    registry.release_lease(run.id, "a")
    assert registry.get_by_id(run.id).lease_owner is None
    assert registry.acquire_lease(run.id, "b", ttl=30)


def test_a_finished_run_is_never_leased(registry_target: str, tmp_path: Path) -> None:
    registry = Registry(registry_target)
    run = registry.create("over", {}, tmp_path)
    registry.update(run.id, status="done")
    assert not registry.acquire_lease(run.id, "a", ttl=30)


def test_unsupervised_runs(registry_target: str, tmp_path: Path) -> None:
    clock = Clock()
    registry = Registry(registry_target, clock=clock)
    free = registry.create("free", {}, tmp_path)
    held = registry.create("held", {}, tmp_path)
    registry.create("embedded", {}, tmp_path, supervisor_pid=12345)  # its own process
    done = registry.create("done", {}, tmp_path)
    registry.update(done.id, status="done")
    registry.acquire_lease(held.id, "a", ttl=10)
    assert [r.name for r in registry.unsupervised()] == ["free"]
    clock.now += 11  # a's lease expired: its run is anyone's
    assert [r.id for r in registry.unsupervised()] == [free.id, held.id]


def _grab(args: tuple[str, int, str]) -> bool:
    target, run_id, owner = args
    return Registry(target).acquire_lease(run_id, owner, ttl=60)


def test_one_owner_wins_across_processes(registry_target: str, tmp_path: Path) -> None:
    registry = Registry(registry_target)
    run = registry.create("contested", {}, tmp_path)
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        won = pool.map(_grab, [(registry_target, run.id, f"owner-{i}") for i in range(16)])
    assert won.count(True) == 1
    assert registry.get_by_id(run.id).lease_owner == f"owner-{won.index(True)}"


def test_a_thread_acting_for_a_lost_lease_writes_nothing(
    registry_target: str, tmp_path: Path
) -> None:
    import pytest

    from iacrun.orchestrator.registry import HostClaim, Lease, LeaseLost

    clock = Clock()
    registry = Registry(registry_target, clock=clock)
    run = registry.create("leased", {}, tmp_path)
    other = registry.create("other", {}, tmp_path)
    assert registry.acquire_lease(run.id, "a", ttl=30)
    lease = Lease(run.id, "a")
    with registry.acting_for(lease):
        registry.update(run.id, status="provisioning")  # held: written
        registry.update(other.id, reason="not this lease's run")  # another run: not checked
        registry.check_lease(run.id)
        clock.now += 31
        assert registry.acquire_lease(run.id, "b", ttl=30)  # a stalled; b took the run over
        with pytest.raises(LeaseLost):
            registry.update(run.id, status="running")
        assert lease.lost.is_set()
        with pytest.raises(LeaseLost):
            registry.claim_hosts(
                run.id, lambda others: [HostClaim(label="h", address="127.0.0.1", port=22)]
            )
        with pytest.raises(LeaseLost):
            registry.check_lease(run.id)
    record = registry.get_by_id(run.id)
    assert (record.status, record.node_hosts, record.lease_owner) == ("provisioning", None, "b")
    assert [e.status for e in registry.history(run.id)] == ["submitted", "provisioning"]
    registry.update(run.id, status="running")  # outside: the registry's other writers as before
    # the flag alone (set by the heartbeat) stops writes before the database is read
    flagged = Lease(other.id, "nobody")
    flagged.lost.set()
    with registry.acting_for(flagged), pytest.raises(LeaseLost):
        registry.update(other.id, status="running")
