"""Progress from engine events recorded from the real engine.

The recordings are in tests/stacks/engine/data/events_*.json.

The recordings are the raw JSON events `pulumi up`/`destroy` sent to the Automation API for a
two-resource program (`net`, then `vm` depending on it), debug diagnostics left out:
events_up.json (success), events_fail.json (`vm` failed with an AWS capacity error) and
events_destroy.json. They go through Pulumi's own `EngineEvent.from_json`, as in a real run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iacrun.orchestrator.errors import CapacityError
from iacrun.stacks.errors import translate
from iacrun.stacks.progress import (
    EventRecord,
    Progress,
    ProgressTracker,
    counts,
    format_elapsed,
    urn_name,
    urn_type,
)

DATA = Path(__file__).parent / "data"


def recorded(name: str) -> list[EventRecord]:
    from pulumi.automation.events import EngineEvent

    raw: list[dict[str, Any]] = json.loads((DATA / f"events_{name}.json").read_text())
    return [EventRecord.from_engine_event(EngineEvent.from_json(item)) for item in raw]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def replay(tracker: ProgressTracker, events: list[EventRecord], clock: Clock) -> list[Progress]:
    shown = []
    for event in events:
        clock.now += 1.5
        progress = tracker.feed(event)
        if progress is not None:
            shown.append(progress)
    return shown


def test_up_counts_created_resources_out_of_declared() -> None:
    clock = Clock()
    tracker = ProgressTracker("up", clock=clock)
    tracker.declare("pulumi-python:dynamic:Resource", "net")
    tracker.declare("pulumi-python:dynamic:Resource", "vm")
    shown = replay(tracker, recorded("up"), clock)
    lines = [p.render() for p in shown]
    assert lines[0].startswith("creating 0/2 resources")
    assert "(pulumi-python:dynamic:Resource net)" in lines[0]
    assert [p.done for p in shown] == [0, 1, 1, 2, 2]
    assert shown[-1].finished
    assert lines[-1] == f"created 2/2 resources, {format_elapsed(shown[-1].elapsed)} elapsed"
    assert tracker.errors == []


def test_planned_grows_with_what_the_engine_reports_when_nothing_was_declared() -> None:
    clock = Clock()
    tracker = ProgressTracker("up", planned=1, clock=clock)
    shown = replay(tracker, recorded("up"), clock)
    assert shown[-1].planned == 2
    assert shown[-1].done == 2


def test_failed_update_counts_the_failure_and_keeps_the_error_diagnostic() -> None:
    clock = Clock()
    tracker = ProgressTracker("up", planned=2, clock=clock)
    shown = replay(tracker, recorded("fail"), clock)
    assert shown[-1].done == 1
    assert shown[-1].failed == 1
    assert "1 failed" in shown[-1].render()
    assert any("InsufficientInstanceCapacity" in text for text in tracker.errors)
    error = translate(tracker.errors)
    assert isinstance(error, CapacityError)
    assert "p4d.24xlarge" in str(error)


def test_destroy_counts_deleted_resources() -> None:
    clock = Clock()
    tracker = ProgressTracker("destroy", planned=2, clock=clock)
    shown = replay(tracker, recorded("destroy"), clock)
    assert shown[-1].render().startswith("deleted 2/2 resources")
    assert max(p.done for p in shown) == 2


def test_tick_refreshes_elapsed_only() -> None:
    clock = Clock()
    tracker = ProgressTracker("up", planned=3, clock=clock)
    clock.now += 75
    progress = tracker.tick()
    assert progress.render() == "creating 0/3 resources, 1m15s elapsed"


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59.9, "59s"), (61, "1m01s"), (3600, "1h00m"), (7322, "2h02m")]
)
def test_format_elapsed(seconds: float, text: str) -> None:
    assert format_elapsed(seconds) == text


def test_urns() -> None:
    urn = "urn:pulumi:brave-otter-1::iacrun::aws:ec2/vpc:Vpc$aws:ec2/subnet:Subnet::iacrun-subnet"
    assert urn_name(urn) == "iacrun-subnet"
    assert urn_type(urn) == "aws:ec2/subnet:Subnet"
    assert not counts("pulumi:pulumi:Stack", "urn:pulumi:s::iacrun::pulumi:pulumi:Stack::iacrun-s")
    assert not counts(
        "pulumi:providers:aws", "urn:pulumi:s::iacrun::pulumi:providers:aws::default_7_11_0"
    )
    assert counts("pulumi:providers:aws", "urn:pulumi:s::iacrun::pulumi:providers:aws::us-west-2")
    assert counts("aws:ec2/instance:Instance", urn)
