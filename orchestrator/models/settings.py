"""`~/.iacrun/config.yml`: which backends take part, with their regions, hosts and state backend.

::

    backends:
      local: {enabled: true}              # the default; set false to keep runs off this machine
      aws: {regions: [us-east-1, us-west-2], profile: default}
      azure: {regions: [eastus], subscription_id: 00000000-...}
      ssh:
        hosts:
          - {name: box1, host: 10.0.0.5, user: ubuntu, identity_file: ~/.ssh/id_ed25519}
    state:
      backend_url: file://~/.iacrun/state  # or s3://bucket, azblob://container, https://api.pulumi.com
    upload_limit: 500MB
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field

from iacrun.orchestrator.models.common import CoreModel
from iacrun.orchestrator.models.loader import PositionedYaml, read_text
from iacrun.orchestrator.models.units import parse_duration, parse_size_gb
from iacrun.orchestrator.paths import config_file, iacrun_home

#: the default of `unreachable_after`: ten minutes of silence before a running job is given up
UNREACHABLE_AFTER = 600


class LocalSettings(CoreModel):
    enabled: bool = True


class AWSSettings(CoreModel):
    enabled: bool = True
    regions: list[str] | None = None
    profile: str | None = None
    #: CIDRs allowed to reach port 22; default: the caller's public address
    ssh_cidrs: list[str] | None = None
    #: how long a VM that stops answering while its job runs is waited for (docs/ssh.md)
    unreachable_after: Annotated[int, BeforeValidator(parse_duration)] = UNREACHABLE_AFTER


class AzureSettings(CoreModel):
    enabled: bool = True
    regions: list[str] | None = None
    subscription_id: str | None = None
    ssh_cidrs: list[str] | None = None
    #: let the VM delete its resource group at its deadline (the built-in Contributor role on
    #: that group; only when this identity may assign roles, which iacrun checks and reports);
    #: without it a VM that powers itself off keeps billing until iacrun tears it down
    self_delete: bool = True
    #: how long a VM that stops answering while its job runs is waited for (docs/ssh.md)
    unreachable_after: Annotated[int, BeforeValidator(parse_duration)] = UNREACHABLE_AFTER


class SSHHostSettings(CoreModel):
    """One host of your own, reached over SSH."""

    name: str | None = None
    host: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str | None = None
    identity_file: str | None = None
    proxy_jump: str | None = None
    #: pinned public key ("ssh-ed25519 AAAA..."); otherwise checked against known_hosts
    host_key: str | None = None
    known_hosts: str | None = None
    #: how long folders of ended runs stay on this host (default: the `ssh:` section's)
    keep_run_dirs: Annotated[int | None, BeforeValidator(parse_duration)] = None
    #: the address the other hosts of a multi-node run reach this one on (default: `host`)
    internal_ip: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.host


class SSHSettings(CoreModel):
    enabled: bool = True
    hosts: list[SSHHostSettings] = Field(default_factory=list)
    #: ended runs' folders older than this are removed by the next run on their host
    keep_run_dirs: Annotated[int, BeforeValidator(parse_duration)] = 24 * 3600
    #: how long a host that stops answering while a job runs is waited for before the run is
    #: called failed (the job goes on there: `iacrun stop`/`down` stop it once it answers)
    unreachable_after: Annotated[int, BeforeValidator(parse_duration)] = UNREACHABLE_AFTER

    def keep_for(self, host: SSHHostSettings) -> int:
        """Seconds an ended run's folder stays on `host`."""
        return self.keep_run_dirs if host.keep_run_dirs is None else host.keep_run_dirs


class BackendsSettings(CoreModel):
    local: LocalSettings = Field(default_factory=LocalSettings)
    aws: AWSSettings | None = None
    azure: AzureSettings | None = None
    ssh: SSHSettings | None = None


class StateSettings(CoreModel):
    backend_url: str | None = None


class Settings(CoreModel):
    backends: BackendsSettings = Field(default_factory=BackendsSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    upload_limit_gb: Annotated[float, BeforeValidator(parse_size_gb)] = Field(
        default=0.5, alias="upload_limit"
    )


def settings_path() -> Path:
    return config_file(iacrun_home())


def load_settings(path: Path | None = None) -> Settings:
    path = path or settings_path()
    if not path.is_file():
        return Settings()
    doc = PositionedYaml(read_text(path, "config file"), str(path))
    if doc.data is None:
        return Settings()
    return doc.validate(Settings, "config file")
