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


def test_a_new_database_is_at_the_head(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.db")
    assert registry.db.schema_version() == SCHEMA_HEAD
    registry.close()


def test_processes_opening_a_new_database_at_once_migrate_it_once(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    code = (
        "import sys; from pathlib import Path; from iacrun.orchestrator.registry import Registry;"
        "from iacrun.orchestrator.models.runspec import RunSpec;"
        "r = Registry(Path(sys.argv[1]));"
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
