"""What a run ships: .gitignore and .dstackignore honoured, at every level, with a size limit."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from iacrun.orchestrator.errors import InputError
from iacrun.orchestrator.host.workdir import iter_files, pack


def make_tree(root: Path) -> None:
    files = {
        ".gitignore": "*.log\nbuild/\n!keep.log\n",
        ".dstackignore": "data/\n",
        "train.py": "print(1)",
        "debug.log": "x",
        "keep.log": "kept",
        "build/out.bin": "x",
        "data/big.bin": "x",
        "src/model.py": "m",
        "src/.gitignore": "secret.txt\n",
        "src/secret.txt": "s",
        ".git/HEAD": "ref",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_ignore_rules(tmp_path: Path) -> None:
    make_tree(tmp_path)
    shipped = sorted(rel for _, rel in iter_files(tmp_path))
    assert shipped == [
        ".dstackignore",
        ".gitignore",
        "keep.log",
        "src/.gitignore",
        "src/model.py",
        "train.py",
    ]


def test_pack_and_limit(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    make_tree(root)
    files, size = pack(root, tmp_path / "a.tar.gz", limit_gb=1)
    assert files == 6 and size > 0
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        assert "src/model.py" in tar.getnames()
    (root / "huge.bin").write_bytes(b"0" * 3 * 1024 * 1024)
    with pytest.raises(InputError, match="over the upload limit of 2MB"):
        pack(root, tmp_path / "b.tar.gz", limit_gb=2 / 1024)
    assert not (tmp_path / "b.tar.gz").exists()


def test_iacrun_home_inside_the_repository_is_never_shipped(tmp_path: Path) -> None:
    make_tree(tmp_path)
    home = tmp_path / "dot-iacrun"
    (home / "runs").mkdir(parents=True)
    (home / "registry.db").write_text("live database")
    shipped = {rel for _, rel in iter_files(tmp_path, exclude=(home,))}
    assert "train.py" in shipped
    assert not any(rel.startswith("dot-iacrun") for rel in shipped)
