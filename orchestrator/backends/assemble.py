"""The backends iacrun asks, made from `config.yml` (in `$IACRUN_HOME`) in one place.

`make_backends` is what `Orchestrator.backends()` (and so `iacrun up`, `iacrun offers` and
`iacrun up --dry-run`) uses: this machine unless `backends.local.enabled` is false, SSH hosts when
some are listed, and each cloud that is configured, narrowed to its regions. With
`include_unconfigured`, the clouds that are not configured come too, in every catalog region, so
a user can compare prices and see what a run would create before setting a cloud up: listing
their offers and a dry run need no credentials. The backend modules are imported only for what
the settings name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from iacrun.orchestrator.offers.model import CLOUDS

if TYPE_CHECKING:
    from iacrun.orchestrator.backends.base import Backend
    from iacrun.orchestrator.models.settings import Settings
    from iacrun.orchestrator.registry import Registry
    from iacrun.stacks.spec import Cloud


def make_backends(
    settings: Settings,
    runs_root: Path,
    *,
    registry: Registry | None = None,
    include_unconfigured: bool = False,
) -> list[Backend]:
    """The backends of `settings`, with their state under `runs_root.parent` (iacrun's home).

    `registry` lets the SSH backend see which runs hold a host; `include_unconfigured` adds the
    clouds `settings` does not configure (see `comparison_note`).
    """
    backends: list[Backend] = []
    conf = settings.backends
    if conf.local.enabled:
        from iacrun.orchestrator.backends.local import LocalBackend

        backends.append(LocalBackend(runs_root))
    if conf.ssh is not None and conf.ssh.enabled and conf.ssh.hosts:
        from iacrun.orchestrator.backends.ssh import SSHBackend

        backends.append(SSHBackend(conf.ssh, home=runs_root.parent, registry=registry))
    home = runs_root.parent
    state_url = settings.state.backend_url
    unconfigured = unconfigured_clouds(settings)
    for cloud in CLOUDS:
        if cloud in unconfigured and not include_unconfigured:
            continue
        shown_only = cloud in unconfigured  # its settings, if any, are not used
        if cloud == "aws":
            from iacrun.orchestrator.backends.aws import AWSBackend

            aws = None if shown_only else conf.aws
            backends.append(AWSBackend(aws, home=home, backend_url=state_url))
        else:
            from iacrun.orchestrator.backends.azure import AzureBackend

            azure = None if shown_only else conf.azure
            backends.append(
                AzureBackend(
                    azure,
                    self_delete=azure.self_delete if azure is not None else True,
                    home=home,
                    backend_url=state_url,
                )
            )
    return backends


def unconfigured_clouds(settings: Settings) -> list[Cloud]:
    """The clouds `iacrun up` will not use: absent from config.yml, or disabled there."""
    out = []
    for cloud in CLOUDS:
        conf = getattr(settings.backends, cloud)
        if conf is None or not conf.enabled:
            out.append(cloud)
    return out


def comparison_note(settings: Settings, home: Path | None = None) -> str | None:
    """The note under a table that shows clouds `include_unconfigured` added; None if none.
    It names the config file of `home` (default: iacrun's home), the one actually read."""
    from iacrun.orchestrator.paths import shown_config_file

    clouds = unconfigured_clouds(settings)
    if not clouds:
        return None
    one = len(clouds) == 1
    return (
        f"{' and '.join(clouds)} {'is' if one else 'are'} not configured in "
        f"{shown_config_file(home)}: shown for comparison, `iacrun up` will not use "
        f"{'it' if one else 'them'}"
    )
