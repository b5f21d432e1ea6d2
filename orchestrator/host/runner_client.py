"""What happens to a run on its host, the same for every backend, through a Transport.

ship_and_start   the working folder archive, job.json, job.sh and the runner; start it
read_state       the runner's state.json
follow_log       the log from a byte offset, live until the run ends
stop_job         SIGTERM to the job's process group, a grace period, SIGKILL
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from iacrun.orchestrator.backends.base import Host, Transport
from iacrun.orchestrator.errors import HostUnreachableError, RunnerError
from iacrun.orchestrator.registry import RunRecord
from iacrun.orchestrator.runner.runner import FINAL_STATUSES, render_job_script

LOG_CHUNK = 4 * 1024 * 1024


def runner_source() -> bytes:
    return resources.files("iacrun.orchestrator.runner").joinpath("runner.py").read_bytes()


def build_job(run: RunRecord, host: Host) -> dict[str, Any]:
    """job.json for the runner, from the run's resolved spec."""
    spec = run.spec
    resources_spec = (spec.get("requirements") or {}).get("resources") or {}
    retry = spec.get("retry")
    on_error = retry is not None and "error" in retry.get("on_events", ["error"])
    return {
        "run_name": run.name,
        "commands": spec["commands"],
        "env": spec.get("env", {}),
        "working_dir": spec.get("working_dir") or ".",
        "python": spec.get("python"),
        "image": spec.get("image"),
        "gpus": host.gpus,
        "shm_size_gb": resources_spec.get("shm_size"),
        "ports": [p["container_port"] for p in spec.get("ports", [])],
        "max_duration": spec.get("max_duration"),
        "stop_duration": spec.get("stop_duration", 15),
        "retry": {"duration": retry.get("duration", 3600)} if on_error and retry else None,
    }


def host_python(host: Host) -> str:
    return sys.executable if host.kind == "local" else "python3"


async def ship_and_start(
    transport: Transport, host: Host, job: dict[str, Any], archive: str
) -> None:
    """Place code, job and runner in the run folder, then start the runner detached.

    On a host whose boot set-up starts the runner (a cloud VM), wait for it to be ready, ship
    the code and the full job.json (env included), then write `code.ready`."""
    run_dir = host.run_dir
    booted = host.boot == "cloud-init"
    if booted:
        from iacrun.orchestrator.backends.pulumi_cloud import start_job, wait_vm_ready

        await wait_vm_ready(transport, host)
    await _ship_code(transport, run_dir, archive)
    await transport.write_file(f"{run_dir}/job.json", json.dumps(job).encode(), 0o600)
    if booted:
        await start_job(transport, host)
        return
    await transport.write_file(f"{run_dir}/job.sh", render_job_script(job, run_dir).encode(), 0o700)
    await transport.write_file(f"{run_dir}/runner.py", runner_source(), 0o755)
    quoted = shlex.quote(run_dir)
    start = f"exec {shlex.quote(host_python(host))} {quoted}/runner.py start {quoted}"
    rc, _, err = await transport.run(["sh", "-c", start])
    if rc != 0:
        raise RunnerError(f"the runner did not start on the host: {err.decode().strip()}")


async def _ship_code(transport: Transport, run_dir: str, archive: str) -> None:
    """The working folder into RUN_DIR/code: uploaded whole, then unpacked."""
    quoted = shlex.quote(run_dir)
    rc, _, err = await transport.run(["mkdir", "-p", f"{run_dir}/code"])
    if rc != 0:
        raise RunnerError(f"cannot create the run folder {run_dir}: {err.decode().strip()}")
    await transport.upload(archive, f"{run_dir}/code.tar.gz")
    script = f"tar -xzf {quoted}/code.tar.gz -C {quoted}/code && rm -f {quoted}/code.tar.gz"
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


