"""The runner's placing of files and repos: whole files or nothing, modes kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from iacrun.orchestrator.runner.runner import PlaceError, place_payload


def _job(*paths: str) -> dict[str, object]:
    return {"run_name": "r", "commands": ["true"], "files": [{"path": p} for p in paths]}


def _run_dir(tmp_path: Path, *contents: bytes) -> Path:
    run_dir = tmp_path / "run"
    for index, data in enumerate(contents):
        source = run_dir / "payload" / "files" / str(index)
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_bytes(data)
        source.chmod(0o600)
    (run_dir / "code").mkdir(parents=True, exist_ok=True)
    return run_dir


def test_a_file_replaces_its_target_whole_and_keeps_0600(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path, b"new secret")
    target = tmp_path / "keys" / "id_rsa"
    target.parent.mkdir()
    target.write_bytes(b"old")
    place_payload(_job(str(target)), str(run_dir), print, 2)
    assert target.read_bytes() == b"new secret"
    assert target.stat().st_mode & 0o777 == 0o600
    assert os.listdir(target.parent) == ["id_rsa"]
    assert not (run_dir / "payload").exists()


def test_a_failed_placement_leaves_no_partial_file(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path, b"data")
    target = tmp_path / "taken"
    (target / "inside").mkdir(parents=True)  # a folder where a file should go
    with pytest.raises(PlaceError, match=f"cannot write {target}"):
        place_payload(_job(str(target)), str(run_dir), print, 2)
    assert sorted(os.listdir(tmp_path)) == ["run", "taken"]
    assert os.listdir(target) == ["inside"]


def test_the_git_credentials_are_removed_even_when_placing_fails(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    for name in ("git-user", "git-password"):
        (run_dir / name).write_text("x")
    with pytest.raises(PlaceError):
        place_payload(_job("missing.txt"), str(run_dir), print, 2)
    assert not (run_dir / "git-password").exists() and not (run_dir / "git-user").exists()
