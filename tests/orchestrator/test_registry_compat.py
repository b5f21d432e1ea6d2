"""The typed run record reads back what earlier versions wrote, and one set of final statuses.

`data/registry-25a20a0.db` was written by iacrun at commit 25a20a0 (the untyped record): a local
run `trained` that ran to `done` (with host and offer), a run `broken` that failed before it
had a host, and a run `busy` still `running` on a local host with GPU 0.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from iacrun.cli.render import run_json, runs_table
from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.models.runspec import RunSpec
from iacrun.orchestrator.models.taskfile import PortMapping
from iacrun.orchestrator.offers.model import Offer
from iacrun.orchestrator.registry import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    Registry,
    RunStatus,
)
from iacrun.orchestrator.runner import runner
from iacrun.stacks import vmguard

OLD = Path(__file__).parent / "data" / "registry-25a20a0.db"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "iacrun"
    home.mkdir()
    shutil.copy(OLD, home / "registry.db")
    return home


def test_every_row_of_the_previous_version_loads_typed(home: Path) -> None:
    runs = {r.name: r for r in Registry(home / "registry.db").runs(all_runs=True)}
    assert set(runs) == {"trained", "broken", "busy"}

    trained = runs["trained"]
    assert trained.status is RunStatus.DONE and trained.status.is_final and not trained.active
    assert isinstance(trained.spec, RunSpec) and trained.spec.commands == ["echo trained"]
    assert trained.spec.args == ["--epochs", "3"] and trained.spec.env == {"MODE": "fast"}
    assert trained.spec.ports == [PortMapping(local_port=8080, container_port=8080)]
    assert trained.spec.retry is not None and trained.spec.retry.on_events == ["error"]
    assert trained.spec.retry.duration == 600 and trained.spec.max_duration == 3600
    assert trained.spec.requirements.resources.shm_size == 1.0
    assert isinstance(trained.host, Host) and trained.host.kind == "local"
    assert isinstance(trained.offer, Offer) and trained.offer.backend == "local"
    assert trained.exit_code == 0 and trained.reason == "exited (0)"

    broken = runs["broken"]
    assert broken.status is RunStatus.FAILED and broken.host is None and broken.offer is None
    assert broken.reason == "no capacity for any of 1 offers" and broken.spec.retry is None

    busy = runs["busy"]
    assert busy.status is RunStatus.RUNNING and busy.active and busy.status.is_active
    assert busy.host is not None and busy.host.gpus == "0" and busy.spec.max_duration is None

    history = Registry(home / "registry.db").history(trained.id)
    assert [e.status for e in history] == [
        "submitted",
        "provisioning",
        "running",
        "terminating",
        "done",
    ]
    assert all(isinstance(e.status, RunStatus) for e in history)


def test_ps_lists_the_previous_version_runs(home: Path) -> None:
    runs = Orchestrator(home=home).runs(all_runs=True)
    table = runs_table(runs).splitlines()
    assert table[0].split()[:5] == ["NAME", "BACKEND", "RESOURCES", "PRICE", "STATUS"]
    rows = {line.split()[0]: line for line in table[1:]}
    assert "done (exited (0))" in rows["trained"] and "2xCPU" in rows["trained"]
    assert "failed (no capacity for any of 1 offers)" in rows["broken"]
    assert " running " in rows["busy"]
    as_json = {r.name: run_json(r) for r in runs}
    assert as_json["trained"]["status"] == "done" and as_json["busy"]["host"]["gpus"] == "0"
    json.dumps(as_json)


def test_unknown_keys_and_unreadable_parts_do_not_stop_reading(home: Path) -> None:
    """What a newer (or much older) version wrote: extra keys, missing or changed parts."""
    db = sqlite3.connect(home / "registry.db")
    spec, offer = db.execute("SELECT spec, offer FROM runs WHERE name = 'trained'").fetchone()
    newer = json.loads(spec)
    newer["from_the_future"] = {"x": 1}
    newer["requirements"]["resources"]["tpu"] = "v5"
    newer["requirements"]["resources"]["cpu"]["sockets"] = 2
    newer["retry"]["on_events"] = ["error", "solar-flare"]
    del newer["stop_duration"], newer["args"]
    newer["working_dir"] = {"a": "mapping now"}
    changed_offer = json.loads(offer)
    changed_offer["resources"]["gpus"] = "not a list"
    db.execute(
        "UPDATE runs SET spec = ?, offer = ?, host = ? WHERE name = 'trained'",
        (json.dumps(newer), json.dumps(changed_offer), json.dumps({"kind": "carrier-pigeon"})),
    )
    db.execute("UPDATE runs SET spec = 'not json at all' WHERE name = 'broken'")
    db.commit()
    db.close()

    runs = {r.name: r for r in Registry(home / "registry.db").runs(all_runs=True)}
    trained = runs["trained"]
    assert trained.spec.commands == ["echo trained"] and trained.spec.env == {"MODE": "fast"}
    assert trained.spec.stop_duration == 15 and trained.spec.args == []
    assert trained.spec.working_dir == "."
    assert trained.spec.requirements.resources.cpu.count.min == 1
    assert trained.spec.requirements.resources.shm_size == 1.0
    assert trained.spec.retry is not None and trained.spec.retry.on_events == ["error"]
    assert trained.offer is not None and trained.offer.resources.gpus == ()
    assert trained.offer.backend == "local" and trained.offer.resources.cpus == 2
    assert trained.host is None
    assert runs["broken"].spec.commands == [] and runs["broken"].status is RunStatus.FAILED


def test_one_set_of_final_statuses() -> None:
    """The runner and the VM guard run where iacrun is not installed: their copies must agree."""
    assert tuple(s.value for s in RunStatus if s.is_final) == FINAL_STATUSES
    assert runner.FINAL_STATUSES == FINAL_STATUSES
    assert vmguard.FINAL == FINAL_STATUSES
    assert set(ACTIVE_STATUSES) | set(FINAL_STATUSES) == {s.value for s in RunStatus}
    assert not set(ACTIVE_STATUSES) & set(FINAL_STATUSES)
