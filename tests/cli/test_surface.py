"""The CLI's surface: help, version, completion, usage lines, and what belongs to the task."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from iacrun.cli.main import app
from tests.conftest import Cli, write_task

ECHO_ARGS = """
type: task
commands:
  - printf '[%s]' ${{ run.args }}; echo
"""
NO_ARGS = """
type: task
commands:
  - echo hello
"""


def _commands() -> list[tuple[str, Any]]:
    group: Any = typer.main.get_command(app)
    ctx = group.make_context("iacrun", [], resilient_parsing=True)
    return [(name, group.get_command(ctx, name)) for name in group.list_commands(ctx)]


def test_help_and_version_short_and_long(cli: Cli) -> None:
    for flag in ("-h", "--help"):
        done = cli(flag)
        assert done.returncode == 0 and "Commands:" in done.stdout, done.stderr
    version = cli("--version")
    assert version.returncode == 0
    assert re.fullmatch(r"iacrun \d+\.\d+\.\d+\S*\n", version.stdout)


@pytest.mark.parametrize("name", ["up", "ps", "logs", "attach", "stop", "down", "offers", "state"])
def test_every_command_takes_dash_h(cli: Cli, name: str) -> None:
    done = cli(name, "-h")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage:")


def test_usage_lines_read_like_click(cli: Cli) -> None:
    expected = {
        "up": "up [OPTIONS] [FILE] [ARGS]...",
        "logs": "logs [OPTIONS] RUN",
        "attach": "attach [OPTIONS] RUN",
        "stop": "stop [OPTIONS] [RUN]...",
        "down": "down [OPTIONS] [RUN|STACK]...",
        "state": "state [OPTIONS] RUN",
    }
    for name, usage in expected.items():
        first = cli(name, "--help").stdout.splitlines()[0]
        assert first.endswith(usage), first
    for name, _ in _commands():
        text = cli(name, "--help").stdout
        assert not re.search(r"\{\w+\}|<[\w\[\], ]+>", text), (name, text)


def test_every_option_has_help_and_no_description_is_cut() -> None:
    for name, command in _commands():
        for param in command.params:
            if param.param_type_name == "option":
                assert getattr(param, "help", None), f"{name} {param.opts[0]} has no help"
            else:
                assert getattr(param, "help", None), f"{name} {param.name} has no help"
    listing = subprocess.run(
        [sys.executable, "-m", "iacrun.cli.main", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    commands = listing.split("Commands:", 1)[1]
    assert "..." not in commands, commands


def test_shell_completion_completes_commands(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "iacrun"
    if not script.exists():
        pytest.skip("the iacrun console script is not installed next to this python")
    env = dict(os.environ, _IACRUN_COMPLETE="complete_bash", COMP_WORDS="iacrun st", COMP_CWORD="1")
    done = subprocess.run([str(script)], env=env, capture_output=True, text=True, check=False)
    assert sorted(done.stdout.split()) == ["stacks", "state", "stop"], done.stdout
    shown = subprocess.run(
        [str(script), "--show-completion", "bash"], capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0 and "_IACRUN_COMPLETE" in shown.stdout


def _ps(cli: Cli) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in json.loads(cli("ps", "-a", "--json").stdout)}


def test_everything_after_the_file_belongs_to_the_task(cli: Cli, project: Path) -> None:
    write_task(project, ECHO_ARGS)
    done = cli("up", "-y", "-n", "mine", "task.dstack.yml", "-n", "5", "-d", "--", "x")
    assert done.returncode == 0, done.stderr
    assert "[-n][5][-d][--][x]" in done.stdout  # attached to the end: -d did not detach
    assert "note: -d comes after the task file" in done.stderr
    runs = _ps(cli)
    assert set(runs) == {"mine"} and runs["mine"]["status"] == "done"


def test_a_leading_double_dash_after_the_file_is_dropped(cli: Cli, project: Path) -> None:
    write_task(project, ECHO_ARGS)
    done = cli("up", "-y", "task.dstack.yml", "--", "--lr", "0.1")
    assert done.returncode == 0 and "[--lr][0.1]" in done.stdout, done.stderr


def test_arguments_for_a_task_that_takes_none_are_refused(cli: Cli, project: Path) -> None:
    write_task(project, NO_ARGS)
    done = cli("up", "-y", "task.dstack.yml", "-d")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "do not use ${{ run.args }}" in done.stderr
    assert "iacrun's options go before the file" in done.stderr
    assert _ps(cli) == {}


def test_up_dash_f_and_dstacks_dot_dash_f(cli: Cli, project: Path) -> None:
    write_task(project, NO_ARGS)
    first = cli("up", "-y", "-n", "one", "-f", "task.dstack.yml")
    assert first.returncode == 0 and "hello" in first.stdout, first.stderr
    second = cli("up", "-y", "-n", "two", ".", "-f", "task.dstack.yml")
    assert second.returncode == 0 and "hello" in second.stdout, second.stderr
    third = cli("up", "-y", "-n", "three", "-f", "task.dstack.yml", ".")
    assert third.returncode == 0 and "hello" in third.stdout, third.stderr
    assert {r["status"] for r in _ps(cli).values()} == {"done"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "name the task file: iacrun up [OPTIONS] FILE [ARGS]..."),
        ((".",), ". is a folder; name the task file: iacrun up FILE (there: task.dstack.yml)"),
        (("-f", "task.dstack.yml", "other.dstack.yml"), "two task files"),
    ],
)
def test_up_without_one_task_file_says_what_to_type(
    cli: Cli, project: Path, argv: tuple[str, ...], message: str
) -> None:
    write_task(project, NO_ARGS)
    done = cli("up", "-y", *argv)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {message}") and done.stderr.count("\n") == 1
