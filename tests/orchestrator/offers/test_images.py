"""The image table (stacks/images.py) over the whole shipped catalog: every offerable row has a
compatible image, and the rows without one are listed unavailable with the reason."""

from __future__ import annotations

import re

import pytest

from iacrun.orchestrator.models.requirements import Requirements
from iacrun.orchestrator.offers.catalog import load_catalog, offers_from_catalog
from iacrun.orchestrator.offers.catalog.families import AWS_GPU_FAMILIES, AZURE_GPU_SIZES, GpuSpec
from iacrun.orchestrator.offers.catalog.match import not_offered
from iacrun.orchestrator.offers.catalog.store import shipped_catalog_path
from iacrun.orchestrator.offers.model import Gpu, InstanceResources
from iacrun.stacks.images import TABLE, NotOffered, image_for
from iacrun.stacks.spec import Cloud, VmImage

CLOUDS: tuple[Cloud, ...] = ("aws", "azure")


def shipped(cloud: Cloud):  # type: ignore[no-untyped-def]
    return load_catalog(cloud, shipped_catalog_path(cloud).parent)


def everything() -> Requirements:
    return Requirements.model_validate({"resources": {"cpu": "1..", "memory": "0GB.."}})


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_shipped_type_has_a_compatible_image_or_a_reason(cloud: Cloud) -> None:
    catalog = shipped(cloud)
    for name, kind in catalog.types.items():
        image = image_for(cloud, name, gpu=kind.gpu_count > 0, arch=kind.arch)
        if isinstance(image, NotOffered):
            # only GPUs iacrun cannot drive are left out: AMD's, which need ROCm
            assert kind.gpu_vendor == "amd", (name, image.reason)
            assert "ROCm" in image.reason
            continue
        assert isinstance(image, VmImage)
        if kind.gpu_count:
            assert image.driver in ("nvidia", "nvidia-grid"), name
        else:
            assert image.driver == "none" and not image.fabric_manager, name
        if cloud == "aws":
            assert image.owner and image.name
            assert ("arm64" in image.name.lower()) == (kind.arch == "arm"), name
        else:
            assert image.urn and len(image.urn.split(":")) == 4
            assert ("arm64" in image.urn) == (kind.arch == "arm"), name


@pytest.mark.parametrize("cloud", CLOUDS)
def test_offers_are_available_exactly_when_an_image_fits(cloud: Cloud) -> None:
    offers = offers_from_catalog(shipped(cloud), everything())
    assert offers
    for offer in offers:
        gpu = bool(offer.resources.gpus)
        image = image_for(cloud, offer.instance_type, gpu=gpu, arch=offer.resources.cpu_arch)
        if isinstance(image, NotOffered):
            assert not offer.available
            assert offer.note == f"not offered: {image.reason}"
        else:
            assert offer.available and offer.note is None


def known_gpu_types() -> list[tuple[Cloud, str, GpuSpec]]:
    """Every GPU type the catalog's families know: what a refresh of the catalog can list."""
    aws = [
        ("aws", f"{family}.{size}", spec)
        for family, sizes in AWS_GPU_FAMILIES.items()
        for size, spec in sizes.items()
    ]
    azure = [("azure", name, spec) for name, spec in AZURE_GPU_SIZES.items()]
    return [*aws, *azure]  # type: ignore[list-item]


@pytest.mark.parametrize(("cloud", "name", "gpu"), known_gpu_types())
def test_every_known_gpu_family_has_an_image_or_a_reason(
    cloud: Cloud, name: str, gpu: GpuSpec
) -> None:
    image = image_for(cloud, name, gpu=True, arch=gpu.arch)
    if gpu.vendor == "nvidia":
        assert isinstance(image, VmImage), name
        assert image.driver in ("nvidia", "nvidia-grid")
    else:
        assert isinstance(image, NotOffered) and "ROCm" in image.reason
        res = InstanceResources(
            cpus=96, memory_gb=1850, gpus=(Gpu(name=gpu.name, memory_gb=192, vendor="amd"),) * 8
        )
        assert not_offered(cloud, name, res) == f"not offered: {image.reason}"


def test_azure_a10_gets_the_grid_driver_not_the_hpc_image() -> None:
    a10 = image_for("azure", "Standard_NV36ads_A10_v5", gpu=True, arch="x86")
    assert isinstance(a10, VmImage)
    assert (a10.driver, a10.driver_extension) == ("nvidia-grid", True)
    assert "ubuntu-hpc" not in (a10.urn or "")


@pytest.mark.parametrize(
    ("cloud", "size", "fabric"),
    [
        ("aws", "p4d.24xlarge", True),
        ("aws", "p4de.24xlarge", True),
        ("aws", "p5.48xlarge", True),
        ("aws", "p5.4xlarge", False),
        ("aws", "p5en.48xlarge", True),
        ("aws", "p6-b200.48xlarge", True),
        ("aws", "g6e.48xlarge", False),
        ("azure", "Standard_ND96asr_v4", True),
        ("azure", "Standard_ND96amsr_A100_v4", True),
        ("azure", "Standard_ND96isr_H100_v5", True),
        ("azure", "Standard_ND96isr_H200_v5", True),
        ("azure", "Standard_NC96ads_A100_v4", False),
        ("azure", "Standard_NC80adis_H100_v5", False),
    ],
)
def test_nvswitch_machines_start_the_fabric_manager(cloud: Cloud, size: str, fabric: bool) -> None:
    image = image_for(cloud, size, gpu=True, arch="x86")
    assert isinstance(image, VmImage)
    assert image.fabric_manager is fabric


def test_every_table_row_matches_a_known_family() -> None:
    """No dead rows: each row of the table serves some type the catalog's families know."""
    names = [(cloud, name) for cloud, name, _ in known_gpu_types()]
    for row in TABLE:
        assert any(c == row.cloud and re.fullmatch(row.pattern, n) for c, n in names), row.family
