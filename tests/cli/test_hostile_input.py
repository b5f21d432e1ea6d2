"""Hostile and careless input through the real CLI: one line, exit 2, nothing recorded; a broken
row in the registry never keeps a command from acting on the other runs."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from iacrun.orchestrator.registry import Registry
from tests.cli.test_local_runs import ps, wait_for
from tests.conftest import Cli, write_task
from tests.orchestrator.models.test_hostile_yaml import alias_bomb


def one_line_exit_2(done: object, pattern: str) -> None:
    import re

    assert done.returncode == 2, (done.returncode, done.stderr)  # type: ignore[attr-defined]
    lines = done.stderr.splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr  # type: ignore[attr-defined]
    assert re.search(pattern, lines[0]), lines[0]


def nothing_recorded(cli: Cli) -> None:
    registry = Path(cli.env["IACRUN_HOME"]) / "registry.db"
    if registry.exists():
        assert Registry(registry).runs(all_runs=True) == []
    runs = Path(cli.env["IACRUN_HOME"]) / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_alias_bomb_is_one_line(cli: Cli, project: Path) -> None:
    (project / "task.dstack.yml").write_text(alias_bomb())
    done = cli("up", "-y", "task.dstack.yml", timeout=60)
    one_line_exit_2(done, r"task\.dstack\.yml:\d+:\d+: aliases expand to more than")
    nothing_recorded(cli)


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("../../../tmp/x", r"-n/--name: '\.\./\.\./\.\./tmp/x' is not a valid run name"),
        ("a" * 300, r"-n/--name: 'a{300}' is not a valid run name"),
        ("bad\nname", r"-n/--name: 'bad\\nname' is not a valid run name"),
        ("Upper", r"is not a valid run name"),
        ("", r"is not a valid run name"),
    ],
)
def test_bad_run_names_refused_before_recording(
    cli: Cli, project: Path, tmp_path: Path, name: str, pattern: str
) -> None:
    write_task(project, "commands: [echo hi]\n")
    done = cli("up", "-y", "-d", "-n", name, "task.dstack.yml")
    one_line_exit_2(done, pattern)
    nothing_recorded(cli)
    assert not (tmp_path / "x").exists()


def test_name_with_newline_in_the_file_is_refused(cli: Cli, project: Path) -> None:
    write_task(project, 'name: "ok\\n"\ncommands: [echo hi]\n')
    done = cli("up", "-y", "-d", "task.dstack.yml")
    one_line_exit_2(done, r"task\.dstack\.yml:2:7: name: 'ok\\n' is not a valid run name")
    nothing_recorded(cli)


def _ghost(cli: Cli, name: str, spec: str = "{}", status: str = "running") -> None:
    """A row as a buggy older version, or a hand edit, may have left it."""
    db = Path(cli.env["IACRUN_HOME"]) / "registry.db"
    Registry(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO runs (name, status, spec, submitted_at, local_dir) VALUES (?,?,?,?,?)",
            (name, status, spec, time.time(), str(Path(cli.env["IACRUN_HOME"]) / "runs" / name)),
        )


def test_broken_rows_never_stop_commands_on_the_others(cli: Cli, project: Path) -> None:
    write_task(project, "commands: [sleep 300]\n")
    done = cli("up", "-y", "-d", "-n", "good", "task.dstack.yml")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: ps(cli)["good"]["status"] == "running")
    _ghost(cli, "a" * 300)
    _ghost(cli, "../../../tmp/evil", spec="not json")
    _ghost(cli, "new\nline", spec='{"commands": 5}')
    listed = cli("ps", "-a")
    assert listed.returncode == 0, listed.stderr
    assert "good" in listed.stdout and "new\\nline" in listed.stdout
    assert len(listed.stdout.splitlines()) == 5  # the header and one line per run
    listed_json = cli("ps", "-a", "--json")
    assert listed_json.returncode == 0, listed_json.stderr
    assert len(json.loads(listed_json.stdout)) == 4
    stopped = cli("stop", "--all", timeout=120)
    assert "Traceback" not in stopped.stderr, stopped.stderr
    assert "good: terminated" in stopped.stdout, (stopped.stdout, stopped.stderr)
    assert "new\\nline: terminated (stopped by user; its registry row is broken" in stopped.stdout
    assert len(stopped.stdout.splitlines()) == 4, stopped.stdout
    runs = ps(cli)
    assert runs["good"]["status"] == "terminated"
    assert all(r["status"] in ("terminated", "failed") for r in runs.values()), runs
    downed = cli("down", "--all", timeout=120)
    assert downed.returncode == 0 and "Traceback" not in downed.stderr, downed.stderr


def test_broken_row_does_not_stop_down_all(cli: Cli, project: Path) -> None:
    write_task(project, "commands: [sleep 300]\n")
    done = cli("up", "-y", "-d", "-n", "good", "task.dstack.yml")
    assert done.returncode == 0, done.stderr
    _ghost(cli, "b" * 300)
    downed = cli("down", "--all", timeout=120)
    assert "Traceback" not in downed.stderr, downed.stderr
    assert "good: terminated" in downed.stdout, (downed.stdout, downed.stderr)


@pytest.mark.parametrize(
    ("flags", "pattern"),
    [
        (["--max-duration", "0"], r"--max-duration: 0 .*off"),
        (["--max-offers", "-5"], r"--max-offers"),
        (["--max-price", "-1"], r"--max-price"),
    ],
)
def test_bad_numbers_refused(cli: Cli, project: Path, flags: list[str], pattern: str) -> None:
    write_task(project, "commands: [echo hi]\n")
    done = cli("up", "-y", "-d", *flags, "task.dstack.yml")
    one_line_exit_2(done, pattern)
    nothing_recorded(cli)


def test_max_duration_zero_in_the_file_refused(cli: Cli, project: Path) -> None:
    write_task(project, "commands: [echo hi]\nmax_duration: 0\n")
    done = cli("up", "-y", "-d", "task.dstack.yml")
    one_line_exit_2(done, r"task\.dstack\.yml:3:15: max_duration: 0 .*off")
    nothing_recorded(cli)


def test_logs_negative_offset(cli: Cli, project: Path) -> None:
    write_task(project, "commands: [echo hi]\n")
    done = cli("up", "-y", "-n", "one", "task.dstack.yml")
    assert done.returncode == 0, done.stderr
    logs = cli("logs", "--offset", "-5", "one")
    one_line_exit_2(logs, r"--offset")


def test_upload_limit_checked_before_anything_is_recorded(cli: Cli, project: Path) -> None:
    home = Path(cli.env["IACRUN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yml").write_text("upload_limit: 50KB\n")
    (project / "data.bin").write_bytes(b"x" * 100_000)
    write_task(project, "commands: [echo hi]\n")
    done = cli("up", "-y", "-d", "task.dstack.yml")
    one_line_exit_2(done, r"upload limit|larger than")
    nothing_recorded(cli)
