"""The cloud VM's own check before the job, as iacrun reads it (the VM side: stacks/cloudinit.py).

At every boot the VM's set-up turns off package upgrades and, on GPU machines, starts the fabric
manager (NVSwitch) and waits for `nvidia-smi` to see every GPU; then it writes `RUN_DIR/check.ok`,
or `RUN_DIR/check.failed` holding one line, `gpu check failed: ...`. `read_machine_check` waits for
either, so that a cloud backend can tear a broken machine down at once and let failover try the
next offer (`MachineCheckError`), before any code is uploaded.
"""

from __future__ import annotations

import asyncio
import time

from iacrun.orchestrator.host.reconnecting import open_transport
from iacrun.orchestrator.host.runner_client import wait_vm_ready
from iacrun.orchestrator.host.transport import Host

#: seconds, on top of the GPU wait, for the VM to boot and its set-up to start
CHECK_MARGIN = 600.0
CHECK_OK = "check.ok"
CHECK_FAILED = "check.failed"


async def read_machine_check(host: Host, timeout: float, poll: float = 2.0) -> str | None:
    """None when the machine passed its check; else the one-line reason it gave (or that it gave
    none within `timeout` seconds of answering SSH)."""
    transport = await open_transport(host)
    try:
        await wait_vm_ready(transport, host, timeout=CHECK_MARGIN, poll=poll)
        end = time.monotonic() + timeout
        while True:
            failed = await transport.read_file(f"{host.run_dir}/{CHECK_FAILED}")
            if failed is not None:
                return failed.decode(errors="replace").strip() or "gpu check failed"
            if await transport.read_file(f"{host.run_dir}/{CHECK_OK}") is not None:
                return None
            if time.monotonic() > end:
                return f"gpu check failed: no result within {timeout:.0f}s of boot"
            await asyncio.sleep(poll)
    finally:
        await transport.close()
