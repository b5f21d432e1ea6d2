"""Specs for the stack tests: offers and jobs as the orchestrator builds them."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from iacrun.orchestrator.offers.model import Gpu, InstanceResources, Offer
from iacrun.stacks.keys import KeyPair, generate_ed25519
from iacrun.stacks.spec import StackSpec, build_stack_spec

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
CALLER = "198.51.100.7/32"

GPU_RESOURCES = InstanceResources(
    cpus=8, memory_gb=32, gpus=(Gpu(name="A10G", memory_gb=24),), disk_gb=150
)
CPU_RESOURCES = InstanceResources(cpus=4, memory_gb=16, disk_gb=100)


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


def offer(
    backend: str = "aws",
    *,
    gpu: bool = True,
    spot: bool = False,
    instance_type: str | None = None,
    region: str | None = None,
    arm: bool = False,
) -> Offer:
    if instance_type is None:
        if backend == "aws":
            instance_type = "g5.2xlarge" if gpu else "m6i.xlarge"
        else:
            instance_type = "Standard_NV36ads_A10_v5" if gpu else "Standard_D4s_v5"
    resources = GPU_RESOURCES if gpu else CPU_RESOURCES
    if arm:
        resources = resources.model_copy(update={"cpu_arch": "arm"})
    return Offer(
        backend=backend,
        region=region or ("us-east-1" if backend == "aws" else "eastus"),
        instance_type=instance_type,
        resources=resources,
        spot=spot,
        price=1.2,
    )


def make_spec(
    backend: str = "aws",
    *,
    gpu: bool = True,
    spot: bool = False,
    max_price: float | None = None,
    job_: dict[str, Any] | None = None,
    arm: bool = False,
    **options: Any,
) -> StackSpec:
    return build_stack_spec(
        offer(backend, gpu=gpu, spot=spot, arm=arm),
        job_ if job_ is not None else job(),
        stack_name="train-1-7",
        ssh_public_key=client_key().public_openssh,
        host_key=host_key(),
        ssh_cidrs=[CALLER],
        max_price=max_price,
        now=NOW,
        **options,
    )
