"""The cloud-init (`#cloud-config`) of a run's VM, rendered from its `StackSpec`.

What the VM does at boot, and the contract with iacrun that follows
-------------------------------------------------------------------

cloud-init, before sshd starts (init stage):

- installs the run's pre-generated Ed25519 host key and no other (iacrun pins it);
- arms the self-destruct timer (`bootcmd`, every boot): a transient systemd timer that runs
  `iacrun-guard destroy` then powers off, `max_duration + margin` after boot (with a max_duration);
- writes, under ``RUN_DIR`` (/opt/iacrun/run): ``runner.py``, ``job.json`` (the job WITHOUT its
  env values and arguments: user data is readable by anyone on the machine through the metadata
  service, so iacrun writes the full job.json over SSH; and without its commands, which are in
  ``job.sh``: once is enough), ``job.sh``; and the guard, the setup script and the systemd units.

cloud-init, final stage (`runcmd`, quick: no packages are installed by cloud-init itself):

- gives ``RUN_DIR`` to the SSH user (``ubuntu``), enables and starts (without waiting) the
  watchdog timer, ``iacrun-setup.service`` and ``iacrun-job.path``; then writes
  ``RUN_DIR/vm.ready``.

``iacrun-setup.service`` (every boot), before anything the job needs:

- the machine checks itself: it stops and masks (until the next boot) apt's timers and
  unattended-upgrades, so no kernel or driver changes under the run; on GPU machines it starts
  the NVIDIA fabric manager where the image's table row says NVSwitch (stacks/images.py), then
  runs ``nvidia-smi -L`` every ``gpu_retry`` seconds until it lists every GPU, for at most the
  image's ``gpu_wait`` (the driver may still be loading, or being installed by Azure's
  extension). It writes ``RUN_DIR/check.ok``, or ``RUN_DIR/check.failed`` with one line,
  ``gpu check failed: nvidia-smi: ...`` (and a failed state.json; the job never starts);
- then installs uv and the requested Python in ``RUN_DIR/venv``, or Docker with the NVIDIA
  runtime and pulls the image.

iacrun, once SSH answers (host key pinned from the first byte):

0. on GPU offers, still inside the backend's ``provision``, waits for ``check.ok`` or
   ``check.failed`` (`backends/machine_check.py`): a failed machine is destroyed at once and
   failover tries the next offer;
1. waits for ``RUN_DIR/vm.ready`` (the run folder is the SSH user's from then on);
2. uploads the working folder into ``RUN_DIR/code``, and writes ``RUN_DIR/job.json`` (the full
   job, env included, mode 0600) -- and job.sh/runner.py if it wants to replace them;
3. writes ``RUN_DIR/code.ready`` (atomically, last). ``iacrun-job.path`` then starts
   ``iacrun-job.service``, which waits for ``iacrun-setup.service``, renames ``code.ready`` to
   ``code.started`` (so the job runs once), and runs ``python3 runner.py run RUN_DIR`` as the SSH
   user. Do not write code.ready again: that would run the job again;
4. follows ``log``/``state.json``/``exit_code`` and stops the job with ``runner.py stop``, as on
   every host. A failed setup shows as ``[iacrun] setup: ...`` lines in ``log`` and a ``failed``
   state with the reason ``setup failed: ...``; the job then never starts.

Whatever iacrun does, the watchdog powers the machine off when the deadline passed, when the job
has not started ``code_wait`` seconds after boot, or ``linger`` seconds after the run ended (see
`stacks/vmguard.py`). On AWS a power-off terminates the instance; on Azure the guard first deletes
the VM through the cloud's API (see the Azure notes in docs/clouds.md).
"""

from __future__ import annotations

import ast
import functools
import gzip
import json
import shlex
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from iacrun.orchestrator.errors import InputError
from iacrun.orchestrator.runner.runner import render_job_script
from iacrun.stacks.spec import StackSpec

VM_ROOT = "/opt/iacrun"
#: the run folder on every cloud VM (what `Host.run_dir` says)
RUN_DIR = f"{VM_ROOT}/run"
#: the user iacrun logs in as, owner of RUN_DIR; the job runs as this user
SSH_USER = "ubuntu"
#: EC2 takes 16 KB of user data, counted before base64
AWS_USER_DATA_LIMIT = 16 * 1024
#: Azure takes custom data that decodes to at most 65535 bytes
AZURE_CUSTOM_DATA_LIMIT = 65535
UV_INSTALLER = "https://astral.sh/uv/install.sh"

