"""The cloud-init of a run as data, its size limits, and `cloud-init schema` on every variant."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from iacrun.orchestrator.errors import InputError
from iacrun.orchestrator.runner.runner import render_job_script
from iacrun.stacks import cloudinit
from iacrun.stacks.cloudinit import RUN_DIR, VmLayout, compact_python

from .conftest import client_key, host_key, job, make_spec


def doc(**kwargs: Any) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        cloudinit.render_cloud_config(make_spec(kwargs.pop("backend", "aws"), **kwargs))
    )
    return loaded


def files(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in document["write_files"]}


def test_the_pinned_host_key_and_the_run_key() -> None:
    d = doc()
    assert d["ssh_keys"] == {
        "ed25519_private": host_key().private_openssh,
        "ed25519_public": host_key().public_openssh,
    }
    assert d["ssh_deletekeys"] is True  # the image's own host keys go
    assert d["ssh_pwauth"] is False
    assert d["ssh_authorized_keys"] == [client_key().public_openssh]


def test_runner_job_and_script_are_written_to_the_run_folder() -> None:
    spec = make_spec()
    written = files(doc())
    runner = Path(__file__).parents[2] / "orchestrator" / "runner" / "runner.py"
    assert written[f"{RUN_DIR}/runner.py"]["content"] == compact_python(runner.read_text())
    job_file = written[f"{RUN_DIR}/job.json"]
    assert job_file["permissions"] == "0600"
    on_vm = json.loads(job_file["content"])
    # env values and arguments are written by iacrun over SSH; the commands are in job.sh only
    assert on_vm == {k: v for k, v in spec.job.items() if k != "commands"} | {
        "env": {},
        "args": [],
    }
    names = {name: "" for name in spec.job["env"]}
    assert written[f"{RUN_DIR}/job.sh"]["content"] == render_job_script(
        {**spec.job, "env": names}, RUN_DIR
    )


def test_the_commands_are_embedded_once() -> None:
    command = "python train.py --marker-7f3a --epochs 3"
    spec = make_spec(job_=job(commands=[command]))
    assert cloudinit.render_cloud_config(spec).count("--marker-7f3a") == 1


def test_a_container_job_script_passes_the_env_names_but_no_values() -> None:
    spec = make_spec(job_=job(python=None, image="ghcr.io/org/img:1"))
    script = files(doc(job_=spec.job))[f"{RUN_DIR}/job.sh"]["content"]
    assert "-e WANDB_API_KEY" in script
    assert "secret-value-123" not in cloudinit.render_cloud_config(spec)


def test_the_job_starts_from_a_path_unit_once_the_code_is_there() -> None:
    written = files(doc())
    path_unit = written["/etc/systemd/system/iacrun-job.path"]["content"]
    assert f"PathExists={RUN_DIR}/code.ready" in path_unit
    assert "Unit=iacrun-job.service" in path_unit
    service = written["/etc/systemd/system/iacrun-job.service"]["content"]
    assert "User=ubuntu" in service
    assert "Requires=iacrun-setup.service" in service
    assert "After=iacrun-setup.service" in service
    assert f"ExecStartPre=-/bin/mv -f {RUN_DIR}/code.ready {RUN_DIR}/code.started" in service
    assert f"ExecStart=/usr/bin/python3 {RUN_DIR}/runner.py run {RUN_DIR}" in service
    assert "Restart=no" in service
    assert "runner.exit" in service
    assert "[Install]" not in service  # only the path unit starts it


def test_runcmd_enables_units_without_waiting_and_marks_the_vm_ready_last() -> None:
    runcmd = doc()["runcmd"]
    assert runcmd[0] == ["chown", "-R", "ubuntu:ubuntu", RUN_DIR]
    enable = next(c for c in runcmd if c[:2] == ["systemctl", "enable"])
    assert "--no-block" in enable and "--now" in enable
    assert {"iacrun-watchdog.timer", "iacrun-setup.service", "iacrun-job.path"} <= set(enable)
    assert runcmd[-1][-1] == f"{RUN_DIR}/vm.ready"


def test_the_self_destruct_timer_is_armed_at_boot_from_max_duration() -> None:
    bootcmd = doc()["bootcmd"]
    assert "first-boot" in bootcmd[0][-1]
    timer = bootcmd[1]
    assert timer[0] == "systemd-run"
    assert "--on-boot=9000s" in timer  # 2h max_duration + 30 min margin
    assert timer[-1].endswith("destroy max duration exceeded; systemctl poweroff")


def test_without_max_duration_only_the_watchdog_guards() -> None:
    d = doc(job_=job(max_duration=None))
    assert len(d["bootcmd"]) == 1
    guard = json.loads(files(d)["/opt/iacrun/guard.json"]["content"])
    assert guard["deadline"] is None
    assert guard["code_wait"] == 1800 and guard["linger"] == 900


def test_guard_settings() -> None:
    guard = json.loads(files(doc())["/opt/iacrun/guard.json"]["content"])
    assert guard == {
        "run_dir": RUN_DIR,
        "first_boot_file": "/opt/iacrun/first-boot",
        "deadline": 9000,
        "code_wait": 1800,
        "linger": 900,
        "poweroff": ["systemctl", "poweroff"],
        "cloud": "aws",
        "azure": {
            "self_delete": False,
            "delete": "group",
            "imds": "http://169.254.169.254",
            "arm": "https://management.azure.com",
            "resource": "https://management.azure.com/",
        },
    }
    timer = files(doc())["/etc/systemd/system/iacrun-watchdog.timer"]["content"]
    assert "OnUnitActiveSec=60" in timer


def test_setup_for_python_and_for_an_image() -> None:
    py = files(doc())["/opt/iacrun/bin/iacrun-setup"]
    assert py["permissions"] == "0755"
    assert "PYTHON_VERSION=3.11" in py["content"] and "IMAGE=''" in py["content"]
    image = files(doc(job_=job(python=None, image="ghcr.io/org/img:1"), gpu=False))
    content = image["/opt/iacrun/bin/iacrun-setup"]["content"]
    assert "IMAGE=ghcr.io/org/img:1" in content and "GPU=0" in content


def test_aws_user_data_is_gzipped_and_within_16_kb() -> None:
    spec = make_spec("aws")
    data = cloudinit.user_data(spec)
    assert data[:2] == b"\x1f\x8b"
    assert gzip.decompress(data).decode() == cloudinit.render_cloud_config(spec)
    assert len(data) < cloudinit.AWS_USER_DATA_LIMIT


def test_azure_custom_data_is_gzipped_too_and_within_64_kb() -> None:
    spec = make_spec("azure")
    data = cloudinit.user_data(spec)
    assert data[:2] == b"\x1f\x8b"
    assert gzip.decompress(data).decode() == cloudinit.render_cloud_config(spec)
    assert len(data) < cloudinit.AWS_USER_DATA_LIMIT  # gzip'd, it fits even AWS's limit


def test_the_size_errors_say_what_to_do() -> None:
    spec = make_spec("aws")
    with pytest.raises(InputError, match=r"is 20000 bytes after gzip; AWS takes at most 16 KB"):
        cloudinit.check_user_data_size(spec, b"x" * 20000)
    cloudinit.check_user_data_size(spec, b"x" * 16384)
    azure = make_spec("azure")
    with pytest.raises(InputError, match=r"move them into a script in the working folder"):
        cloudinit.check_user_data_size(azure, b"x" * 65536)
    cloudinit.check_user_data_size(azure, b"x" * 65535)


def test_a_layout_moves_every_path() -> None:
    layout = VmLayout(root="/tmp/vm/opt", systemd_dir="/tmp/vm/systemd", user="tester")
    written = files(yaml.safe_load(cloudinit.render_cloud_config(make_spec(), layout)))
    assert all(p.startswith(("/tmp/vm/opt/", "/tmp/vm/systemd/")) for p in written)


# ---------------------------------------------------------------------------- cloud-init schema

CLOUD_INIT = shutil.which("cloud-init")
needs_cloud_init = pytest.mark.skipif(
    CLOUD_INIT is None, reason="needs Debian's cloud-init package (cloud-init schema)"
)

VARIANTS = [
    pytest.param("aws", True, {}, id="aws-gpu-python"),
    pytest.param("aws", False, {"python": None, "image": "ubuntu:24.04"}, id="aws-cpu-image"),
    pytest.param("aws", True, {"python": None, "image": "pytorch/pytorch"}, id="aws-gpu-image"),
    pytest.param("aws", False, {"max_duration": None}, id="aws-cpu-python-no-max-duration"),
    pytest.param("azure", True, {}, id="azure-gpu-python"),
    pytest.param("azure", False, {"python": None, "image": "ubuntu:24.04"}, id="azure-cpu-image"),
    pytest.param("azure", True, {"max_duration": None}, id="azure-gpu-no-max-duration"),
]


def schema(path: Path) -> subprocess.CompletedProcess[str]:
    assert CLOUD_INIT is not None
    return subprocess.run(
        [CLOUD_INIT, "schema", "--config-file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@needs_cloud_init
@pytest.mark.parametrize(("backend", "gpu", "changes"), VARIANTS)
def test_every_rendered_cloud_init_passes_cloud_init_schema(
    tmp_path: Path, backend: str, gpu: bool, changes: dict[str, Any]
) -> None:
    spec = make_spec(backend, gpu=gpu, job_=job(**changes), spot=True)
    path = tmp_path / "user-data"
    path.write_text(cloudinit.render_cloud_config(spec))
    done = schema(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Valid cloud-config" in done.stdout


@needs_cloud_init
def test_cloud_init_schema_rejects_a_broken_document(tmp_path: Path) -> None:
    """The check above can fail: a wrong type in a module's config is refused."""
    document = yaml.safe_load(cloudinit.render_cloud_config(make_spec()))
    document["runcmd"] = "systemctl enable iacrun-job.path"  # a string, not a list
    path = tmp_path / "user-data"
    path.write_text("#cloud-config\n" + yaml.safe_dump(document))
    done = schema(path)
    assert done.returncode != 0
    assert "runcmd" in done.stdout + done.stderr


