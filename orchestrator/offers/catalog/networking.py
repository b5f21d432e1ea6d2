"""Which instance types have a fast network between the machines of one cluster, as data.

AWS: the Elastic Fabric Adapter (EFA) on the types that take one (p4d, p5, p5en, p6 and the big
sizes of the g families: https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/efa.html#efa-instance-types).
Azure: InfiniBand on the ND sizes whose name carries `r` (RDMA): ND96asr_v4, ND96isr_H100_v5...
Offers carry it (`Offer.cluster_network`), the offers table shows it for multi-node runs, and the
cloud programs read it from the offer to add EFA interfaces or pick the HPC image.
"""

from __future__ import annotations

import re

from iacrun.stacks.spec import ClusterNetwork

#: AWS types with EFA whatever their size
_EFA_TYPES = frozenset(
    {
        "p4d.24xlarge",
        "p4de.24xlarge",
        "p5.48xlarge",
        "p5e.48xlarge",
        "p5en.48xlarge",
        "p6-b200.48xlarge",
        "p6-b300.48xlarge",
        "p6e-gb200.36xlarge",
        "trn1.32xlarge",
        "trn1n.32xlarge",
        "trn2.48xlarge",
        "dl1.24xlarge",
    }
)
#: AWS GPU families whose big sizes take EFA, and those sizes
_EFA_G_FAMILIES = frozenset({"g4dn", "g5", "g6", "g6e", "gr6"})
_EFA_G_SIZES = frozenset({"8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge", "metal"})
#: Azure ND sizes with InfiniBand: an `r` among the letters after the vCPU count
_AZURE_IB = re.compile(r"^Standard_ND\d+[a-z]*r[a-z]*(_|$)")


def cluster_network(cloud: str, instance_type: str) -> ClusterNetwork | None:
    """The fast cluster network of `instance_type` on `cloud`, or None."""
    if cloud == "aws":
        if instance_type in _EFA_TYPES:
            return "efa"
        family, _, size = instance_type.partition(".")
        return "efa" if family in _EFA_G_FAMILIES and size in _EFA_G_SIZES else None
    if cloud == "azure" and _AZURE_IB.match(instance_type):
        return "infiniband"
    return None