JOB_PATH_UNIT = "iacrun-job.path"
JOB_SERVICE = "iacrun-job.service"
SETUP_SERVICE = "iacrun-setup.service"
WATCHDOG_TIMER = "iacrun-watchdog.timer"
WATCHDOG_SERVICE = "iacrun-watchdog.service"
DEADLINE_UNIT = "iacrun-deadline"


@dataclass(frozen=True)
class VmLayout:
    """Where things go on the VM. Tests render into a temporary root with a harmless power-off."""

    root: str = VM_ROOT
    user: str = SSH_USER
    systemd_dir: str = "/etc/systemd/system"
    python: str = "/usr/bin/python3"
    poweroff: tuple[str, ...] = ("systemctl", "poweroff")
    azure_imds: str = "http://169.254.169.254"
    azure_arm: str = "https://management.azure.com"
    azure_resource: str = "https://management.azure.com/"
    #: the commands the machine check runs (tests point them at harmless stand-ins)
    systemctl: str = "systemctl"
    nvidia_smi: str = "nvidia-smi"
    #: seconds between two `nvidia-smi` tries while the driver loads
    gpu_retry: float = 10.0
    #: seconds the GPU check waits in all (None: what the image needs, `VmImage.gpu_wait`)
    gpu_wait: int | None = None

    @property
    def run_dir(self) -> str:
        return f"{self.root}/run"

    @property
    def guard(self) -> str:
        return f"{self.root}/bin/iacrun-guard"

    @property
    def guard_config(self) -> str:
        return f"{self.root}/guard.json"

    @property
    def setup(self) -> str:
        return f"{self.root}/bin/iacrun-setup"

    @property
    def first_boot(self) -> str:
        return f"{self.root}/first-boot"


@dataclass(frozen=True)
class VmFile:
    path: str
    content: str
    mode: int = 0o644


# ---------------------------------------------------------------------------- the document


def cloud_config(spec: StackSpec, layout: VmLayout | None = None) -> dict[str, Any]:
    """The cloud-config document as data."""
    layout = layout or VmLayout()
    return {
        "ssh_pwauth": False,
        "disable_root": True,
        # with ssh_keys given, cloud-init deletes the image's host keys and generates none
        "ssh_deletekeys": True,
        "ssh_keys": {
            "ed25519_private": spec.host_key.private_openssh,
            "ed25519_public": spec.host_key.public_openssh,
        },
        "ssh_authorized_keys": [spec.ssh_public_key],
        "bootcmd": boot_commands(spec, layout),
        "write_files": [
            {"path": f.path, "content": f.content, "permissions": f"0{f.mode:o}"}
            for f in vm_files(spec, layout)
        ],
        "runcmd": [
            ["chown", "-R", f"{layout.user}:{layout.user}", layout.run_dir],
            ["systemctl", "daemon-reload"],
            [
                "systemctl",
                "enable",
                "--now",
                "--no-block",
                WATCHDOG_TIMER,
                SETUP_SERVICE,
                JOB_PATH_UNIT,
            ],
            ["install", "-o", layout.user, "-m", "0644", "/dev/null", f"{layout.run_dir}/vm.ready"],
        ],
    }


def render_cloud_config(spec: StackSpec, layout: VmLayout | None = None) -> str:
    body = yaml.dump(
        cloud_config(spec, layout), Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True
    )
    return "#cloud-config\n" + body


def user_data(spec: StackSpec, layout: VmLayout | None = None) -> bytes:
    """What goes to the cloud, gzip'd (cloud-init unpacks gzip'd user data on every cloud) and
    size-checked: AWS takes 16 KB, Azure 64 KB."""
    text = render_cloud_config(spec, layout).encode()
    data = gzip.compress(text, 9, mtime=0)
    check_user_data_size(spec, data)
    return data


