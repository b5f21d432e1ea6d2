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
from typing import Any

from iacrun.orchestrator.backends.pulumi_cloud import PulumiCloudBackend
from iacrun.orchestrator.errors import CredentialsError
from iacrun.orchestrator.models.settings import AWSSettings
from iacrun.stacks.spec import StackSpec

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


class AWSBackend(PulumiCloudBackend):
    """EC2 through Pulumi. See the module docstring for the configuration."""

    name = "aws"
    cloud = "aws"
    key_file = "id_ed25519"

    def __init__(self, settings: AWSSettings | None = None, **kwargs: Any) -> None:
        self.settings = settings or AWSSettings()
        super().__init__(ssh_cidrs=self.settings.ssh_cidrs, regions=self.settings.regions, **kwargs)

    def check_credentials(self) -> str:
        source = aws_credentials_source(self.environ, self.user_home, self.settings.profile)
        if source is None:
            raise CredentialsError(NO_CREDENTIALS)
        return source

    def program(self, spec: StackSpec) -> Callable[[], None]:
        from iacrun.stacks import aws

        return aws.program(spec)

    def spec_options(self) -> dict[str, Any]:
        return {"aws_profile": self.settings.profile}

    def plan_notes(self, spec: StackSpec, stack_label: str) -> list[str]:
        from iacrun.stacks.aws import SUBNET_CIDR, VPC_CIDR

        return [
            f"network: the default VPC of {spec.region}; where the region has none, a new VPC "
            f"{VPC_CIDR} with a public subnet {SUBNET_CIDR}, an internet gateway and a route",
            f"image: {spec.machine_image}"
            if spec.machine_image
            else f"image: the newest {spec.vm_image.label} of the region",
        ]
