"""Uploads: the archives clients send (host/payload.pack_upload), stored once by their SHA-256.

`uploads/<sha256>.tar.gz` is the archive as received (its hash checked before it is kept);
`uploads/<sha256>/` is it unpacked, once, for every run that names it. A run's spec then points
into that folder (host/payload.spec_on_server) and its supervisor ships it as it would a local
folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from iacrun.orchestrator.errors import InputError, NotFoundError
from iacrun.orchestrator.host.payload import UPLOAD_CODE, UPLOAD_PAYLOAD
from iacrun.orchestrator.models.units import format_size_gb
from iacrun.orchestrator.paths import private_dir

SHA256_RE = re.compile(r"[0-9a-f]{64}")


class Uploads:
    def __init__(self, root: Path, limit_gb: float) -> None:
        self.root = root
        self.limit = int(limit_gb * 1024**3)
        self.limit_gb = limit_gb
        self._lock = threading.Lock()

    def archive(self, sha256: str) -> Path:
        if not SHA256_RE.fullmatch(sha256):
            raise InputError(f"{sha256!r} is not a SHA-256 (64 lowercase hex digits)")
        return self.root / f"{sha256}.tar.gz"

    def has(self, sha256: str) -> bool:
        return self.archive(sha256).is_file()

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
            if target.exists():
                return False
            os.replace(partial, target)
            return True
        finally:
            partial.unlink(missing_ok=True)

    def unpacked(self, sha256: str) -> Path:
        """The folder the archive is unpacked in (unpacked on first use, once)."""
        archive = self.archive(sha256)
        folder = self.root / sha256
        with self._lock:
            if (folder / ".complete").exists():
                return folder
            if not archive.is_file():
                raise NotFoundError(f"no upload {sha256} on this server; upload it first")
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
