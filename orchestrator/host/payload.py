"""What a run ships besides its working folder: its `files` and its local repo, as one archive.

The archive unpacks into `RUN_DIR/payload` on the host: `files/N` is the N-th `files` entry (a
file, or a folder honouring its `.gitignore`/`.dstackignore`), `repo/` the local repo's tracked
and untracked-but-not-ignored files as they are in its working tree (uncommitted changes
included). The runner moves each into place before the job starts (runner.place_payload). Both
archives count against the one upload limit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from iacrun.orchestrator.errors import InputError
from iacrun.orchestrator.host.workdir import (
    iter_files,
    measure,
    over_limit,
    pack,
    write_archive,
)
from iacrun.orchestrator.models.runspec import RepoSource, RunSpec, ShippedFile
from iacrun.orchestrator.models.units import format_size_gb
from iacrun.orchestrator.paths import shown_config_file


def payload_entries(
    files: list[ShippedFile], repos: list[RepoSource], exclude: tuple[Path, ...] = ()
) -> Iterator[tuple[Path, str]]:
    """(local path, name in the payload archive) of everything `files` and a local repo ship."""
    for index, mapping in enumerate(files):
        local = Path(mapping.local)
        if not local.exists():
            raise InputError(f"files: {local} is gone since the run was submitted")
        name = f"files/{index}"
        if local.is_dir():
            yield local, name
            for path, rel in iter_files(local, exclude):
                yield path, f"{name}/{rel}"
        else:
            yield local, name
    for repo in repos:
        if repo.local is not None:
            yield from _repo_entries(Path(repo.local))


def _repo_entries(root: Path) -> Iterator[tuple[Path, str]]:
    """A local repo's files as `git ls-files` sees them: tracked (with their uncommitted
    changes) and untracked, never what .gitignore and the like exclude."""
    if shutil.which("git") is None:
        raise InputError("git is not installed here; install git to ship a local repo")
    done = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=False,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )
    if done.returncode != 0:
        problem = done.stderr.decode(errors="replace").strip().splitlines()
        raise InputError(f"repos: cannot list the files of {root}: {' '.join(problem[:1])}")
    yield root, "repo"
    for rel in sorted(set(done.stdout.decode().split("\0"))):
        path = root / rel
        if not rel or not os.path.lexists(path) or (path.is_dir() and not path.is_symlink()):
            continue  # deleted in the working tree, or a submodule's folder
        yield path, f"repo/{rel}"


def pack_payload(
    files: list[ShippedFile],
    repos: list[RepoSource],
    archive: Path,
    limit_gb: float,
    used: int,
    exclude: tuple[Path, ...] = (),
) -> tuple[int, int] | None:
    """The payload archive, or None when the run ships nothing besides its working folder.
    `used` is what the working folder already took of the upload limit."""
    if not files and not any(r.local for r in repos):
        return None
    left = int(limit_gb * 1024**3) - used
    return write_archive(payload_entries(files, repos, exclude), archive, left, _over(limit_gb))


def _over(limit_gb: float) -> str:
    return (
        f"the working folder, files and repos together are over the upload limit of "
        f"{format_size_gb(limit_gb)}; add what the job does not need to .dstackignore, or "
        f"raise upload_limit in {shown_config_file()}"
    )


def check_run_upload(spec: RunSpec, limit_gb: float, exclude: tuple[Path, ...] = ()) -> int:
    """The bytes `pack_run` would upload, counted the same way without packing; the same
    InputError when that is over the limit. Called before the run is recorded."""
    limit = int(limit_gb * 1024**3)
    used = 0
    if not spec.repos:
        root = Path(spec.repo_dir)
        used = measure(iter_files(root, exclude), limit, over_limit(root, limit_gb))
    if spec.files or any(r.local for r in spec.repos):
        entries = payload_entries(spec.files, spec.repos, exclude)
        used += measure(entries, limit - used, _over(limit_gb))
    return used


#: the archives `pack_run` writes in a run's folder: deleted once shipped, or at teardown
PACKED = ("code.tar.gz", "payload.tar.gz")


def remove_packed(folder: Path) -> None:
    """Delete the archives `pack_run` wrote in `folder` (left by a supervisor that died while
    shipping them)."""
    for name in PACKED:
        (folder / name).unlink(missing_ok=True)


def pack_run(
    spec: RunSpec, folder: Path, limit_gb: float, exclude: tuple[Path, ...] = ()
) -> tuple[Path, Path | None, int, int]:
    """Everything a run uploads, packed in `folder` (as `PACKED`): (code archive, payload
    archive or None, files, bytes). A task that lists a repo ships that repo instead of its own
    folder."""
    archive = folder / PACKED[0]
    if spec.repos:
        files, size = write_archive(iter(()), archive, 0, "")
    else:
        files, size = pack(Path(spec.repo_dir), archive, limit_gb, exclude)
    packed = pack_payload(spec.files, spec.repos, folder / PACKED[1], limit_gb, size, exclude)
    if packed is None:
        return archive, None, files, size
    return archive, folder / PACKED[1], files + packed[0], size + packed[1]


# ------------------------------------------------------------------ the upload a server receives
# A client of `iacrun server` sends one archive, packed here, with the same entries a supervisor
# ships: `code/` (the working folder), `payload/files/N` and `payload/repo/` (see payload_entries).
# The server unpacks it once per content hash, and `spec_on_server` points the spec's local paths
# (which are the client's) at that copy: the one place where client paths become server paths.

UPLOAD_CODE = "code"
UPLOAD_PAYLOAD = "payload"


def upload_entries(spec: RunSpec, exclude: tuple[Path, ...] = ()) -> Iterator[tuple[Path, str]]:
    """(local path, name in the upload) of everything the run ships, as `pack_run` ships it."""
    if not spec.repos:
        root = Path(spec.repo_dir)
        yield root, UPLOAD_CODE
        for path, rel in iter_files(root, exclude):
            yield path, f"{UPLOAD_CODE}/{rel}"
    for path, name in payload_entries(spec.files, spec.repos, exclude):
        yield path, f"{UPLOAD_PAYLOAD}/{name}"


def pack_upload(
    spec: RunSpec, archive: Path, limit_gb: float, exclude: tuple[Path, ...] = ()
) -> tuple[int, int]:
    """The run's upload as one .tar.gz (files, bytes before compression), held to the same upload
    limit as `pack_run`; the same files give the same bytes (its content hash names it)."""
    check_run_upload(spec, limit_gb, exclude)
    return write_archive(
        upload_entries(spec, exclude), archive, int(limit_gb * 1024**3), _over(limit_gb)
    )


def spec_on_server(spec: RunSpec, folder: Path) -> RunSpec:
    """`spec` (as a client built it) with every local path pointing into `folder`, where the
    server unpacked the client's upload; none of the client's paths is left to read."""
    code = folder / UPLOAD_CODE
    config = Path(spec.config_path)
    try:
        config_path = code / config.relative_to(spec.repo_dir)
    except ValueError:
        config_path = code / config.name
    files = [
        ShippedFile(local=str(folder / UPLOAD_PAYLOAD / "files" / str(index)), path=f.path)
        for index, f in enumerate(spec.files)
    ]
    repos = [
        r.model_copy(update={"local": str(folder / UPLOAD_PAYLOAD / "repo")})
        if r.local is not None
        else r
        for r in spec.repos
    ]
    return spec.model_copy(
        update={
            "repo_dir": str(code),
            "config_path": str(config_path),
            "files": files,
            "repos": repos,
        }
    )