def check_user_data_size(spec: StackSpec, data: bytes) -> None:
    """One clear line, before anything is created, when the user data is too big for the cloud."""
    if spec.cloud == "aws":
        limit, what = AWS_USER_DATA_LIMIT, "AWS takes at most 16 KB of user data"
    else:
        limit, what = AZURE_CUSTOM_DATA_LIMIT, "Azure takes at most 64 KB of custom data"
    size = f"{len(data)} bytes after gzip"
    if len(data) > limit:
        raise InputError(
            f"the cloud-init of run {spec.run_name} is {size}; {what}: shorten the task's "
            "commands, or move them into a script in the working folder"
        )


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


# ---------------------------------------------------------------------------- boot


def boot_commands(spec: StackSpec, layout: VmLayout) -> list[list[str]]:
    """Every boot: remember the first boot; arm the deadline timer (with a max_duration)."""
    first = shlex.quote(layout.first_boot)
    commands = [
        [
            "sh",
            "-c",
            f"mkdir -p {shlex.quote(layout.root)} && {{ test -s {first} || date +%s > {first}; }}",
        ]
    ]
    if spec.deadline is not None:
        end = (
            f"{shlex.quote(layout.python)} {shlex.quote(layout.guard)} "
            f"{shlex.quote(layout.guard_config)} destroy max duration exceeded; "
            + shlex.join(layout.poweroff)
        )
        commands.append(
            [
                "systemd-run",
                f"--unit={DEADLINE_UNIT}",
                f"--description=iacrun self-destruct of run {spec.run_name}",
                f"--on-boot={spec.deadline}s",
                "--timer-property=AccuracySec=1s",
                "/bin/sh",
                "-c",
                end,
            ]
        )
    return commands


# ---------------------------------------------------------------------------- files


def vm_files(spec: StackSpec, layout: VmLayout | None = None) -> list[VmFile]:
    """Every file cloud-init writes, with its mode."""
    layout = layout or VmLayout()
    run_dir = layout.run_dir
    job = vm_job(spec)
    unit = layout.systemd_dir
    return [
        VmFile(f"{run_dir}/runner.py", vm_source("iacrun.orchestrator.runner", "runner.py"), 0o755),
        VmFile(f"{run_dir}/job.json", json.dumps(job, indent=1, sort_keys=True) + "\n", 0o600),
        VmFile(f"{run_dir}/job.sh", job_script(spec, layout), 0o755),
        VmFile(layout.guard, vm_source("iacrun.stacks", "vmguard.py"), 0o755),
        VmFile(layout.guard_config, json.dumps(guard_config(spec, layout), indent=1) + "\n"),
        VmFile(layout.setup, setup_script(spec, layout), 0o755),
        VmFile(f"{unit}/{SETUP_SERVICE}", setup_unit(spec, layout)),
        VmFile(f"{unit}/{JOB_PATH_UNIT}", job_path_unit(spec, layout)),
        VmFile(f"{unit}/{JOB_SERVICE}", job_service_unit(spec, layout)),
        VmFile(f"{unit}/{WATCHDOG_TIMER}", WATCHDOG_TIMER_UNIT),
        VmFile(f"{unit}/{WATCHDOG_SERVICE}", watchdog_service_unit(layout)),
    ]


def vm_job(spec: StackSpec) -> dict[str, Any]:
    """job.json as cloud-init writes it: the job without its env values, its arguments and its
    commands.

    The env values and the arguments are secrets (user data is readable on the machine, and by
    anyone allowed to describe it; the commands only refer to the arguments, see
    models/runargs.py); the commands are in job.sh, and once is enough: iacrun writes the full
    job.json over SSH before the job starts."""
    return {k: v for k, v in spec.job.items() if k != "commands"} | {"env": {}, "args": []}


def job_script(spec: StackSpec, layout: VmLayout) -> str:
    """job.sh: the commands, with the env's names (a container gets `-e NAME`) but no values."""
    names = {name: "" for name in spec.job.get("env") or {}}
    return render_job_script({**spec.job, "env": names}, layout.run_dir)


