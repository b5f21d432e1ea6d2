"""The task file as data: shorthands, defaults, precedence, interpolation."""

from __future__ import annotations

from pathlib import Path

import pytest

from iacrun.orchestrator.errors import ConfigError, InputError
from iacrun.orchestrator.models.resources import GPUSpec, ResourcesSpec
from iacrun.orchestrator.models.runspec import (
    Overrides,
    build_run_spec,
    interpolate_commands,
    resolve_env,
)
from iacrun.orchestrator.models.taskfile import PortMapping, TaskConfig
from iacrun.orchestrator.models.units import Range, parse_duration, parse_range, parse_size_gb
from tests.conftest import write_task


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80GB", {"memory": Range(min=80, max=80), "count": Range(min=1, max=1)}),
        ("A100", {"name": ["A100"], "count": Range(min=1, max=1)}),
        ("A100:2", {"name": ["A100"], "count": Range(min=2, max=2)}),
        ("24GB..80GB", {"memory": Range(min=24, max=80)}),
        ("24GB..", {"memory": Range(min=24)}),
        ("A10G,L4", {"name": ["A10G", "L4"]}),
        (
            "H100:80GB:8",
            {"name": ["H100"], "memory": Range(min=80, max=80), "count": Range(min=8, max=8)},
        ),
        ("nvidia:2..", {"vendor": "nvidia", "count": Range(min=2)}),
        ("8:H100", {"name": ["H100"], "count": Range(min=8, max=8)}),
    ],
)
def test_gpu_shorthands(text: str, expected: dict[str, object]) -> None:
    spec = GPUSpec.model_validate(text)
    for key, value in expected.items():
        assert getattr(spec, key) == value


def test_gpu_mapping_form_and_bad_tokens() -> None:
    spec = GPUSpec.model_validate({"name": "A100,H100", "count": "2..", "total_memory": "160GB.."})
    assert spec.name == ["A100", "H100"] and spec.count == Range(min=2)
    assert spec.total_memory == Range(min=160)
    with pytest.raises(ValueError, match="twice"):
        GPUSpec.model_validate("A100:H100")
    with pytest.raises(ValueError, match="not a GPU name"):
        GPUSpec.model_validate("A100:80QB")


def test_resources_defaults_follow_dstack() -> None:
    res = ResourcesSpec()
    assert res.cpu.count == Range(min=2)
    assert res.memory == Range(min=8)
    assert res.disk == Range(min=100)
    assert res.gpu is None
    assert not res.disk_is_explicit
    explicit = ResourcesSpec.model_validate({"cpu": "4..", "memory": "16GB..", "disk": "200GB.."})
    assert explicit.cpu.count == Range(min=4) and explicit.memory == Range(min=16)
    assert explicit.disk == Range(min=200) and explicit.disk_is_explicit
    assert ResourcesSpec.model_validate({"cpu": "arm:8"}).cpu.arch == "arm"


def test_sizes_durations_ranges() -> None:
    assert parse_size_gb("512MB") == 0.5
    assert parse_size_gb("1TB") == 1024
    assert [parse_duration(d) for d in ("90s", "30m", "2h", "1d", 45)] == [
        90,
        1800,
        7200,
        86400,
        45,
    ]
    with pytest.raises(ValueError, match="inverted"):
        parse_range("64GB..8GB", size=True, what="memory")
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("2x")


def test_env_forms_and_ports() -> None:
    listed = TaskConfig.model_validate({"commands": ["x"], "env": ["A=1", "B", "C=x=y"]})
    assert listed.env == {"A": "1", "B": None, "C": "x=y"}
    mapped = TaskConfig.model_validate({"commands": ["x"], "env": {"A": 1, "B": None}})
    assert mapped.env == {"A": "1", "B": None}
    assert resolve_env(listed.env, ["D=4", "A=override"], {"B": "from-shell"}, "f") == {
        "A": "override",
        "B": "from-shell",
        "C": "x=y",
        "D": "4",
    }
    with pytest.raises(InputError, match="export B"):
        resolve_env(listed.env, [], {}, "f")
    assert PortMapping.parse("8080:6000") == PortMapping(local_port=8080, container_port=6000)
    assert PortMapping.parse(6000) == PortMapping(local_port=6000, container_port=6000)
    assert PortMapping.parse("*:6000").local_port is None


def test_args_interpolation_refers_to_the_arguments() -> None:
    out = interpolate_commands(
        ["python train.py ${{ run.args }}", "echo '${{ run.args }}'"], ["a b", "$(x)"], "f"
    )
    assert out == ['python train.py "$@"', "echo ''\"$*\"''"]
    with pytest.raises(ConfigError, match=r"only \$\{\{ run.args \}\}"):
        interpolate_commands(["echo ${{ secrets.token }}"], [], "f")


