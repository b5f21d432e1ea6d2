"""`RunService`: the verbs the CLI asks of whatever runs its tasks, as one typed Protocol.

`Orchestrator` (in this process, on this home) satisfies it as it is; the CLI's remote mode
(cli/remote.py) satisfies it over `iacrun.client.Client` and an `iacrun server`. The CLI is
written against this Protocol only, so both modes print the same tables, lines and exit codes.

What only makes sense in-process (`doctor`, `state`, the price catalog's `--refresh`) stays on
`Orchestrator` and is not here; `offers` and `stacks` differ in shape between the two (the
server sends the rows it lists), and the CLI renders each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from iacrun.orchestrator.host.cluster import NodeRecord
    from iacrun.orchestrator.models.runspec import RunSpec
    from iacrun.orchestrator.models.taskfile import PortMapping
    from iacrun.orchestrator.offers.model import Offer
    from iacrun.orchestrator.offers.plan import OfferPlan
    from iacrun.orchestrator.registry import RunRecord
    from iacrun.orchestrator.registry.schedules import ScheduleRecord


class RunService(Protocol):
    # ------------------------------------------------------------------ before the submit

    def ensure_name_free(self, name: str) -> None:
        """RunNameTakenError when an active run holds `name`."""
        ...

    def check_upload(self, spec: RunSpec) -> int:
        """The bytes the run will ship; InputError when over the upload limit."""
        ...

    def plan(self, spec: RunSpec) -> OfferPlan: ...

    def dry_run(self, spec: RunSpec) -> tuple[OfferPlan, str]:
        """The plan, and the text of what the first offer's backend would create."""
        ...

    def ready_offers(
        self,
        offers: Iterable[Offer],
        on_progress: Callable[[str], None] | None = None,
        *,
        spec: RunSpec | None = None,
    ) -> list[Offer]:
        """The offers whose backend passes its preflight; the first failure when none does."""
        ...

    def submit(self, spec: RunSpec, plan: OfferPlan) -> RunRecord: ...

    # ------------------------------------------------------------------ scheduled tasks

    def refuse_schedule(self, spec: RunSpec) -> None:
        """A one-line ConfigError for a spec with `schedule` where nothing can keep it
        (in-process); nothing through a server."""
        ...

    def schedule(self, spec: RunSpec) -> ScheduleRecord:
        """Keep a task with `schedule`: the server starts a run at each of its times."""
        ...

    def schedules(self, *, all_schedules: bool = False) -> list[ScheduleRecord]:
        """The active schedules with their next time (and the stopped ones with all)."""
        ...

    def stop_schedule(self, name: str, *, abort: bool = False) -> ScheduleRecord | None:
        """End the active schedule `name` and stop its run (killed at once with `abort`); None
        when none holds the name."""
        ...

    # ------------------------------------------------------------------ reading and following

    def runs(self, *, all_runs: bool = False) -> list[RunRecord]: ...

    def get(self, name: str) -> RunRecord: ...

    def nodes(self, run: RunRecord) -> list[NodeRecord]:
        """Every node's job of the run, in rank order (the master alone for a one-node run)."""
        ...

    def attach(
        self,
        name: str,
        sink: Callable[[bytes], None],
        *,
        ports: Sequence[PortMapping] = (),
        offset: int | None = None,
        on_event: Callable[[str], None] = ...,
    ) -> RunRecord:
        """Follow until the run ends (its log to `sink`, its progress lines to `on_event`);
        the final record."""
        ...

    def logs(
        self,
        name: str,
        sink: Callable[[bytes], None],
        *,
        offset: int = 0,
        follow: bool = False,
        node: int | None = None,
    ) -> tuple[int, RunRecord]:
        """The log (of the master, or of node `node` of a multi-node run) from `offset`,
        followed until the run ends with `follow`; the offset reached and the record."""
        ...

    def all_node_logs(
        self, name: str, sink: Callable[[bytes], None], *, follow: bool = False
    ) -> RunRecord:
        """Every node's log, each line prefixed with its rank."""
        ...

    # ------------------------------------------------------------------ stopping

    def request_stop(self, name: str, *, reason: str = ..., abort: bool = ...) -> RunRecord:
        """Record that the run must stop and return at once (its supervisor acts on it);
        `abort`: its job is killed at once, without its stop_duration grace."""
        ...

    def supervised(self, run: RunRecord) -> bool:
        """Whether something alive supervises the run (and so acts on a stop request)."""
        ...

    def wait_stopped(
        self, run: RunRecord, timeout: float, *, give_up: Callable[[], bool] = ...
    ) -> RunRecord: ...

    def stop(
        self, name: str, *, reason: str = ..., wait: float = ..., abort: bool = ...
    ) -> RunRecord:
        """Stop the job and tear the run down, returning once it ended; `abort` as above."""
        ...

    def down(
        self,
        name: str,
        *,
        reason: str = ...,
        force: bool = False,
        on_note: Callable[[str], None] = ...,
    ) -> str: ...
