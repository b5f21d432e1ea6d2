"""ResourcesSpec as stored and read back."""

from __future__ import annotations


def test_disk_explicitness_survives_a_round_trip_through_json() -> None:
    """A run's spec is stored as JSON and read back by its supervisor, which re-plans: a default
    disk must stay a default there, or own hosts with less free disk are no longer offered."""
    from iacrun.orchestrator.models.resources import ResourcesSpec

    default = ResourcesSpec.model_validate_json(ResourcesSpec().model_dump_json())
    assert not default.disk_is_explicit
    asked = ResourcesSpec.model_validate_json(ResourcesSpec(disk="50GB..").model_dump_json())
    assert asked.disk_is_explicit and asked.disk.min == 50
