"""What happens to a run on its host, the same for every backend, through a Transport.

ship_and_start   the working folder archive, job.json, job.sh and the runner; start it
read_state       the runner's state.json
settle_state     the same, first settled from the job's own exit file if the runner died
follow_log       the log from a byte offset, live until the run ends
log_size         the size of the log on the host (where a page starts the log's tail)
stop_job         SIGTERM to the job's process group, a grace period, SIGKILL (abort: SIGKILL)
keep_log         a copy of a remote run's log here, for `iacrun logs` after the machine is gone

On a cloud VM the runner is started by the VM's boot set-up instead (stacks/cloudinit.py):
`wait_vm_ready` and `start_job` are that side of the contract.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import shlex
import sys
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iacrun.orchestrator.errors import HostUnreachableError, RunnerError
from iacrun.orchestrator.host.transport import Host, Transport
from iacrun.orchestrator.runner.runner import FINAL_STATUSES, render_job_script
from iacrun.orchestrator.runner.runner import settle as runner_settle

if TYPE_CHECKING:
    from iacrun.orchestrator.models.runspec import RunSpec

LOG_CHUNK = 4 * 1024 * 1024


def runner_source() -> bytes:
    return resources.files("iacrun.orchestrator.runner").joinpath("runner.py").read_bytes()


def build_job(name: str, spec: RunSpec, host: Host) -> dict[str, Any]:
    """job.json for the runner, from the run's name, its resolved spec and its host."""
    retry = spec.retry
    on_error = retry is not None and "error" in retry.on_events
    return {
        "run_name": name,
        "commands": spec.commands,
        "args": spec.args,
        "env": spec.env,
        "working_dir": spec.working_dir or ".",
        "python": spec.python,
        "image": spec.image,
        "gpus": host.gpus,
        "shm_size_gb": spec.requirements.resources.shm_size,
        "ports": [p.container_port for p in spec.ports],
        "max_duration": spec.max_duration,
        "stop_duration": spec.stop_duration,
        "retry": {"duration": retry.duration} if on_error and retry else None,
        "shell": spec.shell,
        "entrypoint": spec.entrypoint,
        "user": spec.user,
        "privileged": spec.privileged,
        "docker": spec.docker,
        "nvcc": spec.nvcc,
        "registry_auth": spec.registry_auth,
        "container_engine": host.container_engine,
        "utilization_policy": (
            spec.utilization_policy.model_dump() if spec.utilization_policy else None
        ),
        # files/N and repo/ of the payload archive go to these paths (runner.place_payload)
        "files": [{"path": f.path} for f in spec.files],
        "repos": [
            {
                "local": r.local is not None,
                "url": r.url,
                "branch": r.branch,
                "hash": r.hash,
                "path": r.path,
                "if_exists": r.if_exists,
                "single_branch": r.single_branch,
            }
            for r in spec.repos
        ],
    }


def host_python(host: Host) -> str:
    return sys.executable if host.kind == "local" else "python3"


async def ship_and_start(
    transport: Transport,
    host: Host,
    job: dict[str, Any],
    archive: str,
    payload: str | None = None,
    git_auth: tuple[str, str] | None = None,
) -> None:
    """Place code, job and runner in the run folder, then start the runner detached.

    `payload` (files and a local repo, host/payload.py) unpacks into RUN_DIR/payload;
    `git_auth` (host/gitauth.py) becomes two 0600 files the runner's clone reads, then removes.
    On a host whose boot set-up starts the runner (a cloud VM), wait for it to be ready, ship
    the code and the full job.json (env included), then write `code.ready`."""
    run_dir = host.run_dir
    booted = host.boot == "cloud-init"
    if booted:
        await wait_vm_ready(transport, host)
    await _ship_code(transport, run_dir, archive)
    if payload is not None:
        await _ship_code(transport, run_dir, payload, into="payload")
    if git_auth is not None:
        await transport.write_file(f"{run_dir}/git-user", git_auth[0].encode(), 0o600)
        await transport.write_file(f"{run_dir}/git-password", git_auth[1].encode(), 0o600)
    await transport.write_file(f"{run_dir}/job.json", json.dumps(job).encode(), 0o600)
    if booted:
        await start_job(transport, host)
        return
    await transport.write_file(f"{run_dir}/job.sh", render_job_script(job, run_dir).encode(), 0o700)
    await transport.write_file(f"{run_dir}/runner.py", runner_source(), 0o700)
    quoted = shlex.quote(run_dir)
    start = f"exec {shlex.quote(host_python(host))} {quoted}/runner.py start {quoted}"
    rc, _, err = await transport.run(["sh", "-c", start])
    if rc != 0:
        raise RunnerError(f"the runner did not start on the host: {err.decode().strip()}")


