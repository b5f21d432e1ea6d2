"""Open an `SSHTransport` to a `Host`: host key pinned, retried while the machine boots.

The host key is never learned on first use. It is checked against, in order:

1. `host.host_key`, an OpenSSH public key line (the VM's pre-generated key for clouds, or a key
   written in `~/.iacrun/config.yml` for your own hosts);
2. the known_hosts file `host.known_hosts`;
3. `~/.ssh/known_hosts`.

An unknown or changed key is refused with a `BackendError` that names both fingerprints. A host
that refuses connections, resets them or times out (a VM still booting) is retried with backoff
until the deadline, then reported as `HostUnreachableError` with the last failure.

With `filtered_after` (a cloud VM's first connection, once the provider says it runs), each try
is bounded and a timed-out try is checked with a bare TCP probe: a port that never answers at
all (no connection, no refusal) for that long is filtered by a firewall, not booting, and is
reported at once as `PortFilteredError` instead of after the whole connect timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import getpass
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from iacrun.orchestrator.errors import (
    BackendError,
    CredentialsError,
    HostUnreachableError,
    PortFilteredError,
)
from iacrun.orchestrator.host.ssh import SSHTransport
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.paths import shown_config_file

KEEPALIVE_SECONDS = 15.0
KEEPALIVE_COUNT_MAX = 4
FIRST_BACKOFF = 0.25
MAX_BACKOFF = 5.0

#: a running VM whose SSH port gives no answer at all for this long is behind a firewall (a
#: booting one refuses connections once its network is up, well within this)
FILTERED_AFTER = 300.0
#: one try's limit while filtering is watched, so that a dropped SYN is noticed in time
ATTEMPT_TIMEOUT = 20.0
PROBE_TIMEOUT = 10.0

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
#: whether anything answers on (address, port): a connection or a refusal (not a timeout)
Probe = Callable[[str, int, float], Awaitable[bool]]


async def tcp_answers(address: str, port: int, timeout: float) -> bool:
    """True when `address:port` accepts or refuses a TCP connection within `timeout`."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
    except ConnectionRefusedError:
        return True
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


