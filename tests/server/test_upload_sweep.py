"""Uploads nothing needs any more are removed: no active run and no active schedule uses them,
and no client named them for the grace period (an injected clock moves time)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.host.payload import spec_on_server
from iacrun.orchestrator.models.runspec import Overrides, RunSpec, build_run_spec
from iacrun.orchestrator.models.settings import Settings
from iacrun.server.config import ServerConfig
from iacrun.server.state import ServerState
from iacrun.server.uploads import Uploads
from tests.conftest import write_task
from tests.server.test_uploads import archive, stored

DAY = 24 * 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


def test_an_upload_is_swept_once_unused_and_unnamed_for_the_grace_period(tmp_path: Path) -> None:
    clock = Clock()
    uploads = Uploads(tmp_path / "uploads", 1.0, clock=clock)
    old, used, asked = (stored(uploads, archive((f"code/{n}", n.encode()))) for n in "abc")
    uploads.unpacked(old)
    leftover = uploads.root / f"{old}.123.456.partial"  # a store the server died in
    leftover.write_bytes(b"half")
    os.utime(leftover, (clock.now, clock.now))
    clock.now += DAY - 60
    assert uploads.sweep(set(), DAY) == []  # within the grace period: kept
    assert uploads.has(asked)  # a client asks for it: it is named again now
    clock.now += 120
    assert uploads.sweep({used}, DAY) == [old]
    assert sorted(p.name for p in uploads.root.iterdir()) == sorted(
        [f"{used}.tar.gz", f"{asked}.tar.gz"]
    )
    clock.now += DAY + 1
    assert uploads.sweep({used}, DAY) == [asked]
    assert uploads.has(used)


def test_storing_or_unpacking_again_names_an_upload(tmp_path: Path) -> None:
    clock = Clock()
    uploads = Uploads(tmp_path / "uploads", 1.0, clock=clock)
    data = archive(("code/x", b"x"))
    sha = stored(uploads, data)
    clock.now += DAY + 1
    uploads.unpacked(sha)  # a submit of it
    assert uploads.sweep(set(), DAY) == []
    clock.now += DAY + 1
    assert uploads.sweep(set(), DAY) == [sha]
    with pytest.raises(Exception, match="upload it first"):
        uploads.unpacked(sha)


@pytest.fixture
def state(
    registry_target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServerState]:
    if registry_target.startswith("postgresql://"):
        monkeypatch.setenv("IACRUN_DATABASE_URL", registry_target)
    else:
        monkeypatch.delenv("IACRUN_DATABASE_URL", raising=False)
    home = tmp_path / "home"
    config = ServerConfig(home=home, upload_grace_hours=24)
    orch = Orchestrator(home=home, settings=Settings(), backends=[])
    yield ServerState(config, orch)


def _spec(project: Path, text: str, name: str) -> RunSpec:
    write_task(project, text)
    return build_run_spec(project / "task.dstack.yml", Overrides(name=name))


def test_the_server_keeps_what_active_runs_and_schedules_use(
    state: ServerState, project: Path
) -> None:
    clock = Clock()
    state.uploads.clock = clock
    uploads = state.uploads
    running, ended, scheduled = (stored(uploads, archive((f"code/{n}", b"1"))) for n in "rez")
    registry, schedules = state.registry, state.orchestrator.schedule_store
    spec = _spec(project, "commands: [sleep 1]\n", "live")
    live = registry.create(
        "live", spec_on_server(spec, uploads.unpacked(running)), tmp_path_of(state)
    )
    done = registry.create(
        "done", spec_on_server(spec, uploads.unpacked(ended)), tmp_path_of(state)
    )
    registry.update(done.id, status="done")
    nightly = _spec(project, "commands: [echo hi]\nschedule:\n  cron: '0 3 * * *'\n", "nightly")
    schedules.create(
        "nightly", spec_on_server(nightly, uploads.unpacked(scheduled)), upload=scheduled
    )
    assert state.uploads_in_use() == {running, scheduled}
    clock.now += 2 * DAY
    assert state.sweep_uploads() == [ended]
    assert not (uploads.root / ended).exists()
    registry.update(live.id, status="terminated")
    schedules.stop("nightly")
    assert sorted(state.sweep_uploads()) == sorted([running, scheduled])
    assert list(uploads.root.iterdir()) == []


def tmp_path_of(state: ServerState) -> Path:
    return state.config.home / "runs"


def test_the_database_and_the_lease_come_from_one_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iacrun.orchestrator.errors import ConfigError
    from iacrun.orchestrator.paths import registry_target

    monkeypatch.delenv("IACRUN_DATABASE_URL", raising=False)
    config = ServerConfig.from_env(home=tmp_path)
    assert config.database == str(registry_target(tmp_path)) == str(tmp_path / "registry.db")
    assert config.shown_database == f"sqlite {tmp_path / 'registry.db'}"
    monkeypatch.setenv("IACRUN_DATABASE_URL", "postgresql://iacrun:pw@db.example:5433/runs")
    config = ServerConfig.from_env(home=tmp_path)
    assert config.database == "postgresql://iacrun:pw@db.example:5433/runs"
    assert config.shown_database == "postgresql db.example:5433/runs"  # no password
    monkeypatch.setenv("IACRUN_SERVER_LEASE_SECONDS", "12")
    assert ServerConfig.from_env(home=tmp_path).lease_seconds == 12
    assert ServerConfig.from_env(home=tmp_path, lease_seconds=5).lease_seconds == 5
    with pytest.raises(ConfigError, match="lease of 0 s"):
        ServerConfig(home=tmp_path, lease_seconds=0)
    monkeypatch.setenv("IACRUN_SERVER_UPLOAD_GRACE_HOURS", "soon")
    with pytest.raises(ConfigError, match="IACRUN_SERVER_UPLOAD_GRACE_HOURS='soon'"):
        ServerConfig.from_env(home=tmp_path)
