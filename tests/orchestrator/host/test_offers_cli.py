"""`iacrun offers` with SSH hosts configured: every host listed, unreachable ones with the reason.

The real CLI against a real sshd on 127.0.0.1 and one host on a closed loopback port.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cli
from tests.orchestrator.host.sshd import Sshd, free_port

pytestmark = [pytest.mark.sshd]


def configure(cli: Cli, hosts: list[dict[str, Any]], *, local: bool = False) -> None:
    home = Path(cli.env["IACRUN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    backends: dict[str, Any] = {"local": {"enabled": local}}
    if hosts:
        backends["ssh"] = {"hosts": hosts}
    (home / "config.yml").write_text(yaml.safe_dump({"backends": backends}))


def live(sshd: Sshd) -> dict[str, Any]:
    return sshd.host_settings(name="loop").model_dump(exclude_none=True)


def dead(sshd: Sshd) -> dict[str, Any]:
    return {"name": "dead", "host": "127.0.0.1", "port": free_port(), "host_key": sshd.host_key}


def rows(output: str) -> dict[str, str]:
    """The table's rows by instance name (the fourth column)."""
    out = {}
    for line in output.splitlines():
        cells = line.split()
        if len(cells) > 3 and cells[0].isdigit():
            out[cells[3]] = line
    return out


def test_offers_lists_every_ssh_host_next_to_the_clouds(cli: Cli, sshd: Sshd) -> None:
    configure(cli, [live(sshd), dead(sshd)])
    done = cli("offers")
    assert done.returncode == 0, done.stderr
    table = rows(done.stdout)
    assert table["loop"].split()[1] == "ssh"
    # the unreachable host is shown (not pushed past the cut by hundreds of cloud offers)
    assert "unreachable: connection refused" in table["dead"]


def test_offers_b_ssh_lists_only_the_hosts(cli: Cli, sshd: Sshd) -> None:
    configure(cli, [live(sshd), dead(sshd)])
    done = cli("offers", "-b", "ssh")
    assert done.returncode == 0, done.stderr
    assert sorted(rows(done.stdout)) == ["dead", "loop"]
    # no note about clouds the table does not show
    assert "not configured" not in done.stdout


def test_offers_with_every_host_unreachable_shows_them(cli: Cli, sshd: Sshd) -> None:
    configure(cli, [dead(sshd)])
    for args in (["-b", "ssh"], ["--configured-only"]):
        done = cli("offers", *args)
        assert done.returncode == 0, (args, done.stderr)
        assert "unreachable: connection refused" in rows(done.stdout)["dead"], args
    listed = json.loads(cli("offers", "--configured-only", "--json").stdout)
    assert [(o["instance_type"], o["available"]) for o in listed["offers"]] == [("dead", False)]


def test_configured_only_with_only_ssh(cli: Cli, sshd: Sshd) -> None:
    configure(cli, [live(sshd)])
    done = cli("offers", "--configured-only")
    assert done.returncode == 0, done.stderr
    assert sorted(rows(done.stdout)) == ["loop"]
    assert "none" not in done.stdout + done.stderr


def test_configured_only_with_no_backend_says_so(cli: Cli) -> None:
    configure(cli, [])
    done = cli("offers", "--configured-only")
    assert done.returncode == 1
    assert "none" not in done.stderr
    assert done.stderr.startswith("error: no backend is configured")
    assert len(done.stderr.splitlines()) == 1


def test_b_with_an_unconfigured_backend_names_it(cli: Cli) -> None:
    configure(cli, [])
    done = cli("offers", "-b", "ssh")
    assert done.returncode == 1
    assert "backend ssh is not configured" in done.stderr, done.stderr
