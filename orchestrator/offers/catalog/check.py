"""Internal consistency of a catalog: every row against its family's published specification."""

from __future__ import annotations

from iacrun.orchestrator.offers.catalog.families import cpu_family, gpu_spec
from iacrun.orchestrator.offers.catalog.model import Catalog


def check_catalog(catalog: Catalog) -> list[str]:
    """Every problem found, one line each; an empty list means the catalog is consistent.

    Checks: each type belongs to a known family and agrees with it (GPU name, count, memory per
    GPU, vendor, architecture; memory per vCPU for CPU families); vCPUs and memory are positive;
    every price is positive and every spot price is below its on-demand price; each type has at
    least one price and no (type, region) is listed twice; sources exist for every row.
    """
    problems: list[str] = []
    cloud = catalog.cloud
    for name, t in catalog.types.items():
        if t.vcpus <= 0 or t.memory_gb <= 0:
            problems.append(f"{name}: vcpus and memory must be positive")
        spec = gpu_spec(cloud, name)
        if spec is not None:
            got = (t.gpu_name, t.gpu_count, t.gpu_memory_gb, t.gpu_vendor, t.arch)
            want = (spec.name, spec.count, float(spec.memory_gb), spec.vendor, spec.arch)
            if got != want:
                problems.append(f"{name}: GPUs {got} disagree with the family's {want}")
            continue
        fam = cpu_family(cloud, name)
        if fam is None:
            problems.append(f"{name}: not a family iacrun knows (see catalog/families.py)")
            continue
        family, vcpus = fam
        if t.gpu_count:
            problems.append(f"{name}: a CPU family type lists {t.gpu_count} GPUs")
        if t.vcpus != vcpus or abs(t.memory_gb - vcpus * family.memory_per_vcpu) > 0.01:
            problems.append(
                f"{name}: {t.vcpus} vCPUs / {t.memory_gb:g}GB disagree with the family's "
                f"{vcpus} vCPUs / {vcpus * family.memory_per_vcpu:g}GB"
            )
        if t.arch != family.arch:
            problems.append(f"{name}: arch {t.arch} is not the family's {family.arch}")
    seen: set[tuple[str, str]] = set()
    for row in catalog.prices:
        key = (row.instance_type, row.region)
        where = f"{row.instance_type} in {row.region}"
        if key in seen:
            problems.append(f"{where}: listed twice")
        seen.add(key)
        if not row.price > 0:
            problems.append(f"{where}: on-demand price {row.price} is not positive")
        if row.spot_price is not None and not 0 < row.spot_price < row.price:
            problems.append(
                f"{where}: spot price {row.spot_price} is not between 0 and on-demand {row.price}"
            )
        if catalog.sources and not 0 <= row.source < len(catalog.sources):
            problems.append(f"{where}: source {row.source} does not exist")
    priced = {row.instance_type for row in catalog.prices}
    for name in sorted(set(catalog.types) - priced):
        problems.append(f"{name}: has no price in any region")
    return problems
