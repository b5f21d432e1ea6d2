"""The stacks in iacrun's Pulumi state backend, each linked to the run that owns it.

A cloud run's machine is a Pulumi stack; the registry records which run made which stack.
Reading both side by side says which stacks are leaks: a stack no live run owns (its run is
unknown here, or over) is a machine or network that may still cost money. `Orchestrator.stacks`
and `Orchestrator.stack_state` are the entry points; the CLI only renders what they return.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from iacrun.orchestrator.backends.stack_spec import stack_name_for
from iacrun.orchestrator.errors import RunNotFoundError
from iacrun.orchestrator.offers.model import is_cloud

if TYPE_CHECKING:
    from iacrun.orchestrator.registry import Registry, RunRecord
    from iacrun.stacks.engine import StackEngine, StackState, StackSummary

#: makes the engine on the state backend; tests inject one on a temporary backend
StackEngineFactory = Callable[[], "StackEngine"]


@dataclass(frozen=True)
class StackRow:
    """One stack of the state backend and the run that owns it, if any."""

    stack: StackSummary
    run: RunRecord | None

    @property
    def leak(self) -> bool:
        """No live run owns the stack (its run is unknown here, or over), or an interrupted
        update left a create iacrun could not settle (stacks/pending.py)."""
        return self.run is None or self.run.status.is_final or bool(self.stack.unresolved)

    @property
    def note(self) -> str:
        if self.stack.unresolved:
            return f"leak: {len(self.stack.unresolved)} unresolved create"
        if self.run is None:
            return "leak: no run"
        if self.leak:
            return f"leak: run {self.run.status}"
        return ""


@dataclass(frozen=True)
class StackDetail:
    """What the state backend holds for one stack, the run that owns it, and where it lives."""

    state: StackState
    run: RunRecord | None
    backend_url: str


def derived_stack_name(run: RunRecord) -> str:
    """The name a cloud backend gives a run's stack."""
    return stack_name_for(run.name, run.id)


def stack_keys(run: RunRecord) -> list[str]:
    """The stack names a run may own: the recorded one, else `<name>-<id>` (the cloud backends'
    choice), else the run's name."""
    keys = [run.stack_name] if run.stack_name else []
    return [*keys, derived_stack_name(run), run.name]


def owners(runs: Sequence[RunRecord]) -> dict[str, RunRecord]:
    """Stack name → the run it belongs to (the latest such run)."""
    latest_first = sorted(runs, key=lambda r: r.id, reverse=True)
    owner: dict[str, RunRecord] = {}
    for run in latest_first:  # a recorded stack name beats a derived one
        if run.stack_name:
            owner.setdefault(run.stack_name, run)
    for derive in (derived_stack_name, lambda r: r.name):
        for run in latest_first:
            owner.setdefault(derive(run), run)
    return owner


def link_runs(summaries: Sequence[StackSummary], runs: Sequence[RunRecord]) -> list[StackRow]:
    """Each stack with the run it belongs to, or None; sorted by stack name."""
    owner = owners(runs)
    return [StackRow(stack=s, run=owner.get(s.name)) for s in sorted(summaries, key=_name)]


def _name(summary: StackSummary) -> str:
    return summary.name


def no_run_or_stack(name: str, *, stacks: bool) -> RunNotFoundError:
    """`down`/`state` of a name that is neither a run nor (where stacks may be) a stack."""
    where = "iacrun ps -a and iacrun stacks" if stacks else "iacrun ps -a"
    return RunNotFoundError(f"no run or stack named {name!r}; see {where}")


def stackless_reason(run: RunRecord) -> str | None:
    """Why `run` has no stack, known from the registry alone; None when it may have one."""
    if run.stack_name or run.backend is None or is_cloud(run.backend):
        return None  # a run not placed yet may be getting a cloud stack right now
    return f"run {run.name!r} runs on the {run.backend} backend; it has no stack"


def find_stack(
    name: str, stacks: Sequence[str], registry: Registry
) -> tuple[RunRecord | None, str]:
    """The run called `name` and its stack; else the stack called `name` and its run, if any."""
    from iacrun.orchestrator.errors import BackendError

    try:
        run: RunRecord | None = registry.get(name)
    except RunNotFoundError:
        run = None
    if run is not None:
        for candidate in stack_keys(run):
            if candidate in stacks:
                return run, candidate
    if name in stacks:
        return owners(registry.runs(all_runs=True)).get(name), name
    if run is None:
        raise no_run_or_stack(name, stacks=True)
    raise BackendError(
        f"run {name} has no stack in the state backend (a local or SSH run has none, and a "
        "cloud run's stack is removed at teardown)"
    )
