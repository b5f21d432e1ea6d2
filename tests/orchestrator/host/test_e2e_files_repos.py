"""`files` and `repos` on the `ssh` backend: the real CLI, a real sshd on 127.0.0.1, the runner.

The sshd here gives its sessions a HOME of the test's own (`SetEnv`), so `~` targets and the run
folders land in a temporary folder, never the real home; and a `GIT_SSH_COMMAND` with a key it
accepts, so the host can clone `ssh://` URLs from the same server (git over SSH on loopback).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_files_repos import bare_repo
from tests.conftest import Cli, write_task
from tests.orchestrator.host.conftest import _require_sshd
from tests.orchestrator.host.sshd import Sshd
from tests.orchestrator.host.test_e2e import configure, host_entry, record

pytestmark = [
    pytest.mark.sshd,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed"),
]


class HomeSshd(Sshd):
    """An sshd whose sessions get HOME=`home` and can reach this same server with git."""

    def __init__(self, root: Path, home: Path) -> None:
        super().__init__(root, login_home=home)

    def session_env(self) -> dict[str, str]:
        ssh = (
            f"ssh -i {self.client_key} -p {self.port} -o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        )
        return super().session_env() | {"GIT_SSH_COMMAND": ssh}


@pytest.fixture
def host_home(tmp_path: Path) -> Path:
    home = tmp_path / "host-home"
    home.mkdir()
    return home


@pytest.fixture
def ssh_cli(cli: Cli, tmp_path: Path, host_home: Path) -> Iterator[tuple[Cli, Sshd]]:
    _require_sshd()
    server = HomeSshd(tmp_path / "sshd", host_home)
    server.start()
    try:
        entry: dict[str, Any] = host_entry(server)
        configure(cli, [entry])
        yield cli, server
        cli("down", "--all", timeout=120)
    finally:
        server.stop()


def ran(cli: Cli, name: str) -> list[str]:
    done = cli("up", "-y", "-n", name, "task.dstack.yml", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert record(cli, name)["backend"] == "ssh"
    return [line for line in done.stdout.splitlines() if not line.startswith("[iacrun]")]


def test_files_over_ssh(
    ssh_cli: tuple[Cli, Sshd], project: Path, tmp_path: Path, host_home: Path
) -> None:
    cli, _ = ssh_cli
    (project / "config.json").write_text("{}\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("1,2\n")
    (data / "skip.tmp").write_text("x\n")
    (data / ".dstackignore").write_text("*.tmp\n")
    key = tmp_path / "id_rsa"
    key.write_text("KEY\n")
    key.chmod(0o600)
    target = tmp_path / "abs" / "cfg.json"
    write_task(
        project,
        f"""
        files:
          - config.json:conf/c.json
          - {data}:inputs
          - config.json:{target}
          - {key}:~/.ssh/id_rsa
        commands:
          - cat conf/c.json inputs/a.csv
          - ls inputs | tr '\\n' ' '; echo
          - stat -c '%a' ~/.ssh/id_rsa
          - echo "$HOME"
        """,
    )
    out = ran(cli, "sshfiles")
    assert out[:5] == ["{}", "1,2", "a.csv ", "600", str(host_home)]
    assert target.read_text() == "{}\n"
    assert (host_home / ".ssh" / "id_rsa").read_text() == "KEY\n"
    run_dir = Path(record(cli, "sshfiles")["host"]["run_dir"])
    assert run_dir.is_relative_to(host_home)
    assert not (run_dir / "payload").exists()  # the shipped copies are gone once placed


def test_a_local_repo_over_ssh(ssh_cli: tuple[Cli, Sshd], project: Path) -> None:
    from tests.cli.test_files_repos import git

    cli, _ = ssh_cli
    git(project, "init", "-q")
    (project / ".gitignore").write_text("*.log\n")
    (project / "train.py").write_text("v1\n")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "one")
    (project / "train.py").write_text("v2 uncommitted\n")
    (project / "run.log").write_text("ignored\n")
    write_task(project, "repos: ['.']\ncommands:\n  - cat train.py\n  - ls run.log || true\n")
    out = ran(cli, "sshrepo")
    assert out[0] == "v2 uncommitted"
    assert "run.log" not in out[1:]


@pytest.mark.parametrize("transport", ["file", "ssh"])
def test_a_url_over_ssh_at_a_branch_and_a_hash(
    ssh_cli: tuple[Cli, Sshd], project: Path, tmp_path: Path, transport: str
) -> None:
    cli, server = ssh_cli
    bare, first, _ = bare_repo(tmp_path)
    url = f"file://{bare}" if transport == "file" else f"ssh://{server.user}@127.0.0.1{bare}"
    write_task(
        project,
        f"repos:\n  - url: {url}\n    branch: feature\n    path: ~/feature\n"
        "commands:\n  - cat ~/feature/which.txt\n",
    )
    assert ran(cli, f"br-{transport}")[0] == "feature"
    write_task(
        project,
        f"repos:\n  - url: {url}\n    hash: {first}\ncommands:\n  - cat which.txt\n",
    )
    assert ran(cli, f"hash-{transport}")[0] == "main-1"
