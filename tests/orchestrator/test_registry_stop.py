"""A stop recorded in the registry, and whether it is an abort (`iacrun stop -x`): on SQLite and
PostgreSQL alike, read by whoever carries the stop out."""

from __future__ import annotations

from pathlib import Path

from iacrun.orchestrator.registry import Registry


def test_an_abort_is_recorded_and_a_plain_stop_after_it_leaves_it(
    registry_target: str, tmp_path: Path
) -> None:
    registry = Registry(registry_target)
    run = registry.create("job", {"x": 1}, tmp_path)
    registry.update(run.id, status="running")
    assert not registry.get_by_id(run.id).abort

    stopping = registry.request_stop(run.id, "stopped by user")
    assert stopping is not None
    assert (stopping.status, stopping.reason, stopping.abort) == (
        "terminating",
        "stopped by user",
        False,
    )
    # an abort while the plain stop is carried out: it becomes one
    aborting = registry.request_stop(run.id, "aborted by user", abort=True)
    assert aborting is not None
    assert (aborting.status, aborting.reason, aborting.abort) == (
        "terminating",
        "aborted by user",
        True,
    )
    # a plain stop after it changes nothing: still an abort, with its reason
    again = registry.request_stop(run.id, "stopped by user")
    assert again is not None and (again.reason, again.abort) == ("aborted by user", True)
    assert [(e.status, e.reason) for e in registry.history(run.id)] == [
        ("submitted", None),
        ("running", None),
        ("terminating", "stopped by user"),
        ("terminating", "aborted by user"),
    ]
    # a run that ended is not stopped again
    registry.update(run.id, status="terminated")
    assert registry.request_stop(run.id, "aborted by user", abort=True) is None
    registry.close()
