"""Where iacrun keeps its state: `~/.iacrun`, or `$IACRUN_HOME`, and what lies inside it."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from iacrun.orchestrator.errors import InputError
from iacrun.stacks.owner import HOME_TAG, new_home_tag

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
        if _shared(path, st.st_mode):
            raise InputError(
                f"{path} is a shared folder (mode {stat.S_IMODE(st.st_mode):o}): iacrun keeps "
                "env values, keys and logs in a folder of its own; point IACRUN_HOME at one "
                "(e.g. ~/.iacrun)"
            )
        os.chmod(path, 0o700)
    return path


def _shared(path: Path, mode: int) -> bool:
    """A folder that others use and that iacrun must never tighten: the root, the user's own
    home, a sticky folder such as /tmp, or a system folder."""
    resolved = path.resolve()
    system = {Path(p) for p in ("/", "/etc", "/usr", "/var", "/opt", "/srv", "/home", "/root")}
    return (
        bool(mode & stat.S_ISVTX)
        or resolved in system
        or resolved == Path.home().resolve()
        or resolved.parent == resolved
    )


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


#: a PostgreSQL URL (`postgresql://user@host:port/db`) that holds the registry instead of the
#: SQLite file in iacrun's home: a server shared by a team, or several servers on one database
DATABASE_URL_ENV = "IACRUN_DATABASE_URL"


def registry_file(home: Path) -> Path:
    """The embedded registry of runs: an SQLite file in iacrun's home."""
    return home / "registry.db"


def registry_target(home: Path) -> Path | str:
    """The database a home's runs are recorded in: `$IACRUN_DATABASE_URL` when set, else
    `registry_file(home)`. The one place that decides it (the CLI, a server, a supervisor)."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip()
    return url or registry_file(home)


def runs_dir(home: Path) -> Path:
    """The folder of each run's local files (log copy, events, keys), made on first use."""
    return private_dir(home / "runs")


def home_id_file(home: Path) -> Path:
    """`home-id`: this home's tag, drawn once; it ends the name of every stack the home makes."""
    return home / "home-id"


def home_tag(home: Path) -> str:
    """This home's tag (see `stacks/owner.py`), drawn and written (0600) on first use.

    Written whole or not at all, and concurrent first uses agree on one: the first link wins."""
    from iacrun.orchestrator.errors import ConfigError

    path = home_id_file(home)
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".home-id.{os.getpid()}.{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(new_home_tag() + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    tag = path.read_text().strip()
    if not HOME_TAG.fullmatch(tag):
        raise ConfigError(
            f"{shown_path(path)} holds {tag[:20]!r}, not a home id (8 lowercase letters and "
            "digits, a letter first); remove it to draw a new one (stacks named after the old "
            "one then count as another home's)"
        )
    return tag


#: in a run's local folder: the run ended while its host was out of reach, so its job may still
#: run there; `iacrun stop`/`down` stop it once the host answers (Orchestrator.stop_left_job)
UNREACHED = "unreached"
