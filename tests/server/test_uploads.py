"""What a server unpacks from an upload: never more than the upload limit, never a link that
would make it ship its own files."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from iacrun.orchestrator.errors import InputError
from iacrun.server.uploads import Uploads


def archive(*members: tuple[str, bytes | str]) -> bytes:
    """A .tar.gz of files (bytes) and symbolic links (str: the target)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def stored(uploads: Uploads, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()

    async def body() -> AsyncIterator[bytes]:
        yield data

    assert asyncio.run(uploads.store(sha, body()))
    return sha


def test_an_upload_unpacks_once_with_its_files(tmp_path: Path) -> None:
    uploads = Uploads(tmp_path / "uploads", 1.0)
    sha = stored(uploads, archive(("code/a.txt", b"a"), ("code/link", "/etc/passwd")))
    folder = uploads.unpacked(sha)
    assert (folder / "code" / "a.txt").read_bytes() == b"a"
    assert (folder / "code" / "link").is_symlink()  # a link inside travels as a link
    assert uploads.unpacked(sha) == folder


@pytest.mark.parametrize(
    "members",
    [
        [("code", "/")],
        [("code/a", b"a"), ("payload/files/0", "/root")],
        [("payload", "/")],
        [("payload/repo", "/home")],
    ],
)
def test_a_link_where_the_server_would_walk_is_refused(
    tmp_path: Path, members: list[tuple[str, bytes | str]]
) -> None:
    uploads = Uploads(tmp_path / "uploads", 1.0)
    sha = stored(uploads, archive(*members))
    with pytest.raises(InputError, match="is a link to a folder; refused"):
        uploads.unpacked(sha)
    assert not (tmp_path / "uploads" / sha).exists()


def test_writing_through_a_link_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    uploads = Uploads(tmp_path / "uploads", 1.0)
    sha = stored(uploads, archive(("code/out", str(outside)), ("code/out/x", b"pwned")))
    with pytest.raises(InputError, match="cannot be unpacked"):
        uploads.unpacked(sha)
    assert not (outside / "x").exists()


def test_an_archive_that_unpacks_past_the_limit_is_refused(tmp_path: Path) -> None:
    uploads = Uploads(tmp_path / "uploads", 1 / 1024)  # 1 MiB
    sha = stored(uploads, archive(("code/zeros", bytes(2 * 1024 * 1024))))
    with pytest.raises(InputError, match="unpacks to more than the server's upload limit"):
        uploads.unpacked(sha)
