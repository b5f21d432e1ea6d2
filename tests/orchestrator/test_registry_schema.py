"""The registry's schema: owned by Alembic, reached once across processes, free for readers."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from iacrun.orchestrator.registry import ACTIVE_STATUSES, Registry
from iacrun.orchestrator.registry.migrate import MIGRATIONS, SCHEMA_HEAD


def _migration(name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, MIGRATIONS / "versions" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schema_head_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory(str(MIGRATIONS)).get_heads()
    assert heads == [SCHEMA_HEAD]


def test_the_first_migration_knows_todays_active_statuses() -> None:
    # a migration is frozen in time: when the statuses change, a new one must follow
    assert repr(ACTIVE_STATUSES) == _migration("0001_runs").ACTIVE  # type: ignore[attr-defined]


def test_a_new_database_is_at_the_head(registry_target: str) -> None:
    registry = Registry(registry_target)
    assert registry.db.schema_version() == SCHEMA_HEAD
    registry.close()


def test_processes_opening_a_new_database_at_once_migrate_it_once(registry_target: str) -> None:
    # a lock file beside SQLite, an advisory lock on PostgreSQL: the losers wait, then find it done
    db = registry_target
    code = (
        "import sys; from iacrun.orchestrator.registry import Registry;"
        "r = Registry(sys.argv[1]);"
        "print(len(r.runs(all_runs=True)))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    assert outputs == ["0", "0", "0", "0"]
    assert Registry(db).db.schema_version() == SCHEMA_HEAD


def test_a_registry_at_the_previous_revision_gains_leases(registry_target: str) -> None:
    from alembic import command

    from iacrun.orchestrator.registry.migrate import alembic_config

    command.upgrade(alembic_config(_sqlalchemy_url(registry_target)), "0001_runs")  # type: ignore[arg-type]
    assert "lease_owner" not in _columns(registry_target)
    registry = Registry(registry_target)  # opening it migrates it
    assert registry.db.schema_version() == SCHEMA_HEAD
    assert {"lease_owner", "lease_expires"} <= _columns(registry_target)


def test_a_registry_before_aborts_gains_the_column_and_its_runs_read_as_plain_stops(
    registry_target: str, tmp_path: Path
) -> None:
    from alembic import command

    from iacrun.orchestrator.registry.migrate import alembic_config

    command.upgrade(alembic_config(_sqlalchemy_url(registry_target)), "0005_node_hosts")  # type: ignore[arg-type]
    assert "abort" not in _columns(registry_target)
    registry = Registry(registry_target)  # opening it migrates it
    assert registry.db.schema_version() == SCHEMA_HEAD
    assert "abort" in _columns(registry_target)
    run = registry.create("older", {"x": 1}, tmp_path)
    assert run.abort is False
    registry.close()


def _sqlalchemy_url(target: str) -> str:
    from iacrun.orchestrator.registry.database import is_postgres, sqlalchemy_url

    return sqlalchemy_url(target) if is_postgres(target) else f"sqlite:///{target}"


def _columns(target: str) -> set[str]:
    import sqlalchemy as sa

    engine = sa.create_engine(_sqlalchemy_url(target), poolclass=sa.pool.NullPool)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns("runs")}
    finally:
        engine.dispose()


def test_reading_a_migrated_registry_imports_no_sqlalchemy(tmp_path: Path) -> None:
    Registry(tmp_path / "registry.db").close()
    code = (
        "import sys; from pathlib import Path; from iacrun.orchestrator.registry import Registry;"
        "Registry(Path(sys.argv[1])).runs(all_runs=True);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "registry.db")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_many_processes_opening_one_new_database_at_once_all_open_it(tmp_path: Path) -> None:
    # switching a new file to WAL needs it to itself; SQLite answers "database is locked" at once
    # while another opener migrates it (two `iacrun up -d` on a fresh home once got a traceback)
    db = tmp_path / "registry.db"
    start = tmp_path / "go"
    code = (
        "import sys, time; from pathlib import Path\n"
        "while not Path(sys.argv[2]).exists(): time.sleep(0.001)\n"
        "from iacrun.orchestrator.registry import Registry\n"
        "Registry(Path(sys.argv[1])).runs(all_runs=True)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(db), str(start)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(12)
    ]
    start.touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 12, "\n".join(e for e in errors if e)
