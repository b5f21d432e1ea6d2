"""`--gpu/--cpu/--memory/--disk` and the policy flags: one parser for `iacrun up` and `offers`."""

from __future__ import annotations

from pathlib import Path

import pytest

from iacrun.orchestrator.errors import InputError
from iacrun.orchestrator.models.resources import ResourcesSpec
from iacrun.orchestrator.models.runspec import (
    Overrides,
    apply_resource_flags,
    build_run_spec,
    requirements_for,
)
from iacrun.orchestrator.models.units import Range
from tests.conftest import write_task


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("gpu", "80GB..8GB", "GPU memory range 80GB..8GB is inverted"),
        ("gpu", "A100:80QB", "is not a GPU name, count or memory"),
        ("cpu", "lots", "'lots' is not a cpu count"),
        ("memory", "64GB..8GB", "memory range 64GB..8GB is inverted"),
        ("disk", "x", "'x' is not a size"),
    ],
)
def test_a_bad_flag_reads_the_same_for_up_and_offers(
    tmp_path: Path, flag: str, value: str, message: str
) -> None:
    task = write_task(tmp_path, "commands: [echo]\n")
    overrides = Overrides.model_validate({flag: value})
    with pytest.raises(InputError) as up:
        build_run_spec(task, overrides, environ={})
    with pytest.raises(InputError) as offers:
        requirements_for(None, overrides)
    assert str(up.value) == str(offers.value)
    assert str(up.value).startswith(f"resources flag --{flag}: ") and message in str(up.value)
    assert "\n" not in str(up.value)


def test_flags_alone_ask_with_dstack_defaults() -> None:
    req = requirements_for(None, Overrides(gpu="A100:2", max_price=3.0, regions=["eu-north-1"]))
    res = req.resources
    assert res.gpu is not None and res.gpu.name == ["A100"] and res.gpu.count == Range(min=2, max=2)
    assert res.cpu.count == Range(min=2) and res.memory == Range(min=8)
    assert res.disk == Range(min=100) and not res.disk_is_explicit
    assert (req.spot_policy, req.max_price, req.regions) == ("on-demand", 3.0, ["eu-north-1"])
    assert req.backends is None and req.instance_types is None


def test_flags_beat_the_task_file_whose_variables_need_not_be_set(tmp_path: Path) -> None:
    task = write_task(
        tmp_path,
        "env: [NOT_SET_IN_THIS_SHELL]\ncommands: [echo]\nresources: {gpu: A100:8, disk: 500GB..}\n"
        "spot_policy: spot\n",
    )
    req = requirements_for(task, Overrides(gpu="L4", spot_policy="auto"))
    assert req.resources.gpu is not None and req.resources.gpu.name == ["L4"]
    assert req.resources.disk == Range(min=500) and req.resources.disk_is_explicit
    assert req.spot_policy == "auto"
    assert requirements_for(task, Overrides()).spot_policy == "spot"


def test_no_flag_leaves_the_resources_as_they_are() -> None:
    spec = ResourcesSpec.model_validate({"memory": "32GB.."})
    assert apply_resource_flags(spec, Overrides()) is spec
    merged = apply_resource_flags(spec, Overrides(disk="200GB.."))
    assert merged.memory == Range(min=32) and merged.disk == Range(min=200)
    assert merged.model_fields_set == {"memory", "disk"}
