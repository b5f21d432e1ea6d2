"""Multi-node runs claim their ssh hosts atomically: two runs provisioning at once never get
the same host. Three real sshd on 127.0.0.2, .3 and .4 (three hosts to the backend)."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from iacrun.orchestrator.errors import CapacityError
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.registry import RunRecord
from tests.orchestrator.host.conftest import _require_sshd
from tests.orchestrator.host.sshd import Sshd
from tests.orchestrator.host.test_backend import World

pytestmark = pytest.mark.sshd

LABELS = ("node-a", "node-b", "node-c")


@pytest.fixture(scope="module")
def three_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Sshd]]:
    _require_sshd()
    servers = [
        Sshd(tmp_path_factory.mktemp(f"sshd{i}"), address=f"127.0.0.{i + 2}") for i in range(3)
    ]
    try:
        yield [server.start() for server in servers]
    finally:
        for server in servers:
            server.stop()


def cluster(tmp_path: Path, servers: list[Sshd]) -> World:
    return World(tmp_path, [s.host_settings(name=n) for s, n in zip(servers, LABELS, strict=True)])


def provisioning(world: World, name: str, label: str) -> RunRecord:
    """A 2-node run whose attempt on `label` is recorded, as the supervisor does first."""
    run = world.run(name)
    spec = run.spec.model_copy(update={"nodes": 2})
    return world.registry.update(
        run.id, status="provisioning", backend="ssh", instance_type=label, spec=spec
    )


def endpoints(hosts: list[Host]) -> set[tuple[str | None, int | None]]:
    return {(h.address, h.port) for h in hosts}


def test_a_worker_host_is_held_from_the_moment_it_is_chosen(
    three_sshd: list[Sshd], tmp_path: Path
) -> None:
    """The second run is refused node-b although the first has not recorded its nodes yet
    (nodes.json comes only once every node is up)."""
    world = cluster(tmp_path, three_sshd)
    offers = world.offers()
    first = provisioning(world, "first", "node-a")
    second = provisioning(world, "second", "node-c")
    hosts = world.backend.provision_nodes(first, offers["node-a"], 2, lambda _: None)
    assert [h.port for h in hosts] == [three_sshd[0].port, three_sshd[1].port]
    with pytest.raises(CapacityError) as refused:
        world.backend.provision_nodes(second, offers["node-c"], 2, lambda _: None)
    assert str(refused.value) == (
        "nodes: 2 needs 2 free ssh hosts that meet the resources; 1 found "
        "(node-a: busy with first; node-b: busy with first)"
    )
    # a one-node run sees the worker held too
    offer = world.offers()["node-b"]
    assert not offer.available and offer.note == "busy with first"
    # once the first run ends, its hosts are free again
    world.registry.update(first.id, status="done")
    again = world.backend.provision_nodes(second, offers["node-c"], 2, lambda _: None)
    assert [h.port for h in again] == [three_sshd[2].port, three_sshd[0].port]


def test_two_runs_at_once_on_three_hosts_never_share_one(
    three_sshd: list[Sshd], tmp_path: Path
) -> None:
    world = cluster(tmp_path, three_sshd)
    offers = world.offers()
    runs = [provisioning(world, "left", "node-a"), provisioning(world, "right", "node-c")]
    start = threading.Barrier(2)

    def provision(run: RunRecord) -> list[Host] | CapacityError:
        start.wait()
        try:
            return world.backend.provision_nodes(
                run, offers[run.instance_type or ""], 2, lambda _: None
            )
        except CapacityError as exc:
            return exc

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(provision, runs))
    won = [r for r in results if isinstance(r, list)]
    lost = [r for r in results if isinstance(r, CapacityError)]
    assert (len(won), len(lost)) == (1, 1), results
    assert len(endpoints(won[0])) == 2
    assert str(lost[0]).startswith("nodes: 2 needs 2 free ssh hosts that meet the resources;")
    assert "\n" not in str(lost[0])
