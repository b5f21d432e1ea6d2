"""Where catalogs live: shipped in the package, refreshed copies under `~/.iacrun/catalog/`.

A refreshed copy is preferred over the shipped one. Loaded catalogs are cached per process and
re-read only when the file changes (size or mtime), so repeated matching costs no parsing.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from iacrun.orchestrator.errors import ConfigError, InputError
from iacrun.orchestrator.offers.catalog.model import Catalog, dump_catalog, parse_catalog
from iacrun.orchestrator.offers.model import CLOUDS

SHIPPED_DIR = Path(__file__).resolve().parent / "data"

_cache: dict[str, tuple[tuple[int, int], Catalog]] = {}


def user_catalog_dir() -> Path:
    """`~/.iacrun/catalog` (or `$IACRUN_HOME/catalog`), without creating it."""
    home = os.environ.get("IACRUN_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".iacrun"
    return base / "catalog"


def shipped_catalog_path(cloud: str) -> Path:
    return SHIPPED_DIR / f"{_check_cloud(cloud)}.json"


def catalog_path(cloud: str, directory: Path | None = None) -> Path:
    """The file `load_catalog` reads: the refreshed copy when there is one, else the shipped one."""
    _check_cloud(cloud)
    if directory is not None:
        return directory / f"{cloud}.json"
    refreshed = user_catalog_dir() / f"{cloud}.json"
    return refreshed if refreshed.is_file() else shipped_catalog_path(cloud)


def load_catalog(cloud: str, directory: Path | None = None) -> Catalog:
    """The catalog of `cloud`, parsed once per process and file version."""
    path = catalog_path(cloud, directory)
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        raise ConfigError(f"no {cloud} catalog at {path}", file=str(path)) from exc
    key = str(path)
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read catalog: {exc}", file=str(path)) from exc
    catalog = parse_catalog(data, str(path))
    if catalog.cloud != cloud:
        raise ConfigError(f"catalog is for {catalog.cloud}, not {cloud}", file=str(path))
    _cache[key] = (stamp, catalog)
    return catalog


def save_catalog(catalog: Catalog, directory: Path) -> Path:
    """Write atomically: readers see the old file or the new one, never half of one."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = directory / f"{_check_cloud(catalog.cloud)}.json"
    fd, tmp = tempfile.mkstemp(prefix=f".{catalog.cloud}.", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dump_catalog(catalog))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    catalog.path = str(target)
    _cache.pop(str(target), None)
    return target


def clear_cache() -> None:
    _cache.clear()


def _check_cloud(cloud: str) -> str:
    if cloud not in CLOUDS:
        raise InputError(f"no catalog for {cloud!r}; known clouds: {', '.join(CLOUDS)}")
    return cloud
