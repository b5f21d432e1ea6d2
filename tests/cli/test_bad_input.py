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
        r":2:1: comands: unknown field 'comands' — did you mean 'commands'\?",
    ),
    (
        "nested",
        "commands: [x]\nresources:\n  gpu:\n    nmae: A100\n",
        r":5:5: resources\.gpu\.nmae: .*did you mean 'name'",
    ),
    ("type", "commands: echo hi\n", r":2:11: commands: input should be a valid list"),
    (
        "inverted",
        "commands: [x]\nresources:\n  memory: 64GB..8GB\n",
        r":4:11: resources\.memory: .*inverted.*write 8GB\.\.64GB",
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
        r":3:1: volumes: 'volumes' is not supported: iacrun mounts no volumes",
    ),
    ("service", "type: service\ncommands: [x]\n", r"type 'service' is not supported"),
    ("duration", "commands: [x]\nmax_duration: soon\n", r"max_duration: 'soon' is not a duration"),
    ("spot", "commands: [x]\nspot_policy: sometimes\n", r"spot_policy: 'sometimes' is not allowed"),
    ("gpu", "commands: [x]\nresources:\n  gpu: A100:80QB\n", r"resources\.gpu: .*not a GPU name"),
    (
        "nodes-local",
        "commands: [x]\nnodes: 2\n",
        r"^error: task\.dstack\.yml: nodes: 2 needs 2 machines at once, which the backends at "
        r"hand \(local\) cannot give; use ssh, aws or azure \(ssh: list 2 hosts in .*\)$",
    ),
    ("nodes-zero", "commands: [x]\nnodes: 0\n", r":3:8: nodes: input should be greater .* got 0$"),
    ("nodes-text", "commands: [x]\nnodes: two\n", r":3:8: nodes: .*valid integer, got 'two'$"),
    ("nodes-bool", "commands: [x]\nnodes: true\n", r":3:8: nodes: .*valid integer, got True$"),
    ("expr", "commands: ['echo ${{ secrets.x }}']\n", r"unknown expression"),
    ("env", "commands: [x]\nenv: [NOT_SET_ANYWHERE_42]\n", r"env NOT_SET_ANYWHERE_42 has no value"),
    (
        "untyped",
        "commands: [x]\n",
        r'^error: task\.dstack\.yml: missing "type: task" \(iacrun runs tasks\)$',
    ),
    (
        "duplicate",
        "env: [A=1]\ncommands: [x]\nenv: [B=2]\n",
        r'^error: task\.dstack\.yml:4: key "env" repeats line 2; keep one of them$',
    ),
    (
        "duplicate-nested",
        "commands: [x]\nresources:\n  gpu: A100\n  gpu: H100\n",
        r'task\.dstack\.yml:5: key "resources\.gpu" repeats line 4',
    ),
    (
        "port-range",
        "commands: [x]\nports: [70000]\n",
        r":3:\d+: ports\[0\]: port 70000 is out of range 1\.\.65535$",
    ),
    (
        "port-mapping-range",
        "commands: [x]\nports: ['0:6000']\n",
        r"ports\[0\]: port 0 is out of range 1\.\.65535, got '0:6000'$",
    ),
    (
        "max-price",
        "commands: [x]\nmax_price: -1\n",
        r":3:12: max_price: a price per hour must be above 0, got -1$",
    ),
    (
        "retry-events",
        "commands: [x]\nretry:\n  on_events: []\n",
        r"retry\.on_events: cannot be empty; omit it to retry on every event",
    ),
    (
        "backend",
        "commands: [x]\nbackends: [aws, gcp]\n",
        r"backends\[1\]: unknown backend 'gcp'; known: aws, azure, local, ssh$",
    ),
    (
        "local-port-twice",
        "commands: [x]\nports: ['7000:6000', '7000:6001']\n",
        r":3:\d+: ports: local port 7000 is used twice \(7000:6000, 7000:6001\)$",
    ),
]
# files and repos (issue 14): every bad form is one line at the entry's position
CASES += [
    ("files-type", "commands: [x]\nfiles: a.txt\n", r":3:8: files: input should be a valid list"),
    (
        "files-key",
        "commands: [x]\nfiles:\n  - local_path: task.dstack.yml\n    path: b\n    mode: 600\n",
        r":6:5: files\[0\]\.mode: unknown field 'mode'",
    ),
    (
        "files-missing",
        "commands: [x]\nfiles: [nope.txt]\n",
        r":3:9: files\[0\]\.local_path: 'nope\.txt': no such file or folder \(.*\); check",
    ),
    (
        "files-colons",
        "commands: [x]\nfiles: ['a:b:c']\n",
        r":3:9: files\[0\]: 'a:b:c' is not LOCAL\[:PATH\]",
    ),
    (
        "files-user-home",
        "commands: [x]\nfiles: ['task.dstack.yml:~bob/x']\n",
        r":3:9: files\[0\]\.path: .*~user is not supported",
    ),
    (
        "files-no-path",
        "commands: [x]\nfiles:\n  - local_path: task.dstack.yml\n",
        r":4:5: files\[0\]\.path: is required$",
    ),
    ("repos-type", "commands: [x]\nrepos: [42]\n", r":3:9: repos\[0\]: "),
    (
        "repos-key",
        "commands: [x]\nrepos:\n  - url: https://h/r.git\n    brnach: main\n",
        r":5:5: repos\[0\]\.brnach: unknown field 'brnach' — did you mean 'branch'\?",
    ),
    (
        "repos-url",
        "commands: [x]\nrepos:\n  - url: not-a-url\n",
        r":4:10: repos\[0\]\.url: 'not-a-url' is not a git URL; write https://",
    ),
    (
        "repos-password",
        "commands: [x]\nrepos: ['https://me:pw@h/r.git']\n",
        r":3:9: repos\[0\]\.url: the URL holds a password; .*IACRUN_GIT_TOKEN.*me:\*\*\*@h",
    ),
    (
        "repos-two",
        "commands: [x]\nrepos: ['https://h/a.git', 'https://h/b.git']\n",
        r":3:8: repos: a task takes one repo; ship the others under files$",
    ),
    (
        "repos-both",
        "commands: [x]\nrepos:\n  - url: https://h/r.git\n    local_path: .\n",
        r":4:5: repos\[0\]: local_path and url exclude each other",
    ),
    (
        "repos-local-branch",
        "commands: [x]\nrepos:\n  - local_path: .\n    branch: main\n",
        r":4:5: repos\[0\]: branch and hash apply to a repo url",
    ),
    (
        "repos-hash",
        "commands: [x]\nrepos:\n  - url: https://h/r.git\n    hash: main~1\n",
        r":5:11: repos\[0\]\.hash: 'main~1' is not a commit hash",
    ),
    (
        "repos-if-exists",
        "commands: [x]\nrepos:\n  - url: https://h/r.git\n    if_exists: overwrite\n",
        r":5:16: repos\[0\]\.if_exists: 'overwrite' is not allowed",
    ),
    (
        "repos-missing",
        "commands: [x]\nrepos: [../no-such-repo]\n",
        r":3:9: repos\[0\]: '\.\./no-such-repo': no such folder",
    ),
    (
        "repos-not-git",
        "commands: [x]\nrepos: ['.']\n",
        r":3:9: repos\[0\]: '\.' \(.*\) is not a git repository; list a plain folder under files",
    ),
    (
        "single-branch",
        "commands: [x]\nsingle_branch: maybe\n",
        r":3:16: single_branch: ",
    ),
]
UNTYPED = {"yaml", "empty", "list", "untyped"}


