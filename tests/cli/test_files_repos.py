"""`files` and `repos` end to end on the local backend: real CLI, runner, git and jobs."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from tests.conftest import Cli, write_task

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(folder: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    done = subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


def bare_repo(tmp_path: Path) -> tuple[Path, str, str]:
    """A bare repo with `main` (one file) and `feature` (one more commit); returns
    (bare path, main's first commit, feature's commit)."""
    work = tmp_path / "upstream"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "which.txt").write_text("main-1\n")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "one")
    first = git(work, "rev-parse", "HEAD")
    (work / "which.txt").write_text("main-2\n")
    git(work, "commit", "-q", "-am", "two")
    git(work, "checkout", "-q", "-b", "feature")
    (work / "which.txt").write_text("feature\n")
    git(work, "commit", "-q", "-am", "feature")
    feature = git(work, "rev-parse", "HEAD")
    git(work, "checkout", "-q", "main")
    bare = tmp_path / "upstream.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    return bare, first, feature


def run_ok(cli: Cli, name: str) -> str:
    done = cli("up", "-y", "-n", name, "task.dstack.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    return "\n".join(line for line in done.stdout.splitlines() if not line.startswith("[iacrun]"))


# ----------------------------------------------------------------------------- files


def test_files_a_file_a_folder_an_absolute_target_and_home(
    cli: Cli, project: Path, tmp_path: Path
) -> None:
    (project / "config.json").write_text('{"lr": 0.1}\n')
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "a.csv").write_text("1,2\n")
    (data / "big.bin").write_text("ignored\n")
    (data / ".gitignore").write_text("*.bin\n")
    key = tmp_path / "id_rsa"
    key.write_text("SECRET KEY\n")
    key.chmod(0o600)
    target = tmp_path / "host" / "etc" / "cfg.json"
    write_task(
        project,
        f"""
        files:
          - config.json
          - ../data:inputs
          - local_path: config.json
            path: {target}
          - {key}:~/.ssh/id_rsa
        commands:
          - cat config.json inputs/sub/a.csv
          - test ! -e inputs/big.bin && echo no-bin
          - cat ~/.ssh/id_rsa
          - stat -c '%a' ~/.ssh/id_rsa
        """,
    )
    out = run_ok(cli, "files")
    assert out.splitlines()[:5] == [
        '{"lr": 0.1}',
        "1,2",
        "no-bin",
        "SECRET KEY",
        "600",
    ]
    assert target.read_text() == '{"lr": 0.1}\n'
    home = Path(cli.env["HOME"])
    assert (home / ".ssh" / "id_rsa").read_text() == "SECRET KEY\n"
    assert (home / ".ssh" / "id_rsa").stat().st_mode & 0o777 == 0o600
    # nothing half-written is left beside the targets
    assert [p.name for p in (home / ".ssh").iterdir()] == ["id_rsa"]


def test_a_missing_local_path_is_refused_before_anything_is_recorded(
    cli: Cli, project: Path
) -> None:
    write_task(project, "files:\n  - config.json\n  - nope.txt:/tmp/x\ncommands: [x]\n")
    (project / "config.json").write_text("{}")
    done = cli("up", "-y", "task.dstack.yml")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and "task.dstack.yml:4:5: files[1].local_path" in lines[0]
    assert "'nope.txt': no such file or folder" in lines[0]
    assert cli("ps", "-a", "--json").stdout.strip() == "[]"


def test_files_count_against_the_upload_limit(cli: Cli, project: Path, tmp_path: Path) -> None:
    home = Path(cli.env["IACRUN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yml").write_text("upload_limit: 1MB\n")
    big = tmp_path / "weights.bin"
    big.write_bytes(os.urandom(2 * 1024 * 1024))
    write_task(project, f"files:\n  - {big}:w.bin\ncommands: [echo never]\n")
    done = cli("up", "-y", "-n", "big", "task.dstack.yml")
    assert done.returncode != 0
    assert "over the upload limit of 1MB" in done.stdout + done.stderr
    assert "never" not in done.stdout


# ----------------------------------------------------------------------------- repos


@needs_git
def test_a_local_repo_ships_tracked_and_uncommitted_files_not_ignored_ones(
    cli: Cli, project: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    (other / ".gitignore").write_text("secret.env\nbuild/\n")
    (other / "lib.py").write_text("VERSION = 1\n")
    git(other, "add", ".")
    git(other, "commit", "-q", "-m", "one")
    (other / "lib.py").write_text("VERSION = 2  # uncommitted\n")
    (other / "new.py").write_text("untracked\n")
    (other / "secret.env").write_text("TOKEN=x\n")
    (other / "build").mkdir()
    (other / "build" / "out.o").write_text("obj\n")
    (project / "not-shipped.txt").write_text("the task's own folder is replaced by the repo\n")
    write_task(
        project,
        """
        repos:
          - ../other
        commands:
          - cat lib.py new.py
          - ls -A | sort | tr '\\n' ' '; echo
        """,
    )
    out = run_ok(cli, "localrepo").splitlines()
    assert out[0] == "VERSION = 2  # uncommitted"
    assert out[1] == "untracked"
    assert out[2].split() == [".gitignore", "lib.py", "new.py"]


@needs_git
def test_a_local_repo_at_a_path_with_files_beside_it(cli: Cli, project: Path) -> None:
    git(project, "init", "-q")
    (project / "train.py").write_text("print('train')\n")
    (project / "extra.txt").write_text("extra\n")
    write_task(
        project,
        """
        repos:
          - .:src
        files:
          - extra.txt:notes/extra.txt
        commands:
          - ls src | sort | tr '\\n' ' '; echo
          - cat notes/extra.txt
        """,
    )
    out = run_ok(cli, "repopath").splitlines()
    assert out[0].split() == ["extra.txt", "task.dstack.yml", "train.py"]
    assert out[1] == "extra"


@needs_git
@pytest.mark.parametrize("at", ["branch", "hash", "default"])
def test_a_url_is_cloned_on_the_host(cli: Cli, project: Path, tmp_path: Path, at: str) -> None:
    bare, first, feature = bare_repo(tmp_path)
    extra = {
        "branch": "    branch: feature\n",
        "hash": f"    hash: {first}\n",
        "default": "",
    }[at]
    write_task(
        project,
        f"repos:\n  - url: file://{bare}\n{extra}commands:\n"
        "  - cat which.txt\n  - git rev-parse HEAD\n",
    )
    out = run_ok(cli, f"clone-{at}").splitlines()
    expected = {"branch": ("feature", feature), "hash": ("main-1", first)}
    if at in expected:
        assert out[:2] == list(expected[at])
    else:
        assert out[0] == "main-2"


@needs_git
def test_a_hash_on_another_branch_is_fetched(cli: Cli, project: Path, tmp_path: Path) -> None:
    bare, _, feature = bare_repo(tmp_path)
    write_task(
        project,
        f"repos:\n  - url: file://{bare}\n    hash: {feature}\ncommands:\n  - cat which.txt\n",
    )
    assert run_ok(cli, "fetchhash").splitlines()[0] == "feature"


@needs_git
@pytest.mark.parametrize("if_exists", ["error", "skip"])
def test_if_exists(cli: Cli, project: Path, tmp_path: Path, if_exists: str) -> None:
    bare, _, _ = bare_repo(tmp_path)
    target = tmp_path / "taken"
    target.mkdir()
    (target / "mine.txt").write_text("mine\n")
    write_task(
        project,
        f"repos:\n  - url: file://{bare}\n    path: {target}\n    if_exists: {if_exists}\n"
        "commands:\n  - echo job ran\n",
    )
    done = cli("up", "-y", "-n", f"exists-{if_exists}", "task.dstack.yml")
    assert (target / "mine.txt").read_text() == "mine\n"
    assert not (target / "which.txt").exists()
    if if_exists == "skip":
        assert done.returncode == 0, done.stderr
        assert "job ran" in done.stdout and "skipped (if_exists: skip)" in done.stdout
    else:
        assert done.returncode != 0
        assert "job ran" not in done.stdout
        assert f"repo path {target} exists and is not empty" in done.stdout + done.stderr


@needs_git
def test_a_bad_clone_fails_the_run_with_a_reason(cli: Cli, project: Path, tmp_path: Path) -> None:
    write_task(
        project,
        f"repos:\n  - url: file://{tmp_path}/nothing.git\ncommands:\n  - echo job ran\n",
    )
    done = cli("up", "-y", "-n", "badclone", "task.dstack.yml")
    assert done.returncode != 0 and "job ran" not in done.stdout
    assert "could not clone" in done.stdout + done.stderr


class _AuthHandler(http.server.BaseHTTPRequestHandler):
    """Asks for Basic auth, then remembers what it was given (and serves nothing)."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        header = self.headers.get("Authorization")
        if header is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.end_headers()
            return
        self.seen.append(header)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def auth_server() -> Iterator[tuple[str, list[str]]]:
    seen: ClassVar[list[str]] = []
    handler = type("Handler", (_AuthHandler,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/private.git", seen
    finally:
        server.shutdown()
        server.server_close()


@needs_git
def test_a_token_reaches_git_on_the_host_and_is_written_nowhere(
    cli: Cli, project: Path, auth_server: tuple[str, list[str]]
) -> None:
    import base64

    url, seen = auth_server
    token = "tok-5f1e9c-never-logged"
    cli.env["IACRUN_GIT_TOKEN"] = token
    write_task(project, f"repos:\n  - {url}\ncommands:\n  - echo job ran\n")
    done = cli("up", "-y", "-n", "private", "task.dstack.yml")
    assert done.returncode != 0, done.stdout  # the server has no repo; what it was sent counts
    assert seen and base64.b64decode(seen[-1].split()[1]).decode() == f"oauth2:{token}"
    assert token not in done.stdout + done.stderr
    home = Path(cli.env["IACRUN_HOME"])
    for path in home.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    run_dirs = list((home / "runs").iterdir())
    assert run_dirs
    for run_dir in run_dirs:
        assert not (run_dir / "git-password").exists()
        assert json.loads((run_dir / "job.json").read_text())["repos"][0]["url"] == url


@needs_git
def test_the_credential_helper_is_asked_when_no_token_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iacrun.orchestrator.host.gitauth import git_credentials

    home = tmp_path / "h"
    home.mkdir()
    (home / ".git-credentials").write_text("https://alice:s3cret@git.example.com\n")
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("IACRUN_GIT_TOKEN", raising=False)
    found = git_credentials("https://git.example.com/team/model.git")
    assert found == ("alice", "s3cret")
    assert git_credentials("https://elsewhere.example.com/x.git") is None
    assert git_credentials("git@git.example.com:team/model.git") is None
