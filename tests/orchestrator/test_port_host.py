"""`Orchestrator.port_host`: which run's port a server may relay, and the one-line refusals
(a port the run does not list, a run not running yet, a run that ended)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.errors import InputError, RunNotFoundError, RunNotRunningError
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.models.runspec import Overrides, build_run_spec
from iacrun.orchestrator.registry import Registry
from tests.conftest import write_task


def orchestrator(tmp_path: Path) -> Orchestrator:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return Orchestrator(home=home, registry=Registry(home / "registry.db"))


def record(orch: Orchestrator, project: Path, name: str, ports: str) -> int:
    write_task(project, f"{ports}commands:\n  - sleep 1\n")
    spec = build_run_spec(project / "task.dstack.yml", Overrides(name=name))
    return orch.registry.create(name, spec, orch.home / "runs").id


def test_only_a_listed_port_of_a_running_run(tmp_path: Path, project: Path) -> None:
    orch = orchestrator(tmp_path)
    run_id = record(orch, project, "web", "ports: [8000, 8080]\n")
    with pytest.raises(RunNotRunningError) as early:
        orch.port_host("web", 8000)
    assert str(early.value) == (
        "run web is submitted: its port 8000 is reachable once it runs; try again then"
    )
    host = Host(kind="local", run_dir=str(tmp_path / "run"))
    orch.registry.update(run_id, status="running", host=host)
    run, found = orch.port_host("web", 8080)
    assert (run.name, found) == ("web", host)
    with pytest.raises(InputError) as other:
        orch.port_host("web", 9999)
    assert str(other.value) == (
        "port 9999 is not one of the run's ports (8000, 8080); forward one of those"
    )
    orch.registry.update(run_id, status="done")
    with pytest.raises(RunNotRunningError) as late:
        orch.port_host("web", 8000)
    assert str(late.value) == "run web has ended (done): its port 8000 is gone"
    with pytest.raises(RunNotFoundError):
        orch.port_host("nosuch", 8000)


def test_a_run_without_ports_says_so(tmp_path: Path, project: Path) -> None:
    orch = orchestrator(tmp_path)
    record(orch, project, "plain", "")
    with pytest.raises(InputError) as none:
        orch.port_host("plain", 8000)
    assert str(none.value) == (
        "port 8000 is not one of the run's ports: plain lists none (a task's ports: [...] "
        "lists them)"
    )
