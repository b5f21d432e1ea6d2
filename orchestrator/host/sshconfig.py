"""`ssh RUN-NAME`: a `Host` block per live run in `~/.iacrun/ssh/config`, which `~/.ssh/config`
includes.

The include line is added once, at the top of `~/.ssh/config` (an `Include` further down would
only apply inside the `Host` block above it). The user's file is otherwise left as it is: it is
rewritten only to add that line, through a symlink to its target if it is one, keeping its mode.
Each run's pinned host key goes in its own known_hosts file, so `ssh RUN-NAME` checks the same
key iacrun does (`StrictHostKeyChecking yes`: never trust on first use).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

from iacrun.orchestrator.errors import BackendError
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.paths import iacrun_home

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_BEGIN = "# >>> iacrun run {name}"
_END = "# <<< iacrun run {name}"
_BLOCK_RE = re.compile(r"^# >>> iacrun run (\S+)\n.*?^# <<< iacrun run \1\n", re.M | re.S)
_HEADER = "# Runs of iacrun, written by iacrun while they live (`ssh RUN-NAME`). Do not edit.\n"


def known_hosts_line(host: Host) -> str:
    """The pinned key as a known_hosts line for `host.address` (and its port when not 22)."""
    assert host.host_key is not None and host.address is not None
    where = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
    key_type, key_data = host.host_key.split()[:2]
    return f"{where} {key_type} {key_data}\n"


def render_block(name: str, host: Host, known_hosts_file: str | None) -> str:
    """The `Host NAME` block for one run."""
    lines = [
        _BEGIN.format(name=name),
        f"Host {name}",
        f"    HostName {host.address}",
        f"    Port {host.port}",
    ]
    if host.user:
        lines.append(f"    User {host.user}")
    if host.identity_file:
        lines.append(f"    IdentityFile {_quote(host.identity_file)}")
        lines.append("    IdentitiesOnly yes")
    if known_hosts_file:
        lines.append(f"    UserKnownHostsFile {_quote(known_hosts_file)}")
    lines.append("    StrictHostKeyChecking yes")
    if host.proxy_jump:
        lines.append(f"    ProxyJump {host.proxy_jump}")
    lines.append(_END.format(name=name))
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    return f'"{value}"' if any(ch.isspace() for ch in value) else value


class SSHConfigEntries:
    """Adds and removes run entries; `home` and `iacrun_dir` are injectable for tests."""

    def __init__(self, *, iacrun_dir: Path | None = None, home: Path | None = None) -> None:
        self.iacrun_dir = iacrun_dir or iacrun_home()
        self.home = home or Path.home()
        self.dir = self.iacrun_dir / "ssh"
        self.include_path = self.dir / "config"
        self.user_config = self.home / ".ssh" / "config"

    @property
    def include_line(self) -> str:
        # absolute: OpenSSH expands ~ from the password database, which may not be $HOME
        return f"Include {_quote(str(self.include_path))}"

    def add(self, name: str, host: Host) -> None:
        """Write (or replace) the entry of run `name`, and make sure `~/.ssh/config` includes it."""
        if not _NAME_RE.match(name):
            raise BackendError(f"run name {name!r} cannot be an ssh host alias")
        if not host.address:
            return
        with self._locked():
            known_hosts = host.known_hosts
            if host.host_key:
                path = self.dir / "known_hosts" / name
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                _write_atomic(path, known_hosts_line(host), 0o600)
                known_hosts = str(path)
            blocks = self._blocks()
            blocks[name] = render_block(name, host, known_hosts)
            self._save(blocks)
            self._ensure_included()

    def remove(self, name: str) -> None:
        """Drop the entry of run `name`; nothing to drop is no error. The Include line stays."""
        with self._locked():
            blocks = self._blocks()
            if blocks.pop(name, None) is not None:
                self._save(blocks)
            with contextlib.suppress(FileNotFoundError):
                (self.dir / "known_hosts" / name).unlink()

    def names(self) -> list[str]:
        return sorted(self._blocks())

    # ------------------------------------------------------------------ files

    def _blocks(self) -> dict[str, str]:
        try:
            text = self.include_path.read_text()
        except FileNotFoundError:
            return {}
        return {m.group(1): m.group(0) for m in _BLOCK_RE.finditer(text)}

    def _save(self, blocks: dict[str, str]) -> None:
        body = "\n".join(blocks[name] for name in sorted(blocks))
        _write_atomic(self.include_path, _HEADER + ("\n" + body if body else ""), 0o600)

    def _ensure_included(self) -> None:
        ssh_dir = self.user_config.parent
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self.user_config.resolve() if self.user_config.is_symlink() else self.user_config
        try:
            current = target.read_text()
            mode = target.stat().st_mode & 0o777
        except FileNotFoundError:
            current, mode = "", 0o600
        wanted = {self.include_line}
        with contextlib.suppress(ValueError):
            wanted.add(f"Include ~/{self.include_path.relative_to(self.home)}")
        if any(line.strip() in wanted for line in current.splitlines()):
            return
        added = f"# added by iacrun: `ssh RUN-NAME` for live runs\n{self.include_line}\n"
        _write_atomic(target, added + ("\n" + current if current else ""), mode)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _write_atomic(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
