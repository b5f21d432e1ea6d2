"""The `aws` backend: one EC2 instance per run, in an ephemeral Pulumi stack.

::

    backends:
      aws:
        regions: [us-east-1, us-west-2]
        profile: research          # optional: an AWS profile; else AWS_PROFILE / the default
        ssh_cidrs: [203.0.113.0/24] # optional: who may reach port 22; else this machine's address

Credentials come from where the AWS CLI looks: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
AWS_PROFILE (or the `profile` above) in ~/.aws/credentials or ~/.aws/config (static keys, SSO,
`credential_process`, a role to assume), web identity, container credentials, or the instance
role when iacrun itself runs on EC2. What the stack creates: see `stacks/aws.py`.
"""

from __future__ import annotations

import configparser
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iacrun.orchestrator.backends.base import ProgressCallback
from iacrun.orchestrator.backends.pulumi_cloud import (
    PulumiCloudBackend,
    StackEngineLike,
    owner_config,
)
from iacrun.orchestrator.errors import CapacityError, CredentialsError
from iacrun.orchestrator.models.settings import AWSSettings
from iacrun.stacks.spec import StackSpec

if TYPE_CHECKING:
    from iacrun.stacks.aws import ZoneChoice

NO_CREDENTIALS = (
    "no AWS credentials found: run `aws configure` (or `aws sso login`) and set AWS_PROFILE, "
    "or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)
_PROFILE_KEYS = (
    "aws_access_key_id",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "role_arn",
    "web_identity_token_file",
)
EC2_VENDOR_FILE = Path("/sys/devices/virtual/dmi/id/sys_vendor")


def aws_credentials_source(
    environ: Mapping[str, str],
    home: Path,
    profile: str | None = None,
    vendor_file: Path = EC2_VENDOR_FILE,
) -> str | None:
    """Where the AWS SDKs would find credentials, in words; None when nowhere.

    Raises CredentialsError when a profile is named but defined nowhere."""
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        return "AWS_ACCESS_KEY_ID"
    if environ.get("AWS_WEB_IDENTITY_TOKEN_FILE") and environ.get("AWS_ROLE_ARN"):
        return "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)"
    if environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or environ.get(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI"
    ):
        return "container credentials"
    named = profile or environ.get("AWS_PROFILE") or environ.get("AWS_DEFAULT_PROFILE")
    name = named or "default"
    credentials = Path(environ.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials")
    config = Path(environ.get("AWS_CONFIG_FILE") or home / ".aws" / "config")
    if _has_keys(credentials, name):
        return f"profile {name} ({credentials})"
    if _has_keys(config, name if name == "default" else f"profile {name}") or (
        name == "default" and _has_keys(config, "profile default")
    ):
        return f"profile {name} ({config})"
    if named:
        raise CredentialsError(
            f"AWS profile {named!r} is defined neither in {credentials} nor in {config}; "
            "run `aws configure --profile " + named + "` or name another profile"
        )
    try:
        if "amazon ec2" in vendor_file.read_text().lower():
            return "the EC2 instance role"
    except OSError:
        pass
    return None


def _has_keys(path: Path, section: str) -> bool:
    parser = configparser.RawConfigParser()
    try:
        parser.read(path)
    except configparser.Error:
        return False
    if not parser.has_section(section):
        return False
    return any(parser.has_option(section, key) for key in _PROFILE_KEYS)


def next_zone(choice: ZoneChoice | None, avoided: list[str]) -> tuple[str, str] | None:
    """After no capacity in `choice.zone`: (that zone, the zone tried next), or None when the
    region has no other candidate (failover then moves to the next offer)."""
    if choice is None or choice.zone is None:
        return None
    left = [z for z in choice.candidates if z != choice.zone and z not in avoided]
    return (choice.zone, left[0]) if left else None


class AWSBackend(PulumiCloudBackend):
    """EC2 through Pulumi. See the module docstring for the configuration."""

    name = "aws"
    cloud = "aws"
    key_file = "id_ed25519"

    def __init__(self, settings: AWSSettings | None = None, **kwargs: Any) -> None:
        self.settings = settings or AWSSettings()
        super().__init__(ssh_cidrs=self.settings.ssh_cidrs, regions=self.settings.regions, **kwargs)
        self.unreachable_after = float(self.settings.unreachable_after)

    def check_credentials(self) -> str:
        source = aws_credentials_source(self.environ, self.user_home, self.settings.profile)
        if source is None:
            raise CredentialsError(NO_CREDENTIALS)
        return source

    def program(
        self, spec: StackSpec, on_zone: Callable[[ZoneChoice], None] | None = None
    ) -> Callable[[], None]:
        from iacrun.stacks import aws

        return aws.program(spec, on_zone)

    def up_stack(
        self, engine: StackEngineLike, stack_name: str, spec: StackSpec, progress: ProgressCallback
    ) -> dict[str, Any]:
        """The stack in the first zone that offers the type; on no capacity, the next zone.

        Capacity is per availability zone, so a zone without it is left out (`avoid_zones`) and
        the stack is made again in the next candidate zone, before failover moves on to the next
        region. A QuotaError (regional) or any other error is not retried here."""
        avoided: list[str] = []
        while True:
            heard: list[ZoneChoice] = []
            attempt = spec.model_copy(update={"avoid_zones": tuple(avoided)})
            try:
                outputs = engine.up(
                    stack_name,
                    self.program(attempt, heard.append),
                    owner_config(spec),
                    on_progress=lambda p: progress(p.render() if hasattr(p, "render") else str(p)),
                    timeout=self.up_timeout,
                )
            except CapacityError as exc:
                choice = heard[-1] if heard else None
                step = next_zone(choice, avoided)
                if step is None:
                    raise
                avoided.append(step[0])
                progress(
                    f"no capacity for {spec.instance_type} in {step[0]} ({exc}); trying {step[1]}"
                )
                continue
            if outputs.get("zone"):
                return outputs
            tried = f" (no capacity in {', '.join(avoided)})" if avoided else ""
            raise CapacityError(
                f"{spec.instance_type} is not offered in any availability zone of {spec.region} "
                f"that has a subnet{tried}"
            )

    def spec_options(self) -> dict[str, Any]:
        return {"aws_profile": self.settings.profile}

    def plan_notes(self, spec: StackSpec, stack_label: str) -> list[str]:
        from iacrun.stacks.aws import VPC_CIDR

        cluster = []
        if spec.cluster:
            efa = (
                f"EFA: every EFA interface {spec.instance_type} takes (EC2 says how many at up), "
                "one per network card, and an Elastic IP per machine when there are several"
                if spec.cluster_network == "efa"
                else f"no EFA on {spec.instance_type}: TCP over the VPC"
            )
            cluster = [
                f"cluster: {spec.nodes} machines in one subnet and one placement group (strategy "
                "cluster, where EC2 says the type takes one); all traffic allowed between them "
                "(the security group to itself), nothing more from outside",
                efa,
            ]
        return [
            *cluster,
            f"network: the default VPC of {spec.region}; where the region has none, the "
            f"region's iacrun VPC {VPC_CIDR} (tag iacrun:network=shared), made by the first "
            "run there and kept",
            f"zone: the first zone of {spec.region} that offers {spec.instance_type}; on no "
            "capacity the next zone, then the next region; public IP assigned explicitly",
            f"image: {spec.machine_image}"
            if spec.machine_image
            else f"image: the newest {spec.vm_image.label} of the region",
        ]
