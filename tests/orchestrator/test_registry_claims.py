"""`Registry.claim_hosts` on SQLite and PostgreSQL: two registries (two connections, as two
processes have) claiming at once are serialized, so the second sees the first's claim."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from iacrun.orchestrator.registry import HostClaim, Registry, RunRecord


def claim(label: str) -> HostClaim:
    return HostClaim(label=label, address="127.0.0.9", port=int(label[-1]) + 2200)


def test_two_claims_at_once_never_take_one_host(registry_target: str, tmp_path: Path) -> None:
    registries = [Registry(registry_target), Registry(registry_target)]
    try:
        runs = [
            r.create(n, {"commands": ["true"]}, tmp_path)
            for r, n in zip(registries, "ab", strict=True)
        ]
        inside = threading.Barrier(2, timeout=5)

        def claimer(registry: Registry, run: RunRecord) -> None:
            def choose(others: list[RunRecord]) -> list[HostClaim]:
                held = {c.label for o in others for c in o.node_hosts or []}
                time.sleep(0.5)  # a slow choice: the other claimer tries meanwhile
                return [claim(h) for h in ("h1", "h2", "h3") if h not in held][:2]

            try:
                inside.wait()  # both start together
            finally:
                registry.claim_hosts(run.id, choose)

        threads = [
            threading.Thread(target=claimer, args=(r, run))
            for r, run in zip(registries, runs, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        claimed = [
            {c.label for c in registries[0].get_by_id(run.id).node_hosts or []} for run in runs
        ]
        # one got two hosts, the other the one left: never one host in both
        assert sorted(len(c) for c in claimed) == [1, 2], claimed
        assert not claimed[0] & claimed[1], claimed
    finally:
        for registry in registries:
            registry.close()


def test_a_claim_counts_while_its_run_is_active(registry_target: str, tmp_path: Path) -> None:
    registry = Registry(registry_target)
    try:
        first = registry.create("first", {"commands": ["true"]}, tmp_path)
        second = registry.create("second", {"commands": ["true"]}, tmp_path)
        registry.claim_hosts(first.id, lambda others: [claim("h1")])
        assert registry.get_by_id(first.id).node_hosts == [claim("h1")]
        holders: list[list[str]] = []

        def names(others: list[RunRecord]) -> list[HostClaim]:
            holders.append([o.name for o in others if o.node_hosts])
            return []

        registry.claim_hosts(second.id, names)
        registry.update(first.id, status="done")
        registry.claim_hosts(second.id, names)
        assert holders == [["first"], []]
    finally:
        registry.close()
