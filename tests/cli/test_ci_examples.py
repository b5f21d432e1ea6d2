"""The CI examples (examples/ci/) run as their CI would run them, against a real `iacrun server`:
the step's own shell command with the settings from secrets in its environment; a job that
ends fails or passes the step with the job's exit code; a cancel (the CI's signal to the step's
process) stops the run on the server, and the cancel step after it succeeds."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli.conftest import read_until
from tests.cli.test_remote import server_record
from tests.server.conftest import ADMIN_TOKEN, Server, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: GitHub's wait between its SIGINT and its SIGTERM to a cancelled step
GITHUB_SIGINT_GRACE = 7.5
#: and between its SIGTERM and the kill of the process tree
GITHUB_SIGTERM_GRACE = 2.5
#: GitLab's wait between its SIGTERM and its SIGKILL to a cancelled job
GITLAB_SIGTERM_GRACE = 10.0


def github_steps() -> tuple[dict[str, Any], str, str]:
    """The job's env, the command of the step that runs the task, and of the cancel step."""
    job = yaml.safe_load((EXAMPLES / "ci" / "github-actions.yml").read_text())["jobs"]["train"]
    runs = [s for s in job["steps"] if "iacrun up" in s.get("run", "")]
    cancels = [s for s in job["steps"] if s.get("if") == "cancelled()"]
    assert len(runs) == 1 and len(cancels) == 1
    return job["env"], runs[0]["run"], cancels[0]["run"]


def gitlab_job() -> dict[str, Any]:
    job: dict[str, Any] = yaml.safe_load((EXAMPLES / "ci" / "gitlab-ci.yml").read_text())["train"]
    return job


def ci_env(running: Server, run_name: str) -> dict[str, str]:
    """What the CI gives the step: the secrets, the pipeline's run name, iacrun on the PATH."""
    env = dict(os.environ)
    env.update(
        IACRUN_SERVER_URL=running.url,
        IACRUN_TOKEN=ADMIN_TOKEN,
        RUN_NAME=run_name,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    return env


def checkout(project: Path, task: str | None = None) -> Path:
    """The repository as the CI checks it out: examples/hello.dstack.yml, or `task` there."""
    (project / "examples").mkdir()
    target = project / "examples" / "hello.dstack.yml"
    if task is None:
        shutil.copy(EXAMPLES / "hello.dstack.yml", target)
    else:
        target.write_text(task)
    return project


LONG_TASK = "type: task\ncommands:\n  - while true; do echo tick; sleep 0.2; done\n"


def test_github_secrets_reach_the_server_and_the_run_name_is_the_pipelines() -> None:
    env, run, cancel = github_steps()
    assert env["IACRUN_TOKEN"] == "${{ secrets.IACRUN_TOKEN }}"
    assert env["IACRUN_SERVER_URL"] == "${{ vars.IACRUN_SERVER_URL }}"
    assert re.fullmatch(
        r"ci-\$\{\{ github.run_id \}\}-\$\{\{ github.run_attempt \}\}", env["RUN_NAME"]
    )
    assert run.startswith("exec iacrun up ")  # the step's process is iacrun: it gets the signals
    assert cancel.strip() == 'iacrun stop "$RUN_NAME"'
    job = gitlab_job()
    assert job["after_script"] == ['iacrun stop "$RUN_NAME"']


def test_github_step_runs_the_task_and_passes(server: Server, project: Path) -> None:
    _, run, _ = github_steps()
    out = subprocess.run(
        ["bash", "-e", "-c", run],
        cwd=checkout(project),
        env=ci_env(server, "ci-101-1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "Hello from iacrun run ci-101-1" in out.stdout
    assert server_record(server, "ci-101-1").status == "done"


def test_github_step_fails_with_the_jobs_exit_code(server: Server, project: Path) -> None:
    _, run, _ = github_steps()
    out = subprocess.run(
        ["bash", "-e", "-c", run],
        cwd=checkout(project, "type: task\ncommands:\n  - echo failing\n  - exit 4\n"),
        env=ci_env(server, "ci-102-1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 4, out.stderr


def test_github_cancel_stops_the_run(server: Server, project: Path) -> None:
    _, run, cancel = github_steps()
    env = ci_env(server, "ci-103-1")
    cwd = checkout(project, LONG_TASK)
    step = subprocess.Popen(
        ["bash", "-e", "-c", run],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    read_until(step, b"tick\n")
    # GitHub's cancel: SIGINT to the step's process, SIGTERM 7.5 s later, the kill 2.5 s after
    step.send_signal(signal.SIGINT)
    try:
        step.wait(timeout=GITHUB_SIGINT_GRACE)
    except subprocess.TimeoutExpired:
        step.send_signal(signal.SIGTERM)
    assert step.wait(timeout=GITHUB_SIGTERM_GRACE) == 130
    assert step.stderr is not None
    assert "Interrupted: stopping ci-103-1" in step.stderr.read().decode()
    wait_for(lambda: server_record(server, "ci-103-1").status.is_final, timeout=60)
    assert server_record(server, "ci-103-1").status == "terminated"
    after = subprocess.run(
        ["bash", "-e", "-c", cancel], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert after.returncode == 0, after.stderr
    assert after.stdout.startswith("ci-103-1: terminated")


def test_gitlab_cancel_stops_the_run(server: Server, project: Path) -> None:
    job = gitlab_job()
    env = ci_env(server, "ci-201-7")
    cwd = checkout(project, LONG_TASK)
    script = "\n".join(job["script"])
    step = subprocess.Popen(
        ["bash", "-e", "-c", script],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    read_until(step, b"tick\n")
    os.killpg(step.pid, signal.SIGTERM)  # GitLab's cancel: SIGTERM to the script's processes
    assert step.wait(timeout=GITLAB_SIGTERM_GRACE) != 0
    wait_for(lambda: server_record(server, "ci-201-7").status.is_final, timeout=60)
    run = server_record(server, "ci-201-7")
    assert run.status == "terminated"
    after = subprocess.run(
        ["bash", "-e", "-c", "\n".join(job["after_script"])],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert after.returncode == 0, after.stderr
    assert after.stdout.startswith("ci-201-7: terminated")


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_examples_are_yaml(name: str) -> None:
    assert isinstance(yaml.safe_load((EXAMPLES / "ci" / name).read_text()), dict)