async def _ship_code(transport: Transport, run_dir: str, archive: str, into: str = "code") -> None:
    """An archive into RUN_DIR/INTO (the working folder into `code`): uploaded whole, then
    unpacked."""
    quoted = shlex.quote(run_dir)
    into_q = shlex.quote(f"{run_dir}/{into}")
    parent = shlex.quote(posixpath.dirname(run_dir.rstrip("/")))
    # the run folder and the runs folder above it (when it is ours: not a cloud VM's /opt)
    # are the SSH user's alone, whatever the session's umask
    script = (
        f"umask 077 && mkdir -p {quoted}/code {into_q} && chmod 700 {quoted} {into_q} && "
        f"if [ -O {parent} ]; then chmod 700 {parent}; fi"
    )
    rc, _, err = await transport.run(["sh", "-c", script])
    if rc != 0:
        raise RunnerError(f"cannot create the run folder {run_dir}: {err.decode().strip()}")
    await transport.upload(archive, f"{run_dir}/{into}.tar.gz")
    tar = f"{quoted}/{into}.tar.gz"
    # the owner's bits travel (an executable stays one); group and others get nothing
    script = f"umask 077 && tar --no-same-permissions -xzf {tar} -C {into_q} && rm -f {tar}"
    rc, _, err = await transport.run(["sh", "-c", script])
    if rc != 0:
        raise RunnerError(
            f"could not unpack the working folder on the host: {err.decode().strip()}"
        )


async def read_state(transport: Transport, host: Host) -> dict[str, Any]:
    raw = await transport.read_file(f"{host.run_dir}/state.json")
    if not raw:
        return {}
    try:
        state: dict[str, Any] = json.loads(raw)
    except ValueError:
        return {}
    return state


async def settle_state(transport: Transport, host: Host) -> dict[str, Any]:
    """The runner's state, settled on the host if the runner died (`runner.py settle`).

    A runner killed mid-run leaves the job running in its own process group; once no process
    of it is left, its exit code is read from the file the job's shell wrote.

    On this machine the same function runs in-process (off the event loop): a Python started
    every few seconds per run was most of the CPU of a server supervising many local runs."""
    if host.kind == "local":
        if not Path(host.run_dir, "runner.py").exists():
            return {}
        return await asyncio.to_thread(runner_settle, host.run_dir)
    run_dir = shlex.quote(host.run_dir)
    cmd = (
        f"test -f {run_dir}/runner.py || exit 0; "
        f"exec {shlex.quote(host_python(host))} {run_dir}/runner.py settle {run_dir}"
    )
    rc, out, err = await transport.run(["sh", "-c", cmd])
    if rc != 0:
        raise RunnerError(f"could not read the runner's state: {err.decode().strip()}")
    try:
        state: dict[str, Any] = json.loads(out) if out.strip() else {}
    except ValueError:
        return {}
    return state


