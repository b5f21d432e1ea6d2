"""A real OpenSSH `sshd` on a free loopback port (127.0.0.1 unless told another address of
127/8, which Linux routes to lo too: two servers on 127.0.0.2 and 127.0.0.3 are two "hosts"),
with its own host key and client key.

Reusable by any test that needs an SSH host::

    with Sshd(tmp_path) as sshd:
        host = sshd.host(run_dir="/tmp/x")        # a Host with the host key pinned
        settings = sshd.host_settings(name="box")  # an SSHHostSettings entry for config.yml

`Sshd.start()` waits until the server answers with its SSH banner; `stop()` ends it; `restart()`
keeps the port and keys. Needs `/usr/sbin/sshd` (Debian's openssh-server) and `ssh-keygen`.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.models.settings import SSHHostSettings

SSHD = "/usr/sbin/sshd"


def sshd_missing() -> str | None:
    """Why an sshd test cannot run here, or None when it can."""
    if not os.path.exists(SSHD):
        return f"{SSHD} is missing: apt-get install openssh-server"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is missing: apt-get install openssh-client"
    return None


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def keygen(path: Path) -> str:
    """Generate an ed25519 key pair at `path`; return the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "iacrun-test", "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip() if path.suffix else _pub(path)


def _pub(path: Path) -> str:
    return Path(str(path) + ".pub").read_text().strip()


class Sshd:
    """An sshd process serving `address`:`port` for `user` with `client_key`."""

    def __init__(
        self,
        root: Path,
        port: int | None = None,
        address: str = "127.0.0.1",
        login_home: Path | None = None,
    ) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.address = address
        self.port = port or free_port(address)
        self.user = getpass.getuser()
        self.host_key_path = root / "ssh_host_ed25519_key"
        self.client_key = root / "id_client"
        self.log_path = root / "sshd.log"
        #: the HOME its sessions get (its own unless given: several "hosts" may share one, as
        #: machines share an NFS home): a test's runs land here, never in the real home
        self.login_home = login_home or root / "home"
        self.login_home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._proc: subprocess.Popen[bytes] | None = None
        if not self.host_key_path.exists():
            keygen(self.host_key_path)
        if not self.client_key.exists():
            keygen(self.client_key)
        self.host_key = _pub(self.host_key_path)
        (root / "authorized_keys").write_text(_pub(self.client_key) + "\n")
        self.config_path = root / "sshd_config"
        self.config_path.write_text(self.config())

    def config(self) -> str:
        sftp = "internal-sftp"
        return "\n".join(
            [
                f"Port {self.port}",
                f"ListenAddress {self.address}",
                f"HostKey {self.host_key_path}",
                f"PidFile {self.root / 'sshd.pid'}",
                f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                "StrictModes no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "AllowTcpForwarding yes",
                "MaxStartups 100:30:200",
                "MaxSessions 100",
                "LogLevel INFO",
                f"Subsystem sftp {sftp}",
                # sshd takes the first SetEnv line only: every variable goes on this one
                "SetEnv " + " ".join(f'"{k}={v}"' for k, v in self.session_env().items()),
                "",
            ]
        )

    def session_env(self) -> dict[str, str]:
        """The environment sshd sets in its sessions (a subclass may add to it)."""
        return {"HOME": str(self.login_home)}

    # ------------------------------------------------------------------ process

    def start(self, timeout: float = 15.0) -> Sshd:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config_path)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._proc.poll() is not None:
                raise RuntimeError(f"sshd exited at once:\n{self.log_path.read_text()}")
            if self._banner():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not answer within {timeout}s:\n{self.log_path.read_text()}")

    def _banner(self) -> bool:
        try:
            with socket.create_connection((self.address, self.port), timeout=1) as sock:
                return sock.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the listener (sessions it already forked keep running, as with a real sshd)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Sshd:
        return self.start()

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ clients

    def host(self, **overrides: Any) -> Host:
        """A Host reaching this server with the host key pinned."""
        fields: dict[str, Any] = {
            "kind": "ssh",
            "run_dir": str(self.root / "runs"),
            "address": self.address,
            "port": self.port,
            "user": self.user,
            "identity_file": str(self.client_key),
            "host_key": self.host_key,
            "connect_timeout": 10.0,
        }
        fields.update(overrides)
        return Host(**fields)

    def host_settings(self, **overrides: Any) -> SSHHostSettings:
        fields: dict[str, Any] = {
            "host": self.address,
            "port": self.port,
            "user": self.user,
            "identity_file": str(self.client_key),
            "host_key": self.host_key,
        }
        fields.update(overrides)
        return SSHHostSettings(**fields)

    def known_hosts_line(self) -> str:
        return f"[{self.address}]:{self.port} {self.host_key}"
