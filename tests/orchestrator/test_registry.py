"""The registry under concurrent processes, and the history it keeps."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from iacrun.orchestrator.errors import RunNameTakenError
from iacrun.orchestrator.models.names import generate_name
from iacrun.orchestrator.registry import Registry


def _claim(args: tuple[str, str, int, str]) -> str:
    db, name, index, root = args
    registry = Registry(db)
    try:
        registry.create(name, {"i": index}, Path(root))
        return "won"
    except RunNameTakenError:
        return "refused"


def test_one_active_run_per_name_across_processes(registry_target: str, tmp_path: Path) -> None:
    db = registry_target
    Registry(db).close()
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        results = pool.map(_claim, [(db, "race", i, str(tmp_path)) for i in range(16)])
    assert results.count("won") == 1 and results.count("refused") == 15


def _create_many(args: tuple[str, int, str]) -> int:
    db, worker, root = args
    registry = Registry(db)
    for i in range(25):
        registry.create(f"w{worker}-{i}", {}, Path(root))
    return 25


def test_concurrent_writers_lose_nothing(registry_target: str, tmp_path: Path) -> None:
    db = registry_target
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert sum(pool.map(_create_many, [(db, w, str(tmp_path)) for w in range(4)])) == 100
    assert len(Registry(db).runs(all_runs=True)) == 100


def test_history_and_reuse_of_a_finished_name(registry_target: str, tmp_path: Path) -> None:
    registry = Registry(registry_target)
    run = registry.create("job", {"x": 1}, tmp_path)
    assert run.local_dir == str(tmp_path / f"job-{run.id}")
    registry.update(run.id, status="running", started_at=1.0)
    assert registry.transition(run.id, ("submitted",), status="failed") is None  # CAS refused
    registry.update(run.id, status="done", reason="exited (0)", exit_code=0, finished_at=2.0)
    assert [(e.status, e.reason) for e in registry.history(run.id)] == [
        ("submitted", None),
        ("running", None),
        ("done", "exited (0)"),
    ]
    again = registry.create("job", {"x": 2}, tmp_path)  # a finished name can be used again
    assert registry.get("job").id == again.id
    with pytest.raises(RunNameTakenError, match="still active"):
        registry.create("job", {}, tmp_path)


def test_generated_names_count_up(registry_target: str, tmp_path: Path) -> None:
    import random

    registry = Registry(registry_target)
    first = generate_name(registry.names_in_use, random.Random(7))
    registry.create(first, {}, tmp_path)
    second = generate_name(registry.names_in_use, random.Random(7))
    assert first.endswith("-1") and second == first[:-1] + "2"