def guard_config(spec: StackSpec, layout: VmLayout) -> dict[str, Any]:
    return {
        "run_dir": layout.run_dir,
        "first_boot_file": layout.first_boot,
        "deadline": spec.deadline,
        "code_wait": spec.code_wait,
        "linger": spec.linger,
        "poweroff": list(layout.poweroff),
        "cloud": spec.cloud,
        "azure": {
            "self_delete": spec.cloud == "azure" and spec.azure_self_delete,
            # one machine deletes the run's resource group; a cluster's machine only itself (its
            # disk, NIC and address go with it), so one node's timers never end the others
            "delete": "vm" if spec.cluster else "group",
            "imds": layout.azure_imds,
            "arm": layout.azure_arm,
            "resource": layout.azure_resource,
        },
    }


@functools.cache
def vm_source(package: str, name: str) -> str:
    """A standalone file of `package` (the runner, the guard) as the VM gets it: compacted by
    `compact_python` (a third smaller, which keeps user data under AWS's 16 KB), once per
    process."""
    return compact_python(resources.files(package).joinpath(name).read_text())


#: CPython 3.11's `ast` is not safe to use from several threads at once (stacks are built in
#: threads: "AST constructor recursion depth mismatch"), so compacting holds this lock
_AST_LOCK = threading.Lock()


def compact_python(source: str) -> str:
    """`source` without its docstrings and comments, re-rendered by `ast` (same statements)."""
    with _AST_LOCK:
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                first = body[0] if body else None
                if (
                    isinstance(first, ast.Expr)
                    and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)
                ):
                    node.body = body[1:] or [ast.Pass()]
        return "#!/usr/bin/env python3\n" + ast.unparse(tree) + "\n"


# ---------------------------------------------------------------------------- units


def setup_unit(spec: StackSpec, layout: VmLayout) -> str:
    return f"""[Unit]
Description=iacrun: prepare what run {spec.run_name} needs (Python environment or container image)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={layout.setup}
TimeoutStartSec=3600

[Install]
WantedBy=multi-user.target
"""


def job_path_unit(spec: StackSpec, layout: VmLayout) -> str:
    return f"""[Unit]
Description=iacrun: start run {spec.run_name} once iacrun has uploaded its code

[Path]
PathExists={layout.run_dir}/code.ready
Unit={JOB_SERVICE}

[Install]
WantedBy=paths.target
"""


def job_service_unit(spec: StackSpec, layout: VmLayout) -> str:
    run_dir = layout.run_dir
    stop = int(spec.job.get("stop_duration") or 15) + 30
    return f"""[Unit]
Description=iacrun: the job of run {spec.run_name}
Requires={SETUP_SERVICE}
After={SETUP_SERVICE} network-online.target

[Service]
Type=exec
User={layout.user}
WorkingDirectory={run_dir}
ExecStartPre=-/bin/mv -f {run_dir}/code.ready {run_dir}/code.started
ExecStart={layout.python} {run_dir}/runner.py run {run_dir}
ExecStopPost=/bin/sh -c 'echo "$$SERVICE_RESULT $$EXIT_CODE $$EXIT_STATUS" > {run_dir}/runner.exit'
KillMode=mixed
TimeoutStopSec={stop}
Restart=no
LimitNOFILE=1048576
LimitMEMLOCK=infinity
"""


WATCHDOG_TIMER_UNIT = """[Unit]
Description=iacrun watchdog: end this machine when its run is over and nobody else did

[Timer]
OnBootSec=60
OnUnitActiveSec=60
AccuracySec=5

[Install]
WantedBy=timers.target
"""


def watchdog_service_unit(layout: VmLayout) -> str:
    return f"""[Unit]
Description=iacrun watchdog check

[Service]
Type=oneshot
ExecStart={layout.python} {layout.guard} {layout.guard_config} watch
"""


# ---------------------------------------------------------------------------- setup script