async def follow_log(
    transport: Transport,
    host: Host,
    offset: int,
    sink: Callable[[bytes], None],
    *,
    follow: bool = True,
    poll: float = 0.05,
    until: Callable[[], bool] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Send the log from `offset` to `sink`; with `follow`, until the run ends.

    Returns the offset reached and the last state read. Every byte is delivered exactly once:
    the offset only moves by what `sink` received."""
    log = f"{host.run_dir}/log"
    state: dict[str, Any] = {}
    while True:
        chunk = await transport.read_from(log, offset, LOG_CHUNK)
        if chunk:
            sink(chunk)
            offset += len(chunk)
            if len(chunk) == LOG_CHUNK:
                continue
        if not follow:
            return offset, await read_state(transport, host)
        state = await read_state(transport, host)
        if state.get("status") in FINAL_STATUSES:
            # the runner writes its last lines before the final state: drain once more
            while chunk := await transport.read_from(log, offset, LOG_CHUNK):
                sink(chunk)
                offset += len(chunk)
            return offset, state
        if until is not None and until():
            return offset, state
        await asyncio.sleep(poll)


async def stop_job(transport: Transport, host: Host, reason: str) -> dict[str, Any]:
    """Stop the job and wait for the runner to record it; returns the final state."""
    run_dir = shlex.quote(host.run_dir)
    cmd = (
        f"test -f {run_dir}/runner.py || exit 0; "
        f"exec {shlex.quote(host_python(host))} {run_dir}/runner.py stop {run_dir} "
        f"--reason {shlex.quote(reason)}"
    )
    rc, _, err = await transport.run(["sh", "-c", cmd])
    if rc != 0:
        raise RunnerError(f"could not stop the job: {err.decode().strip()}")
    return await read_state(transport, host)


async def open_transport(host: Host) -> Transport:
    """A transport to the run's host: files here, or an SSH connection that reconnects."""
    if host.kind == "local":
        from iacrun.orchestrator.backends.local import LocalTransport

        return LocalTransport()
    transport = ReconnectingTransport(host)
    await transport.connect()
    return transport


class ReconnectingTransport:
    """An SSH transport that survives a dropped connection.

    Reads (the log by offset, state files) and forwards are safe to repeat: after a drop they
    reconnect (within the host's connect timeout) and go on where they were, so no log line is
    lost or repeated. Commands and writes are not retried: their caller decides."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._inner: Transport | None = None
        self._forwards: dict[int, int] = {}

    async def connect(self) -> Transport:
        from iacrun.orchestrator.host.connect import connect

        # a VM's sshd may answer before cloud-init installed the run's key: retry that too
        self._inner = await connect(
            self.host,
            deadline=time.monotonic() + self.host.connect_timeout,
            retry_auth=self.host.boot == "cloud-init",
        )
        for local, remote in self._forwards.items():
            await self._inner.forward(local, remote)
        return self._inner

    async def _current(self) -> Transport:
        return self._inner if self._inner is not None else await self.connect()

    async def _again(self) -> Transport:
        if self._inner is not None:
            with contextlib.suppress(Exception):
                await self._inner.close()
            self._inner = None
        return await self.connect()

    async def run(self, argv: list[str], *, input: bytes | None = None) -> tuple[int, bytes, bytes]:
        return await (await self._current()).run(argv, input=input)

    async def upload(self, local_path: str, remote_path: str) -> None:
        await (await self._current()).upload(local_path, remote_path)

    async def write_file(self, remote_path: str, data: bytes, mode: int = 0o644) -> None:
        await (await self._current()).write_file(remote_path, data, mode)

    async def read_file(self, remote_path: str) -> bytes | None:
        try:
            return await (await self._current()).read_file(remote_path)
        except HostUnreachableError:
            return await (await self._again()).read_file(remote_path)

    async def read_from(self, remote_path: str, offset: int, limit: int) -> bytes:
        try:
            return await (await self._current()).read_from(remote_path, offset, limit)
        except HostUnreachableError:
            return await (await self._again()).read_from(remote_path, offset, limit)

    async def forward(self, local_port: int, remote_port: int) -> Callable[[], Awaitable[None]]:
        stop = await (await self._current()).forward(local_port, remote_port)
        self._forwards[local_port] = remote_port

        async def stop_forward() -> None:
            self._forwards.pop(local_port, None)
            with contextlib.suppress(Exception):
                await stop()

        return stop_forward

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()
            self._inner = None
