"""The whole cloud path on this machine, with only the VM simulated: a real stack (the stand-in
VM, a dynamic resource) boots the run's real cloud-init files, and iacrun reaches it through the
real SSH transport: host key pinned, upload, job, log, port forward; then the stack is destroyed
and the "VM" with everything it ran is gone."""

from __future__ import annotations

import asyncio
import getpass
import socket
import tarfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pulumi
import pytest

from iacrun.orchestrator.host.transport import Host
from iacrun.stacks.cloudinit import VmLayout
from iacrun.stacks.engine import StackEngine
from iacrun.stacks.images import AWS_UBUNTU
from iacrun.stacks.keys import KeyPair, generate_ed25519, write_private_key
from iacrun.stacks.spec import StackSpec
from tests.standin.boot import boot_script
from tests.standin.vm import StandinVM, vm_pids

pytestmark = [pytest.mark.engine, pytest.mark.sshd]

SERVE_ONCE = (
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = ('hello from ' + os.environ['IACRUN_RUN_NAME']).encode()\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(body)\n"
    "    def log_message(self, *args): pass\n"
    "http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).handle_request()\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def job_for(run_name: str, port: int) -> dict[str, Any]:
    """job.json as iacrun's lifecycle.build_job makes it for this task."""
    return {
        "run_name": run_name,
        "commands": ['echo "greeting: $GREETING"', "python3 serve_once.py"],
        "env": {"GREETING": "hi", "PORT": str(port)},
        "working_dir": ".",
        "python": None,
        "image": None,
        "gpus": None,
        "shm_size_gb": None,
        "ports": [port],
        "max_duration": None,
        "stop_duration": 15,
        "retry": None,
    }


def spec_for(run_name: str, job: dict[str, Any], client_public: str, host: KeyPair) -> StackSpec:
    return StackSpec(
        run_name=run_name,
        stack_name=f"{run_name}-1",
        cloud="aws",
        region="us-east-1",
        instance_type="standin.local",
        disk_gb=8,
        gpu=False,
        vm_image=AWS_UBUNTU["x86"],
        ssh_public_key=client_public,
        host_key=host,
        ssh_cidrs=["127.0.0.1/32"],
        job={**job, "env": {}},
    )


async def drive(
    host: Host, job: dict[str, Any], archive: Path, port: int
) -> tuple[str, str, dict[str, Any]]:
    """What iacrun does once `up` returned: the start-up contract, then follow and forward."""
    import json

    from iacrun.orchestrator.host.connect import connect
    from iacrun.orchestrator.host.runner_client import follow_log, start_job, wait_vm_ready

    transport = await connect(host, retry_auth=True)
    try:
        await wait_vm_ready(transport, host, timeout=60)
        run_dir = host.run_dir
        await transport.upload(str(archive), f"{run_dir}/code.tar.gz")
        rc, _, err = await transport.run(
            [
                "sh",
                "-c",
                f"mkdir -p {run_dir}/code && tar -xzf {run_dir}/code.tar.gz -C {run_dir}/code",
            ]
        )
        assert rc == 0, err
        await transport.write_file(f"{run_dir}/job.json", json.dumps(job).encode(), 0o600)
        await start_job(transport, host, timeout=60)
        local = free_port()
        stop_forward = await transport.forward(local, port)
        try:
            body = await asyncio.to_thread(fetch, f"http://127.0.0.1:{local}/")
        finally:
            await stop_forward()
        chunks: list[bytes] = []
        _, state = await follow_log(transport, host, 0, chunks.append)
        return body, b"".join(chunks).decode(), state
    finally:
        await transport.close()


def fetch(url: str, timeout: float = 30) -> str:
    end = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return str(resp.read().decode())
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def test_a_task_runs_end_to_end_on_the_standin_vm(engine: StackEngine, tmp_path: Path) -> None:
    run_name = "standin-run"
    port = free_port()
    job = job_for(run_name, port)
    client = generate_ed25519("iacrun-standin-run")
    key_path = write_private_key(tmp_path / "id_ed25519", client)
    host_key = generate_ed25519("iacrun-standin-run-host")
    spec = spec_for(run_name, job, client.public_openssh, host_key)
    root = tmp_path / "vm"
    layout = VmLayout(
        root=f"{root}/opt/iacrun",
        user=getpass.getuser(),
        systemd_dir=f"{root}/etc/systemd/system",
        python="/usr/bin/python3",
        poweroff=("true",),
        systemctl="true",  # the machine check must not touch this machine's units
    )
    script = boot_script(spec, layout)

    def program() -> None:
        vm = StandinVM(
            "vm",
            root_dir=str(root),
            authorized_key=spec.ssh_public_key,
            boot_script=script,
            host_private_key=spec.host_key.private_openssh,
        )
        for name in ("public_ip", "ssh_port", "ssh_user", "host_key"):
            pulumi.export(name, getattr(vm, name))

    started = time.monotonic()
    outputs = engine.up(spec.stack_name, program)
    up_seconds = time.monotonic() - started
    assert outputs["public_ip"] == "127.0.0.1"
    assert outputs["host_key"] == host_key.public_key_only  # the key we generated, pinned
    host = Host(
        kind="ssh",
        run_dir=layout.run_dir,
        address=outputs["public_ip"],
        port=int(outputs["ssh_port"]),
        user=outputs["ssh_user"],
        identity_file=str(key_path),
        host_key=host_key.public_key_only,
        connect_timeout=30,
    )

    project = tmp_path / "project"
    project.mkdir()
    (project / "serve_once.py").write_text(SERVE_ONCE)
    archive = tmp_path / "code.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(project, arcname=".")

    body, log, state = asyncio.run(drive(host, job, archive, port))
    assert body == f"hello from {run_name}"
    assert "greeting: hi" in log
    assert "[iacrun] setup: ready" in log  # the real setup script ran at "boot"
    assert state["status"] == "done"
    assert state.get("exit_code") == 0
    assert (Path(layout.run_dir) / "code.started").exists()

    assert vm_pids(str(root))  # sshd and the boot script are running
    started = time.monotonic()
    engine.destroy(spec.stack_name)
    destroy_seconds = time.monotonic() - started
    print(f"stand-in VM: up {up_seconds:.1f}s, destroy {destroy_seconds:.1f}s")
    assert not vm_pids(str(root))  # every process of the "VM" ended
    assert not root.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", host.port), timeout=2).close()
    assert [s.name for s in engine.list_stacks()] == []


def test_destroy_powers_off_what_the_vm_started(engine: StackEngine, tmp_path: Path) -> None:
    """Processes the boot script detached from itself die with the VM, as on a real one."""
    root = tmp_path / "vm"
    client = generate_ed25519("k")
    script = "setsid sleep 600 < /dev/null > /dev/null 2>&1 &\necho $! > detached.pid\n"

    def program() -> None:
        vm = StandinVM(
            "vm", root_dir=str(root), authorized_key=client.public_openssh, boot_script=script
        )
        pulumi.export("ssh_port", vm.ssh_port)
        pulumi.export("host_key", vm.host_key)

    outputs = engine.up("t-poweroff", program)
    assert outputs["host_key"].startswith("ssh-ed25519 ")  # generated when none is given
    deadline = time.monotonic() + 10
    while not (root / "detached.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    detached = int((root / "detached.pid").read_text())
    assert running(detached)
    engine.destroy("t-poweroff")
    assert not running(detached)


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan waits a moment for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
