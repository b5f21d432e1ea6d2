"""Two iacrun homes sharing one state backend, on the stand-in cloud: neither touches the other's.

Each home has its own registry, keys and stand-in "VM", and both point `state.backend_url` in
their config.yml at one `file://` folder, as a team sharing an S3 bucket would. Both run `train`
at once: each gets a stack of its own (`train-1-<its home tag>`), `stacks` in each is truthful
(its own linked to its run, the other's shown as another home's, never a leak), `down --all` in
one leaves the other's run and machine alone, and `down STACK` of the other's refuses (with
`--force` it says whose the stack is, then destroys it).
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pulumi
import pytest

from iacrun.cli.stacks import stacks_text
from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.errors import StackOwnerError
from iacrun.orchestrator.models.runspec import build_run_spec
from iacrun.orchestrator.models.settings import load_settings
from iacrun.orchestrator.paths import config_file, home_tag
from iacrun.orchestrator.registry import RunRecord
from iacrun.stacks.engine import StackEngine
from iacrun.stacks.owner import OWNER_KEY, Owner, this_user
from tests.stacks.engine.support import OFFLINE_ENV
from tests.standin.backend import StandinBackend
from tests.standin.vm import vm_pids

pytestmark = [pytest.mark.engine, pytest.mark.sshd]


def team_home(tmp_path: Path, name: str, state: Path) -> tuple[Path, Path]:
    """An iacrun home whose config.yml names the shared state folder; and its VM's root."""
    home = tmp_path / name
    home.mkdir()
    config_file(home).write_text(f"state:\n  backend_url: file://{state}\n")
    return home, tmp_path / f"vm-{name}"


def orchestrator(home: Path, root: Path) -> Orchestrator:
    """The stand-in cloud for `home`, on the state backend its config.yml names."""
    settings = load_settings(config_file(home))
    url = settings.state.backend_url

    def engine() -> StackEngine:
        return StackEngine(home, url, env=OFFLINE_ENV)

    backend = StandinBackend(root, engine=engine(), home=home)
    return Orchestrator(home=home, settings=settings, backends=[backend], stack_engine=engine)


def wait_running(orch: Orchestrator, run: RunRecord) -> RunRecord:
    end = time.monotonic() + 180
    while (current := orch.registry.get_by_id(run.id)).status != "running":
        assert time.monotonic() < end, current
        assert current.status in ("submitted", "provisioning"), current
        time.sleep(0.2)
    return current


def test_two_homes_on_one_state_backend_never_touch_each_others_stack(tmp_path: Path) -> None:
    state = tmp_path / "team-state"
    (home_a, root_a), (home_b, root_b) = (team_home(tmp_path, n, state) for n in ("a", "b"))
    project = tmp_path / "project"
    project.mkdir()
    task = project / "train.dstack.yml"
    task.write_text("type: task\nname: train\ncommands:\n  - echo started; sleep 600\n")
    a, b = orchestrator(home_a, root_a), orchestrator(home_b, root_b)
    # a team sharing a backend shares the passphrase of the stacks' secrets (docs/stacks.md)
    a.stack_engine().passphrase_file.write_bytes(b.stack_engine().passphrase_file.read_bytes())
    tag_a, tag_b = home_tag(home_a), home_tag(home_b)
    assert tag_a != tag_b

    runs = {}
    for orch in (a, b):
        spec = build_run_spec(task, environ={})
        runs[orch.home] = orch.submit(spec, orch.plan(spec), supervise=False)
    run_a, run_b = runs[home_a], runs[home_b]
    assert (run_a.name, run_a.id) == (run_b.name, run_b.id) == ("train", 1)  # the same, at once
    supervisors = [
        threading.Thread(
            target=lambda h=home, r=root, run=run: (
                orchestrator(h, r).supervisor().supervise(run.id)
            ),
            daemon=True,
        )
        for home, root, run in ((home_a, root_a, run_a), (home_b, root_b, run_b))
    ]
    for thread in supervisors:
        thread.start()
    try:
        run_a, run_b = wait_running(a, run_a), wait_running(b, run_b)
        stack_a, stack_b = f"train-1-{tag_a}", f"train-1-{tag_b}"
        assert (run_a.stack_name, run_b.stack_name) == (stack_a, stack_b)
        assert sorted(a.stack_engine().stack_names()) == sorted([stack_a, stack_b])

        # `iacrun stacks` in each home: its own linked to its run, the other's another home's
        who = this_user()
        for orch, mine, run, theirs, their_tag in (
            (a, stack_a, run_a, stack_b, tag_b),
            (b, stack_b, run_b, stack_a, tag_a),
        ):
            rows = {row.stack.name: row for row in orch.stacks()}
            assert set(rows) == {mine, theirs}
            own, other = rows[mine], rows[theirs]
            assert (own.owner.label, own.run and own.run.id, own.leak) == ("me", run.id, False)
            assert (other.owner.kind, other.run, other.leak) == ("other", None, False)
            assert other.owner.label == f"{who} (home {their_tag})"
            text = stacks_text(list(rows.values()))
            assert "may still cost money" not in text and "iacrun down" not in text
            assert "1 stack belongs to other iacrun homes" in text

        # `iacrun down --all` in home a: what the CLI does, every active run of this home
        for name in [r.name for r in a.runs() if r.active]:
            a.down(name)
        assert a.registry.get_by_id(run_a.id).status == "terminated"
        assert a.stack_engine().stack_names() == [stack_b]
        assert not vm_pids(str(root_a))
        assert b.registry.get_by_id(run_b.id).status == "running"  # b's run goes on
        assert vm_pids(str(root_b))

        # `iacrun down STACK` of b's stack from a: refused, saying whose
        with pytest.raises(StackOwnerError) as caught:
            a.down(stack_b)
        assert str(caught.value) == (
            f"stack {stack_b} belongs to {who} (home {tag_b}), another iacrun home; left "
            f"alone. `iacrun down --force {stack_b}` destroys it anyway"
        )
        assert a.stack_engine().stack_names() == [stack_b] and vm_pids(str(root_b))
        assert b.registry.get_by_id(run_b.id).status == "running"

        # --force destroys another home's stack after saying whose it is: a leftover of b's
        # (b's live run is left running, so that it ends the ordinary way)
        leftover = f"old-7-{tag_b}"
        b.stack_engine().up(
            leftover, lambda: pulumi.export("n", 1), {OWNER_KEY: Owner(tag_b, who).value}
        )
        with pytest.raises(StackOwnerError):
            a.down(leftover)
        notes: list[str] = []
        assert a.down(leftover, force=True, on_note=notes.append) == (
            f"{leftover}: stack destroyed and removed"
        )
        assert notes == [
            f"stack {leftover} belongs to {who} (home {tag_b}), another iacrun home: "
            "destroying it (--force)"
        ]
        assert a.stack_engine().stack_names() == [stack_b]
        assert b.down(run_b.name) == "train: terminated (stopped by user)"
        assert a.stack_engine().stack_names() == []
    finally:
        for orch, run in ((a, run_a), (b, run_b)):
            with contextlib.suppress(Exception):
                orch.down(run.name)
        for thread in supervisors:
            thread.join(timeout=120)
    assert not vm_pids(str(root_b))
