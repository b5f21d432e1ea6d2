"""`ssh RUN-NAME`: a `Host` block per live run in `~/.iacrun/ssh/config`, which `~/.ssh/config`
includes.

The include line is added once, at the top of `~/.ssh/config` (an `Include` further down would
only apply inside the `Host` block above it), under a marker comment (`# added by iacrun: ...`).
Each iacrun home (`$IACRUN_HOME`) has its own line: one line for all homes would need a place
outside every home to gather them, which no home owns. So that the lines of homes that are gone
(a deleted temporary `IACRUN_HOME`, a test's) do not pile up, each time iacrun writes its line it
also removes the marked lines whose included file no longer exists; only a marker comment and
the `Include` right under it are ever removed, with the blank line iacrun put after them. The
user's file is otherwise left as it is, byte for byte: it is rewritten only for these lines,
through a symlink to its target if it is one, keeping its mode.
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
_MARK = "# added by iacrun: `ssh RUN-NAME` for live runs"
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
        text = self._without_stale_includes(current)
        if not any(line.strip() in wanted for line in text.splitlines()):
            added = f"{_MARK}\n{self.include_line}\n"
            text = added + ("\n" + text if text else "")
        if text != current:
            _write_atomic(target, text, mode)

    def _without_stale_includes(self, text: str) -> str:
        """`text` less the marked Include lines (iacrun's) whose file no longer exists."""
        lines = text.splitlines(keepends=True)
        out: list[str] = []
        i = 0
        while i < len(lines):
            pair = lines[i : i + 2]
            if len(pair) == 2 and pair[0].rstrip("\n") == _MARK:
                included = self._included_file(pair[1])
                if included is not None and not included.exists():
                    i += 2
                    if i < len(lines) and not lines[i].strip():
                        i += 1  # the blank line written after it
                    continue
            out.append(lines[i])
            i += 1
        return "".join(out)

    def _included_file(self, line: str) -> Path | None:
        """The one file an `Include PATH` line names (`~` as this home), else None."""
        match = re.fullmatch(r'\s*Include\s+(?:"([^"]+)"|(\S+))\s*', line.rstrip("\n"))
        if match is None:
            return None
        path = match.group(1) or match.group(2)
        if path.startswith("~/"):
            return self.home / path[2:]
        return Path(path) if os.path.isabs(path) else None

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
