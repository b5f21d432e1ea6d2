"""Which `RunService` the CLI talks to: this process's Orchestrator, or an `iacrun server`.

Remote mode is on when `IACRUN_SERVER_URL` and `IACRUN_TOKEN` are both set (CI: the token from
a secret), or after `iacrun login URL`, which keeps the URL and the token in `server.json` in
iacrun's home (0600). The environment wins over the file. `iacrun --local COMMAND` forces
in-process whatever is set. Without any of them the CLI works in-process, exactly as before.

Only the standard library at import: `iacrun ps` in-process must not load httpx.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from iacrun.cli.remote import RemoteService
    from iacrun.orchestrator.service import RunService

URL_ENV = "IACRUN_SERVER_URL"
TOKEN_ENV = "IACRUN_TOKEN"
#: the file `iacrun login` writes in iacrun's home
LOGIN_FILE = "server.json"


@dataclass(frozen=True)
class ServerLogin:
    """Where the server is, the bearer token, and where both were found (for messages)."""

    url: str
    token: str
    source: str


class _Mode:
    forced_local = False


_mode = _Mode()


def force_local(value: bool = True) -> None:
    """`--local`: in-process whatever the environment or `iacrun login` say."""
    _mode.forced_local = value


def login_file(home: Path | None = None) -> Path:
    from iacrun.orchestrator.paths import iacrun_home

    return (home or iacrun_home()) / LOGIN_FILE


def normal_url(url: str) -> str:
    """The server's base URL as typed, checked: http(s)://host[:port][/prefix], no trailing /."""
    from urllib.parse import urlsplit

    from iacrun.orchestrator.errors import InputError

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{url!r} is not a server URL; give one like http://127.0.0.1:3000")
    if parts.password is not None or parts.username is not None:
        raise InputError("a server URL carries no user or password; the token is asked apart")
    if parts.query or parts.fragment:
        raise InputError(f"{url!r}: a server URL has no ?query or #fragment")
    return url.strip().rstrip("/")


def current_login() -> ServerLogin | None:
    """The server the CLI talks to, or None for in-process (no server, or `--local`)."""
    from iacrun.orchestrator.errors import InputError

    if _mode.forced_local:
        return None
    url, token = os.environ.get(URL_ENV, ""), os.environ.get(TOKEN_ENV, "")
    if url and token:
        return ServerLogin(normal_url(url), token, "environment")
    if url or token:
        have, lack = (URL_ENV, TOKEN_ENV) if url else (TOKEN_ENV, URL_ENV)
        raise InputError(
            f"{have} is set but {lack} is not; set both for remote mode, or unset {have}"
        )
    return read_login(login_file())


def read_login(path: Path) -> ServerLogin | None:
    from iacrun.orchestrator.errors import ConfigError
    from iacrun.orchestrator.paths import shown_path

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{shown_path(path)} cannot be read ({exc}); log in again: iacrun login URL"
        ) from exc
    url, token = (data.get(k) if isinstance(data, dict) else None for k in ("url", "token"))
    if not isinstance(url, str) or not isinstance(token, str) or not url or not token:
        raise ConfigError(
            f"{shown_path(path)} has no url and token; log in again: iacrun login URL"
        )
    return ServerLogin(normal_url(url), token, shown_path(path))


def save_login(url: str, token: str, path: Path | None = None) -> Path:
    """Write url+token to `path` (default: iacrun's home), 0600 from its first byte, whole or
    not at all (a temporary file renamed over the old one)."""
    path = path or login_file()
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # also when a leftover partial file had another mode
        with os.fdopen(fd, "w") as out:
            json.dump({"url": url, "token": token}, out)
            out.write("\n")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def forget_login(path: Path | None = None) -> bool:
    """Remove the stored login; whether there was one."""
    path = path or login_file()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def is_remote() -> bool:
    return current_login() is not None


def service() -> RunService:
    """The one place the CLI gets what runs its tasks: the in-process Orchestrator, or the
    server named by the environment or `iacrun login`."""
    remote = remote_service()
    if remote is not None:
        return remote
    from iacrun.orchestrator.api import Orchestrator

    return Orchestrator()


def remote_service() -> RemoteService | None:
    """The server's service in remote mode (for what only remote mode has: its offers and
    stacks rows), None in-process."""
    login = current_login()
    if login is None:
        return None
    from iacrun.cli.remote import RemoteService

    return RemoteService.connect(login.url, login.token)


def local_only(command: str, why: str) -> None:
    """Refuse, in one line, a command that has no meaning against a server."""
    from iacrun.orchestrator.errors import InputError

    login = current_login()
    if login is not None:
        raise InputError(
            f"{command} is local-only ({why}); it is not sent to {login.url}: "
            f"run it on the server's machine, or here with: iacrun --local {command}"
        )
