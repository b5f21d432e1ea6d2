"""`ssh RUN-NAME`: the include file, the user's ~/.ssh/config kept intact, real `ssh` using it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from iacrun.orchestrator.host.sshconfig import SSHConfigEntries, known_hosts_line, render_block
from iacrun.orchestrator.host.transport import Host
from tests.orchestrator.host.sshd import Sshd

HOST = Host(
    kind="ssh",
    run_dir="/home/u/.iacrun/runs/r-1",
    address="10.0.0.5",
    port=2222,
    user="ubuntu",
    identity_file="/keys/my key",
    host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq comment",
    proxy_jump="ops@bastion:22",
)


def entries(tmp_path: Path) -> SSHConfigEntries:
    return SSHConfigEntries(iacrun_dir=tmp_path / "home" / ".iacrun", home=tmp_path / "home")


def test_render_block() -> None:
    assert render_block("train-1", HOST, "/kh/train-1") == (
        "# >>> iacrun run train-1\n"
        "Host train-1\n"
        "    HostName 10.0.0.5\n"
        "    Port 2222\n"
        "    User ubuntu\n"
        '    IdentityFile "/keys/my key"\n'
        "    IdentitiesOnly yes\n"
        "    UserKnownHostsFile /kh/train-1\n"
        "    StrictHostKeyChecking yes\n"
        "    ProxyJump ops@bastion:22\n"
        "# <<< iacrun run train-1\n"
    )
    assert known_hosts_line(HOST) == "[10.0.0.5]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq\n"
    assert known_hosts_line(HOST.model_copy(update={"port": 22})).startswith("10.0.0.5 ssh-")


def test_include_added_once_at_the_top_keeping_the_users_file(tmp_path: Path) -> None:
    cfg = entries(tmp_path)
    user_config = tmp_path / "home" / ".ssh" / "config"
    user_config.parent.mkdir(parents=True)
    mine = "Host *\n    ServerAliveInterval 30\n\nHost work\n    HostName w.example.com\n"
    user_config.write_text(mine)
    user_config.chmod(0o644)

    cfg.add("train-1", HOST)
    cfg.add("eval-2", HOST.model_copy(update={"host_key": None, "known_hosts": "/etc/kh"}))
    cfg.add("train-1", HOST)  # again: replaced, not duplicated

    text = user_config.read_text()
    assert text.startswith("# added by iacrun")
    include_path = tmp_path / "home" / ".iacrun" / "ssh" / "config"
    assert text.splitlines()[1] == f"Include {include_path}"
    assert text.endswith("\n" + mine)
    assert text.count("Include") == 1
    assert user_config.stat().st_mode & 0o777 == 0o644

    include = (tmp_path / "home" / ".iacrun" / "ssh" / "config").read_text()
    assert include.count("Host train-1\n") == 1 and "Host eval-2\n" in include
    assert "UserKnownHostsFile /etc/kh" in include
    pinned = tmp_path / "home" / ".iacrun" / "ssh" / "known_hosts" / "train-1"
    assert pinned.read_text() == known_hosts_line(HOST)
    assert cfg.names() == ["eval-2", "train-1"]

    cfg.remove("train-1")
    cfg.remove("train-1")  # idempotent
    cfg.remove("never-added")
    assert cfg.names() == ["eval-2"]
    assert not pinned.exists()
    assert user_config.read_text() == text  # the user's file is not touched again


def test_a_symlinked_ssh_config_is_edited_through_the_link(tmp_path: Path) -> None:
    cfg = entries(tmp_path)
    dotfiles = tmp_path / "dotfiles" / "ssh_config"
    dotfiles.parent.mkdir()
    dotfiles.write_text("Host x\n    User y\n")
    link = tmp_path / "home" / ".ssh" / "config"
    link.parent.mkdir(parents=True)
    link.symlink_to(dotfiles)
    cfg.add("r", HOST)
    assert link.is_symlink()
    assert f"Include {tmp_path}/home/.iacrun/ssh/config" in dotfiles.read_text()
    assert dotfiles.read_text().endswith("Host x\n    User y\n")


def test_no_ssh_config_yet(tmp_path: Path) -> None:
    cfg = entries(tmp_path)
    cfg.add("r", HOST)
    user_config = tmp_path / "home" / ".ssh" / "config"
    assert user_config.stat().st_mode & 0o777 == 0o600
    assert (user_config.parent.stat().st_mode & 0o777) == 0o700


@pytest.mark.sshd
def test_real_ssh_reaches_the_run_by_its_name(sshd: Sshd, tmp_path: Path) -> None:
    if shutil.which("ssh") is None:
        pytest.skip("the OpenSSH client is missing")
    cfg = SSHConfigEntries(iacrun_dir=tmp_path / "iacrun", home=tmp_path / "home")
    cfg.add("my-run", sshd.host())
    user_config = tmp_path / "home" / ".ssh" / "config"
    assert f"Include {tmp_path / 'iacrun' / 'ssh' / 'config'}" in user_config.read_text()
    argv = ["ssh", "-F", str(user_config), "-o", "BatchMode=yes", "my-run", "echo", "via-name"]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "SSH_AUTH_SOCK": ""},
    )
    assert (done.returncode, done.stdout) == (0, "via-name\n"), done.stderr

    # a changed key is refused by ssh too: the pinned key is the only one it trusts
    cfg.add("my-run", sshd.host(host_key=HOST.host_key))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in done.stderr or "verification" in done.stderr

    cfg.remove("my-run")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 255  # the name no longer resolves


def test_an_include_the_user_wrote_with_a_tilde_counts(tmp_path: Path) -> None:
    cfg = entries(tmp_path)
    user_config = tmp_path / "home" / ".ssh" / "config"
    user_config.parent.mkdir(parents=True)
    user_config.write_text("Include ~/.iacrun/ssh/config\n\nHost a\n")
    cfg.add("r", HOST)
    assert user_config.read_text() == "Include ~/.iacrun/ssh/config\n\nHost a\n"


def test_include_lines_of_homes_that_are_gone_are_removed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    user_config = home / ".ssh" / "config"
    user_config.parent.mkdir(parents=True)
    mine_top = "# my own comment\nInclude ~/.ssh/work.conf\n"
    mine_rest = "Host *\n    ServerAliveInterval 30\n\nHost work\n    HostName w.example.com\n"
    user_config.write_bytes((mine_top + "\n" + mine_rest).encode())
    first = SSHConfigEntries(iacrun_dir=tmp_path / "first" / ".iacrun", home=home)
    second = SSHConfigEntries(iacrun_dir=tmp_path / "second" / ".iacrun", home=home)
    first.add("a", HOST)
    second.add("b", HOST)
    both = user_config.read_text()
    assert both.count("# added by iacrun") == 2
    assert first.include_line in both and second.include_line in both

    shutil.rmtree(tmp_path / "first")  # a temporary home goes away
    second.add("c", HOST)  # any iacrun command that touches ssh config
    text = user_config.read_text()
    assert first.include_line not in text
    assert text.count(second.include_line) == 1 and text.count("# added by iacrun") == 1
    # the user's own lines are kept byte for byte, the Include of theirs too
    assert text.endswith(mine_top + "\n" + mine_rest)
    assert text == f"# added by iacrun: `ssh RUN-NAME` for live runs\n{second.include_line}\n\n" + (
        mine_top + "\n" + mine_rest
    )


def test_a_stale_include_goes_even_when_this_homes_line_is_there(tmp_path: Path) -> None:
    home = tmp_path / "home"
    gone = SSHConfigEntries(iacrun_dir=tmp_path / "gone" / ".iacrun", home=home)
    here = SSHConfigEntries(iacrun_dir=tmp_path / "here" / ".iacrun", home=home)
    here.add("a", HOST)
    gone.add("b", HOST)  # now on top, above this home's line
    shutil.rmtree(tmp_path / "gone")
    before = (home / ".ssh" / "config").read_text()
    here.add("a", HOST)
    after = (home / ".ssh" / "config").read_text()
    assert gone.include_line in before and gone.include_line not in after
    assert after.count(here.include_line) == 1
