"""The registry's database layer on both databases: SQL written once, placeholders and `%`
translated for PostgreSQL, unique rules, threads sharing one connection, a server restart."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from iacrun.orchestrator.paths import registry_file, registry_target
from iacrun.orchestrator.registry import Registry
from iacrun.orchestrator.registry.database import UniqueViolation, postgres_sql
from tests.pg import new_server


def test_placeholders_become_psycopgs_and_percent_signs_survive() -> None:
    assert postgres_sql("SELECT * FROM t WHERE a = ? AND b LIKE 'x%'") == (
        "SELECT * FROM t WHERE a = %s AND b LIKE 'x%%'"
    )
    # a `?` inside a quoted string or name is text, and a doubled quote stays inside the string
    assert postgres_sql("SELECT 'why?', \"q?\", 'it''s ?', ?") == (
        "SELECT 'why?', \"q?\", 'it''s ?', %s"
    )


def test_literals_and_parameters_read_back_alike(registry_target: str) -> None:
    db = Registry(registry_target).db
    row = db.row("SELECT ? AS given, 'a%' AS percent, 'why?' AS question", ("v%?",))
    assert row == {"given": "v%?", "percent": "a%", "question": "why?"}


def test_like_with_a_percent_in_the_sql_finds_the_rows(
    registry_target: str, tmp_path: Path
) -> None:
    registry = Registry(registry_target)
    registry.create("alpha", {}, tmp_path)
    registry.create("beta", {}, tmp_path)
    found = registry.db.rows("SELECT name FROM runs WHERE name LIKE 'al%'")
    assert [r["name"] for r in found] == ["alpha"]
    assert registry.names_in_use("be") == {"beta"}


def test_a_broken_unique_rule_is_one_exception_on_both(registry_target: str) -> None:
    db = Registry(registry_target).db
    db.execute("CREATE TABLE pairs (k TEXT NOT NULL UNIQUE)")
    db.execute("INSERT INTO pairs (k) VALUES (?)", ("a",))
    with pytest.raises(UniqueViolation):
        db.execute("INSERT INTO pairs (k) VALUES (?)", ("a",))
    # a transaction broken by it is rolled back whole, and the connection still works
    with pytest.raises(UniqueViolation), db.transaction() as tx:
        tx.execute("INSERT INTO pairs (k) VALUES (?)", ("b",))
        tx.execute("INSERT INTO pairs (k) VALUES (?)", ("a",))
    assert [r["k"] for r in db.rows("SELECT k FROM pairs ORDER BY k")] == ["a"]


def test_threads_share_one_registry(registry_target: str, tmp_path: Path) -> None:
    registry = Registry(registry_target)
    runs = [registry.create(f"t{i}", {}, tmp_path) for i in range(8)]
    errors: list[BaseException] = []

    def churn(run_id: int) -> None:
        try:
            for attempt in range(1, 26):
                registry.update(run_id, status="running", attempt=attempt)
                assert registry.transition(run_id, ("running",), status="pending") is not None
                registry.get_by_id(run_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(r.id,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for run in runs:
        assert registry.get_by_id(run.id).attempt == 25
        assert len(registry.history(run.id)) == 1 + 2 * 25


def test_the_registry_goes_on_after_postgresql_restarts(tmp_path: Path) -> None:
    server = new_server()
    try:
        registry = Registry(server.create_database())
        run = registry.create("survivor", {}, tmp_path)
        server.restart()  # every connection is dropped
        assert registry.get("survivor").id == run.id
        registry.update(run.id, status="running")
        assert registry.get_by_id(run.id).status == "running"
    finally:
        server.remove()


def test_a_transaction_cut_off_by_a_restart_fails_whole(tmp_path: Path) -> None:
    import psycopg

    server = new_server()
    try:
        registry = Registry(server.create_database())
        run = registry.create("cut", {}, tmp_path)
        with pytest.raises(psycopg.OperationalError), registry.db.transaction() as tx:
            tx.execute("UPDATE runs SET reason = ? WHERE id = ?", ("half", run.id))
            server.restart()
            tx.execute("UPDATE runs SET attempt = ? WHERE id = ?", (9, run.id))
        after = registry.get_by_id(run.id)  # connected again; nothing of it was kept
        assert (after.reason, after.attempt) == (None, 0)
    finally:
        server.remove()


def test_the_database_url_selects_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IACRUN_DATABASE_URL", raising=False)
    assert registry_target(tmp_path) == registry_file(tmp_path)
    monkeypatch.setenv("IACRUN_DATABASE_URL", "postgresql://u@db.example:5432/runs")
    assert registry_target(tmp_path) == "postgresql://u@db.example:5432/runs"


def test_the_cli_uses_the_database_url(cli: object, pg_url: str) -> None:
    from tests.conftest import Cli

    assert isinstance(cli, Cli)
    Registry(pg_url).create("in-postgres", {"commands": ["true"]}, Path(cli.cwd))
    cli.env["IACRUN_DATABASE_URL"] = pg_url
    out = cli("ps", "-a")
    assert out.returncode == 0, out.stderr
    assert "in-postgres" in out.stdout
    assert not (Path(cli.env["IACRUN_HOME"]) / "registry.db").exists()


def test_embedded_ps_imports_no_database_layer(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Registry(registry_file(home)).close()  # migrated, as after the first command
    code = (
        "import sys\n"
        "from iacrun.cli.main import run\n"
        "sys.argv = ['iacrun', 'ps', '-a']\n"
        "try:\n    run()\nexcept SystemExit:\n    pass\n"
        "heavy = ('sqlalchemy', 'alembic', 'psycopg', 'psycopg_binary')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "IACRUN_DATABASE_URL"}
    env["IACRUN_HOME"] = str(home)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_statement_waits_for_postgresql_to_come_back(tmp_path: Path) -> None:
    server = new_server()
    try:
        registry = Registry(server.create_database())
        run = registry.create("patient", {}, tmp_path)
        server.stop()
        back = threading.Timer(2.0, server.start)  # down for two seconds, as in a restart
        back.start()
        try:
            assert registry.get_by_id(run.id).name == "patient"  # waited, then answered
        finally:
            back.join()
    finally:
        server.remove()
