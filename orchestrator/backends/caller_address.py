"""This machine's public address, for the one firewall rule a cloud VM gets (TCP 22 from it).

Asked of two independent services that must agree, each directly: proxies in the environment
(HTTP(S)_PROXY, ALL_PROXY) are ignored, because a proxy's address is not the one the VM will see
our SSH connections come from (SSH does not go through an HTTP proxy). When the answers differ
(a split VPN, a multi-homed NAT) or one is missing, there is no address to trust: one line asks
for `ssh_cidrs` in the config instead.
"""

from __future__ import annotations

import ipaddress
import urllib.request
from collections.abc import Callable, Sequence

from iacrun.orchestrator.errors import BackendError
from iacrun.orchestrator.paths import shown_config_file

#: two services run by different companies, each answering with the caller's address as text
SOURCES = ("https://checkip.amazonaws.com", "https://api.ipify.org")
TIMEOUT = 10.0

Fetch = Callable[[str, float], str]


def fetch_direct(url: str, timeout: float = TIMEOUT) -> str:
    """The body of `url`, fetched without any proxy whatever the environment says."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        body: bytes = resp.read(256)
    return body.decode("ascii", "replace").strip()


def caller_address(
    sources: Sequence[str] = SOURCES, fetch: Fetch = fetch_direct, timeout: float = TIMEOUT
) -> str:
    """The address every source reports; BackendError (one line) when they cannot agree."""
    answers: dict[str, str] = {}
    for url in sources:
        try:
            text = fetch(url, timeout)
            answers[url] = str(ipaddress.ip_address(text))
        except (OSError, ValueError) as exc:
            raise BackendError(
                f"could not find this machine's public address ({url}: {_short(exc)}); "
                + ask_for_cidrs()
            ) from exc
    found = set(answers.values())
    if len(found) != 1:
        listed = ", ".join(f"{url} says {ip}" for url, ip in answers.items())
        raise BackendError(
            f"this machine's public address is ambiguous ({listed}); " + ask_for_cidrs()
        )
    return found.pop()


def ask_for_cidrs() -> str:
    """What to do when the address cannot be told: name the config file actually read."""
    return (
        f"set ssh_cidrs for the backend in {shown_config_file()} to the address (or block) your "
        "SSH connections leave from"
    )


def _short(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc) or type(exc).__name__


def host_cidr(address: str) -> str:
    """`address` as a one-address block (/32 or /128)."""
    ip = ipaddress.ip_address(address)
    return f"{ip}/{32 if ip.version == 4 else 128}"
