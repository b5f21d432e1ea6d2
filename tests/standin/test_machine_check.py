"""The machine checks itself before the job, on the stand-in cloud, through the orchestrator.

The VM's real set-up script (stacks/cloudinit.py) runs with a fake `nvidia-smi` and a fake
`systemctl` that records what it was asked: a machine whose GPUs never answer ends the run with
the classified reason and is torn down at once (its stack destroyed, its processes gone), and one
whose driver answers on the third try runs the job.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.models.runspec import build_run_spec
from iacrun.orchestrator.models.settings import Settings
from iacrun.stacks.engine import StackEngine
from tests.stacks.engine.support import OFFLINE_ENV
from tests.standin.backend import StandinBackend
from tests.standin.vm import vm_pids

pytestmark = [pytest.mark.engine, pytest.mark.sshd]

DRIVER_DOWN = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure "
    "that the latest NVIDIA driver is installed and running."
)


def fake_nvidia_smi(folder: Path, failures: int) -> Path:
    """Fails `failures` times (as nvidia-smi does while the driver is not loaded), then lists one
    A10G; -1: fails every time."""
    tries = folder / "nvidia-smi.tries"
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/bash\n"
        f"n=$(( $(cat {tries} 2>/dev/null || echo 0) + 1 )); echo $n > {tries}\n"
        f'if [ {failures} -lt 0 ] || [ "$n" -le {failures} ]; then\n'
        f'  echo "{DRIVER_DOWN}"; exit 9\nfi\n'
        'echo "GPU 0: NVIDIA A10G (UUID: GPU-2f8a1c3e-0000-0000-0000-000000000000)"\n'
    )
    script.chmod(0o755)
    return script


def fake_systemctl(folder: Path) -> tuple[Path, Path]:
    log = folder / "systemctl.log"
    script = folder / "systemctl"
    script.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    script.chmod(0o755)
    return script, log


def orchestrator(home: Path, root: Path, layout: dict[str, object]) -> Orchestrator:
    engine = StackEngine(home, env=OFFLINE_ENV)
    backend = StandinBackend(root, engine=engine, home=home, gpus=1, layout=layout)
    return Orchestrator(home=home, settings=Settings(), backends=[backend])


def run_task(tmp_path: Path, failures: int) -> tuple[Orchestrator, int, Path, Path]:
    home, root, tools = tmp_path / "home", tmp_path / "vm", tmp_path / "tools"
    for folder in (home, tools, tmp_path / "project"):
        folder.mkdir()
    systemctl, log = fake_systemctl(tools)
    layout: dict[str, object] = {
        "nvidia_smi": str(fake_nvidia_smi(tools, failures)),
        "systemctl": str(systemctl),
        "gpu_retry": 0.2,
        "gpu_wait": 3,
    }
    task = tmp_path / "project" / "gpu.dstack.yml"
    task.write_text("type: task\ncommands: ['echo trained on $CUDA_VISIBLE_DEVICES']\n")
    orch = orchestrator(home, root, layout)
    spec = build_run_spec(task, environ={})
    plan = orch.plan(spec)
    assert [(o.instance_type, len(o.resources.gpus)) for o in plan.offers] == [("g5.xlarge", 1)]
    run = orch.submit(spec, plan, supervise=False)
    supervisor = threading.Thread(
        target=lambda: orchestrator(home, root, layout).supervisor().supervise(run.id),
        daemon=True,
    )
    supervisor.start()
    supervisor.join(timeout=240)
    assert not supervisor.is_alive()
    return orch, run.id, root, log


def test_a_broken_gpu_ends_the_run_classified_and_the_machine_goes_at_once(
    tmp_path: Path,
) -> None:
    orch, run_id, root, systemctl_log = run_task(tmp_path, failures=-1)
    try:
        final = orch.registry.get_by_id(run_id)
        assert final.status == "failed"
        assert f"gpu check failed: nvidia-smi: {DRIVER_DOWN}" in (final.reason or "")
        # torn down before any code was uploaded: the stack is gone, and every VM process
        assert StackEngine(orch.home, env=OFFLINE_ENV).stack_names() == []
        assert not vm_pids(str(root))
        events = (Path(final.local_dir) / "events").read_text()
        assert "tearing the machine down" in events
        assert "uploading" not in events
        # unattended upgrades were turned off for the run's life before the check
        calls = systemctl_log.read_text()
        assert "mask --runtime" in calls and "unattended-upgrades.service" in calls
    finally:
        with contextlib.suppress(Exception):
            orch.down(orch.registry.get_by_id(run_id).name)


def test_a_driver_that_answers_on_the_third_try_runs_the_job(tmp_path: Path) -> None:
    orch, run_id, root, _ = run_task(tmp_path, failures=2)
    try:
        final = orch.registry.get_by_id(run_id)
        assert (final.status, final.exit_code) == ("done", 0), final.reason
        kept: list[bytes] = []
        orch.logs(final.name, kept.append)
        log = b"".join(kept).decode()
        assert "waiting for the NVIDIA driver (try 1)" in log
        assert "waiting for the NVIDIA driver (try 2)" in log
        assert "nvidia-smi sees 1 GPU(s)" in log
        assert "trained on 0" in log
        assert not vm_pids(str(root))
        assert (tmp_path / "tools" / "nvidia-smi.tries").read_text().strip() == "3"
    finally:
        with contextlib.suppress(Exception):
            orch.down(orch.registry.get_by_id(run_id).name)