def test_user_data_carries_no_argument_of_the_run() -> None:
    """Anyone with describe rights on the VM reads its user data: the task's arguments (a token
    passed as --token=...) go over SSH in job.json, the commands only refer to them."""
    secret = "--token=s3cr3t-arg-42"
    spec = make_spec(job_=job(commands=['python train.py "$@"'], args=[secret]))
    rendered = cloudinit.render_cloud_config(spec)
    assert secret not in rendered and "s3cr3t-arg-42" not in rendered
    assert 'python train.py \\"$@\\"' in rendered or 'python train.py "$@"' in rendered


def test_the_vm_gets_the_runner_without_docstrings_and_comments_only() -> None:
    """The embedded runner is the same program, statement for statement, a third smaller."""
    import ast
    from importlib import resources

    source = resources.files("iacrun.orchestrator.runner").joinpath("runner.py").read_text()
    compact = compact_python(source)
    assert "#" not in compact.splitlines()[1] and len(compact) < 0.85 * len(source)

    def statements(text: str) -> str:
        tree = ast.parse(text)
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
                value = body[0].value
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
        return ast.dump(tree)

    assert statements(compact) == statements(source)


def test_a_typical_gpu_task_leaves_room_in_awss_16_kb() -> None:
    """What iacrun itself puts in the user data (runner, guard, set-up, units) must leave room
    for the task's commands: a GPU task with a few commands stays under 15 KB once gzip'd."""
    spec = make_spec(
        "aws", job_=job(commands=["pip install -r requirements.txt", "python train.py"])
    )
    assert len(cloudinit.user_data(spec)) < 15 * 1024