class SilenceWatch:
    """Tells a filtered port from a booting machine: tries that got no answer at all, without
    one that did in between, for `limit` seconds."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.since: float | None = None

    def observe(self, answered: bool, tried_at: float, now: float) -> bool:
        """Record one try (started at `tried_at`); True when the port counts as filtered."""
        if answered:
            self.since = None
            return False
        if self.since is None:
            self.since = tried_at
        return now - self.since >= self.limit


def filtered_message(host: Host, silent_for: float) -> str:
    return (
        f"port {host.port} of {host.address} is filtered: no answer at all for "
        f"{silent_for:.0f}s while the VM runs. Check that ssh_cidrs in ~/.iacrun/config.yml "
        f"(default: this machine's public address) holds the address your SSH leaves from, that "
        f"your network lets SSH (TCP {host.port}) out, and the security group / NSG of the run"
    )


@dataclass(frozen=True)
class JumpHop:
    """One host of a `proxy_jump` chain (`[user@]host[:port]`, comma-separated)."""

    address: str
    port: int = 22
    user: str | None = None

    @classmethod
    def parse_chain(cls, text: str) -> list[JumpHop]:
        hops = []
        for raw in text.split(","):
            part = raw.strip()
            if not part:
                continue
            user, _, rest = part.rpartition("@")
            address, port = rest, 22
            if rest.startswith("["):  # [::1]:2222
                address, _, tail = rest[1:].partition("]")
                port = int(tail[1:]) if tail.startswith(":") else 22
            elif rest.count(":") == 1:
                address, _, port_text = rest.partition(":")
                port = int(port_text)
            hops.append(cls(address=address, port=port, user=user or None))
        return hops


def where(host: Host) -> str:
    user = f"{host.user}@" if host.user else ""
    return f"{user}{host.address}:{host.port}"


async def connect(
    host: Host,
    *,
    deadline: float | None = None,
    retry_auth: bool = False,
    keepalive_interval: float = KEEPALIVE_SECONDS,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    filtered_after: float | None = None,
    probe: Probe = tcp_answers,
    give_up: Callable[[], bool] | None = None,
) -> SSHTransport:
    """Connect to `host`, retrying until `deadline`, a `clock()` time (default: connect_timeout).

    `retry_auth` also retries a rejected key until the deadline: a cloud VM's sshd may answer
    before cloud-init has installed the run's key. For your own hosts a rejected key fails at once.
    `filtered_after`: raise PortFilteredError once the port gave no answer at all for so long.
    `give_up`: asked before every try (each then bounded by ATTEMPT_TIMEOUT); once it says
    True, stop with HostUnreachableError: whoever waits has nothing left to wait for (its run
    ended meanwhile).
    """
    if host.kind != "ssh" or not host.address:
        raise BackendError(f"host of kind {host.kind!r} has no SSH address")
    end = deadline if deadline is not None else clock() + host.connect_timeout
    options = _client_options(host, keepalive_interval)
    label = where(host)
    started = clock()
    delay = FIRST_BACKOFF
    last: BaseException | None = None
    watch = SilenceWatch(filtered_after) if filtered_after and not host.proxy_jump else None
    while True:
        if give_up is not None and give_up():
            raise HostUnreachableError(f"stopped trying {label}: the run ended") from last
        remaining = end - clock()
        if remaining <= 0:
            why = f": {_describe(last)}" if last is not None else ""
            raise HostUnreachableError(
                f"cannot reach {label} (gave up after {clock() - started:.0f}s){why}"
            ) from last
        tunnels: list[asyncssh.SSHClientConnection] = []
        tried_at = clock()
        bounded = watch is not None or give_up is not None
        limit = min(remaining, ATTEMPT_TIMEOUT) if bounded else remaining
        try:
            tunnels = await _open_tunnels(host, options, remaining)
            conn = await asyncssh.connect(
                host.address,
                host.port,
                tunnel=tunnels[-1] if tunnels else (),
                known_hosts=_known_hosts(host),
                connect_timeout=max(limit, 0.1),
                **options,
            )
            return SSHTransport(conn, label=label, tunnels=tunnels)
        except asyncssh.HostKeyNotVerifiable as exc:
            await _close_all(tunnels)
            raise await _key_refused(host) from exc
        except asyncssh.PermissionDenied as exc:
            await _close_all(tunnels)
            if not retry_auth:
                raise CredentialsError(
                    f"{label} rejected the key{_key_hint(host)}; check user and identity_file"
                ) from exc
            last = exc
            if watch is not None:
                watch.observe(True, tried_at, clock())  # sshd answered: not filtered
        except (OSError, TimeoutError, asyncssh.DisconnectError, asyncssh.ChannelOpenError) as exc:
            await _close_all(tunnels)
            last = exc
            if watch is not None:
                # a refusal or a reset is an answer (a booting VM); a timeout may be the SSH
                # handshake, so the bare TCP port is asked before it counts as silence
                answered = not _timed_out(exc) or await probe(
                    str(host.address), host.port, PROBE_TIMEOUT
                )
                if watch.observe(answered, tried_at, clock()):
                    silent_for = clock() - (watch.since or tried_at)
                    raise PortFilteredError(filtered_message(host, silent_for)) from exc
        await sleep(max(0.0, min(delay, end - clock())))
        delay = min(delay * 2, MAX_BACKOFF)


# ----------------------------------------------------------------------------- options


def _client_options(host: Host, keepalive_interval: float) -> dict[str, Any]:
    options: dict[str, Any] = {
        "username": host.user or getpass.getuser(),
        "keepalive_interval": keepalive_interval,
        "keepalive_count_max": KEEPALIVE_COUNT_MAX,
        # ~/.ssh/config is not read: what iacrun connects to is what its configuration says
        "config": [],
    }
    if host.identity_file:
        options["client_keys"] = [_load_identity(host.identity_file)]
    return options


def _load_identity(path: str) -> asyncssh.SSHKey:
    full = os.path.expanduser(path)
    try:
        return asyncssh.read_private_key(full)
    except FileNotFoundError as exc:
        raise CredentialsError(f"identity file {path} does not exist") from exc
    except (OSError, asyncssh.KeyImportError) as exc:
        if "assphrase" in str(exc):
            raise CredentialsError(
                f"identity file {path} is protected by a passphrase, which iacrun cannot ask for; "
                "load it into ssh-agent and leave identity_file out"
            ) from exc
        raise CredentialsError(f"cannot read identity file {path}: {exc}") from exc


def _known_hosts(host: Host) -> Any:
    """What asyncssh checks the host key against: the pinned key, or a known_hosts file."""
    if host.host_key:
        return ([_pinned_key(host)], [], [])
    path = _known_hosts_path(host)
    if not path.is_file():
        raise BackendError(
            f"cannot check the host key of {where(host)}: {path} does not exist and no host_key "
            "is configured; iacrun never trusts a key on first use. Add the host's key with "
            f"ssh-keyscan -p {host.port} {host.address} >> {path} (after checking it), "
            f"or set host_key in {shown_config_file()}"
        )
    return str(path)


def _known_hosts_path(host: Host) -> Path:
    return Path(os.path.expanduser(host.known_hosts or "~/.ssh/known_hosts"))


def _pinned_key(host: Host) -> asyncssh.SSHKey:
    assert host.host_key is not None
    try:
        return asyncssh.import_public_key(host.host_key.strip())
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise BackendError(f"the pinned host key of {where(host)} is not valid: {exc}") from exc


async def _open_tunnels(
    host: Host, options: dict[str, Any], remaining: float
) -> list[asyncssh.SSHClientConnection]:
    """Connections through each `proxy_jump` hop, the last one carrying the target's."""
    tunnels: list[asyncssh.SSHClientConnection] = []
    if not host.proxy_jump:
        return tunnels
    try:
        for hop in JumpHop.parse_chain(host.proxy_jump):
            hop_path = _known_hosts_path(host)
            conn = await asyncssh.connect(
                hop.address,
                hop.port,
                tunnel=tunnels[-1] if tunnels else (),
                known_hosts=str(hop_path) if hop_path.is_file() else None,
                connect_timeout=max(remaining, 0.1),
                **{**options, "username": hop.user or options["username"]},
            )
            tunnels.append(conn)
    except asyncssh.HostKeyNotVerifiable as exc:
        await _close_all(tunnels)
        raise BackendError(
            f"host key of jump host {host.proxy_jump} is not in {_known_hosts_path(host)}; "
            "refusing to connect"
        ) from exc
    except BaseException:
        await _close_all(tunnels)
        raise
    return tunnels


