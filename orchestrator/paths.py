"""Where iacrun keeps its state: `~/.iacrun`, or `$IACRUN_HOME`, and what lies inside it."""

from __future__ import annotations

import os
from pathlib import Path


def iacrun_home() -> Path:
    home = os.environ.get("IACRUN_HOME")
    path = Path(home).expanduser() if home else Path.home() / ".iacrun"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def config_file(home: Path) -> Path:
    """`config.yml`: the backends, their regions and hosts, the state backend."""
    return home / "config.yml"


def registry_file(home: Path) -> Path:
    """The registry of runs (SQLite)."""
    return home / "registry.db"


def runs_dir(home: Path) -> Path:
    """The folder of each run's local files (log copy, events, keys), made on first use."""
    path = home / "runs"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
