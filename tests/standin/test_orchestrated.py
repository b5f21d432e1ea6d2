"""The whole cloud path through the orchestrator, on the stand-in cloud: only the VM is simulated.

Supervisor → failover → PulumiCloudBackend.provision (keys, StackSpec, cloud-init files, the real
stack engine) → SSH with the pinned host key → upload, job.json, code.ready → the job under the
VM's "systemd" → log, ports → teardown destroying the stack. And a supervisor killed midway
through the stack's update, cleaned up afterwards by `down`.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from iacrun.orchestrator.models.runspec import build_run_spec
from iacrun.orchestrator.paths import home_tag
from iacrun.stacks.engine import StackEngine
from tests.stacks.engine.test_engine import descendants
from tests.standin.supervise import orchestrator
from tests.standin.test_vm import fetch
from tests.standin.vm import free_port, vm_pids

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.engine, pytest.mark.sshd]

SERVE = """
import http.server, os
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from " + os.environ["IACRUN_RUN_NAME"]).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
        self.server.done = True
    def log_message(self, *args): pass
server = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Hello)
server.done = False
while not server.done:
    server.handle_request()
"""


def write_project(folder: Path, port: int) -> Path:
    folder.mkdir()
    (folder / "serve.py").write_text(SERVE)
    task = folder / "web.dstack.yml"
    task.write_text(
        "type: task\n"
        "commands:\n"
        "  - 'echo \"greeting: $GREETING, args: ${{ run.args }}\"'\n"
        "  - python3 serve.py\n"
        f"env: [GREETING=hi, PORT={port}]\n"
        f"ports: [{port}]\n"
    )
    return task


def test_a_task_through_the_orchestrator_on_the_standin_cloud(tmp_path: Path) -> None:
    home, root = tmp_path / "home", tmp_path / "vm"
    home.mkdir()
    port = free_port()
    task = write_project(tmp_path / "project", port)
    orch = orchestrator(home, root)
    spec = build_run_spec(task, args=["--epochs", "3"], environ={})
    plan = orch.plan(spec)
    assert [o.backend for o in plan.offers] == ["standin"]
    run = orch.submit(spec, plan, supervise=False)
    # the supervisor has its own Orchestrator, as in its own process (one registry per thread)
    supervisor = threading.Thread(
        target=lambda: orchestrator(home, root).supervisor().supervise(run.id), daemon=True
    )
    supervisor.start()
    try:
        end = time.monotonic() + 120
        while orch.registry.get_by_id(run.id).status != "running":
            assert time.monotonic() < end, orch.registry.get_by_id(run.id)
            assert orch.registry.get_by_id(run.id).status in ("submitted", "provisioning")
            time.sleep(0.2)
        record = orch.registry.get_by_id(run.id)
        assert record.stack_name == f"{run.name}-{run.id}-{home_tag(home)}"
        assert record.backend == "standin"
        assert record.host is not None and (record.host.host_key or "").startswith("ssh-ed25519 ")

        from iacrun.orchestrator.models.taskfile import PortMapping

        local = free_port()
        shown = io.BytesIO()

        def attach() -> None:
            forward = PortMapping(local_port=local, container_port=port)
            # its own Orchestrator, so its own registry connection
            orchestrator(home, root).attach(record.name, shown.write, ports=[forward], offset=0)

        follower = threading.Thread(target=attach, daemon=True)
        follower.start()
        assert fetch(f"http://127.0.0.1:{local}/") == f"hello from {run.name}"
        follower.join(timeout=120)
        supervisor.join(timeout=120)
    finally:
        with contextlib.suppress(Exception):
            orch.down(run.name)
    final = orch.registry.get_by_id(run.id)
    assert (final.status, final.reason, final.exit_code) == ("done", "exited (0)", 0)
    log = shown.getvalue().decode()
    assert log.count("greeting: hi, args: --epochs 3") == 1  # shown once, kept copy included
    # torn down: the stack is gone and so is every process of the "VM"
    engine = StackEngine(home)
    assert engine.stack_names() == []
    assert not vm_pids(str(root))
    # the log outlives the machine
    kept: list[bytes] = []
    orch.logs(run.name, kept.append)
    assert b"greeting: hi" in b"".join(kept)


def test_a_supervisor_killed_midway_is_cleaned_up_by_down(tmp_path: Path) -> None:
    home, root = tmp_path / "home", tmp_path / "vm"
    home.mkdir()
    task = write_project(tmp_path / "project", free_port())
    orch = orchestrator(home, root, slow=600)
    spec = build_run_spec(task, environ={})
    run = orch.submit(spec, orch.plan(spec), supervise=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.standin.supervise", str(home), str(root), str(run.id), "600"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    started = tmp_path / "slow-started"
    try:
        end = time.monotonic() + 120
        while not started.exists():
            assert proc.poll() is None, "the supervisor ended before it could be killed"
            assert time.monotonic() < end
            time.sleep(0.1)
    finally:
        for pid in [proc.pid, *descendants(proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
    record = orch.registry.get_by_id(run.id)
    assert record.status == "provisioning"
    assert record.stack_name == f"{run.name}-{run.id}-{home_tag(home)}"
    engine = StackEngine(home)
    assert engine.stack_names() == [record.stack_name]  # locked, with a pending create

    message = orch.down(run.name)
    assert message == f"{run.name}: terminated (stopped by user)"
    assert engine.stack_names() == []
    assert orch.registry.get_by_id(run.id).status == "terminated"
    assert orch.down(run.name) == message  # again: nothing left, no error
