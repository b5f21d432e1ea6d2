"""A stand-in VM for end-to-end tests: a Pulumi dynamic resource that behaves like a cloud VM.

Creating a ``StandinVM`` does what a cloud does for a VM, on this machine:

* a real OpenSSH ``sshd`` listens on a free port of its loopback ``address`` (127.0.0.1 unless
  given: the nodes of a cluster get 127.0.0.2, 127.0.0.3... so that each node's job can listen
  on the same port, as on machines of their own), with the host key it is given (or one it
  generates) and the run's public key as its only authorised key;
* the boot script (what cloud-init would run at boot: the job script) starts detached, with its
  output in ``<root_dir>/boot.log``;
* the outputs are what the AWS and Azure programs export: ``public_ip`` and ``private_ip`` (both
  its address: the other nodes reach it there), ``ssh_port``, ``ssh_user`` and ``host_key``
  (the public host key, to pin).

`hold_create` (a file path) keeps the create from returning while that file exists, once the VM
runs (``<hold_create>.reached`` says so): a cloud still reporting a create that already bills,
the window in which a killed `pulumi` leaves a pending create behind. `hold_delete` does the same
for the delete, before the VM is powered off: a cloud still deleting a VM that runs, the window in
which a killed `pulumi` leaves a pending delete behind.

Deleting it is the VM's termination: every process of the "VM" ends (sshd, its sessions, the boot
script and whatever they started: see `vm_pids`), and its root folder goes away.

The provider runs in the engine's dynamic-provider process (``python -m pulumi.dynamic``), which
unpickles it by reference: ``tests.standin.vm`` must be importable there, so the engine of a test
gets ``PYTHONPATH=<repo root>`` (see tests/stacks/engine/conftest.py).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider

SSHD = "/usr/sbin/sshd"
MARK = "IACRUN_VM_ROOT"
ENGINE_MARK = "IACRUN_PULUMI_CALL"  # see stacks/engine.py: the processes of one `pulumi` call
_INPUTS = ("root_dir", "authorized_key", "boot_script", "host_private_key", "address")
LOOPBACK = "127.0.0.1"


def free_port(address: str = LOOPBACK) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def sshd_config(
    root: Path, port: int, host_key: Path, authorized_keys: Path, address: str = LOOPBACK
) -> str:
    return "\n".join(
        [
            f"Port {port}",
            f"ListenAddress {address}",
            f"HostKey {host_key}",
            f"PidFile {root / 'run' / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized_keys}",
            "StrictModes no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "AllowTcpForwarding yes",
            "MaxStartups 100:30:200",
            "MaxSessions 100",
            f"SetEnv {MARK}={root}",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )


def _banner(port: int, address: str = LOOPBACK) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def vm_pids(root: str) -> list[int]:
    """Processes of the stand-in VM rooted at `root`: its sshd listener (which overwrites its own
    environment with its process title) and the processes below it, and every process with
    IACRUN_VM_ROOT=<root> in its environment (the boot script, SSH sessions, what they started)."""
    needle = f"{MARK}={root}".encode()
    config = f"-f {root}/etc/sshd_config".encode()
    found: set[int] = set()
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(pid)
        if needle in environ.split(b"\0") or (cmdline.startswith(b"sshd: ") and config in cmdline):
            found.add(pid)
    queue = list(found)
    while queue:
        for child in children.get(queue.pop(), []):
            if child not in found:
                found.add(child)
                queue.append(child)
    return sorted(found)


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def power_off(root: str, grace: float = 5.0) -> None:
    """End every process of the VM rooted at `root`: SIGTERM, a grace period, then SIGKILL."""
    _signal_all(vm_pids(root), signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end:
        if not vm_pids(root):
            return
        time.sleep(0.05)
    _signal_all(vm_pids(root), signal.SIGKILL)
    end = time.monotonic() + grace
    while time.monotonic() < end and vm_pids(root):
        time.sleep(0.05)


def _held(gate: str | None) -> None:
    """While the file `gate` exists (at most 300s), wait; `<gate>.reached` names this process."""
    if not gate:
        return
    Path(f"{gate}.reached").write_text(str(os.getpid()))
    end = time.monotonic() + 300
    while Path(gate).exists() and time.monotonic() < end:
        time.sleep(0.05)


class StandinVMProvider(ResourceProvider):
    """Creates and deletes stand-in VMs. Any change of input replaces the VM."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        root = Path(props["root_dir"]).resolve()
        for sub in ("etc", "run", "log"):
            (root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        host_key = root / "etc" / "ssh_host_ed25519_key"
        if props.get("host_private_key"):
            fd = os.open(host_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(props["host_private_key"].strip() + "\n")
        elif not host_key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True
            )
        public = subprocess.run(
            ["ssh-keygen", "-y", "-f", str(host_key)], check=True, capture_output=True, text=True
        ).stdout.strip()
        authorized = root / "etc" / "authorized_keys"
        authorized.write_text(props["authorized_key"].strip() + "\n")
        # the VM is another machine: nothing of the engine's call (its marker) reaches it
        env = {k: v for k, v in os.environ.items() if k != ENGINE_MARK} | {MARK: str(root)}
        address = props.get("address") or LOOPBACK
        port = self._start_sshd(root, host_key, authorized, env, address)
        self._boot(root, props.get("boot_script") or "", env)
        _held(props.get("hold_create"))
        outs = {
            **props,
            "public_ip": address,
            "private_ip": address,
            "ssh_port": port,
            "ssh_user": getpass.getuser(),
            "host_key": public,
        }
        return CreateResult(id_=f"standin-{uuid.uuid4().hex[:12]}", outs=outs)

    @staticmethod
    def _start_sshd(
        root: Path, host_key: Path, authorized: Path, env: dict[str, str], address: str
    ) -> int:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        config = root / "etc" / "sshd_config"
        errors = []
        for _ in range(5):
            port = free_port(address)
            config.write_text(sshd_config(root, port, host_key, authorized, address))
            proc = subprocess.run(
                [SSHD, "-f", str(config), "-E", str(root / "log" / "sshd.log")],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode == 0:
                end = time.monotonic() + 10
                while time.monotonic() < end:
                    if _banner(port, address):
                        return port
                    time.sleep(0.05)
            errors.append(proc.stderr.strip() or (root / "log" / "sshd.log").read_text()[-500:])
        raise RuntimeError(f"the stand-in VM's sshd did not start: {errors[-1]}")

    @staticmethod
    def _boot(root: Path, script: str, env: dict[str, str]) -> None:
        if not script.strip():
            return
        path = root / "boot.sh"
        path.write_text(script)
        path.chmod(0o700)
        with open(root / "boot.log", "ab") as log:
            proc = subprocess.Popen(
                ["/bin/bash", str(path)],
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        (root / "run" / "boot.pid").write_text(f"{proc.pid}\n")

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [key for key in _INPUTS if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=True)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        root = str(Path(props["root_dir"]).resolve())
        _held(props.get("hold_delete"))
        power_off(root)
        subprocess.run(["rm", "-rf", root], check=False)


class StandinVM(Resource):
    """A VM on this machine: sshd on 127.0.0.1 and a boot script. See the module docstring."""

    public_ip: pulumi.Output[str]
    private_ip: pulumi.Output[str]
    ssh_port: pulumi.Output[int]
    ssh_user: pulumi.Output[str]
    host_key: pulumi.Output[str]
    root_dir: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        root_dir: str,
        authorized_key: pulumi.Input[str],
        boot_script: pulumi.Input[str] = "",
        host_private_key: pulumi.Input[str] | None = None,
        hold_create: str | None = None,
        hold_delete: str | None = None,
        address: str = LOOPBACK,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "address": address,
            "root_dir": root_dir,
            "authorized_key": authorized_key,
            "boot_script": boot_script,
            "host_private_key": pulumi.Output.secret(host_private_key)
            if host_private_key
            else None,
            "hold_create": hold_create,
            "hold_delete": hold_delete,
            "public_ip": None,
            "private_ip": None,
            "ssh_port": None,
            "ssh_user": None,
            "host_key": None,
        }
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["host_private_key"])
        )
        super().__init__(StandinVMProvider(), name, props, opts)