def test_python_versions_and_exclusions() -> None:
    assert TaskConfig.model_validate({"commands": ["x"], "python": 3.10}).python == "3.10"
    assert TaskConfig.model_validate({"commands": ["x"], "python": "3.12"}).python == "3.12"
    with pytest.raises(ValueError, match="not supported"):
        TaskConfig.model_validate({"commands": ["x"], "python": "2.7"})
    with pytest.raises(ValueError, match="exclude each other"):
        TaskConfig.model_validate({"commands": ["x"], "python": "3.11", "image": "ubuntu"})


def test_policy_defaults_and_retry_forms() -> None:
    task = TaskConfig.model_validate({"commands": ["x"]})
    assert task.spot_policy is None and task.retry is None and task.max_duration is None
    assert (
        TaskConfig.model_validate({"commands": ["x"], "max_duration": "off"}).max_duration is None
    )
    retry = TaskConfig.model_validate({"commands": ["x"], "retry": True}).retry
    assert retry is not None and retry.duration == 3600
    assert retry.on_events == ["no-capacity", "interruption", "error"]
    custom = TaskConfig.model_validate(
        {"commands": ["x"], "retry": {"on_events": ["error"], "duration": "10m"}}
    ).retry
    assert custom is not None and custom.on_events == ["error"] and custom.duration == 600


def test_precedence_flags_then_file_then_profile(project: Path) -> None:
    (project / ".dstack").mkdir()
    (project / ".dstack" / "profiles.yml").write_text(
        "profiles:\n"
        "  - name: cheap\n    default: true\n    spot_policy: auto\n    max_price: 2\n"
        "    max_duration: 1h\n    regions: [us-east-1]\n"
        "  - name: big\n    max_price: 50\n"
    )
    path = write_task(project, "commands: [echo]\nmax_price: 1.5\n")
    spec = build_run_spec(path, environ={})
    assert spec.requirements.max_price == 1.5  # the file beats the profile
    assert spec.requirements.spot_policy == "auto"  # the profile fills what the file leaves out
    assert spec.max_duration == 3600 and spec.requirements.regions == ["us-east-1"]
    flagged = build_run_spec(
        path, Overrides(max_price=0.5, spot_policy="spot", max_duration="off"), environ={}
    )
    assert flagged.requirements.max_price == 0.5 and flagged.requirements.spot_policy == "spot"
    assert flagged.max_duration is None
    named = build_run_spec(path, Overrides(profile="big"), environ={})
    assert named.requirements.spot_policy == "on-demand" and named.requirements.max_price == 1.5
    with pytest.raises(InputError, match="no profile named 'nope'"):
        build_run_spec(path, Overrides(profile="nope"), environ={})


def test_resource_flags_override_the_file(project: Path) -> None:
    path = write_task(project, "commands: [echo]\nresources:\n  gpu: A100\n  memory: 32GB..\n")
    spec = build_run_spec(path, Overrides(gpu="H100:2", disk="500GB.."), environ={})
    res = spec.requirements.resources
    assert res.gpu is not None and res.gpu.name == ["H100"] and res.gpu.count == Range(min=2, max=2)
    assert res.memory == Range(min=32) and res.disk == Range(min=500) and res.disk_is_explicit
    with pytest.raises(InputError, match="resources flag"):
        build_run_spec(path, Overrides(memory="64GB..8GB"), environ={})


# ----------------------------------------------------------------------------- multi-node

#: dstack's own distributed-task example (its docs' "Distributed tasks"), as written there
DSTACK_DISTRIBUTED = """\
type: task
name: train-distrib
nodes: 2
python: "3.12"
env:
  - NCCL_DEBUG=INFO
commands:
  - git clone https://github.com/pytorch/examples.git pytorch-examples
  - cd pytorch-examples/distributed/ddp-tutorial-series
  - pip install -r requirements.txt
  - torchrun
    --nproc-per-node=$DSTACK_GPUS_PER_NODE
    --node-rank=$DSTACK_NODE_RANK
    --nnodes=$DSTACK_NODES_NUM
    --master-addr=$DSTACK_MASTER_NODE_IP
    --master-port=12345
    multinode.py 50 10
resources:
  gpu: 24GB
  shm_size: 24GB
startup_order: workers-first
stop_criteria: master-done
"""


def test_dstacks_distributed_task_loads_unchanged(tmp_path: Path) -> None:
    from iacrun.orchestrator.models.runspec import build_run_spec

    path = tmp_path / "train.dstack.yml"
    path.write_text(DSTACK_DISTRIBUTED)
    spec = build_run_spec(path, environ={})
    assert (spec.nodes, spec.requirements.nodes) == (2, 2)
    assert (spec.startup_order, spec.stop_criteria) == ("workers-first", "master-done")
    # the variables stay for the job's shell to expand on each node
    assert "--node-rank=$DSTACK_NODE_RANK" in spec.commands[-1]


def test_one_node_is_the_default(tmp_path: Path) -> None:
    from iacrun.orchestrator.models.runspec import build_run_spec

    path = tmp_path / "t.dstack.yml"
    path.write_text("type: task\ncommands: [x]\n")
    spec = build_run_spec(path, environ={})
    assert (spec.nodes, spec.stop_criteria, spec.startup_order) == (1, "all-done", "any")
