"""Where iacrun keeps its state: `~/.iacrun`, or `$IACRUN_HOME`."""

from __future__ import annotations

import os
from pathlib import Path


def iacrun_home() -> Path:
    home = os.environ.get("IACRUN_HOME")
    path = Path(home).expanduser() if home else Path.home() / ".iacrun"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def runs_dir() -> Path:
    path = iacrun_home() / "runs"
    path.mkdir(exist_ok=True, mode=0o700)
    return path
