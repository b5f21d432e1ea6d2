"""The stacks in iacrun's Pulumi state backend, each linked to the run and the home that own it.

A cloud run's machine is a Pulumi stack; the registry records which run made which stack, and the
stack's name ends with the tag of the home that made it (`<run>-<id>-<home tag>`, see
`stack_spec.stack_name_for`). Reading both side by side says, for each stack:

- whose it is (`Ownership`): this home's (`me`: its name carries our tag, or a run of ours
  recorded it), another home's (`other`: another tag, or another owner recorded in the stack), or
  nobody's we can tell (`unknown`: an untagged name from an older version that no run of ours
  recorded);
- whether it is a leak: a stack of *ours* that no live run owns (its run is unknown here, or
  over), a machine or network that may still cost money. Another home's stacks are never leaks
  here: their own home judges them.

`Orchestrator.stacks`, `stack_state` and `destroy_stack` are the entry points; the CLI only renders
what they return.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from iacrun.orchestrator.backends.stack_spec import parse_stack_name
from iacrun.orchestrator.errors import RunNotFoundError, StackOwnerError
from iacrun.orchestrator.offers.model import is_cloud
from iacrun.stacks.owner import Owner

if TYPE_CHECKING:
    from iacrun.orchestrator.registry import Registry, RunRecord
    from iacrun.stacks.engine import StackEngine, StackState, StackSummary

#: makes the engine on the state backend; tests inject one on a temporary backend
StackEngineFactory = Callable[[], "StackEngine"]


@dataclass(frozen=True)
class Ownership:
    """Whose a stack is, as this home sees it."""

    kind: Literal["me", "other", "unknown"]
    #: the other home, when known (from the name's tag, with `who` from the recorded owner)
    owner: Owner | None = None

    @property
    def mine(self) -> bool:
        return self.kind == "me"

    @property
    def label(self) -> str:
        """The OWNER column: `me`, `alice@laptop (home k3x9q2ab)`, `home k3x9q2ab`, `unknown`."""
        if self.kind == "other" and self.owner is not None:
            return self.owner.describe()
        return self.kind

    @property
    def whose(self) -> str:
        """Whose it is, as a sentence's predicate: `belongs to ...` or `has no owner ...`."""
        if self.kind == "me":
            return "belongs to this iacrun home"
        if self.kind == "other":
            return f"belongs to {self.label}, another iacrun home"
        return "has no owner recorded (an older iacrun made it) and no run of this home made it"

    def refusal(self, stack_name: str) -> str:
        """Why `down STACK` leaves a stack that is not ours alone, and how to insist."""
        return (
            f"stack {stack_name} {self.whose}; left alone. `iacrun down --force {stack_name}` "
            "destroys it anyway"
        )


def ownership(
    name: str, recorded_owner: str | None, home_tag: str, recorded_names: set[str]
) -> Ownership:
    """Whose the stack `name` is: ours when a run of ours recorded the name or its tag is ours;
    another home's when its tag (or, for an untagged name, the owner its last update recorded)
    is another's; else unknown."""
    recorded = Owner.parse(recorded_owner)
    parsed = parse_stack_name(name)
    tag = parsed.home if parsed is not None and parsed.home else None
    tag = tag or (recorded.home if recorded is not None else None)
    if name in recorded_names or tag == home_tag:
        return Ownership("me")
    if tag is None:
        return Ownership("unknown")
    who = recorded.who if recorded is not None and recorded.home == tag else ""
    return Ownership("other", Owner(tag, who))


@dataclass(frozen=True)
class StackRow:
    """One stack of the state backend, the run of ours that owns it (if any), and whose it is."""

    stack: StackSummary
    run: RunRecord | None
    owner: Ownership

    @property
    def leak(self) -> bool:
        """A stack of ours that no live run owns (its run is unknown here, or over), or one an
        interrupted update left a create in that iacrun could not settle (stacks/pending.py)."""
        return self.owner.mine and (
            self.run is None or self.run.status.is_final or bool(self.stack.unresolved)
        )

    @property
    def note(self) -> str:
        if not self.leak:
            return ""
        if self.stack.unresolved:
            return f"leak: {len(self.stack.unresolved)} unresolved create"
        if self.run is None:
            return "leak: no run"
        return f"leak: run {self.run.status}"


@dataclass(frozen=True)
class StackDetail:
    """What the state backend holds for one stack, the run that owns it, and where it lives."""

    state: StackState
    run: RunRecord | None
    backend_url: str
    owner: Ownership


def recorded_stack_names(runs: Sequence[RunRecord]) -> set[str]:
    """The stack names this home's registry recorded."""
    return {run.stack_name for run in runs if run.stack_name}


def owners(runs: Sequence[RunRecord], home_tag: str) -> dict[str, RunRecord]:
    """Stack name → the run of this home it belongs to (the latest such run): the name the
    registry recorded, else the name a cloud backend gives the run (`<run>-<id>-<home tag>`).

    No run is linked to a name it did not record without our tag: another home's `train-1`
    (made by an older iacrun) is not our run `train` with id 1."""
    from iacrun.orchestrator.backends.stack_spec import stack_name_for

    latest_first = sorted(runs, key=lambda r: r.id, reverse=True)
    owner: dict[str, RunRecord] = {}
    for run in latest_first:  # a recorded stack name beats a derived one
        if run.stack_name:
            owner.setdefault(run.stack_name, run)
    for run in latest_first:
        owner.setdefault(stack_name_for(run.name, run.id, home_tag), run)
    return owner


def link_runs(
    summaries: Sequence[StackSummary], runs: Sequence[RunRecord], home_tag: str
) -> list[StackRow]:
    """Each stack with the run of ours it belongs to (or None) and its owner; by stack name."""
    owner = owners(runs, home_tag)
    recorded = recorded_stack_names(runs)
    return [
        StackRow(
            stack=s,
            run=owner.get(s.name),
            owner=ownership(s.name, s.owner, home_tag, recorded),
        )
        for s in sorted(summaries, key=_name)
    ]


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


def stack_keys(run: RunRecord, home_tag: str) -> list[str]:
    """The stack names a run of ours may own: the recorded one, else `<name>-<id>-<home tag>`."""
    from iacrun.orchestrator.backends.stack_spec import stack_name_for

    keys = [run.stack_name] if run.stack_name else []
    return [*keys, stack_name_for(run.name, run.id, home_tag)]


def find_stack(
    name: str, stacks: Sequence[str], registry: Registry, home_tag: str
) -> tuple[RunRecord | None, str]:
    """The run called `name` and its stack; else the stack called `name` and its run, if any."""
    from iacrun.orchestrator.errors import BackendError

    try:
        run: RunRecord | None = registry.get(name)
    except RunNotFoundError:
        run = None
    if run is not None:
        for candidate in stack_keys(run, home_tag):
            if candidate in stacks:
                return run, candidate
    if name in stacks:
        return owners(registry.runs(all_runs=True), home_tag).get(name), name
    if run is None:
        raise no_run_or_stack(name, stacks=True)
    raise BackendError(
        f"run {name} has no stack in the state backend (a local or SSH run has none, and a "
        "cloud run's stack is removed at teardown)"
    )


def refuse_unless_mine(stack_name: str, owner: Ownership) -> None:
    """StackOwnerError (one line: whose it is, and `--force`) for a stack that is not ours."""
    if not owner.mine:
        raise StackOwnerError(owner.refusal(stack_name))