@pytest.mark.parametrize(("case", "text", "pattern"), CASES, ids=[c[0] for c in CASES])
def test_bad_task_file_is_one_line(
    cli: Cli, project: Path, case: str, text: str, pattern: str
) -> None:
    write_task(project, text, typed=case not in UNTYPED)
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


def test_bad_flag_values_are_one_line_naming_the_flag(cli: Cli, project: Path) -> None:
    write_task(project, "commands: [x]\nports: [6000, 6001]\n")
    for args, expected in (
        (["--port", "70000:6000"], "error: --port 70000:6000: port 70000 is out of range 1..65535"),
        (["--max-price", "-1"], "error: --max-price -1: a price per hour must be above 0"),
        (["--max-price", "0"], "error: --max-price 0: a price per hour must be above 0"),
        (
            ["-b", "gcp"],
            "error: -b/--backend gcp: unknown backend 'gcp'; known: aws, azure, local, ssh",
        ),
        (
            ["--port", "7000:6000", "--port", "7000:6001"],
            "error: --port 7000:6001: local port 7000 is used twice (7000:6000, 7000:6001)",
        ),
    ):
        done = cli("up", "-y", "--dry-run", *args, "task.dstack.yml")
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip() == expected, args
    assert cli("ps", "-a", "--json").stdout.strip() == "[]"


