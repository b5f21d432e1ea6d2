"""dstack's task fields: every bad form is one line at its place with exit 2, every refused field
says why and what to do, and good forms go through (checked with `up --dry-run`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Cli, write_task

BAD = [
    ("shell", "commands: [x]\nshell: zsh\n", r":3:8: shell: 'zsh' is not a shell iacrun can run"),
    (
        "shell-type",
        "commands: [x]\nshell: [bash]\n",
        r":3:8: shell: input should be a valid string",
    ),
    ("user", "image: alpine\nuser: 'a b'\n", r":3:7: user: 'a b' is not a user"),
    ("user-empty", "image: alpine\nuser: ''\n", r":3:7: user: '' is not a user"),
    (
        "entrypoint-empty",
        "image: alpine\nentrypoint: ' '\n",
        r":3:13: entrypoint: entrypoint is empty",
    ),
    (
        "entrypoint-quote",
        'image: alpine\nentrypoint: "sh -c \'x"\n',
        r"entrypoint .* cannot be split",
    ),
    (
        "entrypoint-no-image",
        "commands: [x]\nentrypoint: sh\n",
        r"entrypoint applies to an image's container",
    ),
    (
        "privileged",
        "image: alpine\nprivileged: maybe\n",
        r":3:13: privileged: input should be a valid boolean",
    ),
    (
        "privileged-no-image",
        "commands: [x]\nprivileged: true\n",
        r"privileged applies to an image's container",
    ),
    ("docker+image", "image: alpine\ndocker: true\n", r"docker: true and image exclude each other"),
    (
        "docker+python",
        "commands: [x]\npython: '3.11'\ndocker: true\n",
        r"docker: true and python exclude",
    ),
    ("nvcc+image", "image: alpine\nnvcc: true\n", r"nvcc: true and image exclude each other"),
    (
        "auth-missing",
        "image: alpine\nregistry_auth:\n  username: u\n",
        r":4:3: registry_auth\.password: is required$",
    ),
    (
        "auth-extra",
        "image: alpine\nregistry_auth:\n  username: u\n  password: p\n  token: t\n",
        r":6:3: registry_auth\.token: unknown field",
    ),
    (
        "auth-env",
        "image: alpine\nregistry_auth:\n  username: u\n  password: ${{ env.NO_SUCH_VAR_42 }}\n",
        r"registry_auth uses \$\{\{ env\.NO_SUCH_VAR_42 \}\}, and NO_SUCH_VAR_42 has no value",
    ),
    (
        "util-range",
        "commands: [x]\nutilization_policy:\n  min_gpu_utilization: 120\n  time_window: 10m\n",
        r":4:24: utilization_policy\.min_gpu_utilization: .*less than or equal to 100",
    ),
    (
        "util-window",
        "commands: [x]\nutilization_policy:\n  min_gpu_utilization: 10\n  time_window: 1m\n",
        r"time_window is 1m; the shortest is 5m",
    ),
    (
        "util-missing",
        "commands: [x]\nutilization_policy:\n  min_gpu_utilization: 10\n",
        r":4:3: utilization_policy\.time_window: is required$",
    ),
    (
        "priority-range",
        "commands: [x]\npriority: 101\n",
        r":3:11: priority: .*less than or equal to 100",
    ),
    (
        "priority-negative",
        "commands: [x]\npriority: -1\n",
        r":3:11: priority: .*greater than or equal to 0",
    ),
    (
        "priority-type",
        "commands: [x]\npriority: high\n",
        r"priority: input should be a valid integer",
    ),
    (
        "schedule-bad-cron",
        "commands: [x]\nschedule:\n  cron: '61 * * * *'\n",
        r"'61' is not a valid minute",
    ),
    ("schedule-fields", "commands: [x]\nschedule:\n  cron: '* * *'\n", r"takes 5 fields"),
    (
        "schedule-empty",
        "commands: [x]\nschedule:\n  cron: []\n",
        r"cron needs at least one expression",
    ),
    (
        "schedule",
        "commands: [x]\nschedule:\n  cron: '0 3 * * *'\n",
        r"^error: task\.dstack\.yml:3:1: schedule: a scheduled task is started at each of its "
        r"times by `iacrun server`, and this iacrun runs in-process: submit it to a server "
        r"\(iacrun login URL, .*\), or remove schedule to run the task once now$",
    ),
    (
        "schedule-never",
        "commands: [x]\nschedule:\n  cron: ['0 3 * * *', '0 0 30 2 *']\n",
        r"'0 0 30 2 \*' names no day that exists",
    ),
    (
        "schedule-concurrent",
        "commands: [x]\nschedule:\n  cron: '0 3 * * *'\n  concurrent: often\n",
        r":5:15: schedule\.concurrent: input should be a valid boolean",
    ),
    (
        "startup-order",
        "commands: [x]\nstartup_order: first\n",
        r"startup_order: 'first' is not allowed",
    ),
    (
        "stop-criteria",
        "commands: [x]\nstop_criteria: any\n",
        r"stop_criteria: 'any' is not allowed",
    ),
    (
        "creation-policy",
        "commands: [x]\ncreation_policy: never\n",
        r"creation_policy: 'never' is not allowed",
    ),
    (
        "reuse-clouds",
        "commands: [x]\ncreation_policy: reuse\nbackends: [aws]\n",
        r"creation_policy: reuse takes only machines that exist",
    ),
    ("setup-alone", "image: alpine\nsetup: [x]\n", r"setup runs before the commands"),
    (
        "working-dir-abs",
        "commands: [x]\nworking_dir: /app\n",
        r"an absolute path is a folder inside an image's container",
    ),
]
REFUSED = [
    ("volumes", "[data]", "iacrun mounts no volumes"),
    ("fleets", "[f]", "iacrun has no fleets"),
    ("reservation", "r-1", "does not use capacity reservations"),
    ("idle_duration", "1h", "gives every machine back when its run ends"),
    ("termination_policy", "dont-destroy", "deprecated this field"),
    ("termination_idle_time", "1h", "deprecated this field"),
    ("groups", "[a]", "no job groups"),
    ("dstack", "{}", "no dstack server settings"),
    ("availability_zones", "[us-east-1a]", "picks the zone"),
    ("home_dir", "/root", "deprecated home_dir"),
    ("tags", "{a: b}", "tags the cloud resources"),
]


@pytest.mark.parametrize(("case", "text", "pattern"), BAD, ids=[c[0] for c in BAD])
def test_every_bad_form_is_one_line(
    cli: Cli, project: Path, case: str, text: str, pattern: str
) -> None:
    write_task(project, text)
    done = cli("up", "-y", "task.dstack.yml")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize(("field", "value", "why"), REFUSED, ids=[r[0] for r in REFUSED])
def test_each_refused_field_says_why_in_one_line(
    cli: Cli, project: Path, field: str, value: str, why: str
) -> None:
    write_task(project, f"commands: [x]\n{field}: {value}\n")
    done = cli("up", "-y", "task.dstack.yml")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: task.dstack.yml:3:1: {field}: '{field}' is not supported: ")
    assert why in lines[0], lines[0]


GOOD = """\
commands: [echo hi]
shell: /bin/bash
setup: [echo set]
priority: 100
utilization_policy: {min_gpu_utilization: 0, time_window: 1h}
startup_order: master-first
stop_criteria: master-done
creation_policy: reuse-or-create
nvcc: false
docker: false
"""


def test_what_dstack_accepts_is_accepted(cli: Cli, project: Path) -> None:
    write_task(project, GOOD)
    done = cli("up", "--dry-run", "task.dstack.yml")
    assert done.returncode == 0, done.stderr


SCHEDULED = "commands: [echo hi]\nschedule:\n  cron: ['0 3 * * *', '30 12 * * 1-5']\n"


def test_a_scheduled_task_plans_in_process_but_is_refused_there_and_records_nothing(
    cli: Cli, project: Path
) -> None:
    write_task(project, SCHEDULED)
    dry = cli("up", "--dry-run", "task.dstack.yml")
    assert dry.returncode == 0 and "local" in dry.stdout, dry.stderr
    assert re.search(
        r"^ Schedule +0 3 \* \* \*, 30 12 \* \* 1-5 \(UTC\); next 20", dry.stdout, re.M
    )
    done = cli("up", "-y", "-d", "-n", "nightly", "task.dstack.yml")
    assert done.returncode == 2, done.stderr
    assert "started at each of its times by `iacrun server`" in done.stderr
    assert "nightly" not in cli("ps", "-a").stdout


def test_an_image_without_commands_is_accepted(cli: Cli, project: Path) -> None:
    write_task(
        project,
        "image: alpine\nuser: '1000:1000'\nentrypoint: echo hi\nprivileged: true\n"
        "working_dir: /app\nshell: sh\n",
    )
    done = cli("up", "--dry-run", "task.dstack.yml")
    assert done.returncode == 0, done.stderr


# ----------------------------------------------------------------------------- real local runs


def test_shell_sh_runs_the_commands_in_sh_on_the_local_backend(cli: Cli, project: Path) -> None:
    write_task(
        project, "shell: sh\nsetup: [echo setup first]\ncommands: ['readlink /proc/$$/exe']\n"
    )
    done = cli("up", "-y", "-n", "in-sh", "task.dstack.yml", timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "setup first" in lines
    assert os.path.realpath(shutil.which("sh") or "") in lines, done.stdout


def test_an_image_task_without_an_engine_is_refused_before_anything_is_recorded(
    cli: Cli, project: Path, tmp_path: Path
) -> None:
    if _running_engine():
        pytest.skip("this machine runs a container engine")
    write_task(project, "image: alpine\n")
    done = cli("up", "-y", "-n", "no-engine", "task.dstack.yml")
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert "need a container engine" in lines[0] or "cannot reach its daemon" in lines[0], lines
    assert "no-engine" not in cli("ps", "-a").stdout


def _running_engine() -> bool:
    for engine in ("docker", "podman"):
        exe = shutil.which(engine)
        if exe and subprocess.run([exe, "info"], capture_output=True, check=False).returncode == 0:
            return True
    return False


def test_nvcc_without_a_cuda_compiler_here_is_refused_before_anything_is_recorded(
    cli: Cli, project: Path, tmp_path: Path
) -> None:
    if shutil.which("nvcc", path=cli.env["PATH"]) or Path("/usr/local/cuda/bin/nvcc").exists():
        pytest.skip("this machine has a CUDA compiler")
    write_task(project, "nvcc: true\ncommands: [nvcc --version]\n")
    done = cli("up", "-y", "-n", "no-nvcc", "task.dstack.yml")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: nvcc: true needs the CUDA compiler on this machine"), lines
    assert "no-nvcc" not in cli("ps", "-a").stdout

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 12.4'\n")
    (bin_dir / "nvcc").chmod(0o755)
    cli.env["PATH"] = f"{bin_dir}:{cli.env['PATH']}"
    ran = cli("up", "-y", "-n", "with-nvcc", "task.dstack.yml")
    assert ran.returncode == 0, ran.stderr
    assert "Cuda compilation tools, release 12.4" in ran.stdout
