"""The instance families iacrun knows, from the clouds' published specifications.

Two uses: the fetchers name the GPUs of what a price list only counts (AWS's price list says
"GPU: 8", Azure's says nothing), and `check.check_catalog` holds every catalog row to its family's
specification. GPU memory is the nominal figure on the card (A10G 24GB, H200 141GB), as dstack
and the clouds' product pages give it.

To add a family: add its sizes here (GPU types) or its memory per vCPU (CPU families), then
`iacrun offers --refresh`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from iacrun.orchestrator.offers.catalog.model import Arch


@dataclass(frozen=True)
class GpuSpec:
    """The GPUs of one instance type."""

    name: str
    memory_gb: float
    count: int
    vendor: str = "nvidia"
    arch: Arch = "x86"


@dataclass(frozen=True)
class CpuFamily:
    """A CPU-only family whose sizes follow `<family>.<size>` (AWS) or the vCPU count (Azure)."""

    memory_per_vcpu: float
    arch: Arch = "x86"


def _aws(gpu: str, memory: float, sizes: dict[str, int], arch: Arch = "x86") -> dict[str, GpuSpec]:
    return {size: GpuSpec(gpu, memory, count, arch=arch) for size, count in sizes.items()}


#: AWS GPU families: family → size → GPUs.
AWS_GPU_FAMILIES: dict[str, dict[str, GpuSpec]] = {
    "g4dn": _aws(
        "T4",
        16,
        {
            "xlarge": 1,
            "2xlarge": 1,
            "4xlarge": 1,
            "8xlarge": 1,
            "12xlarge": 4,
            "16xlarge": 1,
            "metal": 8,
        },
    ),
    "g5": _aws(
        "A10G",
        24,
        {
            "xlarge": 1,
            "2xlarge": 1,
            "4xlarge": 1,
            "8xlarge": 1,
            "12xlarge": 4,
            "16xlarge": 1,
            "24xlarge": 4,
            "48xlarge": 8,
        },
    ),
    "g5g": _aws(
        "T4g",
        16,
        {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 2, "metal": 2},
        arch="arm",
    ),
    "g6": _aws(
        "L4",
        24,
        {
            "xlarge": 1,
            "2xlarge": 1,
            "4xlarge": 1,
            "8xlarge": 1,
            "12xlarge": 4,
            "16xlarge": 1,
            "24xlarge": 4,
            "48xlarge": 8,
        },
    ),
    "g6e": _aws(
        "L40S",
        48,
        {
            "xlarge": 1,
            "2xlarge": 1,
            "4xlarge": 1,
            "8xlarge": 1,
            "12xlarge": 4,
            "16xlarge": 1,
            "24xlarge": 4,
            "48xlarge": 8,
        },
    ),
    "gr6": _aws("L4", 24, {"4xlarge": 1, "8xlarge": 1}),
    "p4d": _aws("A100", 40, {"24xlarge": 8}),
    "p4de": _aws("A100", 80, {"24xlarge": 8}),
    "p5": _aws("H100", 80, {"4xlarge": 1, "48xlarge": 8}),
    # p5e (8xH200) is sold only through Capacity Blocks: no on-demand price to list.
    "p5e": _aws("H200", 141, {"48xlarge": 8}),
    "p5en": _aws("H200", 141, {"48xlarge": 8}),
    "p6-b200": _aws("B200", 180, {"48xlarge": 8}),
    "p6-b300": _aws("B300", 288, {"48xlarge": 8}),
}

#: AWS CPU-only families the catalog carries.
AWS_CPU_FAMILIES: dict[str, CpuFamily] = {
    "m7i": CpuFamily(4),
    "c7i": CpuFamily(2),
    "r7i": CpuFamily(8),
    "m8g": CpuFamily(4, "arm"),
    "c8g": CpuFamily(2, "arm"),
    "r8g": CpuFamily(8, "arm"),
}

#: vCPUs of the standard AWS sizes (metal sizes vary by family and are left out of CPU families).
AWS_SIZE_VCPUS = {
    "medium": 1,
    "large": 2,
    "xlarge": 4,
    "2xlarge": 8,
    "4xlarge": 16,
    "8xlarge": 32,
    "12xlarge": 48,
    "16xlarge": 64,
    "24xlarge": 96,
    "32xlarge": 128,
    "48xlarge": 192,
}

#: Azure GPU sizes: full size name → GPUs. Partial-GPU sizes (NV6ads_A10_v5 is 1/6 of an A10)
#: are left out on purpose: they cannot honour a request for "an A10".
AZURE_GPU_SIZES: dict[str, GpuSpec] = {
    "Standard_NC4as_T4_v3": GpuSpec("T4", 16, 1),
    "Standard_NC8as_T4_v3": GpuSpec("T4", 16, 1),
    "Standard_NC16as_T4_v3": GpuSpec("T4", 16, 1),
    "Standard_NC64as_T4_v3": GpuSpec("T4", 16, 4),
    "Standard_NV36ads_A10_v5": GpuSpec("A10", 24, 1),
    "Standard_NV36adms_A10_v5": GpuSpec("A10", 24, 1),
    "Standard_NV72ads_A10_v5": GpuSpec("A10", 24, 2),
    "Standard_NC24ads_A100_v4": GpuSpec("A100", 80, 1),
    "Standard_NC48ads_A100_v4": GpuSpec("A100", 80, 2),
    "Standard_NC96ads_A100_v4": GpuSpec("A100", 80, 4),
    "Standard_ND96asr_v4": GpuSpec("A100", 40, 8),
    "Standard_ND96amsr_A100_v4": GpuSpec("A100", 80, 8),
    "Standard_NC40ads_H100_v5": GpuSpec("H100NVL", 94, 1),
    "Standard_NC80adis_H100_v5": GpuSpec("H100NVL", 94, 2),
    "Standard_ND96isr_H100_v5": GpuSpec("H100", 80, 8),
    "Standard_ND96isr_H200_v5": GpuSpec("H200", 141, 8),
    "Standard_ND96isr_MI300X_v5": GpuSpec("MI300X", 192, 8, vendor="amd"),
}

#: vCPUs and memory (GiB) of the Azure GPU sizes, from Microsoft's size pages; used when the
#: resource SKU list (which needs a subscription) is not at hand.
AZURE_GPU_SIZE_RESOURCES: dict[str, tuple[int, float]] = {
    "Standard_NC4as_T4_v3": (4, 28),
    "Standard_NC8as_T4_v3": (8, 56),
    "Standard_NC16as_T4_v3": (16, 110),
    "Standard_NC64as_T4_v3": (64, 440),
    "Standard_NV36ads_A10_v5": (36, 440),
    "Standard_NV36adms_A10_v5": (36, 880),
    "Standard_NV72ads_A10_v5": (72, 880),
    "Standard_NC24ads_A100_v4": (24, 220),
    "Standard_NC48ads_A100_v4": (48, 440),
    "Standard_NC96ads_A100_v4": (96, 880),
    "Standard_ND96asr_v4": (96, 900),
    "Standard_ND96amsr_A100_v4": (96, 1900),
    "Standard_NC40ads_H100_v5": (40, 320),
    "Standard_NC80adis_H100_v5": (80, 640),
    "Standard_ND96isr_H100_v5": (96, 1900),
    "Standard_ND96isr_H200_v5": (96, 1850),
    "Standard_ND96isr_MI300X_v5": (96, 1850),
}

#: Azure CPU series: regex on the size name → family. vCPUs are the number in the name.
AZURE_CPU_SERIES: dict[str, CpuFamily] = {
    r"^Standard_D(\d+)s_v5$": CpuFamily(4),
    r"^Standard_D(\d+)as_v5$": CpuFamily(4),
    r"^Standard_D(\d+)ps_v5$": CpuFamily(4, "arm"),
    r"^Standard_E(\d+)s_v5$": CpuFamily(8),
    r"^Standard_E(\d+)as_v5$": CpuFamily(8),
    r"^Standard_E(\d+)ps_v5$": CpuFamily(8, "arm"),
    r"^Standard_F(\d+)s_v2$": CpuFamily(2),
}
_AZURE_CPU_RES = [(re.compile(p), fam) for p, fam in AZURE_CPU_SERIES.items()]


def aws_family(instance_type: str) -> tuple[str, str]:
    family, _, size = instance_type.partition(".")
    return family, size


def gpu_spec(cloud: str, instance_type: str) -> GpuSpec | None:
    """The GPUs of a known GPU type, or None for CPU types and types iacrun does not know."""
    if cloud == "aws":
        family, size = aws_family(instance_type)
        return AWS_GPU_FAMILIES.get(family, {}).get(size)
    if cloud == "azure":
        return AZURE_GPU_SIZES.get(instance_type)
    return None


def cpu_family(cloud: str, instance_type: str) -> tuple[CpuFamily, int] | None:
    """A known CPU-only type's family and vCPU count, or None."""
    if cloud == "aws":
        family, size = aws_family(instance_type)
        fam = AWS_CPU_FAMILIES.get(family)
        vcpus = AWS_SIZE_VCPUS.get(size)
        return (fam, vcpus) if fam is not None and vcpus is not None else None
    if cloud == "azure":
        for regex, fam in _AZURE_CPU_RES:
            m = regex.match(instance_type)
            if m:
                return fam, int(m.group(1))
    return None


def is_known(cloud: str, instance_type: str) -> bool:
    return (
        gpu_spec(cloud, instance_type) is not None or cpu_family(cloud, instance_type) is not None
    )
