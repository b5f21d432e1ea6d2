"""A follower (attach, `logs -f`) reconnecting to a machine that is gone stops as soon as the
run is final, instead of retrying for the host's whole connect timeout (900 s on a cloud)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.registry import RunRecord, RunStatus
from tests.orchestrator.test_supervisor import World


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path)
    yield world
    world.orch.registry.close()


class Slammer:
    """A port that takes connections and closes them at once (a VM going away), counting them;
    `on_first` runs after the first one: the gate that makes the run final mid-retry."""

    def __init__(self, on_first: object) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.on_first = on_first
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()
            self.accepted += 1
            if self.accepted == 1:
                self.on_first()  # type: ignore[operator]

    def close(self) -> None:
        self.sock.close()


def gone_vm(world: World, port: int) -> RunRecord:
    run = world.submit("true")
    host = Host(
        kind="ssh",
        address="127.0.0.1",
        port=port,
        user="nobody",
        run_dir="/opt/iacrun/run",
        connect_timeout=900.0,
        boot="cloud-init",
        host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINERhmvZBV3v55S2BQDIPSctG1fOaPWlBkf4jtx3W6sq",
    )
    registry = world.orch.registry
    registry.update(run.id, status="provisioning", backend="scripted", host=host)
    registry.update(run.id, status="running")
    return run


def fail(world: World, run: RunRecord) -> None:
    """What a supervisor does when the upload failed: the run ends, the VM is deleted."""
    from iacrun.orchestrator.registry import Registry

    registry = Registry(world.home / "registry.db")  # this thread's own connection
    try:
        registry.update(run.id, status="failed", reason="upload limit exceeded")
    finally:
        registry.close()


def test_attach_ends_once_the_run_is_final(world: World) -> None:
    holder: list[RunRecord] = []
    slammer = Slammer(lambda: fail(world, holder[0]))
    try:
        holder.append(gone_vm(world, slammer.port))
        final = world.orch.attach(holder[0].name, lambda data: None)
    finally:
        slammer.close()
    assert final.status == RunStatus.FAILED and final.reason == "upload limit exceeded"


def test_logs_follow_ends_once_the_run_is_final(world: World) -> None:
    holder: list[RunRecord] = []
    slammer = Slammer(lambda: fail(world, holder[0]))
    try:
        holder.append(gone_vm(world, slammer.port))
        _, run = world.orch.logs(holder[0].name, lambda data: None, follow=True)
    finally:
        slammer.close()
    assert run.status == RunStatus.FAILED


@pytest.fixture
def vanishing(world: World, monkeypatch: pytest.MonkeyPatch) -> RunRecord:
    """A running cloud run whose machine hands on the log's first 6 bytes, then goes away as
    the run ends; its whole log is in the copy kept at teardown."""
    from iacrun.orchestrator import api
    from iacrun.orchestrator.errors import HostUnreachableError

    run = gone_vm(world, 9)
    (Path(run.local_dir) / "log").write_bytes(b"first\nsecond\n")

    async def follow(host: Host, offset: int, sink: Any, *args: Any) -> tuple[int, dict[str, Any]]:
        sink(b"first\n"[offset:])
        fail(world, run)
        raise HostUnreachableError("the machine is gone")

    monkeypatch.setattr(api, "_follow", follow)
    return run


def test_logs_follow_reads_the_rest_from_the_kept_copy_without_repeating(
    world: World, vanishing: RunRecord
) -> None:
    got: list[bytes] = []
    reached, run = world.orch.logs(vanishing.name, got.append, follow=True)
    assert b"".join(got) == b"first\nsecond\n"  # was b"first\nfirst\nsecond\n"
    assert reached == 13 and run.status == RunStatus.FAILED


def test_all_nodes_follow_reads_the_rest_from_the_kept_copy(
    world: World, vanishing: RunRecord
) -> None:
    got: list[bytes] = []
    world.orch.all_node_logs(vanishing.name, got.append, follow=True)
    assert b"".join(got) == b"[0] first\n[0] second\n"  # the second line was lost
