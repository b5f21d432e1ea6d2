"""NVIDIA GPUs as `nvidia-smi` reports them, named and sized the way task files ask for them."""

from __future__ import annotations

import re

from iacrun.orchestrator.offers.model import Gpu

#: the query every host answers the same way (this machine, SSH hosts): index, name, MiB
NVIDIA_SMI_ARGS = ("--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits")
_VENDOR_WORDS = {"nvidia", "tesla", "geforce", "quadro"}


def gpu_model_name(raw: str) -> str:
    """`NVIDIA A100-SXM4-80GB` → `A100`, `NVIDIA GeForce RTX 4090` → `RTX4090`, `Tesla T4` → `T4`.

    The names match the ones task files use (`gpu: A100`), as dstack's offers name them.
    """
    words = [w for w in raw.replace("_", " ").split() if w.lower() not in _VENDOR_WORDS]
    if not words:
        return raw.strip()
    if words[0].upper() == "RTX" and len(words) > 1:
        if re.fullmatch(r"[A-Za-z]\d+\w*", words[1]) and not words[1][0].isdigit():
            return words[1].split("-")[0].upper()  # RTX A6000 → A6000
        return "RTX" + words[1].split("-")[0].upper()  # RTX 4090 → RTX4090
    if words[0].upper() == "GTX" and len(words) > 1:
        return "GTX" + words[1].split("-")[0].upper()
    return words[0].split("-")[0]


def parse_gpu_line(line: str) -> tuple[int, Gpu] | None:
    """`0, NVIDIA H100 80GB HBM3, 81559` → (0, Gpu(H100, 80GB)).

    Memory is rounded to whole GB, so that an H100's 79.6 GiB meets `gpu: 80GB` as its spec
    sheet (and the catalog) says it should."""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 3:
        return None
    index, name, memory_mib = parts
    try:
        return int(index), Gpu(name=gpu_model_name(name), memory_gb=round(float(memory_mib) / 1024))
    except ValueError:
        return None  # "[N/A]" on a GPU that fell off the bus: it cannot be used anyway


def parse_nvidia_smi(text: str) -> tuple[Gpu, ...]:
    """Every GPU of `nvidia-smi` output (NVIDIA_SMI_ARGS), in index order."""
    found = [gpu for gpu in map(parse_gpu_line, text.splitlines()) if gpu is not None]
    return tuple(gpu for _, gpu in sorted(found, key=lambda item: item[0]))
