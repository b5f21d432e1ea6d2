"""`files` and `repos` as dstack writes them: short and long forms, and what they resolve to."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from iacrun.orchestrator.models.runspec import build_run_spec
from iacrun.orchestrator.models.shipped import FileMapping, RepoSpec
from iacrun.orchestrator.runner.runner import docker_argv, payload_targets


@pytest.mark.parametrize(
    ("written", "local", "path"),
    [
        ("data", "data", "data"),
        ("data:/mnt/data", "data", "/mnt/data"),
        ("~/.ssh/id_rsa:/root/.ssh/id_rsa", "~/.ssh/id_rsa", "/root/.ssh/id_rsa"),
        ({"local_path": "../w.bin", "path": "w.bin"}, "../w.bin", "w.bin"),
    ],
)
def test_file_forms(written: object, local: str, path: str) -> None:
    mapping = FileMapping.model_validate(written)
    assert (mapping.local_path, mapping.path) == (local, path)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (".", {"local_path": ".", "path": "."}),
        ("../lib:vendor/lib", {"local_path": "../lib", "path": "vendor/lib"}),
        ("https://github.com/o/r.git", {"url": "https://github.com/o/r.git", "path": "."}),
        ("https://h:8443/o/r.git:src", {"url": "https://h:8443/o/r.git", "path": "src"}),
        ("git@github.com:o/r.git", {"url": "git@github.com:o/r.git", "path": "."}),
        ("git@github.com:o/r.git:~/r", {"url": "git@github.com:o/r.git", "path": "~/r"}),
        ("ssh://git@h:2222/o/r.git", {"url": "ssh://git@h:2222/o/r.git", "path": "."}),
    ],
)
def test_repo_forms(written: str, expected: dict[str, str]) -> None:
    repo = RepoSpec.model_validate(written)
    assert repo.model_dump(include=set(expected)) == expected
    assert repo.if_exists == "error"


def test_a_windows_target_is_refused() -> None:
    with pytest.raises(ValidationError, match="must be a Unix path"):
        FileMapping.model_validate({"local_path": "a", "path": "C:\\data"})


def test_resolved_paths_start_at_the_task_files_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "w.bin").write_text("w")
    task = tmp_path / "sub" / "t.dstack.yml"
    task.write_text(
        "type: task\ncommands: [x]\nfiles: ['../w.bin:/data/w.bin']\n"
        "repos:\n  - url: https://h/r.git\n    branch: dev\nsingle_branch: false\n"
    )
    spec = build_run_spec(task, environ={})
    assert spec.files[0].local == str(tmp_path / "w.bin")
    assert spec.files[0].path == "/data/w.bin"
    repo = spec.repos[0]
    assert (repo.url, repo.branch, repo.single_branch, repo.local) == (
        "https://h/r.git",
        "dev",
        False,
        None,
    )


def test_an_image_job_mounts_absolute_and_home_targets() -> None:
    job = {
        "run_name": "r",
        "image": "ubuntu",
        "commands": ["true"],
        "files": [{"path": "rel.txt"}, {"path": "/etc/app.cfg"}, {"path": "~/.ssh/id_rsa"}],
        "repos": [],
    }
    targets = [where for _kind, where, _e in payload_targets(job, "/run/x")]
    assert targets == [
        "/run/x/code/rel.txt",
        "/run/x/mounts/etc/app.cfg",
        "/run/x/mounts/root/.ssh/id_rsa",
    ]
    argv = docker_argv(job, "/run/x")
    assert "/run/x/mounts/etc/app.cfg:/etc/app.cfg" in argv
    assert "/run/x/mounts/root/.ssh/id_rsa:/root/.ssh/id_rsa" in argv
