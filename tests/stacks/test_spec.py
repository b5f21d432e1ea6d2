"""StackSpec: what a stack program gets; what it derives, and what it refuses."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import ValidationError

from iacrun.stacks.spec import StackSpec

from .conftest import job, make_spec


def test_deadline_and_tags_follow_max_duration() -> None:
    spec = make_spec("aws")
    assert spec.name_prefix == "iacrun-train-1"
    assert spec.deadline == 7200 + 1800
    assert spec.tags == {
        "Name": "iacrun-train-1",
        "iacrun:run": "train-1",
        "iacrun:stack": "train-1-7",
        "iacrun:expires-at": "2025-01-02T05:34:05Z",
        "managed-by": "iacrun",
    }
    bare = make_spec("azure", job_=job(max_duration=None))
    assert bare.deadline is None and bare.tags["iacrun:expires-at"] == "none"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ssh_cidrs": ["not-an-ip"]}, "is not an IP address or CIDR block"),
        ({"ssh_cidrs": []}, "at least 1 item"),
        ({"stack_name": "bad name"}, "not a valid stack name"),
        ({"ssh_public_key": "AAAA"}, "OpenSSH format"),
        ({"image": "ubuntu"}, "python and image exclude each other"),
        ({"max_duration": 60}, "job.max_duration"),
        ({"run_name": "other"}, "job.run_name differs"),
        ({"disk_gb": 4}, "greater than or equal to 8"),
        ({"expires_at": datetime(2025, 1, 1)}, "time zone"),
        ({"extra": 1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_specs_are_refused(change: dict[str, object], message: str) -> None:
    data = make_spec().model_dump()
    data.update(change)
    with pytest.raises(ValidationError, match=message):
        StackSpec.model_validate(data)
