"""Provisioning with failover: try offers in order until one gives a machine.

The order (`failover_order`): the cheapest offer first; when it fails for capacity, the same
instance type in its other regions (cheapest region first), then that cloud's other instance
types, then the other clouds. A QuotaError also skips the other sizes of the same family in the
same region and cloud, which share the quota. When every offer has failed, or none is available
now (every SSH host busy or unreachable), and the run's retry policy includes `no-capacity`, the
loop waits (for own hosts 5 s doubling to 60 s; when clouds take part, whose every try may create
a stack, 30 s doubling to 5 min; jittered), re-plans the offers and starts again until the retry
duration has passed; each wait says what it waits for. Among runs waiting for the same machine,
a run of higher `priority` (0-100, dstack's) gets it first: the others skip that offer while the
higher one waits. Clock, sleep and jitter are injected, so tests run the whole loop instantly.

Backends must leave nothing behind when they raise CapacityError or QuotaError (their partial
stack destroyed); any other error stops the loop and propagates unchanged.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from iacrun.orchestrator.errors import CapacityError, NoOfferError, QuotaError
from iacrun.orchestrator.models.units import format_duration, format_price
from iacrun.orchestrator.offers.model import is_cloud

if TYPE_CHECKING:
    from iacrun.orchestrator.backends.base import Backend, ProgressCallback
    from iacrun.orchestrator.host.transport import Host
    from iacrun.orchestrator.models.taskfile import RetrySpec
    from iacrun.orchestrator.offers.model import Offer
    from iacrun.orchestrator.registry import RunRecord


@dataclass(frozen=True)
class Backoff:
    """Seconds to wait before retry round `n` (from 1): doubling from `first`, up to `most`,
    each spread by up to ±`jitter` (a fraction) so that runs waiting for one host do not all
    ask again in the same second."""

    first: float = 5.0
    most: float = 60.0
    jitter: float = 0.2

    def delay(self, attempt: int, spread: Callable[[], float] = random.random) -> float:
        base = float(min(self.most, self.first * 2 ** max(0, attempt - 1)))
        if not self.jitter:
            return base
        return round(base * (1 + self.jitter * (2 * spread() - 1)), 1)


#: waiting for your own hosts: they free up when a run ends, so ask often
HOSTS = Backoff()
#: waiting for a cloud: each round may create (and destroy) a stack per offer, so ask less often
CLOUD_BACKOFF = Backoff(first=30.0, most=300.0)


@dataclass(frozen=True)
class Attempt:
    offer: Offer
    reason: str


def instance_family(instance_type: str) -> str:
    """`g6e.xlarge` → `g6e`; `Standard_NC24ads_A100_v4` → `Standard_NCads_A_v` (sizes share it)."""
    if "." in instance_type:
        return instance_type.split(".", 1)[0]
    return re.sub(r"\d+", "", instance_type)


def failover_order(offers: Sequence[Offer]) -> list[Offer]:
    """Available offers in the order they are tried: cheapest first, then region, type, cloud."""
    by_price = sorted(
        (o for o in offers if o.available),
        key=lambda o: (o.price, o.backend, o.instance_type, o.region, o.spot),
    )
    cloud_rank: dict[str, int] = {}
    type_rank: dict[tuple[str, str, bool], int] = {}
    for i, o in enumerate(by_price):
        cloud_rank.setdefault(o.backend, i)
        type_rank.setdefault((o.backend, o.instance_type, o.spot), i)
    return sorted(
        by_price,
        key=lambda o: (
            cloud_rank[o.backend],
            type_rank[(o.backend, o.instance_type, o.spot)],
            o.price,
            o.region,
        ),
    )


def describe_offer(o: Offer) -> str:
    spot = " spot" if o.spot else ""
    return f"{o.backend} {o.instance_type}{spot} in {o.region} at {format_price(o.price)}/h"


def provision_with_failover(
    backends: Mapping[str, Backend],
    offers: Sequence[Offer],
    run: RunRecord,
    retry: RetrySpec | None,
    progress: ProgressCallback,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    backoff: Backoff | None = None,
    on_wait: Callable[[float, str], None] | None = None,
    replan: Callable[[], Sequence[Offer]] | None = None,
    wall: Callable[[], float] = time.time,
    outranked: Callable[[Offer], str | None] | None = None,
) -> tuple[Offer, Host]:
    """Provision the first offer that succeeds; returns it with its Host.

    Raises NoOfferError when no offer is available and the run does not retry on no capacity,
    CapacityError (one line, starting "no capacity", listing what was tried or waited for) when
    every offer failed for capacity or quota, or none became available, and no retry time is
    left. `on_wait` is called with the seconds and what is waited for before each back-off (to
    mark the run pending); `replan` gives the offers afresh for each round after the first.
    `outranked(offer)` says why an offer is left to another run (a run of higher `priority`
    waiting for the same machine), or None: such an offer is skipped this round, like a busy one.
    """
    retrying = retry is not None and "no-capacity" in retry.on_events
    current = list(offers)
    if not failover_order(current) and not retrying:
        raise NoOfferError("no offer is available to provision")
    started = clock()
    deadline = started + retry.duration if retry is not None and retrying else None
    rounds = 0
    while True:
        rounds += 1
        if rounds > 1 and replan is not None:
            current = list(replan())
        order = failover_order(current)
        failures = _one_round(backends, order, run, progress, outranked) if order else []
        if isinstance(failures, tuple):
            return failures
        # what keeps a machine from this run: failed attempts, then offers unavailable now
        if retrying:
            failures += [Attempt(o, o.note or "unavailable") for o in current if not o.available]
        now = clock()
        if deadline is None or now >= deadline:
            raise CapacityError(_give_up(failures, now - started if deadline else None))
        pace = backoff or (CLOUD_BACKOFF if any(is_cloud(o.backend) for o in current) else HOSTS)
        wait = min(pace.delay(rounds), deadline - now)
        what = _waiting_for(failures)
        until = time.strftime("%H:%M:%S", time.localtime(wall() + deadline - now))
        progress(f"waiting {format_duration(wait)} for a machine: {what} (retry until {until})")
        if on_wait is not None:
            on_wait(wait, f"waiting for a machine: {what}")
        sleep(wait)


def _waiting_for(failures: Sequence[Attempt]) -> str:
    """`ssh gpu1: busy with train-1; aws g6.xlarge us-east-1: no capacity` (three at most)."""
    parts = [f"{_where(a.offer)}: {a.reason}" for a in failures[:3]]
    more = f" and {len(failures) - 3} more" if len(failures) > 3 else ""
    return "; ".join(parts) + more if parts else "no offer"


def _one_round(
    backends: Mapping[str, Backend],
    order: Sequence[Offer],
    run: RunRecord,
    progress: ProgressCallback,
    outranked: Callable[[Offer], str | None] | None = None,
) -> tuple[Offer, Host] | list[Attempt]:
    failures: list[Attempt] = []
    no_quota: set[tuple[str, str, str]] = set()
    for offer in order:
        yielded = outranked(offer) if outranked is not None else None
        if yielded is not None:
            failures.append(Attempt(offer, yielded))
            continue
        family = (offer.backend, offer.region, instance_family(offer.instance_type))
        if family in no_quota:
            failures.append(Attempt(offer, "quota"))
            continue
        backend = backends.get(offer.backend)
        if backend is None:
            failures.append(Attempt(offer, "backend not configured"))
            continue
        progress(f"provisioning {describe_offer(offer)}")
        try:
            host = backend.provision(run, offer, progress)
        except QuotaError as exc:
            no_quota.add(family)
            failures.append(Attempt(offer, f"quota: {exc}"))
            progress(f"{offer.backend} quota in {offer.region}: {exc}; trying the next offer")
        except CapacityError as exc:
            failures.append(Attempt(offer, f"no capacity: {exc}" if str(exc) else "no capacity"))
            progress(f"no capacity for {describe_offer(offer)}; trying the next offer")
        else:
            return offer, host
    return failures


def _give_up(failures: Sequence[Attempt], retried_for: float | None) -> str:
    if not failures:
        return "no capacity: no offer left to try"
    tried = [a for a in failures if a.reason != "quota"] or list(failures)
    listed = "; ".join(f"{_where(a.offer)} ({a.reason})" for a in tried[:3])
    more = f" and {len(failures) - 3} more" if len(failures) > 3 else ""
    after = f" after retrying for {format_duration(retried_for)}" if retried_for else ""
    which = f" for any of {len(failures)} offers" if len(failures) > 1 else ""
    return f"no capacity{which}{after}: {listed}{more}"


def _where(o: Offer) -> str:
    """`aws g6.xlarge us-east-1`; an SSH host, whose region is its name, once: `ssh gpu1`."""
    if o.region == o.instance_type:
        return f"{o.backend} {o.instance_type}"
    return f"{o.backend} {o.instance_type} {o.region}"
