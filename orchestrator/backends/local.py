"""The `local` backend: this machine, at price 0, through the same runner as every other host."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from iacrun.orchestrator.backends.base import Backend, ProgressCallback
from iacrun.orchestrator.errors import ToolMissingError
from iacrun.orchestrator.host.gpus import NVIDIA_SMI_ARGS, parse_nvidia_smi
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.models.requirements import Requirements
from iacrun.orchestrator.offers.model import (
    Gpu,
    InstanceResources,
    Offer,
    pick_gpus,
    unmet_requirement,
)
from iacrun.orchestrator.runner.runner import CUDA_BIN, find_python

if TYPE_CHECKING:
    from iacrun.orchestrator.models.runspec import RunSpec
    from iacrun.orchestrator.registry import RunRecord


def detect_gpus(nvidia_smi: str | None = None) -> tuple[Gpu, ...]:
    """NVIDIA GPUs that `nvidia-smi` reports, or none."""
    exe = nvidia_smi or shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        out = subprocess.run(
            [exe, *NVIDIA_SMI_ARGS],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    if out.returncode != 0:
        return ()
    return parse_nvidia_smi(out.stdout)


def detect_resources(disk_path: Path) -> InstanceResources:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    free = shutil.disk_usage(disk_path).free
    machine = os.uname().machine
    return InstanceResources(
        cpus=len(os.sched_getaffinity(0)),
        memory_gb=round(pages / 1024**3, 1),
        gpus=detect_gpus(),
        disk_gb=round(free / 1024**3, 1),
        cpu_arch="arm" if machine in ("aarch64", "arm64") else "x86",
    )


class LocalBackend(Backend):
    """Runs tasks on this machine. Always configured unless `backends.local.enabled` is false."""

    name = "local"

    def __init__(self, runs_root: Path) -> None:
        self.runs_root = runs_root

    def offers(self, requirements: Requirements) -> list[Offer]:
        resources = detect_resources(self.runs_root)
        problem = unmet_requirement(requirements.resources, resources, own_host=True)
        if problem is not None:
            return []
        return [
            Offer(
                backend="local",
                region="local",
                instance_type=os.uname().nodename or "localhost",
                resources=resources,
                price=0.0,
            )
        ]

    def provision(self, run: RunRecord, offer: Offer, progress: ProgressCallback) -> Host:
        engine = check_local_tools(run.spec)
        gpus = pick_gpus(offer.resources.gpus, run.spec.requirements.resources.gpu, "first")
        return Host(kind="local", run_dir=run.local_dir, gpus=gpus, container_engine=engine)

    def check_run(self, spec: RunSpec) -> None:
        check_local_tools(spec)

    def terminate(self, run: RunRecord) -> None:
        """The run folder stays (it holds the log); there is no machine to give back."""


def check_local_tools(spec: RunSpec) -> str | None:
    """What the run needs of this machine (a container engine, a Python, nvcc), checked before
    anything is recorded or created: one clear error for the first thing missing. Returns the
    container engine to use, when the run needs one."""
    engine = ensure_container_engine() if spec.needs_container_engine else None
    python = spec.python
    if python and find_python(python) is None and shutil.which("uv") is None:
        raise ToolMissingError(
            f"python: {python} needs a Python {python} interpreter on this machine, and "
            f"there is none (looked for python{python} on PATH, in pyenv and uv); install "
            "it, or change 'python:' to a version you have"
        )
    if spec.nvcc and find_nvcc() is None:
        raise ToolMissingError(
            "nvcc: true needs the CUDA compiler on this machine, and there is no nvcc on PATH "
            f"or in {CUDA_BIN}; install the CUDA toolkit, or remove nvcc"
        )
    return engine


def find_nvcc() -> str | None:
    return shutil.which("nvcc") or shutil.which("nvcc", path=CUDA_BIN)


def ensure_container_engine() -> str:
    """The container engine to run `image:` tasks with; a clear error when there is none."""
    for engine in ("docker", "podman"):
        exe = shutil.which(engine)
        if exe is None:
            continue
        try:
            ok = subprocess.run([exe, "info"], capture_output=True, timeout=20, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if ok.returncode == 0:
            return engine
        raise ToolMissingError(
            f"'image:' and 'docker: true' need a running container engine, and {engine} cannot "
            "reach its daemon; "
            f"start it (e.g. systemctl start {engine}) or use 'python:' instead of 'image:'"
        )
    raise ToolMissingError(
        "'image:' and 'docker: true' on the local backend need a container engine (docker or "
        "podman), and none is installed; install one, or use 'python:' instead of 'image:'"
    )
