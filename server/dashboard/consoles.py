"""Links from a cloud stack's resources to the provider's console."""

from __future__ import annotations

from urllib.parse import quote

#: an AWS resource type → the EC2 console's page for one of them (by id)
_AWS_EC2 = {
    "aws:ec2/instance:Instance": "InstanceDetails:instanceId={id}",
    "aws:ec2/spotInstanceRequest:SpotInstanceRequest": "SpotInstances:search={id}",
    "aws:ec2/securityGroup:SecurityGroup": "SecurityGroup:groupId={id}",
    "aws:ec2/keyPair:KeyPair": "KeyPairs:search={id}",
    "aws:ec2/volume:Volume": "VolumeDetails:volumeId={id}",
    "aws:ec2/eip:Eip": "ElasticIpDetails:AllocationId={id}",
}


def console_link(backend: str, region: str | None, type_: str, id_: str | None) -> str | None:
    """The console page of one resource, or None when iacrun knows no page for its type."""
    if not id_:
        return None
    if backend == "aws" and region:
        view = _AWS_EC2.get(type_)
        if view is None:
            return None
        return (
            f"https://{region}.console.aws.amazon.com/ec2/home?region={quote(region)}"
            f"#{view.format(id=quote(id_, safe=''))}"
        )
    if backend == "azure" and id_.startswith("/subscriptions/"):
        return f"https://portal.azure.com/#@/resource{quote(id_, safe='/')}"
    return None
