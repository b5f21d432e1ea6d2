"""The stack engine against the real `pulumi` CLI, in a temporary `file://` backend.

Resources are Python dynamic resources (tests/stacks/engine/resources.py) whose effects show on
disk, so "destroyed" means the file is gone, not only that the state says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pulumi
import pytest

from iacrun.orchestrator.errors import (
    BackendError,
    CapacityError,
    StackLockedError,
    StackTimeoutError,
    ToolMissingError,
)
from iacrun.stacks.engine import StackEngine, check_stack_name
from iacrun.stacks.progress import Progress
from iacrun.stacks.toolchain import missing_cli_hint
from tests.stacks.engine.resources import Failing, Marker, Slow
from tests.stacks.engine.support import REPO

engine_test = pytest.mark.engine

CAPACITY_TEXT = (
    "creating EC2 Instance: operation error EC2: RunInstances, https response error StatusCode: "
    "500, RequestID: 5c0e4b1e, api error InsufficientInstanceCapacity: We currently do not have "
    "sufficient p4d.24xlarge capacity in the Availability Zone you requested (us-east-1a)."
)


def stack_names(engine: StackEngine) -> list[str]:
    return [s.name for s in engine.list_stacks()]


@engine_test
def test_up_outputs_state_export_destroy_remove(engine: StackEngine, tmp_path: Path) -> None:
    marker = tmp_path / "marker"

    def program() -> None:
        made = Marker("marker", str(marker), pulumi.Config().require("greeting"))
        pulumi.export("value", made.value)
        pulumi.export("token", pulumi.Output.secret(pulumi.Config().require_secret("token")))

    seen: list[Progress] = []
    outputs = engine.up(
        "t-basic",
        program,
        {"greeting": "hello"},
        secrets={"token": "s3cr3t"},
        on_progress=seen.append,
    )
    assert outputs == {"value": "hello", "token": "s3cr3t"}
    assert marker.read_text() == "hello"
    assert seen[-1].finished and (seen[-1].done, seen[-1].planned) == (1, 1)
    assert seen[-1].render().startswith("created 1/1 resources")

    assert engine.outputs("t-basic") == outputs
    state = engine.state("t-basic")
    by_name = {r.name: r for r in state.resources}
    assert by_name["marker"].type == "pulumi-python:dynamic:Resource"
    assert by_name["marker"].id and by_name["marker"].id.startswith("marker-")
    assert state.outputs == {"value": "hello", "token": "[secret]"}
    assert state.last_update is not None
    assert (state.last_update.kind, state.last_update.result) == ("update", "succeeded")

    exported = engine.export("t-basic")
    text = str(exported)
    assert "s3cr3t" not in text  # secrets stay encrypted in an export
    types = [r["type"] for r in exported["deployment"]["resources"]]
    assert "pulumi-python:dynamic:Resource" in types

    (summary,) = engine.list_stacks()
    assert summary.name == "t-basic"
    assert summary.resource_count == 3  # the stack, the dynamic provider, the marker
    assert summary.result == "succeeded"
    assert not summary.update_in_progress

    workspace = engine.workspace_dir("t-basic")
    assert (workspace / "Pulumi.t-basic.yaml").exists()  # holds the secrets salt
    passphrase = engine.passphrase_file
    assert stat.S_IMODE(passphrase.stat().st_mode) == 0o600

    deleted: list[Progress] = []
    result = engine.destroy("t-basic", on_progress=deleted.append)
    assert (result.existed, result.deleted, result.dropped) == (True, 1, [])
    assert deleted[-1].render().startswith("deleted 1/1 resources")
    assert not marker.exists()
    assert stack_names(engine) == []
    assert not workspace.exists()

    again = engine.destroy("t-basic")  # idempotent
    assert not again.existed


@engine_test
def test_secrets_never_reach_the_workspace_in_clear(engine: StackEngine, tmp_path: Path) -> None:
    def program() -> None:
        pulumi.export("n", 1)

    engine.up("t-secret", program, secrets={"api_key": "do-not-leak-42"})
    workspace = engine.workspace_dir("t-secret")
    for path in workspace.rglob("*"):
        if path.is_file():
            assert "do-not-leak-42" not in path.read_text(errors="replace"), path
    state_dir = engine.home / "state"
    for path in state_dir.rglob("*.json"):
        assert "do-not-leak-42" not in path.read_text(errors="replace"), path
    engine.destroy("t-secret")


@engine_test
def test_two_stacks_update_at_once(engine: StackEngine, tmp_path: Path) -> None:
    results: dict[str, Any] = {}

    def run(name: str) -> None:
        def program() -> None:
            made = Marker("marker", str(tmp_path / name), name)
            Slow("slow", str(tmp_path / f"{name}.started"), 2, opts=pulumi.ResourceOptions())
            pulumi.export("value", made.value)

        try:
            results[name] = engine.up(name, program)
        except Exception as exc:
            results[name] = exc

    threads = [threading.Thread(target=run, args=(name,)) for name in ("t-one", "t-two")]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    elapsed = time.monotonic() - started
    assert results == {"t-one": {"value": "t-one"}, "t-two": {"value": "t-two"}}
    # both were in their 2-second creates at the same time
    one = (tmp_path / "t-one.started").stat().st_mtime
    two = (tmp_path / "t-two.started").stat().st_mtime
    assert abs(one - two) < 2, (one, two, elapsed)
    assert sorted(stack_names(engine)) == ["t-one", "t-two"]
    for name in ("t-one", "t-two"):
        engine.destroy(name)
        assert not (tmp_path / name).exists()
    assert stack_names(engine) == []


@engine_test
def test_failed_up_is_destroyed_and_raises_capacity_error(
    engine: StackEngine, tmp_path: Path
) -> None:
    network = tmp_path / "network"

    def program() -> None:
        net = Marker("network", str(network), "created before the VM")
        Failing("vm", CAPACITY_TEXT, opts=pulumi.ResourceOptions(depends_on=[net]))

    seen: list[Progress] = []
    with pytest.raises(CapacityError) as caught:
        engine.up("t-capacity", program, on_progress=seen.append)
    assert "InsufficientInstanceCapacity" in str(caught.value)
    assert "p4d.24xlarge" in str(caught.value)
    assert any(p.failed == 1 for p in seen)
    assert not network.exists()  # what the failed update created was destroyed
    assert stack_names(engine) == []
    assert not engine.workspace_dir("t-capacity").exists()


@engine_test
@pytest.mark.filterwarnings("ignore:Error in event stream")  # pulumi killed mid-stream, on purpose
def test_up_past_its_timeout_is_cancelled_and_torn_down(
    engine: StackEngine, tmp_path: Path
) -> None:
    network = tmp_path / "network"

    def program() -> None:
        net = Marker("network", str(network), "x")
        Slow("vm", str(tmp_path / "started"), 300, opts=pulumi.ResourceOptions(depends_on=[net]))

    started = time.monotonic()
    with pytest.raises(StackTimeoutError, match="ran past 4s"):
        engine.up("t-timeout", program, timeout=4)
    assert time.monotonic() - started < 120
    assert (tmp_path / "started").exists()
    assert not network.exists()
    assert stack_names(engine) == []


@engine_test
@pytest.mark.filterwarnings("ignore:Error in event stream")  # pulumi killed mid-stream, on purpose
def test_a_destroy_past_its_timeout_fails_loudly_and_can_be_retried(
    engine: StackEngine, tmp_path: Path
) -> None:
    hold = tmp_path / "hold"
    hold.touch()

    def program() -> None:
        Slow("vm", str(tmp_path / "started"), 0, hold_delete=str(hold))

    engine.up("t-stuck", program)
    with pytest.raises(StackTimeoutError, match="destroy ran past 3s"):
        engine.destroy("t-stuck", timeout=3)
    assert stack_names(engine) == ["t-stuck"]  # never reported gone while it is not
    hold.unlink()  # the cloud answers again
    result = engine.destroy("t-stuck")
    assert result.existed and result.cancelled_lock and result.deleted == 1
    assert stack_names(engine) == []


@engine_test
def test_killed_update_is_cleaned_up(engine: StackEngine, tmp_path: Path) -> None:
    """`kill -9` of the process running `up` (and its `pulumi`) midway; then `iacrun down`'s
    engine call recovers: stale lock cancelled, the pending create adopted and destroyed with the
    rest (a dynamic resource is deleted by its inputs), the stack removed."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": os.environ["PATH"]}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.stacks.engine.interrupted",
            str(engine.home),
            "t-killed",
            str(tmp_path),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "started").exists():
            assert proc.poll() is None, "the update ended before it could be killed"
            assert time.monotonic() < deadline, "the slow create never started"
            time.sleep(0.1)
        assert (tmp_path / "marker").exists()
    finally:
        # everything at once, as a crash would: the process, its `pulumi`, the plugins
        for pid in [proc.pid, *descendants(proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
    _wait_gone(int((tmp_path / "started").read_text()))  # the dynamic provider's process

    state = engine.state("t-killed")
    assert [r.name for r in state.pending_operations] == ["slow"]
    assert state.last_update is None  # the killed update never recorded its end

    result = engine.destroy("t-killed")
    assert result.existed and result.cancelled_lock
    assert [r.rsplit("::", 1)[1] for r in result.adopted] == ["slow"]
    assert (result.dropped, result.leaks) == ([], [])
    assert result.deleted == 2  # the marker, and the slow resource whose create was cut short
    assert not (tmp_path / "marker").exists()
    assert stack_names(engine) == []
    assert not engine.workspace_dir("t-killed").exists()


@engine_test
def test_ctrl_c_lets_the_update_finish_what_it_was_creating(
    engine: StackEngine, tmp_path: Path
) -> None:
    """Ctrl-C during `up`: pulumi cancels, but the create in flight completes and is recorded,
    so the destroy that follows deletes it (nothing the cloud made is lost from the state)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.stacks.engine.interrupted",
            str(engine.home),
            "t-ctrlc",
            str(tmp_path),
            "4",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)  # what the terminal's Ctrl-C does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err

    state = engine.state("t-ctrlc")
    assert {r.name for r in state.resources} >= {"marker", "slow"}
    assert state.pending_operations == []
    assert state.last_update is not None and state.last_update.result == "failed"
    result = engine.destroy("t-ctrlc")
    assert (result.deleted, result.dropped, result.cancelled_lock) == (2, [], False)
    assert not (tmp_path / "marker").exists()
    assert stack_names(engine) == []


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, queue = [], list(children.get(root, []))
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def _wait_gone(pid: int, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.1)


@engine_test
def test_a_live_update_is_never_cancelled(engine: StackEngine, tmp_path: Path) -> None:
    def program() -> None:
        Slow("vm", str(tmp_path / "started"), 8)

    errors: list[BaseException] = []

    def run() -> None:
        try:
            engine.up("t-live", program)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    while not (tmp_path / "started").exists():
        time.sleep(0.1)
    with pytest.raises(StackLockedError, match="being updated by another process"):
        engine.destroy("t-live")
    thread.join(timeout=120)
    assert errors == []
    engine.destroy("t-live")
    assert stack_names(engine) == []


@engine_test
def test_preview_lists_what_up_would_create(engine: StackEngine, tmp_path: Path) -> None:
    def program() -> None:
        net = Marker("network", str(tmp_path / "n"), "x")
        Marker("vm", str(tmp_path / "v"), net.value)

    planned = engine.preview("t-preview", program)
    assert planned == [
        ("pulumi-python:dynamic:Resource", "network"),
        ("pulumi-python:dynamic:Resource", "vm"),
    ]
    assert not (tmp_path / "n").exists()
    assert stack_names(engine) == []
    assert not engine.workspace_dir("t-preview").exists()


def test_without_pulumi_a_cloud_backend_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError) as caught:
        StackEngine(tmp_path / "home")
    hint = missing_cli_hint(tmp_path / "home")
    assert str(caught.value) == hint
    assert "\n" not in hint
    assert "get.pulumi.com" in hint and "iacrun doctor --fix" in hint
    assert not (tmp_path / "home").exists()  # checked before anything else


@pytest.mark.parametrize("name", ["../escape", ".project", "a/b", "", "x" * 101])
def test_stack_names_are_checked(name: str) -> None:
    with pytest.raises(BackendError):
        check_stack_name(name)
    assert check_stack_name("brave-otter-1") == "brave-otter-1"