def test_a_swapped_port_mapping_is_refused_before_anything_runs(cli: Cli, project: Path) -> None:
    """dstack's docs read `--port 6000:6001` as task 6000 → local 6001; iacrun (like dstack's
    code and Docker) reads LOCAL:TASK, so the literal example would forward to a dead port."""
    write_task(project, "commands: ['sleep 30']\nports: [6000]\n")
    done = cli("up", "-y", "--port", "6000:6001", "task.dstack.yml")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: --port 6000:6001 forwards local port 6000 to task port 6001, but the task "
        "listens on 6000 (ports: [6000]); did you mean --port 6001:6000?"
    )
    other = cli("up", "-y", "--port", "8080:7000", "task.dstack.yml")
    assert other.returncode == 2
    assert other.stderr.strip() == (
        "error: --port 8080:7000 forwards local port 8080 to task port 7000, but the task "
        "listens on 6000 (ports: [6000]); add 7000 to its ports or forward one of those"
    )
    assert cli("ps", "-a", "--json").stdout.strip() == "[]"


def test_empty_resources_mean_the_defaults(cli: Cli, project: Path) -> None:
    write_task(project, "commands: [x]\nresources:\n")
    done = cli("up", "-y", "--dry-run", "task.dstack.yml")
    assert done.returncode == 0, done.stderr
    assert "cpu=2.. mem=8GB.. disk=100GB.." in done.stdout


def _without_pulumi(env: dict[str, str]) -> None:
    import shutil

    keep = [d for d in env["PATH"].split(":") if not shutil.which("pulumi", path=d)]
    env["PATH"] = ":".join(keep)


def test_stack_commands_without_a_cloud_need_no_pulumi(cli: Cli, project: Path) -> None:
    _without_pulumi(cli.env)
    down = cli("down", "nosuchrun")
    assert down.returncode == 1
    assert down.stderr.strip() == "error: no run or stack named 'nosuchrun'; see iacrun ps -a"
    write_task(project, "commands: [echo hi]\n")
    assert cli("up", "-y", "-n", "here", "task.dstack.yml").returncode == 0
    state = cli("state", "here")
    assert state.returncode == 1
    assert state.stderr.strip() == "error: run 'here' runs on the local backend; it has no stack"
    missing = cli("state", "nosuchrun")
    assert missing.stderr.strip() == "error: no run or stack named 'nosuchrun'; see iacrun ps -a"
    stacks = cli("stacks")
    assert stacks.returncode == 0, stacks.stderr
    assert stacks.stdout.strip().startswith("no stacks: no cloud backend is configured in ")
    assert cli("stacks", "--json").stdout.strip() == "[]"
    assert cli("down", "here").returncode == 0  # a finished local run: nothing to destroy


def test_a_cloud_run_without_pulumi_still_says_pulumi(cli: Cli, project: Path) -> None:
    """Where a stack is really touched, the missing tool is the problem, and said so."""
    _without_pulumi(cli.env)
    home = Path(cli.env["IACRUN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yml").write_text("backends:\n  aws: {regions: [us-east-1]}\n")
    done = cli("stacks")
    assert done.returncode == 1 and "the `pulumi` CLI is not on PATH" in done.stderr
