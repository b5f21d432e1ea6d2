"""The rendered cloud-init, executed for real in a temporary root (no systemd, no cloud).

What cloud-init would do is done step by step from the rendered document: its bootcmd, its
write_files, its runcmd (systemctl left out), then what systemd would run: the setup script,
the job service's ExecStartPre/ExecStart/ExecStopPost lines exactly as the unit says, and the
watchdog's check. The job runs as this user instead of `User=`; the power-off is a harmless
command that leaves a file.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from iacrun.stacks import cloudinit
from iacrun.stacks.cloudinit import VmLayout

from .conftest import job, make_spec

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
pytestmark = pytest.mark.skipif(
    shutil.which(f"python{PYTHON}") is None, reason=f"needs python{PYTHON} on PATH"
)


class Vm:
    """A run's VM laid out under `root`, driven the way cloud-init and systemd would."""

    def __init__(
        self, root: Path, job_: dict[str, Any], systemctl: str = "true", **spec_options: Any
    ) -> None:
        self.root = root
        self.powered_off = root / "powered-off"
        # the machine check's commands: never this machine's systemctl; a GPU that answers
        tools = root / "tools"
        tools.mkdir(parents=True, exist_ok=True)
        smi = tools / "nvidia-smi"
        smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA A10G (UUID: GPU-0)'\n")
        smi.chmod(0o755)
        self.layout = VmLayout(
            root=str(root / "opt"),
            user=getpass.getuser(),
            systemd_dir=str(root / "systemd"),
            python=sys.executable,
            poweroff=(sys.executable, "-c", f"open({str(self.powered_off)!r}, 'w').write('off')"),
            systemctl=systemctl,
            nvidia_smi=str(smi),
        )
        self.spec = make_spec("aws", job_=job_, **spec_options)
        self.document = yaml.safe_load(cloudinit.render_cloud_config(self.spec, self.layout))
        self.run_dir = Path(self.layout.run_dir)

    def boot(self) -> None:
        subprocess.run(self.document["bootcmd"][0], check=True)  # the first-boot stamp
        for entry in self.document["write_files"]:
            path = Path(entry["path"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(entry["content"])
            path.chmod(int(entry["permissions"], 8))
        for command in self.document["runcmd"]:
            if command[0] != "systemctl":
                subprocess.run(command, check=True)

    def setup(self, path_prefix: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        if path_prefix is not None:
            env["PATH"] = f"{path_prefix}:{env['PATH']}"
        return subprocess.run(
            [self.layout.setup], capture_output=True, text=True, env=env, timeout=300, check=False
        )

    def upload(self, full_job: dict[str, Any], files: dict[str, str], ready: bool = True) -> None:
        """What iacrun does over SFTP: the code, the full job.json, then code.ready."""
        code = self.run_dir / "code"
        code.mkdir()
        for name, text in files.items():
            (code / name).write_text(text)
        (self.run_dir / "job.json").write_text(json.dumps(full_job))
        if ready:
            (self.run_dir / "code.ready").write_text("")

    def unit(self, name: str) -> dict[str, str]:
        text = (Path(self.layout.systemd_dir) / name).read_text()
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def start_job_service(self) -> int:
        """iacrun-job.service as systemd runs it: pre, main, post."""
        unit = self.unit(cloudinit.JOB_SERVICE)
        pre = unit["ExecStartPre"]
        ignore_failure = pre.startswith("-")
        done = subprocess.run(shlex.split(pre.lstrip("-")), check=False)
        assert ignore_failure or done.returncode == 0
        main = subprocess.run(
            shlex.split(unit["ExecStart"]), cwd=unit["WorkingDirectory"], timeout=120, check=False
        )
        post = unit["ExecStopPost"].replace("$$", "$")
        env = dict(os.environ, SERVICE_RESULT="success", EXIT_CODE="exited", EXIT_STATUS="0")
        subprocess.run(shlex.split(post), env=env, check=True)
        return main.returncode

    def watch(self) -> subprocess.CompletedProcess[str]:
        unit = self.unit(cloudinit.WATCHDOG_SERVICE)
        return subprocess.run(
            shlex.split(unit["ExecStart"]), capture_output=True, text=True, timeout=60, check=False
        )

    def read(self, name: str) -> str:
        return (self.run_dir / name).read_text()


def test_a_python_job_runs_after_upload_and_records_its_exit(tmp_path: Path) -> None:
    commands = [
        "echo training with key $WANDB_API_KEY",
        "python -c 'import sys; print(\"prefix\", sys.prefix)'",
        "python train.py",
    ]
    vm = Vm(tmp_path, job(python=PYTHON, commands=commands))
    vm.boot()
    assert (vm.run_dir / "vm.ready").exists()
    assert (Path(vm.layout.first_boot)).read_text().strip().isdigit()
    setup = vm.setup()
    assert setup.returncode == 0, setup.stderr
    assert (vm.run_dir / "venv" / "bin" / "python").exists()
    assert f"[iacrun] setup: creating a Python {PYTHON} virtual environment" in vm.read("log")

    vm.upload(vm.spec.job, {"train.py": "import sys\nprint('epoch 1')\nsys.exit(3)\n"})
    assert vm.start_job_service() == 0  # the runner itself ends well after recording the job

    assert not (vm.run_dir / "code.ready").exists()
    assert (vm.run_dir / "code.started").exists()  # a second trigger cannot rerun the job
    log = vm.read("log")
    assert "training with key secret-value-123" in log
    assert f"prefix {vm.run_dir / 'venv'}" in log
    assert "epoch 1" in log
    assert vm.read("exit_code") == "3\n"
    assert vm.read("status") == "failed\n"
    state = json.loads(vm.read("state.json"))
    assert state["reason"] == "exited (3)"
    assert vm.read("runner.exit").split() == ["success", "exited", "0"]


def test_the_watchdog_powers_off_once_the_run_ended_and_lingered(tmp_path: Path) -> None:
    vm = Vm(tmp_path, job(python=PYTHON, commands=["echo ok"]))
    vm.boot()
    assert vm.setup().returncode == 0
    vm.upload(vm.spec.job, {})
    vm.start_job_service()
    assert vm.read("status") == "done\n"

    assert vm.watch().returncode == 0
    assert not vm.powered_off.exists()  # it just ended: iacrun has `linger` seconds to tear down
    old = time.time() - vm.spec.linger - 5
    os.utime(vm.run_dir / "runner.exit", (old, old))
    assert vm.watch().returncode == 0
    assert vm.powered_off.read_text() == "off"
    assert "[iacrun] self-destruct: the run ended" in vm.read("log")
    assert "the run ended" in vm.read("self_destruct")


def test_the_watchdog_powers_off_a_vm_whose_code_never_came(tmp_path: Path) -> None:
    vm = Vm(tmp_path, job(python=PYTHON))
    vm.boot()
    assert vm.watch().returncode == 0 and not vm.powered_off.exists()
    Path(vm.layout.first_boot).write_text(f"{int(time.time()) - vm.spec.code_wait - 5}\n")
    vm.watch()
    assert vm.powered_off.exists()
    assert "did not start" in vm.read("self_destruct")


def test_the_deadline_timer_command_powers_off(tmp_path: Path) -> None:
    vm = Vm(tmp_path, job(python=PYTHON))
    vm.boot()
    timer = vm.document["bootcmd"][1]
    assert timer[0] == "systemd-run"
    assert f"--on-boot={vm.spec.max_duration + vm.spec.self_destruct_margin}s" in timer
    # what the transient timer runs when it fires
    done = subprocess.run(timer[-3:], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert vm.powered_off.exists()
    assert vm.read("self_destruct") == "max duration exceeded\n"


def test_a_failed_setup_fails_the_run_with_its_reason(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    uv = fake_bin / "uv"
    uv.write_text("#!/bin/sh\necho 'error: no interpreter found for Python 3.99' >&2\nexit 2\n")
    uv.chmod(0o755)
    vm = Vm(tmp_path, job(python="3.99"))
    vm.boot()
    done = vm.setup(path_prefix=fake_bin)
    assert done.returncode == 1
    assert vm.read("status") == "failed\n"
    state = json.loads(vm.read("state.json"))
    assert state["reason"] == "setup failed: could not create a Python 3.99 virtual environment"
    assert "no interpreter found" in vm.read("setup.log")
    assert "[iacrun] setup: failed: could not create a Python 3.99" in vm.read("log")


def test_iacrun_starts_the_job_by_the_contract(tmp_path: Path) -> None:
    """wait for vm.ready, upload, write code.ready; the path unit (a thread here) starts the job."""
    import asyncio
    import threading

    from iacrun.orchestrator.host.local import LocalTransport
    from iacrun.orchestrator.host.runner_client import start_job, wait_vm_ready
    from iacrun.orchestrator.host.transport import Host

    vm = Vm(tmp_path, job(python=PYTHON, commands=["echo started by the path unit"]))
    host = Host(kind="ssh", run_dir=str(vm.run_dir), address="127.0.0.1", user="ubuntu")
    transport = LocalTransport()

    def path_unit() -> None:
        deadline = time.time() + 60
        while not (vm.run_dir / "code.ready").exists() and time.time() < deadline:
            time.sleep(0.05)
        vm.start_job_service()

    async def iacrun() -> dict[str, Any]:
        booting = threading.Thread(target=lambda: (vm.boot(), vm.setup()))
        booting.start()
        await wait_vm_ready(transport, host, timeout=60, poll=0.05)
        booting.join()
        vm.upload(vm.spec.job, {}, ready=False)  # code.ready is start_job's to write
        unit = threading.Thread(target=path_unit)
        unit.start()
        state = await start_job(transport, host, timeout=60, poll=0.05)
        unit.join()
        return state

    state = asyncio.run(iacrun())
    assert state["status"] in ("running", "done")
    assert vm.read("status") == "done\n"
    assert "started by the path unit" in vm.read("log")
    assert (vm.run_dir / "code.started").exists()


def _recorder(path: Path, log: Path) -> str:
    path.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    path.chmod(0o755)
    return str(path)


def test_docker_true_prepares_docker_for_the_jobs_commands(tmp_path: Path) -> None:
    """dstack's `docker: true`: the set-up makes Docker ready (its service enabled) although the
    task names no image, and pulls nothing."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    docker_calls, systemctl_calls = tmp_path / "docker-calls", tmp_path / "systemctl-calls"
    _recorder(fake_bin / "docker", docker_calls)
    systemctl = _recorder(tmp_path / "systemctl", systemctl_calls)
    vm = Vm(tmp_path, job(python=None, docker=True), systemctl=systemctl, gpu=False)
    vm.boot()
    done = vm.setup(path_prefix=fake_bin)
    assert done.returncode == 0, vm.read("setup.log")
    assert "[iacrun] setup: ready" in vm.read("log")
    assert "enable --now docker" in systemctl_calls.read_text()
    assert not docker_calls.exists()  # no image: nothing pulled


def test_without_docker_or_an_image_no_container_engine_is_touched(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    docker_calls, systemctl_calls = tmp_path / "docker-calls", tmp_path / "systemctl-calls"
    _recorder(fake_bin / "docker", docker_calls)
    systemctl = _recorder(tmp_path / "systemctl", systemctl_calls)
    vm = Vm(tmp_path, job(python=None), systemctl=systemctl, gpu=False)
    vm.boot()
    assert vm.setup(path_prefix=fake_bin).returncode == 0
    assert "docker" not in systemctl_calls.read_text() and not docker_calls.exists()
