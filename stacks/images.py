"""THE table of machine images: for every GPU family iacrun offers, the image (and driver set-up)
that supports it, and for the families it cannot serve, why.

`image_for(cloud, instance_type, gpu_vendor=..., arch=...)` returns the `VmImage` a run's VM boots,
or `NotOffered` with the reason that `iacrun offers` shows. The catalog marks a type unavailable
when it gets `NotOffered` (`offers/catalog/match.py`), the backend puts the chosen `VmImage` in the
`StackSpec` (`backends/stack_spec.py`), and the stack programs only read it from there.

Facts behind the table (docs/clouds.md, "Images and drivers", says the same):

- AWS: the Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) lists G4dn, G5, G6, Gr6,
  G6e, P4d, P4de, P5, P5e, P5en and P6-B200 as its supported instances; its ARM64 sibling lists
  G5g; P6-B300 is listed by the Ubuntu 24.04 base DLAMI. The AMIs carry the NVIDIA datacenter
  driver, the fabric manager, Docker and the NVIDIA container toolkit (DLAMI release notes).
- Azure: the NVIDIA GPU Driver Extension maps the NVadsA10 v5 series to NVIDIA's GRID driver
  (Azure/azhpc-extensions, NvidiaGPU resources: "NVadsA10_v5 Series": "GRID") and NC/ND series to
  the datacenter (CUDA) driver, which the Ubuntu HPC image (microsoft-dsvm:ubuntu-hpc:2204)
  already carries. So A10 sizes get Canonical's Ubuntu 22.04 plus the extension, which installs
  GRID at boot; the others get the HPC image.
- NVSwitch machines (8-GPU HGX: AWS p4d/p4de/p5.48xlarge/p5e/p5en/p6; Azure ND A100 v4, ND H100
  v5, ND H200 v5) need the NVIDIA fabric manager running before CUDA sees the GPUs.
- AMD MI300X (Azure ND MI300X v5) needs ROCm: iacrun's set-up and GPU check are NVIDIA-only, so
  it is not offered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from iacrun.stacks.spec import Arch, Cloud, VmImage

CANONICAL = "099720109477"
AMAZON = "amazon"

# ---------------------------------------------------------------------------- the images

AWS_UBUNTU: dict[Arch, VmImage] = {
    "x86": VmImage(
        label="Canonical Ubuntu 22.04",
        owner=CANONICAL,
        name="ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*",
    ),
    "arm": VmImage(
        label="Canonical Ubuntu 22.04 (arm64)",
        owner=CANONICAL,
        name="ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-arm64-server-*",
    ),
}
AWS_DLAMI = VmImage(
    label="Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)",
    owner=AMAZON,
    name="Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *",
    driver="nvidia",
)
AWS_DLAMI_ARM = VmImage(
    label="Deep Learning ARM64 Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)",
    owner=AMAZON,
    name="Deep Learning ARM64 Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *",
    driver="nvidia",
)
AWS_DLAMI_2404 = VmImage(
    label="Deep Learning Base AMI with Single CUDA (Ubuntu 24.04)",
    owner=AMAZON,
    name="Deep Learning Base AMI with Single CUDA (Ubuntu 24.04) *",
    driver="nvidia",
)
AZURE_UBUNTU: dict[Arch, VmImage] = {
    "x86": VmImage(
        label="Canonical Ubuntu 22.04",
        urn="Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest",
    ),
    "arm": VmImage(
        label="Canonical Ubuntu 22.04 (arm64)",
        urn="Canonical:0001-com-ubuntu-server-jammy:22_04-lts-arm64:latest",
    ),
}
AZURE_HPC = VmImage(
    label="Ubuntu HPC 22.04 (NVIDIA datacenter driver, CUDA)",
    urn="microsoft-dsvm:ubuntu-hpc:2204:latest",
    driver="nvidia",
)
#: the GRID driver comes from Azure's NVIDIA GPU Driver Extension at first boot (a few minutes,
#: possibly a reboot): the boot check waits longer for it
AZURE_GRID = VmImage(
    label="Canonical Ubuntu 22.04 + NVIDIA GPU Driver Extension (GRID driver)",
    urn="Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest",
    driver="nvidia-grid",
    driver_extension=True,
    gpu_wait=1800,
)


@dataclass(frozen=True)
class NotOffered:
    """A type iacrun has no image for, and why (what `iacrun offers` shows)."""

    reason: str


@dataclass(frozen=True)
class ImageRow:
    """One row of the table: the instance types `pattern` matches (a full match), in words, and
    their image, or None with the reason they are not offered. `nvswitch`: the sizes among them
    with NVSwitch, which need the fabric manager."""

    cloud: Cloud
    family: str
    pattern: str
    image: VmImage | None
    reason: str | None = None
    nvswitch: str | None = None


_HGX = r".*\.48xlarge|p4de?\.24xlarge"
#: THE table. GPU rows first, in catalog order; the CPU rows last (any type without a GPU).
TABLE: tuple[ImageRow, ...] = (
    ImageRow("aws", "NVIDIA T4 (g4dn)", r"g4dn\..+", AWS_DLAMI),
    ImageRow("aws", "NVIDIA A10G (g5)", r"g5\..+", AWS_DLAMI),
    ImageRow("aws", "NVIDIA T4G, arm64 (g5g)", r"g5g\..+", AWS_DLAMI_ARM),
    ImageRow("aws", "NVIDIA L4 (g6, gr6)", r"gr?6\..+", AWS_DLAMI),
    ImageRow("aws", "NVIDIA L40S (g6e)", r"g6e\..+", AWS_DLAMI),
    ImageRow("aws", "NVIDIA A100 (p4d, p4de)", r"p4de?\..+", AWS_DLAMI, nvswitch=_HGX),
    ImageRow("aws", "NVIDIA H100 (p5)", r"p5\..+", AWS_DLAMI, nvswitch=_HGX),
    ImageRow("aws", "NVIDIA H200 (p5e, p5en)", r"p5en?\..+", AWS_DLAMI, nvswitch=_HGX),
    ImageRow("aws", "NVIDIA B200 (p6-b200)", r"p6-b200\..+", AWS_DLAMI, nvswitch=_HGX),
    ImageRow("aws", "NVIDIA B300 (p6-b300)", r"p6-b300\..+", AWS_DLAMI_2404, nvswitch=_HGX),
    ImageRow("azure", "NVIDIA T4 (NCasT4_v3)", r"Standard_NC\d+as_T4_v3", AZURE_HPC),
    ImageRow("azure", "NVIDIA A10 (NVadsA10_v5)", r"Standard_NV\d+adm?s_A10_v5", AZURE_GRID),
    ImageRow("azure", "NVIDIA A100 PCIe (NC A100 v4)", r"Standard_NC\d+ads_A100_v4", AZURE_HPC),
    ImageRow(
        "azure",
        "NVIDIA A100 SXM (ND A100 v4)",
        r"Standard_ND96a(m)?sr(_A100)?_v4",
        AZURE_HPC,
        nvswitch=r".*",
    ),
    ImageRow("azure", "NVIDIA H100 NVL (NC H100 v5)", r"Standard_NC\d+adi?s_H100_v5", AZURE_HPC),
    ImageRow(
        "azure",
        "NVIDIA H100, H200 SXM (ND H100 v5, ND H200 v5)",
        r"Standard_ND96isr_H[12]00_v5",
        AZURE_HPC,
        nvswitch=r".*",
    ),
    ImageRow(
        "azure",
        "AMD MI300X (ND MI300X v5)",
        r"Standard_ND96isr_MI300X_v5",
        None,
        reason="AMD MI300X needs ROCm; iacrun's set-up and GPU check are NVIDIA-only",
    ),
)
CPU_IMAGES: dict[Cloud, dict[Arch, VmImage]] = {"aws": AWS_UBUNTU, "azure": AZURE_UBUNTU}
_COMPILED = [(row, re.compile(row.pattern)) for row in TABLE]


def image_for(cloud: Cloud, instance_type: str, *, gpu: bool, arch: Arch) -> VmImage | NotOffered:
    """The image of `instance_type` (with GPUs or not), or why iacrun does not offer it."""
    if not gpu:
        return CPU_IMAGES[cloud][arch]
    for row, pattern in _COMPILED:
        if row.cloud == cloud and pattern.fullmatch(instance_type):
            if row.image is None:
                return NotOffered(row.reason or "no image supports it")
            if row.nvswitch and re.fullmatch(row.nvswitch, instance_type):
                return row.image.model_copy(update={"fabric_manager": True})
            return row.image
    return NotOffered(f"iacrun knows no image with a driver for the GPUs of {instance_type}")
