"""A `pulumi` killed with SIGKILL leaves no plugin behind: what it started is killed once it has
ended, found while it lived (a plugin leads a process group of its own and is reparented when
its engine dies); and the plugins of a call whose caller died with it are reaped by the next call
of that engine. A stand-in `pulumi` script plays the engine: no Pulumi CLI needed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from iacrun.orchestrator.runner.runner import pid_alive
from iacrun.stacks.engine import CALL_MARK, _command_class, _reap_orphans

FAKE_PULUMI_OK = """#!/bin/bash
setsid sleep 302 >/dev/null 2>&1 &  # a provider's daemon, left on purpose by a pulumi that exits 0
echo $! > "$MARKS/daemon"
exit 0
"""

FAKE_PULUMI = """#!/bin/bash
# a plugin: a process group (and session) of its own, with pipes of its own (as Pulumi starts
# them), named as Pulumi names them
setsid bash -c 'exec -a pulumi-resource-fake sleep 300' >/dev/null 2>&1 &
echo $! > "$MARKS/plugin"
sleep 300 >/dev/null 2>&1 &   # a helper in the engine's own group
echo $! > "$MARKS/helper"
echo $$ > "$MARKS/engine"
wait
"""


def _read_pid(path: Path, timeout: float = 10) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path.name} never written")


def test_plugins_of_a_killed_engine_are_killed(tmp_path: Path) -> None:
    pytest.importorskip("pulumi.automation")
    fake = tmp_path / "pulumi"
    fake.write_text(FAKE_PULUMI)
    fake.chmod(0o700)
    marks = tmp_path / "marks"
    marks.mkdir()
    command = _command_class()(str(fake), None)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            command.run(["up"], str(tmp_path), {"MARKS": str(marks)})
        except BaseException as exc:  # the killed engine's CommandError
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    engine = _read_pid(marks / "engine")
    plugin = _read_pid(marks / "plugin")
    helper = _read_pid(marks / "helper")
    try:
        time.sleep(0.5)  # the engine's watcher has seen its children
        os.kill(engine, signal.SIGKILL)
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert errors, "a killed engine is an error"
        end = time.monotonic() + 5
        while time.monotonic() < end and (pid_alive(plugin) or pid_alive(helper)):
            time.sleep(0.05)
        assert not pid_alive(plugin), "the plugin outlived its engine"
        assert not pid_alive(helper), "the engine's helper outlived it"
    finally:
        for pid in (plugin, helper):
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_an_engine_that_ended_on_its_own_leaves_what_it_started_on_purpose(
    tmp_path: Path,
) -> None:
    pytest.importorskip("pulumi.automation")
    fake = tmp_path / "pulumi"
    fake.write_text(FAKE_PULUMI_OK)
    fake.chmod(0o700)
    marks = tmp_path / "marks"
    marks.mkdir()
    _command_class()(str(fake), None).run(["up"], str(tmp_path), {"MARKS": str(marks)})
    daemon = _read_pid(marks / "daemon")
    try:
        assert pid_alive(daemon)
    finally:
        os.kill(daemon, signal.SIGKILL)


def test_the_plugins_of_a_dead_call_are_reaped_and_no_others(tmp_path: Path) -> None:
    """A call's processes carry its mark: a mark whose `pulumi` is gone (it and the process that
    started it were killed) marks orphans; a call whose `pulumi` runs, or another home's, is
    left alone."""
    home, other = str(tmp_path / "home" / "pulumi"), str(tmp_path / "other" / "pulumi")
    cli = tmp_path / "pulumi"  # a process named `pulumi`, as the CLI is
    cli.write_bytes(Path("/bin/sleep").read_bytes())
    cli.chmod(0o700)

    def start(program: str, pulumi_home: str, mark: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PULUMI_HOME": pulumi_home, CALL_MARK: mark}
        return subprocess.Popen([program, "300"], env=env, start_new_session=True)

    orphan = start("sleep", home, "dead")
    live_cli, live_plugin = start(str(cli), home, "live"), start("sleep", home, "live")
    elsewhere = start("sleep", other, "dead")
    started = [orphan, live_cli, live_plugin, elsewhere]
    try:
        end = time.monotonic() + 10  # each has exec'd (its environment is the one given)
        while time.monotonic() < end and not all(
            CALL_MARK.encode() in Path(f"/proc/{p.pid}/environ").read_bytes() for p in started
        ):
            time.sleep(0.02)
        assert _reap_orphans(home) == [orphan.pid]
        assert orphan.wait(timeout=10) == -signal.SIGKILL
        assert all(p.poll() is None for p in (live_cli, live_plugin, elsewhere))
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_a_call_whose_caller_died_is_reaped_with_its_pulumi(tmp_path: Path) -> None:
    """A supervisor killed while its `pulumi` runs: that `pulumi` goes on, handed to init, and
    nobody reads its answer; it and its plugins go at the next call of the engine (seen once in
    a fresh clone: a stand-in provider left running 13 minutes after its test)."""
    home = str(tmp_path / "home" / "pulumi")
    cli = tmp_path / "pulumi"
    cli.write_bytes(Path("/bin/sleep").read_bytes())
    cli.chmod(0o700)
    env = {**os.environ, "PULUMI_HOME": home, CALL_MARK: "orphaned"}
    # a caller that starts `pulumi` and a plugin, then dies: both are handed to init
    caller = subprocess.run(
        ["sh", "-c", f'"{cli}" 300 >/dev/null 2>&1 & echo $!; sleep 300 >/dev/null 2>&1 & echo $!'],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
    )
    pids = [int(p) for p in caller.stdout.split()]
    try:
        end = time.monotonic() + 10
        while time.monotonic() < end and not all(
            CALL_MARK.encode() in Path(f"/proc/{p}/environ").read_bytes() for p in pids
        ):
            time.sleep(0.02)
        assert sorted(_reap_orphans(home)) == sorted(pids)
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