def setup_script(spec: StackSpec, layout: VmLayout) -> str:
    """Bash, run as root by iacrun-setup.service at every boot; quick when all is in place."""
    image = spec.vm_image
    settings = {
        "RUN_DIR": layout.run_dir,
        "JOB_USER": layout.user,
        "PYTHON_VERSION": spec.python or "",
        "IMAGE": spec.image or "",
        "CONTAINER_ENGINE": str(spec.job.get("container_engine") or "docker"),
        #: dstack's `docker: true`: Docker on the machine for the job's own commands
        "DOCKER": "1" if spec.job.get("docker") else "0",
        "GPU": "1" if spec.gpu else "0",
        "GPU_COUNT": str(spec.gpu_count),
        "GPU_WAIT": str(layout.gpu_wait if layout.gpu_wait is not None else image.gpu_wait),
        "GPU_RETRY": f"{layout.gpu_retry:g}",
        "FABRIC_MANAGER": "1" if image.fabric_manager else "0",
        "SYSTEMCTL": layout.systemctl,
        "NVIDIA_SMI": layout.nvidia_smi,
        "UV_INSTALLER": UV_INSTALLER,
    }
    lines = [f"{key}={shlex.quote(value)}" for key, value in settings.items()]
    return (
        "#!/bin/bash\n"
        f"# iacrun setup of run {spec.run_name}: what the job needs before it starts.\n"
        "set -uo pipefail\n" + "\n".join(lines) + "\n" + _SETUP_BODY
    )


