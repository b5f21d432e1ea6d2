"""The nodes of a multi-node run (`nodes: N`): their environment and their record.

Every node runs the same commands; what tells them apart is the environment each job gets,
dstack's variables and iacrun's twins::

    DSTACK_NODE_RANK       0 .. N-1 (0 is the master)
    DSTACK_NODES_NUM       N
    DSTACK_MASTER_NODE_IP  the address the other nodes reach the master on
    DSTACK_NODES_IPS       every node's address, one a line, in rank order
    DSTACK_GPUS_PER_NODE   the GPUs each job gets
    DSTACK_GPUS_NUM        GPUS_PER_NODE x N

The per-node state of a run is `nodes.json` in its local run folder (beside `offers.json`,
`events` and `final`): the hosts in rank order, written once the machines are up and before
any job starts, then each node's end as it comes. The registry's row keeps the master's host in
`host`, so everything that follows one machine (attach, ports, `logs`, `ssh RUN`) follows it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ValidationError

from iacrun.orchestrator.host.transport import Host

NODES_FILE = "nodes.json"


class NodeRecord(BaseModel):
    """One node of a run: its rank, its host, and how its job ended (None while it runs)."""

    rank: int
    host: Host
    status: str | None = None
    exit_code: int | None = None
    reason: str | None = None


def node_address(host: Host) -> str:
    """The address the other nodes reach `host` on."""
    return host.internal_ip or host.address or "127.0.0.1"


def node_env(hosts: list[Host], rank: int, gpus_per_node: int) -> dict[str, str]:
    """The variables of rank `rank`'s job, dstack's and their `IACRUN_` twins."""
    ips = [node_address(h) for h in hosts]
    values = {
        "NODE_RANK": str(rank),
        "NODES_NUM": str(len(hosts)),
        "MASTER_NODE_IP": ips[0],
        "NODES_IPS": "\n".join(ips),
        "GPUS_PER_NODE": str(gpus_per_node),
        "GPUS_NUM": str(gpus_per_node * len(hosts)),
    }
    env: dict[str, str] = {}
    for prefix in ("DSTACK_", "IACRUN_"):
        env.update({prefix + key: value for key, value in values.items()})
    return env


def node_run_dir(base: str, rank: int) -> str:
    """Rank `rank`'s run folder on its host: the master keeps the run's, the others get their
    own, so that two nodes on one machine (two sshd on one box) never share a folder."""
    return base if rank == 0 else f"{base.rstrip('/')}-node{rank}"


def node_log_name(rank: int) -> str:
    """The file in the local run folder that keeps rank `rank`'s log once its machine is gone."""
    return "log" if rank == 0 else f"log.node{rank}"


def write_nodes(local_dir: str | Path, nodes: list[NodeRecord]) -> None:
    """Record the nodes, atomically (a reader sees the old file or the new one)."""
    path = Path(local_dir) / NODES_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([n.model_dump(mode="json") for n in nodes]))
    os.replace(tmp, path)


def read_nodes(local_dir: str | Path) -> list[NodeRecord]:
    """The recorded nodes in rank order; [] for a one-node run (or one not provisioned yet).
    Lenient, like the registry: an unreadable entry is left out."""
    try:
        raw = json.loads((Path(local_dir) / NODES_FILE).read_text())
    except (OSError, ValueError):
        return []
    nodes = []
    for item in raw if isinstance(raw, list) else []:
        try:
            nodes.append(NodeRecord.model_validate(item))
        except ValidationError:
            continue
    return sorted(nodes, key=lambda n: n.rank)


class RankPrefix:
    """A sink that hands on whole lines, each prefixed with a node's rank (`[1] `): how
    `logs --all-nodes` shows every node's log, in-process and through a server alike."""

    def __init__(self, rank: int, sink: Callable[[bytes], None]) -> None:
        self.prefix = f"[{rank}] ".encode()
        self.sink = sink
        self.partial = b""

    def write(self, data: bytes) -> None:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if lines:
            self.sink(b"".join(self.prefix + line + b"\n" for line in lines))

    def flush(self) -> None:
        """The last line, when the log did not end with a newline."""
        if self.partial:
            self.sink(self.prefix + self.partial + b"\n")
            self.partial = b""
