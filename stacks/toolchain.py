"""The Pulumi toolchain iacrun needs on a user's machine: the `pulumi` CLI and provider plugins.

What is needed is decided here, as data, without starting a process:

- the CLI: `pulumi` on PATH, else the copy iacrun installed under ``<home>/tools/pulumi-vX.Y.Z``
  (`iacrun doctor --fix` puts it there: the version matching the Pulumi SDK iacrun is built with);
- the provider plugins: exactly the versions of the provider SDKs installed with iacrun
  (``pulumi-aws``, ``pulumi-azure-native``, pinned in pyproject.toml), read from the
  ``pulumi-plugin.json`` each SDK ships, so a stack never resolves a plugin of another version.

Installing (downloads) is the stack engine's job; `missing_plugins` tells it what to install
before anything is created, instead of inside the first `up`'s timeout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

#: the provider SDK (a Python package) behind each cloud's Pulumi program
PROVIDER_SDKS = {"aws": "pulumi_aws", "azure": "pulumi_azure_native"}


@dataclass(frozen=True)
class Plugin:
    """A Pulumi resource plugin, e.g. ``aws`` ``7.51.1``."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


def sdk_version() -> str:
    """The version of the Pulumi SDK installed with iacrun: the CLI version to install."""
    try:
        return version("pulumi")
    except PackageNotFoundError:  # pragma: no cover - pulumi is a dependency
        return "unknown"


def installed_cli(home: Path) -> Path:
    """Where `iacrun doctor --fix` installs the `pulumi` CLI for this home."""
    return home / "tools" / f"pulumi-v{sdk_version()}" / "bin" / "pulumi"


def find_pulumi(home: Path | None = None) -> str | None:
    """The `pulumi` CLI to use: on PATH first, else the one installed under `home`."""
    found = shutil.which("pulumi")
    if found is not None:
        return found
    if home is not None:
        candidate = installed_cli(home)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def missing_cli_hint(home: Path | None) -> str:
    """One line: the CLI is missing, and the two ways to get it."""
    where = f" into {installed_cli(home).parent.parent}" if home is not None else ""
    return (
        f"the `pulumi` CLI is not on PATH; run `iacrun doctor --fix` to install pulumi "
        f"{sdk_version()}{where}, or install it yourself with `curl -fsSL https://get.pulumi.com "
        "| sh` (see https://www.pulumi.com/docs/install/) and open a new shell"
    )


def required_plugin(cloud: str) -> Plugin | None:
    """The exact provider plugin a cloud's program needs; None for clouds without one."""
    package = PROVIDER_SDKS.get(cloud)
    if package is None:
        return None
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        manifest = Path(folder) / "pulumi-plugin.json"
        if manifest.is_file():
            data = json.loads(manifest.read_text())
            return Plugin(name=str(data["name"]), version=str(data["version"]).lstrip("v"))
    return None


def missing_plugins(required: list[Plugin], installed: list[Plugin]) -> list[Plugin]:
    """The required plugins not installed at exactly their version."""
    have = {(p.name, p.version) for p in installed}
    return [p for p in required if (p.name, p.version) not in have]


def parse_plugin_list(text: str) -> list[Plugin]:
    """`pulumi plugin ls --json` output → the resource plugins it lists."""
    entries = json.loads(text or "[]") or []
    return [
        Plugin(name=str(e["name"]), version=str(e.get("version") or "").lstrip("v"))
        for e in entries
        if e.get("kind", "resource") == "resource"
    ]