_SETUP_BODY = r"""SETUP_LOG="$RUN_DIR/setup.log"
export PATH="/usr/local/bin:$PATH"

note() { printf '[iacrun] setup: %s\n' "$*" >>"$RUN_DIR/log"; printf '%s\n' "$*" >&2; }

fail() {
  note "failed: $*; details in $SETUP_LOG"
  failed_with "setup failed: $*"
}

# the run is over before its job: state.json says why (iacrun and the watchdog read it)
failed_with() {
  python3 - "$RUN_DIR" "$1" <<'PY'
import json, os, sys, time
run_dir, reason = sys.argv[1], sys.argv[2]
state = {"status": "failed", "reason": reason, "attempts": [], "finished_at": time.time()}
for name, text in (("state.json", json.dumps(state, sort_keys=True)), ("status", "failed\n")):
    tmp = os.path.join(run_dir, ".%s.setup" % name)
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(run_dir, name))
PY
  exit 1
}

# no package upgrades (a new kernel or driver) while the run lives
quiet_upgrades() {
  local units="apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service"
  units="$units unattended-upgrades.service"
  # shellcheck disable=SC2086
  "$SYSTEMCTL" stop $units >>"$SETUP_LOG" 2>&1
  # shellcheck disable=SC2086
  "$SYSTEMCTL" mask --runtime $units >>"$SETUP_LOG" 2>&1
  return 0
}

gpu_failed() {
  local reason="gpu check failed: $*"
  note "$reason"
  printf '%s\n' "$reason" >"$RUN_DIR/.check.failed" &&
    mv -f "$RUN_DIR/.check.failed" "$RUN_DIR/check.failed"
  failed_with "$reason"
}

# the machine checks itself before the job: the fabric manager on NVSwitch machines, then
# nvidia-smi until it sees every GPU (the driver may still be loading), at most GPU_WAIT seconds
check_gpus() {
  if [ "$FABRIC_MANAGER" = 1 ]; then
    note "starting the NVIDIA fabric manager (an NVSwitch machine)"
    "$SYSTEMCTL" start nvidia-fabricmanager.service >>"$SETUP_LOG" 2>&1 ||
      gpu_failed "the NVIDIA fabric manager (nvidia-fabricmanager.service) did not start"
  fi
  local deadline=$((SECONDS + GPU_WAIT)) try=0 out seen last
  while :; do
    try=$((try + 1))
    if out=$("$NVIDIA_SMI" -L 2>&1); then
      seen=$(printf '%s\n' "$out" | grep -c '^GPU ')
      if [ "$seen" -ge "$GPU_COUNT" ] && [ "$seen" -gt 0 ]; then
        note "nvidia-smi sees $seen GPU(s)"
        return 0
      fi
      out="sees $seen of $GPU_COUNT GPUs"
    fi
    last=$(printf '%s\n' "$out" | grep -v '^[[:space:]]*$' | tail -n 1)
    if [ "$SECONDS" -ge "$deadline" ]; then
      gpu_failed "nvidia-smi: ${last:-no answer}"
    fi
    note "waiting for the NVIDIA driver (try $try): ${last:-no answer}"
    sleep "$GPU_RETRY"
  done
}

as_user() {
  if [ "$(id -un)" = "$JOB_USER" ]; then
    "$@"
  else
    runuser -u "$JOB_USER" -- env HOME="$(getent passwd "$JOB_USER" | cut -d: -f6)" "$@"
  fi
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -q >>"$SETUP_LOG" 2>&1 &&
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@" \
      >>"$SETUP_LOG" 2>&1
}

setup_python() {
  local venv="$RUN_DIR/venv" found
  if [ -x "$venv/bin/python" ]; then return 0; fi
  found=$(command -v "python$PYTHON_VERSION" || true)
  if [ -n "$found" ] && "$found" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    note "creating a Python $PYTHON_VERSION virtual environment with $found"
    if as_user "$found" -m venv "$venv" >>"$SETUP_LOG" 2>&1; then return 0; fi
    rm -rf "$venv"
  fi
  if ! command -v uv >/dev/null 2>&1; then
    note "installing uv"
    command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates || return 1
    curl -LsSf "$UV_INSTALLER" | env UV_UNMANAGED_INSTALL=/usr/local/bin sh >>"$SETUP_LOG" 2>&1 ||
      return 1
  fi
  note "creating a Python $PYTHON_VERSION virtual environment with uv"
  as_user uv venv --seed --python "$PYTHON_VERSION" "$venv" >>"$SETUP_LOG" 2>&1
}

nvidia_runtime() {
  "$CONTAINER_ENGINE" info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia
}

install_nvidia_toolkit() {
  local keyring=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
  command -v curl >/dev/null 2>&1 && command -v gpg >/dev/null 2>&1 ||
    apt_install curl ca-certificates gnupg || return 1
  local repo=https://nvidia.github.io/libnvidia-container
  curl -fsSL "$repo/gpgkey" | gpg --batch --yes --dearmor -o "$keyring" &&
    curl -fsSL "$repo/stable/deb/nvidia-container-toolkit.list" |
    sed "s#deb https://#deb [signed-by=$keyring] https://#g" \
      >/etc/apt/sources.list.d/nvidia-container-toolkit.list &&
    apt_install nvidia-container-toolkit
}

setup_container() {
  if ! command -v "$CONTAINER_ENGINE" >/dev/null 2>&1; then
    note "installing $CONTAINER_ENGINE"
    local package="$CONTAINER_ENGINE"
    if [ "$package" = docker ]; then package=docker.io; fi
    apt_install "$package" || return 1
  fi
  if [ "$CONTAINER_ENGINE" = docker ]; then
    "$SYSTEMCTL" enable --now docker >>"$SETUP_LOG" 2>&1 || return 1
    getent group docker >/dev/null && usermod -aG docker "$JOB_USER"
    if [ "$GPU" = 1 ] && ! nvidia_runtime; then
      if ! command -v nvidia-ctk >/dev/null 2>&1; then
        note "installing the NVIDIA container toolkit"
        install_nvidia_toolkit || return 1
      fi
      nvidia-ctk runtime configure --runtime=docker >>"$SETUP_LOG" 2>&1 &&
        "$SYSTEMCTL" restart docker >>"$SETUP_LOG" 2>&1 || return 1
    fi
  fi
  if [ -n "$IMAGE" ]; then
    note "pulling $IMAGE"
    "$CONTAINER_ENGINE" pull -q "$IMAGE" >>"$SETUP_LOG" 2>&1 ||
      note "could not pull $IMAGE now; the job will try again"
  fi
  return 0
}

cd "$RUN_DIR" || exit 1
if [ ! -e "$RUN_DIR/log" ]; then
  touch "$RUN_DIR/log" && chown "$JOB_USER" "$RUN_DIR/log"
fi
rm -f "$RUN_DIR/check.ok" "$RUN_DIR/check.failed"
quiet_upgrades
if [ "$GPU" = 1 ]; then
  check_gpus
fi
touch "$RUN_DIR/check.ok"
if [ -n "$PYTHON_VERSION" ]; then
  setup_python || fail "could not create a Python $PYTHON_VERSION virtual environment"
fi
if [ -n "$IMAGE" ]; then
  setup_container || fail "could not prepare $CONTAINER_ENGINE for $IMAGE"
elif [ "$DOCKER" = 1 ]; then
  setup_container || fail "could not prepare Docker for the job (docker: true)"
fi
note "ready"
exit 0
"""
