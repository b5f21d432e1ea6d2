"""Which GPUs a run gets on its machine: one picker, three ways of sharing a machine."""

from __future__ import annotations

from iacrun.orchestrator.models.resources import GPUSpec
from iacrun.orchestrator.offers.model import Gpu, pick_gpus

A100 = Gpu(name="A100", memory_gb=80)
L4 = Gpu(name="L4", memory_gb=24)
FOUR = (A100, A100, L4, A100)


def gpu(text: object) -> GPUSpec:
    return GPUSpec.model_validate(text)


def test_a_cloud_vm_gives_every_gpu_whatever_the_spec() -> None:
    assert pick_gpus(FOUR, None, "all") == "0,1,2,3"
    assert pick_gpus(FOUR, gpu("A100:1"), "all") == "0,1,2,3"
    assert pick_gpus((), gpu("A100:1"), "all") is None


def test_this_machine_gives_its_first_gpus_up_to_the_maximum_else_the_minimum() -> None:
    assert pick_gpus(FOUR, None, "first") is None
    assert pick_gpus((), gpu("A100:2"), "first") is None
    assert pick_gpus(FOUR, gpu("A100:2"), "first") == "0,1"
    assert pick_gpus(FOUR, gpu({"count": {"min": 2}}), "first") == "0,1"
    assert pick_gpus(FOUR, gpu({"count": {"min": 1, "max": 8}}), "first") == "0,1,2,3"
    assert pick_gpus(FOUR, gpu("L4:1"), "first") == "0"  # the first, not the L4 (as before)


def test_a_shared_host_splits_its_free_gpus_of_the_wanted_model() -> None:
    assert pick_gpus(FOUR, None, "split") is None
    assert pick_gpus(FOUR, gpu("A100:2"), "split") == "0,1"
    assert pick_gpus(FOUR, gpu("A100:2"), "split", free=[1, 2, 3]) == "1,3"
    assert pick_gpus(FOUR, gpu("L4:1"), "split") == "2"
    assert pick_gpus(FOUR, gpu("24GB..30GB"), "split") == "2"
    assert pick_gpus(FOUR, gpu({"count": {"min": 1}}), "split", free=[2, 3]) == "2,3"
    # a run that takes every GPU of the host sees the host as it is: no CUDA_VISIBLE_DEVICES
    assert pick_gpus(FOUR, gpu({"count": {"min": 1}}), "split") is None
