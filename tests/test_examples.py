"""Every task file under examples/ loads as it is, and the scripts beside them compile."""

from __future__ import annotations

import py_compile
from pathlib import Path

import pytest

from iacrun.orchestrator.models.runspec import build_run_spec

EXAMPLES = Path(__file__).parents[1] / "examples"
TASKS = sorted(EXAMPLES.rglob("*.dstack.yml"))


def test_there_are_examples() -> None:
    names = {p.relative_to(EXAMPLES).as_posix() for p in TASKS}
    assert {"distributed/torchrun.dstack.yml", "distributed/tcp-sum.dstack.yml"} <= names


@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.relative_to(EXAMPLES).as_posix())
def test_example_loads(path: Path) -> None:
    spec = build_run_spec(path, environ={})
    assert spec.commands


@pytest.mark.parametrize(
    "path", sorted(EXAMPLES.rglob("*.py")), ids=lambda p: p.relative_to(EXAMPLES).as_posix()
)
def test_example_script_compiles(path: Path, tmp_path: Path) -> None:
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)


def test_the_torchrun_example_takes_its_shape_from_the_node_variables() -> None:
    spec = build_run_spec(EXAMPLES / "distributed" / "torchrun.dstack.yml", environ={})
    assert spec.nodes == 2
    command = " ".join(spec.commands)
    for flag in (
        "--nnodes=$DSTACK_NODES_NUM",
        "--node_rank=$DSTACK_NODE_RANK",
        "--master_addr=$DSTACK_MASTER_NODE_IP",
        "--nproc-per-node=$DSTACK_GPUS_PER_NODE",
    ):
        assert flag in command
    assert command.rstrip().endswith("train_ddp.py")
    assert (EXAMPLES / "distributed" / "train_ddp.py").is_file()
