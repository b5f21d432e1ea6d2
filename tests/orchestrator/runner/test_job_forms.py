"""dstack's `shell`, `image` (entrypoint, user, registry_auth...) and `utilization_policy`, as the
runner builds and runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from iacrun.orchestrator.runner import runner
from tests.orchestrator.runner.test_runner import start, wait_final


def _interpreter_of(tmp_path: Path, shell: str) -> str:
    start(tmp_path, shell=shell, commands=["readlink /proc/$$/exe"])
    state = wait_final(tmp_path)
    assert state["status"] == "done", (tmp_path / "log").read_text()
    return (tmp_path / "log").read_text().splitlines()[0]


@pytest.mark.parametrize("shell", ["sh", "bash", "/bin/bash"])
def test_commands_run_in_the_shell_asked_for(tmp_path: Path, shell: str) -> None:
    want = os.path.realpath(shell if shell.startswith("/") else shutil.which(shell) or "")
    assert _interpreter_of(tmp_path, shell) == want


def test_a_missing_shell_fails_the_run_in_one_line(tmp_path: Path) -> None:
    start(tmp_path, shell="/nonexistent/zsh")
    state = wait_final(tmp_path)
    assert state["status"] == "failed" and state["exit_code"] == 127
    assert state["reason"] == ("cannot start the shell /nonexistent/zsh: No such file or directory")


# ----------------------------------------------------------------------------- utilization


@pytest.fixture
def fake_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An `nvidia-smi` on PATH that prints the figures written to the file it returns."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    figures = tmp_path / "figures.csv"
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\ncat {figures}\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return figures


def _policy(minimum: int, window: int) -> dict[str, int]:
    return {"min_gpu_utilization": minimum, "time_window": window}


def test_a_gpu_idle_for_the_whole_window_ends_the_run(tmp_path: Path, fake_smi: Path) -> None:
    fake_smi.write_text("0, 95\n1, 3\n")
    run = tmp_path / "run"
    start(run, commands=["sleep 60"], utilization_policy=_policy(10, 1))
    state = wait_final(run)
    assert (state["status"], state["reason"]) == ("terminated", "gpu utilization below 10%")
    assert "[iacrun] gpu utilization below 10% for 1s; stopping the job" in (
        (run / "log").read_text()
    )


def test_busy_gpus_keep_the_run_going(tmp_path: Path, fake_smi: Path) -> None:
    fake_smi.write_text("0, 95\n1, 40\n")
    run = tmp_path / "run"
    start(run, commands=["sleep 2"], utilization_policy=_policy(10, 1))
    state = wait_final(run)
    assert (state["status"], state["exit_code"]) == ("done", 0)


def test_only_the_jobs_gpus_count(tmp_path: Path, fake_smi: Path) -> None:
    fake_smi.write_text("0, 95\n1, 3\n")  # GPU 1 is idle, but it is another run's
    run = tmp_path / "run"
    start(run, commands=["sleep 2"], gpus="0", utilization_policy=_policy(10, 1))
    assert wait_final(run)["status"] == "done"


def test_a_gpu_that_wakes_up_restarts_the_window(tmp_path: Path, fake_smi: Path) -> None:
    fake_smi.write_text("0, 0\n")
    watch = runner.UtilizationWatch(
        {"utilization_policy": _policy(10, 10)}, runner.RunFolder(str(tmp_path)), 0.0
    )
    assert not watch.too_low(0.0) and not watch.too_low(6.0)
    fake_smi.write_text("0, 50\n")
    assert not watch.too_low(7.0)
    fake_smi.write_text("0, 0\n")
    assert not watch.too_low(8.0) and not watch.too_low(17.0) and watch.too_low(18.0)


def test_without_nvidia_smi_the_policy_says_it_is_not_enforced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has a real nvidia-smi")
    start(tmp_path, commands=["sleep 1.5"], utilization_policy=_policy(10, 1))
    assert wait_final(tmp_path)["status"] == "done"
    assert "utilization_policy: nvidia-smi gave no figures; not enforced" in (
        (tmp_path / "log").read_text()
    )


# ----------------------------------------------------------------------------- images

JOB = {"run_name": "r", "env": {"A": "1"}, "image": "ghcr.io/o/i:1", "commands": []}


def test_an_image_without_commands_runs_its_own_entrypoint() -> None:
    argv = runner.docker_argv(JOB, "/runs/r")
    assert argv[-1] == "ghcr.io/o/i:1" and "-w" not in argv and "--entrypoint" not in argv


def test_entrypoint_user_privileged_and_an_absolute_working_dir() -> None:
    job = {
        **JOB,
        "entrypoint": "python -u",
        "commands": ["train.py", "--epochs 3"],
        "user": "1000:1000",
        "privileged": True,
        "working_dir": "/app",
        "container_engine": "podman",
    }
    argv = runner.docker_argv(job, "/runs/r")
    assert argv[:2] == ["podman", "run"]
    assert argv[argv.index("-w") + 1] == "/app"
    assert argv[argv.index("--user") + 1] == "1000:1000" and "--privileged" in argv
    # as dstack: the entrypoint's words, then each command as one argument
    assert argv[-6:] == ["--entrypoint", "python", "ghcr.io/o/i:1", "-u", "train.py", "--epochs 3"]


def test_commands_in_an_image_run_in_its_shell_over_its_entrypoint() -> None:
    job = {**JOB, "commands": ["echo a", "echo b"], "shell": "bash"}
    argv = runner.docker_argv(job, "/runs/r")
    assert argv[-7:] == [
        "--entrypoint",
        "/bin/bash",
        "ghcr.io/o/i:1",
        "-c",
        "set -e\necho a\necho b",
        "iacrun-job",  # $0, then the task's arguments ("$@" of job.sh)
        runner.ARGS_HERE,
    ]
    assert argv[argv.index("-w") + 1] == "/workflow"


def test_registry_credentials_stay_out_of_the_container_and_the_script() -> None:
    job = {
        **JOB,
        "env": {"A": "1", **dict.fromkeys(runner.REGISTRY_ENV, "s3cret")},
        "registry_auth": dict(zip(("username", "password"), runner.REGISTRY_ENV, strict=True)),
    }
    argv = runner.docker_argv(job, "/runs/r")
    assert "IACRUN_REGISTRY_PASSWORD" not in argv and "A" in argv
    script = runner.render_job_script(job, "/runs/r")
    assert "s3cret" not in script and "--password-stdin ghcr.io" in script


def test_registry_login_passes_the_password_on_stdin_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real run of the job script with a stand-in `docker` that records what it is given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "docker"
    fake.write_text(
        f'#!/bin/sh\necho "ARGV $*" >>{calls}\n'
        f'case "$*" in *password-stdin*) echo "STDIN $(cat)" >>{calls};; esac\n'
        'case "$1" in run) echo container ran;; esac\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    run = tmp_path / "run"
    start(
        run,
        image="registry.example.com:5000/team/app:2",
        commands=[],
        env={"IACRUN_REGISTRY_USERNAME": "bob", "IACRUN_REGISTRY_PASSWORD": "s3cret"},
        registry_auth={
            "username": "IACRUN_REGISTRY_USERNAME",
            "password": "IACRUN_REGISTRY_PASSWORD",
        },
    )
    state = wait_final(run)
    assert state["status"] == "done", (run / "log").read_text()
    recorded = calls.read_text().splitlines()
    argvs = [line for line in recorded if line.startswith("ARGV")]
    assert "STDIN s3cret" in recorded and not any("s3cret" in a for a in argvs)
    assert "login --username bob --password-stdin registry.example.com:5000" in argvs[0]
    assert [a.split()[3] for a in argvs[1:3]] == ["pull", "logout"]
    assert (
        "s3cret" not in (run / "log").read_text() and "container ran" in (run / "log").read_text()
    )
    assert not (run / "registry-auth").exists()


def _engine() -> str | None:
    for engine in ("docker", "podman"):
        exe = shutil.which(engine)
        if exe and subprocess.run([exe, "info"], capture_output=True, check=False).returncode == 0:
            return engine
    return None


@pytest.mark.skipif(_engine() is None, reason="no running docker or podman on this machine")
def test_an_image_entrypoint_runs_for_real(tmp_path: Path) -> None:
    start(
        tmp_path,
        image="busybox:1.36",
        commands=["hello from the entrypoint"],
        entrypoint="echo",
        user="1000:1000",
        container_engine=_engine(),
    )
    state = wait_final(tmp_path, timeout=300)
    assert state["status"] == "done", (tmp_path / "log").read_text()
    assert "hello from the entrypoint" in (tmp_path / "log").read_text()
