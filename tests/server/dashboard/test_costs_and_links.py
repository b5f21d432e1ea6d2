"""Spend split between the days a run ran on; console links of a cloud stack's resources."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from iacrun.orchestrator.registry import Registry
from iacrun.server.dashboard.consoles import console_link
from iacrun.server.dashboard.costs import spend


def test_a_run_over_midnight_costs_on_both_days_and_an_active_one_until_now(
    tmp_path: Path,
) -> None:
    registry = Registry(tmp_path / "registry.db")
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp()
    midnight = datetime(2026, 11, 30, 0, 0, tzinfo=UTC).timestamp()
    over = registry.create("over", {}, tmp_path, submitted_by="alice")  # type: ignore[arg-type]
    registry.update(over.id, status="done", backend="aws", price=2.0,
                    started_at=midnight - 3600, finished_at=midnight + 1800)  # fmt: skip
    live = registry.create("live", {}, tmp_path)  # type: ignore[arg-type]
    registry.update(live.id, status="running", backend="azure", price=1.0,
                    started_at=now - 7200)  # fmt: skip
    old = registry.create("old", {}, tmp_path, submitted_by="bob")  # type: ignore[arg-type]
    registry.update(old.id, status="done", backend="aws", price=9.0,
                    started_at=now - 40 * 86400, finished_at=now - 39 * 86400)  # fmt: skip
    figures = spend(registry, now=now)
    days = dict(figures.days)
    assert len(figures.days) == 30 and figures.days[-1][0] == "2026-11-30"
    assert days["2026-11-29"] == 2.0  # the hour before midnight
    assert days["2026-11-30"] == 1.0 + 2.0  # half an hour at $2, two hours at $1 until now
    assert figures.users == [("alice", 3.0), ("local", 2.0)]  # bob's run is older than 30 days
    assert figures.backends == [("aws", 3.0), ("azure", 2.0)]
    assert figures.total == 5.0


def test_console_links_for_aws_and_azure_resources() -> None:
    assert console_link("aws", "eu-west-1", "aws:ec2/instance:Instance", "i-0abc") == (
        "https://eu-west-1.console.aws.amazon.com/ec2/home?region=eu-west-1"
        "#InstanceDetails:instanceId=i-0abc"
    )
    azure_id = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm"
    assert console_link("azure", "eastus", "azure-native:compute:VirtualMachine", azure_id) == (
        f"https://portal.azure.com/#@/resource{azure_id}"
    )
    assert console_link("aws", "eu-west-1", "aws:iam/role:Role", "r") is None  # no page known
    assert console_link("aws", "eu-west-1", "aws:ec2/instance:Instance", None) is None
    assert console_link("local", None, "x", "y") is None
