"""Where iacrun keeps its state: `~/.iacrun`, or `$IACRUN_HOME`, and what lies inside it."""

from __future__ import annotations

import os
from pathlib import Path


def iacrun_home() -> Path:
    home = os.environ.get("IACRUN_HOME")
    path = Path(home).expanduser() if home else Path.home() / ".iacrun"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def shown_path(path: Path) -> str:
    """`path` as messages show it: with `~` for the home folder when it lies under it."""
    home = Path.home()
    try:
        return str(Path("~") / path.relative_to(home))
    except ValueError:
        return str(path)


def shown_config_file(home: Path | None = None) -> str:
    """The config file messages point to: `$IACRUN_HOME/config.yml`, shortened with `~`."""
    return shown_path(config_file(home or iacrun_home()))


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
