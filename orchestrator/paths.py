"""Where iacrun keeps its state: `~/.iacrun`, or `$IACRUN_HOME`, and what lies inside it."""

from __future__ import annotations

import os
from pathlib import Path

#: the umask of the user who ran iacrun, handed to the job (iacrun's own files use 077)
UMASK_ENV = "IACRUN_UMASK"


def use_private_umask() -> None:
    """From here on, what this process and its children create is the user's alone (files 0600,
    folders 0700) whatever the shell's umask; the user's umask is kept in $IACRUN_UMASK so the
    runner gives it back to the job, whose files are the user's business."""
    old = os.umask(0o077)
    os.environ.setdefault(UMASK_ENV, f"{old:03o}")


def private_dir(path: Path) -> Path:
    """`path` made if missing, and 0700 even if it existed with a looser mode (as a home made
    by an older version or by hand, 0755, did): it holds env values, keys and logs."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if st.st_mode & 0o077 and st.st_uid == os.getuid():
        os.chmod(path, 0o700)
    return path


def iacrun_home() -> Path:
    home = os.environ.get("IACRUN_HOME")
    return private_dir(Path(home).expanduser() if home else Path.home() / ".iacrun")


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
    return private_dir(home / "runs")