async def follow_log(
    transport: Transport,
    host: Host,
    offset: int,
    sink: Callable[[bytes], None],
    *,
    follow: bool = True,
    poll: float = 0.05,
    until: Callable[[], bool] | None = None,
    limit: int | None = None,
) -> tuple[int, dict[str, Any]]:
    """Send the log from `offset` to `sink`; with `follow`, until the run ends; without, at
    most `limit` bytes when it is given.

    Returns the offset reached and the last state read. Every byte is delivered exactly once:
    the offset only moves by what `sink` received."""
    log = f"{host.run_dir}/log"
    state: dict[str, Any] = {}
    end = None if follow or limit is None else offset + limit
    while True:
        want = LOG_CHUNK if end is None else min(LOG_CHUNK, end - offset)
        chunk = await transport.read_from(log, offset, want) if want > 0 else b""
        if chunk:
            sink(chunk)
            offset += len(chunk)
            if len(chunk) == want and (end is None or offset < end):
                continue
        if not follow:
            return offset, await read_state(transport, host)
        state = await read_state(transport, host)
        # the runner writes its last lines before its final state, and the registry says a run
        # ended only after that state: either way, what came since the read above is read too
        if state.get("status") in FINAL_STATUSES or (until is not None and until()):
            while chunk := await transport.read_from(log, offset, LOG_CHUNK):
                sink(chunk)
                offset += len(chunk)
            return offset, state
        await asyncio.sleep(poll)


async def log_size(transport: Transport, host: Host) -> int:
    """The size in bytes of the run's log on its host (0 before the runner wrote any)."""
    log = shlex.quote(f"{host.run_dir}/log")
    rc, out, _ = await transport.run(["sh", "-c", f"test -f {log} && wc -c < {log} || echo 0"])
    text = out.decode().strip()
    return int(text) if rc == 0 and text.isdigit() else 0


async def stop_job(
    transport: Transport, host: Host, reason: str, *, abort: bool = False
) -> dict[str, Any]:
    """Stop the job and wait for the runner to record it; returns the final state.

    A plain stop gives the job its `stop_duration` (SIGTERM, then SIGKILL); `abort` kills it at
    once (`runner.py stop --grace 0`), and also cuts short a plain stop still in its grace."""
    run_dir = shlex.quote(host.run_dir)
    cmd = (
        f"test -f {run_dir}/runner.py || exit 0; "
        f"exec {shlex.quote(host_python(host))} {run_dir}/runner.py stop {run_dir} "
        f"--reason {shlex.quote(reason)}" + (" --grace 0" if abort else "")
    )
    rc, _, err = await transport.run(["sh", "-c", cmd])
    if rc != 0:
        raise RunnerError(f"could not stop the job: {err.decode().strip()}")
    return await read_state(transport, host)


# ------------------------------------------------------- a VM whose boot set-up starts the runner


#: seconds between the reads of a VM's run folder while its boot set-up or runner starts (a
#: file read over the open connection: cheap; each poll saved is time the user waits)
VM_POLL_SECONDS = 0.5


async def wait_vm_ready(
    transport: Transport, host: Host, timeout: float = 600.0, poll: float = VM_POLL_SECONDS
) -> None:
    """Wait until cloud-init handed the run folder to the SSH user (`RUN_DIR/vm.ready`)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if await transport.read_file(f"{host.run_dir}/vm.ready") is not None:
            return
        await asyncio.sleep(poll)
    raise HostUnreachableError(
        f"the VM did not finish cloud-init within {timeout:.0f}s; see "
        "/var/log/cloud-init-output.log on it"
    )


async def start_job(
    transport: Transport, host: Host, timeout: float = 3600.0, poll: float = VM_POLL_SECONDS
) -> dict[str, Any]:
    """Start the job once code and job.json are in place: write `code.ready`, wait for a state.

    The wait covers iacrun-setup.service (installing uv or Docker, pulling the image)."""
    await transport.write_file(f"{host.run_dir}/code.ready", b"", 0o600)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = await read_state(transport, host)
        if state:
            return state
        await asyncio.sleep(poll)
    raise RunnerError(f"the job did not start within {timeout:.0f}s of the upload")


async def keep_log(transport: Transport, host: Host, target: Path) -> None:
    """Copy a remote run's log here, so `iacrun logs` works after the machine is gone."""
    offset = target.stat().st_size if target.exists() else 0
    with open(target, "ab") as out:
        while chunk := await transport.read_from(f"{host.run_dir}/log", offset, LOG_CHUNK):
            out.write(chunk)
            offset += len(chunk)
