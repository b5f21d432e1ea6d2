"""Every bad task file gets one line: file, line and column, field, the problem, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli, write_task

CASES = [
    ("yaml", "commands: [echo\n", r"task\.dstack\.yml:2:1: YAML syntax error"),
    (
        "unknown",
        "comands:\n  - echo\n",
        r":1:1: comands: unknown field 'comands' — did you mean 'commands'\?",
    ),
    (
        "nested",
        "commands: [x]\nresources:\n  gpu:\n    nmae: A100\n",
        r":4:5: resources\.gpu\.nmae: .*did you mean 'name'",
    ),
    ("type", "commands: echo hi\n", r":1:11: commands: input should be a valid list"),
    (
        "inverted",
        "commands: [x]\nresources:\n  memory: 64GB..8GB\n",
        r":3:11: resources\.memory: .*inverted.*write 8GB\.\.64GB",
    ),
    (
        "python+image",
        "commands: [x]\npython: '3.11'\nimage: ubuntu\n",
        r"python and image exclude each other",
    ),
    ("empty", "", r"the task file is empty"),
    ("list", "- echo\n", r"must be a mapping of fields, not a list"),
    (
        "unsupported",
        "commands: [x]\nvolumes: [data]\n",
        r"'volumes' is a dstack feature iacrun does not support",
    ),
    ("service", "type: service\ncommands: [x]\n", r"type 'service' is not supported"),
    ("duration", "commands: [x]\nmax_duration: soon\n", r"max_duration: 'soon' is not a duration"),
    ("spot", "commands: [x]\nspot_policy: sometimes\n", r"spot_policy: 'sometimes' is not allowed"),
    ("gpu", "commands: [x]\nresources:\n  gpu: A100:80QB\n", r"resources\.gpu: .*not a GPU name"),
    ("nodes", "commands: [x]\nnodes: 2\n", r"multi-node tasks"),
    ("expr", "commands: ['echo ${{ secrets.x }}']\n", r"unknown expression"),
    ("env", "commands: [x]\nenv: [NOT_SET_ANYWHERE_42]\n", r"env NOT_SET_ANYWHERE_42 has no value"),
]


@pytest.mark.parametrize(("case", "text", "pattern"), CASES, ids=[c[0] for c in CASES])
def test_bad_task_file_is_one_line(
    cli: Cli, project: Path, case: str, text: str, pattern: str
) -> None:
    write_task(project, text)
    done = cli("up", "-y", "task.dstack.yml")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    import re

    assert re.search(pattern, lines[0]), lines[0]


def test_file_name_and_missing_file(cli: Cli, project: Path) -> None:
    (project / "train.yml").write_text("commands: [x]\n")
    done = cli("up", "-y", "train.yml")
    assert done.returncode == 2
    assert "must end in .dstack.yml; rename it to train.dstack.yml" in done.stderr
    missing = cli("up", "-y", "nope.dstack.yml")
    assert missing.returncode == 2 and "no such task file" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_bad_flags_are_one_line(cli: Cli, project: Path) -> None:
    write_task(project, "commands: [x]\n")
    for args, expected in (
        (["--max-duration", "forever"], "--max-duration"),
        (["--gpu", "A100:80QB"], "resources flag"),
        (["-e", "1BAD=x"], "not a valid variable name"),
        (["--port", "http"], "--port http"),
        (["--spot", "--on-demand"], "choose one of"),
        (["--profile", "missing"], "no profile named"),
    ):
        done = cli("up", "-y", *args, "task.dstack.yml")
        assert done.returncode == 2, (args, done.stderr)
        assert expected in done.stderr and "Traceback" not in done.stderr


def test_bad_config_file_is_one_line(cli: Cli, project: Path) -> None:
    config = Path(cli.env["IACRUN_HOME"])
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.yml").write_text("backends:\n  lokal: {}\n")
    write_task(project, "commands: [x]\n")
    done = cli("up", "-y", "task.dstack.yml")
    assert done.returncode == 2
    assert "unknown field 'lokal' — did you mean 'local'?" in done.stderr


def test_impossible_resources_say_why(cli: Cli, project: Path) -> None:
    write_task(project, "commands: [x]\nresources:\n  cpu: 4096..\n")
    done = cli("up", "-y", "task.dstack.yml")
    assert done.returncode == 1
    assert "no offer meets cpu=4096.." in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_unknown_run_is_one_line(cli: Cli) -> None:
    for command in (["logs", "ghost"], ["stop", "ghost"], ["attach", "ghost"]):
        done = cli(*command)
        assert done.returncode == 1 and "no run named 'ghost'" in done.stderr
        assert "Traceback" not in done.stderr


def test_a_cloud_without_credentials_is_one_line_and_records_nothing(
    cli: Cli, project: Path
) -> None:
    home = Path(cli.env["IACRUN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yml").write_text(
        "backends:\n  local: {enabled: false}\n  aws: {regions: [us-east-1]}\n"
    )
    for key in [k for k in cli.env if k.startswith("AWS_")]:
        del cli.env[key]
    write_task(project, "commands: [x]\nresources: {gpu: T4}\n")
    done = cli("up", "-y", "task.dstack.yml")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no AWS credentials found")
    assert "Traceback" not in done.stderr
    assert cli("ps", "-a", "--json").stdout.strip() == "[]"
