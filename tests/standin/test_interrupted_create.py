"""`pulumi` killed while the VM is being created (issue 11 defect 1): the pending create is never
forgotten. The stand-in VM is a dynamic resource the engine can adopt from its inputs, so the
failed update's cleanup destroys it; a pending create the engine cannot look up is named (type,
name, console link, exact command), kept with its stack for `stacks` and `down`."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from iacrun.orchestrator.errors import IacrunError
from iacrun.stacks.engine import StackEngine
from tests.stacks.engine.resources import Marker
from tests.standin.vm import StandinVM, vm_pids

pytestmark = [pytest.mark.engine, pytest.mark.sshd]


def wait_for(predicate: object, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def pulumi_of(parent: int) -> int:
    """The `pulumi` CLI process this test process started (its own session: pgid == pid)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                comm = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent and comm == "pulumi":
                return int(entry)
    raise AssertionError("no pulumi process found")


@pytest.mark.filterwarnings("ignore:Error in event stream")  # pulumi killed mid-stream, on purpose
def test_pulumi_killed_while_the_vm_is_created_leaves_no_vm(
    engine: StackEngine, tmp_path: Path
) -> None:
    root, hold = tmp_path / "vm", tmp_path / "hold"
    hold.touch()  # the "cloud" keeps reporting the create while the VM already runs
    marker = tmp_path / "marker"

    def program() -> None:
        Marker("disk", str(marker), "made before the VM")
        StandinVM(
            "vm", root_dir=str(root), authorized_key="ssh-ed25519 AAAA x", hold_create=str(hold)
        )

    errors: list[BaseException] = []

    def up() -> None:
        try:
            engine.up("t-vm-killed", program, timeout=300)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=up)
    thread.start()
    try:
        wait_for(lambda: Path(f"{hold}.reached").exists())
        assert vm_pids(str(root)), "the VM should run while its create is pending"
        os.killpg(pulumi_of(os.getpid()), signal.SIGKILL)  # `pulumi` and its process group
        thread.join(timeout=300)
        assert not thread.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], IacrunError), errors
    finally:
        hold.unlink(missing_ok=True)  # an orphaned provider may finish its create now
    # the VM the killed update was creating is gone, and so is its folder; nothing is left
    wait_for(lambda: not vm_pids(str(root)), timeout=30)
    assert not root.exists()
    assert not marker.exists()
    assert engine.stack_names() == []
    assert not vm_pids(str(root))  # and no orphaned provider brought it back


def test_a_pending_create_that_cannot_be_looked_up_is_named_and_kept(
    engine: StackEngine, tmp_path: Path
) -> None:
    """An interrupted update left an EC2 instance pending (put into the state as data: no cloud is
    reached): destroy keeps the stack, names the instance with its console link and the command
    that deletes it, and `list_stacks` reports it until a destroy can settle it."""
    engine.up("t-leak", lambda: Marker("disk", str(tmp_path / "m"), "x"))
    # what a killed `pulumi` leaves in the file backend's checkpoint (`stack import` drops it)
    checkpoint = engine.home / "state" / ".pulumi" / "stacks" / "iacrun" / "t-leak.json"
    data = json.loads(checkpoint.read_text())
    latest = data["checkpoint"]["latest"]
    stack_urn = next(r["urn"] for r in latest["resources"] if r["type"] == "pulumi:pulumi:Stack")
    latest["pending_operations"] = [
        {
            "type": "creating",
            "resource": {
                "urn": "urn:pulumi:t-leak::iacrun::aws:ec2/instance:Instance::run-1-vm",
                "custom": True,
                "type": "aws:ec2/instance:Instance",
                "parent": stack_urn,
                "inputs": {
                    "instanceType": "g5.xlarge",
                    "tags": {"iacrun:stack": "t-leak", "Name": "run-1"},
                    "availabilityZone": "eu-west-1b",
                },
            },
        }
    ]
    checkpoint.write_text(json.dumps(data))
    assert [r.name for r in engine.state("t-leak").pending_operations] == ["run-1-vm"]
    result = engine.destroy("t-leak")
    assert result.existed and result.deleted == 1
    assert [(leak.type, leak.name) for leak in result.leaks] == [
        ("aws:ec2/instance:Instance", "run-1-vm")
    ]
    leak = result.leaks[0]
    assert "region=eu-west-1" in leak.console and "tag:iacrun:stack=t-leak" in leak.console
    assert "aws ec2 terminate-instances --region eu-west-1" in leak.command
    assert "Name=tag:iacrun:stack,Values=t-leak" in leak.command
    assert engine.stack_names() == ["t-leak"]  # kept: `down` finds it again
    [summary] = engine.list_stacks()
    assert [leak.name for leak in summary.unresolved] == ["run-1-vm"]
    saved = json.loads((engine.workspace_dir("t-leak") / "unresolved.json").read_text())
    assert saved[0]["command"] == leak.command
    # the operator deleted it (or a lookup says it is gone): the next destroy settles the stack
    result = engine.destroy("t-leak", lookups={"aws:ec2/instance:Instance": lambda _p: None})
    assert result.leaks == [] and [r.name for r in result.dropped] == ["run-1-vm"]
    assert engine.stack_names() == []
