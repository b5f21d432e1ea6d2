"""A multi-node run's node variables and its per-node record (host/cluster.py)."""

from __future__ import annotations

from pathlib import Path

from iacrun.orchestrator.host.cluster import (
    NodeRecord,
    node_env,
    node_log_name,
    node_run_dir,
    read_nodes,
    write_nodes,
)
from iacrun.orchestrator.host.transport import Host


def _host(address: str, internal: str | None = None) -> Host:
    return Host(kind="ssh", run_dir="/r", address=address, internal_ip=internal)


def test_every_rank_gets_dstacks_variables_and_iacrun_twins() -> None:
    hosts = [_host("54.1.1.1", "10.0.0.5"), _host("54.1.1.2", "10.0.0.6"), _host("10.0.0.7")]
    env = node_env(hosts, 2, gpus_per_node=8)
    assert env["DSTACK_NODE_RANK"] == "2"
    assert env["DSTACK_NODES_NUM"] == "3"
    # the private address the others reach the master on, never its public one
    assert env["DSTACK_MASTER_NODE_IP"] == "10.0.0.5"
    assert env["DSTACK_NODES_IPS"] == "10.0.0.5\n10.0.0.6\n10.0.0.7"
    assert (env["DSTACK_GPUS_PER_NODE"], env["DSTACK_GPUS_NUM"]) == ("8", "24")
    for key, value in env.items():
        if key.startswith("DSTACK_"):
            assert env["IACRUN_" + key.removeprefix("DSTACK_")] == value
    assert len(env) == 12


def test_node_folders_and_logs_keep_the_masters_names() -> None:
    assert node_run_dir("/home/u/.iacrun/runs/train-3", 0) == "/home/u/.iacrun/runs/train-3"
    assert node_run_dir("/home/u/.iacrun/runs/train-3/", 2) == "/home/u/.iacrun/runs/train-3-node2"
    assert (node_log_name(0), node_log_name(1)) == ("log", "log.node1")


def test_nodes_round_trip_and_read_leniently(tmp_path: Path) -> None:
    assert read_nodes(tmp_path) == []
    nodes = [NodeRecord(rank=1, host=_host("b")), NodeRecord(rank=0, host=_host("a"))]
    write_nodes(tmp_path, nodes)
    assert [n.host.address for n in read_nodes(tmp_path)] == ["a", "b"]  # rank order
    (tmp_path / "nodes.json").write_text(
        '[{"rank": 0, "host": {"kind": "ssh", "run_dir": "/r"}}, {"rank": "x"}, 7]'
    )
    assert [n.rank for n in read_nodes(tmp_path)] == [0]
    (tmp_path / "nodes.json").write_text("not json")
    assert read_nodes(tmp_path) == []
