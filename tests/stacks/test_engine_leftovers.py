"""A `pulumi` killed with SIGKILL leaves no plugin behind: what it started is killed once it has
ended, found while it lived (a plugin leads a process group of its own and is reparented when
its engine dies). A stand-in `pulumi` script plays the engine: no Pulumi CLI needed."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from iacrun.orchestrator.runner.runner import pid_alive
from iacrun.stacks.engine import _command_class

FAKE_PULUMI = """#!/bin/bash
setsid sleep 300 &            # a plugin: a process group (and session) of its own
echo $! > "$MARKS/plugin"
sleep 300 &                   # a helper in the engine's own group
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
