"""Specs for the stack tests, built directly: `stacks` knows only its own spec, not offers."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

from iacrun.stacks.images import NotOffered, image_for
from iacrun.stacks.keys import KeyPair, generate_ed25519
from iacrun.stacks.spec import DEFAULT_SELF_DESTRUCT_MARGIN, Cloud, StackSpec

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
CALLER = "198.51.100.7/32"

#: instance types by (cloud, has a GPU): the GPU ones have an A10G and a 150 GB disk
INSTANCE_TYPES = {
    ("aws", True): "g5.2xlarge",
    ("aws", False): "m6i.xlarge",
    ("azure", True): "Standard_NV36ads_A10_v5",
    ("azure", False): "Standard_D4s_v5",
}
REGIONS = {"aws": "us-east-1", "azure": "eastus"}


@functools.cache
def host_key() -> KeyPair:
    return generate_ed25519("iacrun-host")


@functools.cache
def client_key() -> KeyPair:
    return generate_ed25519("iacrun-test")


def job(
    *,
    run_name: str = "train-1",
    python: str | None = "3.11",
    image: str | None = None,
    commands: list[str] | None = None,
    max_duration: int | None = 7200,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "run_name": run_name,
        "commands": commands if commands is not None else ["python train.py --epochs 3"],
        "env": {"WANDB_API_KEY": "secret-value-123"},
        "working_dir": ".",
        "python": python,
        "image": image,
        "gpus": None,
        "shm_size_gb": None,
        "ports": [],
        "max_duration": max_duration,
        "stop_duration": 15,
        "retry": None,
        **extra,
    }


def make_spec(
    backend: Cloud = "aws",
    *,
    gpu: bool = True,
    spot: bool = False,
    max_price: float | None = None,
    job_: dict[str, Any] | None = None,
    arm: bool = False,
    **options: Any,
) -> StackSpec:
    """The spec of run train-1 (stack train-1-7) on a GPU (A10G) or CPU machine, as of NOW."""
    job_ = job_ if job_ is not None else job()
    max_duration = job_.get("max_duration")
    instance_type = options.pop("instance_type", INSTANCE_TYPES[(backend, gpu)])
    image = image_for(backend, instance_type, gpu=gpu, arch="arm" if arm else "x86")
    assert not isinstance(image, NotOffered), image
    margin = int(options.get("self_destruct_margin", DEFAULT_SELF_DESTRUCT_MARGIN))
    return StackSpec(
        run_name=job_["run_name"],
        stack_name="train-1-7",
        cloud=backend,
        region=REGIONS[backend],
        instance_type=instance_type,
        spot=spot,
        max_price=max_price if spot else None,
        disk_gb=150 if gpu else 100,
        gpu=gpu,
        gpu_count=1 if gpu else 0,
        vm_image=image,
        cpu_arch="arm" if arm else "x86",
        python=job_.get("python"),
        image=job_.get("image"),
        ssh_public_key=client_key().public_openssh,
        host_key=host_key(),
        ssh_cidrs=[CALLER],
        expires_at=NOW + timedelta(seconds=max_duration + margin) if max_duration else None,
        max_duration=max_duration,
        job=job_,
        **options,
    )
