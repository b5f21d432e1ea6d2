"""Offers as the catalog makes them, for the cloud backends' tests."""

from __future__ import annotations

from iacrun.orchestrator.offers.model import Gpu, InstanceResources, Offer

GPU_RESOURCES = InstanceResources(
    cpus=8, memory_gb=32, gpus=(Gpu(name="A10G", memory_gb=24),), disk_gb=150
)
CPU_RESOURCES = InstanceResources(cpus=4, memory_gb=16, disk_gb=100)


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
