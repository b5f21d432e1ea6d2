"""Which service the CLI talks to: in-process by default, a server after `iacrun login` or with
IACRUN_SERVER_URL + IACRUN_TOKEN, in-process again with `--local`; and what is refused remotely
before any server is asked (these tests point at a port where nothing listens)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from iacrun.cli import mode
from iacrun.orchestrator.errors import ConfigError, InputError
from tests.conftest import Cli, write_task


@pytest.fixture(autouse=True)
def _not_forced() -> Iterator[None]:
    yield
    mode.force_local(False)


def _dead_url() -> str:
    """A loopback URL where nothing listens (the port was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_in_process_without_a_server() -> None:
    from iacrun.orchestrator.api import Orchestrator

    assert mode.current_login() is None
    assert isinstance(mode.service(), Orchestrator)


def test_environment_turns_remote_mode_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mode.URL_ENV, "http://127.0.0.1:3000/")
    monkeypatch.setenv(mode.TOKEN_ENV, "iacrun_secret")
    login = mode.current_login()
    assert login == mode.ServerLogin("http://127.0.0.1:3000", "iacrun_secret", "environment")


@pytest.mark.parametrize("only", [mode.URL_ENV, mode.TOKEN_ENV])
def test_half_an_environment_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, only: str) -> None:
    monkeypatch.setenv(only, "http://127.0.0.1:3000")
    with pytest.raises(InputError, match=f"{only} is set but IACRUN_"):
        mode.current_login()


def test_login_file_is_0600_and_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    old = os.umask(0)  # a loose umask must not make the token readable by others
    try:
        path = mode.save_login("http://127.0.0.1:3000", "iacrun_tok")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path == mode.login_file()
    assert json.loads(path.read_text()) == {"url": "http://127.0.0.1:3000", "token": "iacrun_tok"}
    login = mode.current_login()
    assert login is not None and (login.url, login.token) == ("http://127.0.0.1:3000", "iacrun_tok")
    # the environment wins over the file
    monkeypatch.setenv(mode.URL_ENV, "https://iacrun.example.org")
    monkeypatch.setenv(mode.TOKEN_ENV, "iacrun_env")
    login = mode.current_login()
    assert login is not None and login.url == "https://iacrun.example.org"
    mode.force_local()
    assert mode.current_login() is None
    assert mode.forget_login() and not path.exists() and not mode.forget_login()


def test_a_broken_login_file_says_how_to_fix_it() -> None:
    mode.login_file().write_text("{not json")
    with pytest.raises(ConfigError, match=r"server\.json cannot be read .*iacrun login URL"):
        mode.current_login()
    mode.login_file().write_text('{"url": "http://127.0.0.1:1"}')
    with pytest.raises(ConfigError, match="has no url and token"):
        mode.current_login()


@pytest.mark.parametrize(
    "url", ["127.0.0.1:3000", "ftp://host", "http://user:pw@host", "http://host/?a=1"]
)
def test_a_bad_server_url_is_refused(url: str) -> None:
    with pytest.raises(InputError):
        mode.normal_url(url)


def _remote_env(cli: Cli, url: str) -> dict[str, str]:
    return dict(cli.env, IACRUN_SERVER_URL=url, IACRUN_TOKEN="iacrun_whatever")


def _run(cli: Cli, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli.argv(*args), env=env, cwd=cli.cwd, capture_output=True, text=True, timeout=60
    )


def test_local_option_forces_in_process(cli: Cli) -> None:
    env = _remote_env(cli, _dead_url())
    out = _run(cli, env, "--local", "ps")
    assert out.returncode == 0, out.stderr
    assert "No runs" in out.stdout


def test_half_set_environment_from_the_cli(cli: Cli) -> None:
    env = dict(cli.env, IACRUN_SERVER_URL="http://127.0.0.1:3000")
    out = _run(cli, env, "ps")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: IACRUN_SERVER_URL is set but IACRUN_TOKEN is not; set both for remote mode, "
        "or unset IACRUN_SERVER_URL"
    )


@pytest.mark.parametrize("command", [["doctor"], ["state", "some-run"]])
def test_local_only_commands_say_so_in_one_line(cli: Cli, command: list[str]) -> None:
    url = _dead_url()
    out = _run(cli, _remote_env(cli, url), *command)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"error: {command[0]} is local-only (")
    assert f"it is not sent to {url}" in lines[0]
    assert f"iacrun --local {command[0]}" in lines[0]


def test_a_wrong_port_is_refused_remotely_before_anything_is_sent(cli: Cli, project: Path) -> None:
    """`--port` goes through the server in remote mode (tests/cli/test_remote_ports.py); one
    that names no port of the task is refused here first, as in-process (a dead server URL)."""
    write_task(project, "commands: [echo hi]\nports: [8000]\n")
    out = _run(cli, _remote_env(cli, _dead_url()), "up", "-y", "-p", "9000:8001", "task.dstack.yml")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: --port 9000:8001 forwards local port 9000 to task port 8001, but the task "
        "listens on 8000 (ports: [8000]); add 8001 to its ports or forward one of those"
    ]


def test_login_needs_a_terminal_or_token_stdin(cli: Cli) -> None:
    out = _run(cli, cli.env, "login", "http://127.0.0.1:3000")
    assert (out.returncode, out.stderr.strip()) == (
        2,
        "error: not a terminal: pass the token on stdin with --token-stdin",
    )
    out = _run(cli, cli.env, "login", "127.0.0.1:3000", "--token-stdin")
    assert out.returncode == 2 and out.stderr.startswith("error: '127.0.0.1:3000' is not a")


def test_logout_removes_the_stored_login(cli: Cli) -> None:
    home = Path(cli.env["IACRUN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    mode.save_login("http://127.0.0.1:3000", "iacrun_tok", home / mode.LOGIN_FILE)
    out = _run(cli, cli.env, "logout")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Logged out of http://127.0.0.1:3000")
    assert not (home / mode.LOGIN_FILE).exists()
    out = _run(cli, cli.env, "logout")
    assert out.stdout.strip() == "Not logged in to a server"


HEAVY = (
    "httpx",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "websockets",
)


@pytest.mark.parametrize("args", [["--help"], ["ps"], ["ps", "-a", "--json"]])
def test_help_and_ps_import_no_server_library(cli: Cli, args: list[str]) -> None:
    """`iacrun --help` and an in-process `iacrun ps` stay fast: no HTTP, ASGI or SQL library."""
    assert _run(cli, cli.env, "ps").returncode == 0  # the registry made and at its head
    code = (
        "import sys\n"
        "from iacrun.cli.main import app\n"
        "try:\n"
        "    app(sys.argv[1:])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=cli.env,
        cwd=cli.cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stderr, out.stderr