async def _close_all(conns: list[asyncssh.SSHClientConnection]) -> None:
    for conn in reversed(conns):
        conn.close()
        with contextlib.suppress(Exception):
            await conn.wait_closed()


# ----------------------------------------------------------------------------- refusal


async def presented_host_key(host: Host, timeout: float = 5.0) -> asyncssh.SSHKey | None:
    """The key the host presents (for messages only: it is never trusted from here)."""
    algs: Any = ()
    if host.host_key:
        with contextlib.suppress(BackendError):
            algs = [_pinned_key(host).get_algorithm()]
    try:
        key: asyncssh.SSHKey | None = await asyncio.wait_for(
            asyncssh.get_server_host_key(
                host.address, host.port, server_host_key_algs=algs, config=[]
            ),
            timeout,
        )
    except (OSError, TimeoutError, asyncssh.Error):
        return None
    return key


async def _key_refused(host: Host) -> BackendError:
    presented = None if host.proxy_jump else await presented_host_key(host)
    shown = presented.get_fingerprint() if presented is not None else "a different key"
    label = where(host)
    if host.host_key:
        expected = _pinned_key(host).get_fingerprint()
        return BackendError(
            f"host key of {label} changed: expected {expected} (pinned), the host presented "
            f"{shown}; refusing to connect. If the host was reinstalled, put its new key in "
            "host_key"
        )
    path = _known_hosts_path(host)
    address = host.address or ""
    known = asyncssh.read_known_hosts(str(path)).match(address, address, host.port)
    if known[0] or known[1]:
        return BackendError(
            f"host key of {label} changed: {path} has another key for it, the host presented "
            f"{shown}; refusing to connect (remove the old entry with ssh-keygen -R if the host "
            "was reinstalled)"
        )
    return BackendError(
        f"host key of {label} is unknown: no entry in {path} (the host presented {shown}); "
        "refusing to connect. iacrun never trusts a key on first use: add the key to "
        f"known_hosts or set host_key in {shown_config_file()}"
    )


def _key_hint(host: Host) -> str:
    return f" {host.identity_file}" if host.identity_file else " (default keys and ssh-agent)"


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or (
        isinstance(exc, OSError) and exc.errno == errno.ETIMEDOUT
    )


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc) or type(exc).__name__
    return text
