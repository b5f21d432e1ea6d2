"""Uploads: the archives clients send (host/payload.pack_upload), stored once by their SHA-256.

`uploads/<sha256>.tar.gz` is the archive as received (its hash checked before it is kept);
`uploads/<sha256>/` is it unpacked, once, for every run that names it. A run's spec then points
into that folder (host/payload.spec_on_server) and its supervisor ships it as it would a local
folder.

Uploads are removed (`sweep`) once nothing needs them: no active run and no active schedule uses
one, and no client named it (sent it, asked for it, or submitted a run of it) for a grace period
(`ServerConfig.upload_grace_hours`, 24 h by default); the server sweeps every hour.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

from iacrun.orchestrator.errors import InputError, NotFoundError
from iacrun.orchestrator.host.payload import UPLOAD_CODE, UPLOAD_PAYLOAD
from iacrun.orchestrator.models.units import format_size_gb
from iacrun.orchestrator.paths import private_dir

SHA256_RE = re.compile(r"[0-9a-f]{64}")


class Uploads:
    """The uploads in `root`; `clock`: the time their ages are read against (epoch seconds;
    injected by tests)."""

    def __init__(
        self, root: Path, limit_gb: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.root = root
        self.limit = int(limit_gb * 1024**3)
        self.limit_gb = limit_gb
        self.clock = clock
        self._lock = threading.Lock()

    def archive(self, sha256: str) -> Path:
        if not SHA256_RE.fullmatch(sha256):
            raise InputError(f"{sha256!r} is not a SHA-256 (64 lowercase hex digits)")
        return self.root / f"{sha256}.tar.gz"

    def has(self, sha256: str) -> bool:
        """Whether the server has the upload (a client asking for it is about to use it: its
        age starts again)."""
        with self._lock:
            return self._touch(sha256)

    def _touch(self, sha256: str) -> bool:
        """Mark the archive as named now (its mtime is the upload's age); whether it is there.
        Under the lock: a sweep never removes an upload a client named since it looked."""
        now = self.clock()
        try:
            os.utime(self.archive(sha256), (now, now))
        except FileNotFoundError:
            return False
        return True

    def sweep(self, in_use: Iterable[str], grace: float) -> list[str]:
        """Remove every upload (archive and unpacked copy) not in `in_use` and not named for
        `grace` seconds, and what an interrupted store or unpack left as old; their hashes."""
        keep = set(in_use)
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        with self._lock:
            oldest = self.clock() - grace
            for path in sorted(self.root.iterdir()):
                sha = path.name.split(".", 1)[0]
                if not SHA256_RE.fullmatch(sha) or sha in keep:
                    continue
                named = self.archive(sha)
                try:
                    # an unpacked copy is as old as its archive (it goes with it); leftovers of
                    # an interrupted write by their own time
                    age_of = named if path.name == sha and named.exists() else path
                    if age_of.lstat().st_mtime >= oldest:
                        continue
                except FileNotFoundError:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                if path == named:
                    removed.append(sha)
        return removed

    async def store(self, sha256: str, body: AsyncIterator[bytes]) -> bool:
        """Keep the archive streamed in `body` if its hash is `sha256`; False when it was
        there already (the body is then read and dropped)."""
        target = self.archive(sha256)
        private_dir(self.root)
        partial = target.with_name(f"{sha256}.{os.getpid()}.{threading.get_ident()}.partial")
        digest = hashlib.sha256()
        size = 0
        try:
            with open(partial, "wb") as out:
                async for chunk in body:
                    size += len(chunk)
                    if size > self.limit:
                        raise InputError(
                            f"the upload is over the server's upload limit of "
                            f"{format_size_gb(self.limit_gb)}"
                        )
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256:
                raise InputError(
                    f"the upload's SHA-256 is {digest.hexdigest()}, not {sha256}: "
                    "it was changed or cut short on the way; upload it again"
                )
            with self._lock:
                if self._touch(sha256):
                    return False
                os.replace(partial, target)
                self._touch(sha256)
            return True
        finally:
            partial.unlink(missing_ok=True)

    def unpacked(self, sha256: str) -> Path:
        """The folder the archive is unpacked in (unpacked on first use, once)."""
        archive = self.archive(sha256)
        folder = self.root / sha256
        with self._lock:
            if not self._touch(sha256):
                raise NotFoundError(f"no upload {sha256} on this server; upload it first")
            if (folder / ".complete").exists():
                return folder
            partial = self.root / f"{sha256}.unpacking"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(mode=0o700)
            try:
                with tarfile.open(archive, "r:gz") as tar:
                    self._check_size(tar)
                    # the `tar` filter refuses absolute names, `..` and writes through links
                    tar.extractall(partial, filter="tar")
                _check_roots(partial)
            except (tarfile.TarError, OSError, EOFError, InputError) as exc:
                shutil.rmtree(partial, ignore_errors=True)
                raise InputError(f"upload {sha256} cannot be unpacked: {exc}") from exc
            (partial / UPLOAD_CODE).mkdir(exist_ok=True)
            _index_repo(partial / UPLOAD_PAYLOAD / "repo")
            (partial / ".complete").touch()
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(partial, folder)
        return folder

    def _check_size(self, tar: tarfile.TarFile) -> None:
        """The files' sizes, as the client counted them against the upload limit: a small
        archive that unpacks into more is refused before anything is written."""
        total = 0
        for member in tar:
            total += member.size
            if total > self.limit:
                raise InputError(
                    f"it unpacks to more than the server's upload limit of "
                    f"{format_size_gb(self.limit_gb)}"
                )


def _check_roots(folder: Path) -> None:
    """The folders the supervisor walks (the working folder, each `files` entry, the repo) must
    be what they say: a link there would make the server ship its own files (a link inside them
    travels as a link, as in embedded mode)."""
    walked = [folder / UPLOAD_CODE, folder / UPLOAD_PAYLOAD, folder / UPLOAD_PAYLOAD / "files"]
    files = folder / UPLOAD_PAYLOAD / "files"
    if files.is_dir() and not files.is_symlink():
        walked += sorted(files.iterdir())
    walked.append(folder / UPLOAD_PAYLOAD / "repo")
    for path in walked:
        if path.is_symlink() and (path.is_dir() or path.parent == folder):
            raise InputError(f"{path.relative_to(folder)} is a link to a folder; refused")


def _index_repo(repo: Path) -> None:
    """A local repo's files arrive without `.git`: they are exactly what `git ls-files` listed
    on the client, so all of them go in a fresh index here, and the supervisor's `git ls-files`
    (host/payload.py) lists the same files again."""
    if not repo.is_dir():
        return
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    for argv in (["git", "init", "-q"], ["git", "add", "-A", "-f", "."]):
        done = subprocess.run(argv, cwd=repo, capture_output=True, check=False, env=env)
        if done.returncode != 0:
            problem = done.stderr.decode(errors="replace").strip()
            raise InputError(f"cannot index the uploaded repo: {problem}")
