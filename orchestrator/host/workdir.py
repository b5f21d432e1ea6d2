"""The working folder a run ships: every file not ignored by `.gitignore` or `.dstackignore`."""

from __future__ import annotations

import gzip
import os
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pathspec

from iacrun.orchestrator.errors import InputError
from iacrun.orchestrator.models.units import format_size_gb
from iacrun.orchestrator.paths import shown_config_file

IGNORE_FILES = (".gitignore", ".dstackignore")
ALWAYS_IGNORED = (".git/",)


class _Rules:
    """The ignore rules in force below one folder: its own files plus its parents' rules."""

    def __init__(self, parent: _Rules | None, base: str, folder: Path) -> None:
        self.parent = parent
        self.base = base
        lines: list[str] = []
        for name in IGNORE_FILES:
            path = folder / name
            if path.is_file():
                lines.extend(path.read_text(encoding="utf-8", errors="replace").splitlines())
        self.spec = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None

    def ignored(self, rel: str, is_dir: bool) -> bool:
        candidate = rel + "/" if is_dir else rel
        rules: _Rules | None = self
        while rules is not None:
            if rules.spec is not None:
                local = candidate[len(rules.base) :] if rules.base else candidate
                if rules.spec.match_file(local):
                    return True
            rules = rules.parent
        return False


def iter_files(root: Path, exclude: tuple[Path, ...] = ()) -> Iterator[tuple[Path, str]]:
    """(absolute path, path relative to root) of every file to ship, in a stable order.

    Folders in `exclude` are never shipped (iacrun's own home: its live database, keys, logs)."""
    always = pathspec.GitIgnoreSpec.from_lines(ALWAYS_IGNORED)
    skipped = {p.resolve() for p in exclude}
    stack: list[tuple[Path, str, _Rules | None]] = [(root, "", None)]
    while stack:
        folder, rel, parent = stack.pop()
        rules = _Rules(parent, rel, folder)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
        except OSError as exc:
            raise InputError(f"cannot read {folder}: {exc.strerror}") from exc
        for entry in entries:
            entry_rel = f"{rel}{entry.name}"
            is_dir = entry.is_dir(follow_symlinks=False)
            if always.match_file(entry_rel + ("/" if is_dir else "")):
                continue
            if rules.ignored(entry_rel, is_dir):
                continue
            if is_dir:
                if Path(entry.path).resolve() in skipped:
                    continue
                stack.append((Path(entry.path), entry_rel + "/", rules))
            elif entry.is_file(follow_symlinks=False) or entry.is_symlink():
                yield Path(entry.path), entry_rel


def pack(
    root: Path, archive: Path, limit_gb: float, exclude: tuple[Path, ...] = ()
) -> tuple[int, int]:
    """Write the working folder as a .tar.gz; returns (files, bytes before compression)."""
    over = over_limit(root, limit_gb)
    return write_archive(iter_files(root, exclude), archive, int(limit_gb * 1024**3), over)


def over_limit(root: Path, limit_gb: float) -> str:
    """What is said when the working folder is over the upload limit."""
    return (
        f"the working folder {root} is over the upload limit of {format_size_gb(limit_gb)}; "
        f"add what the job does not need to .dstackignore, or raise upload_limit in "
        f"{shown_config_file()}"
    )


def measure(entries: Iterable[tuple[Path, str]], limit: int, over: str) -> int:
    """The bytes `write_archive` would pack from `entries`, without packing them; the same
    InputError(`over`) past `limit`. Run before a run is recorded, so that no machine is
    created for an upload that cannot happen."""
    total = 0
    for path, _rel in entries:
        total += path.lstat().st_size if not path.is_dir() else 0
        if total > limit:
            raise InputError(over)
    return total


def write_archive(
    entries: Iterable[tuple[Path, str]], archive: Path, limit: int, over: str
) -> tuple[int, int]:
    """(local path, name in the archive) pairs into a .tar.gz, written whole or not at all;
    more than `limit` bytes raises InputError(`over`). Modes travel with the files. The gzip
    header holds no time, so the same files give the same bytes (an upload is named by its
    hash)."""
    files, total = 0, 0
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_suffix(".partial")
    with (
        open(tmp, "wb") as raw,
        gzip.GzipFile("", "wb", compresslevel=1, fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for path, rel in entries:
            size = path.lstat().st_size if not path.is_dir() else 0
            total += size
            if total > limit:
                tar.close()
                gz.close()
                raw.close()
                tmp.unlink(missing_ok=True)
                raise InputError(over)
            tar.add(str(path), arcname=rel, recursive=False)
            files += 0 if path.is_dir() and not path.is_symlink() else 1
    os.replace(tmp, archive)
    return files, total
