"""iacrun's guard on a cloud VM: it ends the machine when the run is over and nobody else did.

Installed by cloud-init as /opt/iacrun/bin/iacrun-guard and run by systemd as root; one file,
standard library only, Python 3.8 or newer (what Ubuntu images ship). Its settings are a JSON
file written beside it by cloud-init::

    python3 iacrun-guard CONFIG watch            one check (the watchdog timer runs it every minute)
    python3 iacrun-guard CONFIG destroy REASON   end the machine now

`watch` ends the machine when one of these holds, measured from the first boot (a file written
at boot, so a reboot does not reset it):

- the deadline passed: max_duration + a margin after boot (only with a max_duration);
- the job never started: no code.ready / code.started / status in the run folder after code_wait;
- the run ended (a final status, or the job service stopped) more than `linger` seconds ago.

`destroy` notes the reason in the run's log, asks the runner to stop the job (so it records
why), and powers the machine off. On AWS the instance's shutdown behaviour is `terminate`, so a
power-off ends the billing. On Azure a powered-off VM is still billed: with `self_delete` the
guard first deletes the run's whole resource group (VM, disk, NIC, IP, network, security group)
through Azure Resource Manager, with a token of the VM's managed identity (the built-in
Contributor role on that resource group only). A machine of a multi-node run (`delete: vm`)
deletes only itself, with its disk, NIC and address: each node's timers end that node alone,
and iacrun, which stops the other nodes when one is lost, destroys the rest of the stack. A
refusal is retried over `retry_waits` (a role assignment takes minutes to reach every Resource
Manager replica); then it deallocates the VM.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from typing import Any

FINAL = ("done", "failed", "terminated")
COMPUTE_API = "2024-07-01"
RESOURCES_API = "2021-04-01"
#: seconds between the attempts to delete the resource group (the role may still propagate)
RETRY_WAITS = (30, 60, 120)


def load(path: str) -> dict[str, Any]:
    with open(path) as f:
        config: dict[str, Any] = json.load(f)
    return config


def _path(cfg: dict[str, Any], name: str) -> str:
    return os.path.join(cfg["run_dir"], name)


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def first_boot(cfg: dict[str, Any], now: float) -> float:
    """When the machine first booted (cloud-init writes it); written now when missing."""
    path = cfg["first_boot_file"]
    try:
        with open(path) as f:
            return float(f.read().strip())
    except (OSError, ValueError):
        with open(path, "w") as f:
            f.write(f"{int(now)}\n")
        return now


def job_started(cfg: dict[str, Any]) -> bool:
    names = ("code.ready", "code.started", "status", "pid")
    return any(os.path.exists(_path(cfg, name)) for name in names)


def run_ended_at(cfg: dict[str, Any]) -> float | None:
    """When the run ended: the job service stopped, or the runner wrote a final status."""
    stopped = _mtime(_path(cfg, "runner.exit"))
    if stopped is not None:
        return stopped
    try:
        with open(_path(cfg, "status")) as f:
            status = f.read().strip()
    except OSError:
        return None
    return _mtime(_path(cfg, "status")) if status in FINAL else None


def due(cfg: dict[str, Any], now: float) -> str | None:
    """Why the machine must end now, or None."""
    age = now - first_boot(cfg, now)
    deadline = cfg.get("deadline")
    if deadline is not None and age >= deadline:
        return f"max duration exceeded: the machine ends itself {deadline}s after boot"
    if not job_started(cfg) and age >= cfg["code_wait"]:
        return f"the job did not start within {cfg['code_wait']}s of boot"
    ended = run_ended_at(cfg)
    if ended is not None and now - ended >= cfg["linger"]:
        return f"the run ended {int(now - ended)}s ago and the machine was not torn down"
    return None


def say(cfg: dict[str, Any], text: str) -> None:
    sys.stderr.write(f"iacrun-guard: {text}\n")
    log = _path(cfg, "log")
    if os.path.exists(log):  # never create it: it belongs to the job's user
        with open(log, "a") as f:
            f.write(f"[iacrun] {text}\n")


def destroy(cfg: dict[str, Any], reason: str) -> int:
    say(cfg, f"self-destruct: {reason}")
    with open(_path(cfg, "self_destruct"), "w") as f:
        f.write(reason + "\n")
    try:
        with open(_path(cfg, "status")) as f:
            running = f.read().strip() not in FINAL
    except OSError:
        running = False
    if running:
        # the power-off stops the job service; the runner records this as the reason
        with open(_path(cfg, "stop_request"), "w") as f:
            f.write(f"self-destruct: {reason}\n")
    azure = cfg.get("azure") or {}
    if cfg.get("cloud") == "azure" and azure.get("self_delete"):
        try:
            azure_delete_self(azure)
            what = "VM" if azure.get("delete") == "vm" else "run's resource group"
            say(cfg, f"asked Azure to delete this {what}")
        except Exception as exc:  # power off whatever went wrong
            say(
                cfg,
                f"could not delete this VM through Azure ({exc}); powering off, which Azure "
                "still bills until iacrun deletes the VM",
            )
    return subprocess.call(cfg["poweroff"])


def _request(method: str, url: str, headers: dict[str, str], timeout: float = 20) -> bytes:
    req = urllib.request.Request(url, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body: bytes = resp.read()
        return body


def azure_delete_self(azure: dict[str, Any]) -> None:
    """Delete this run's resource group (`delete: vm`: this VM) with the VM's managed identity;
    else deallocate the VM."""
    imds = azure["imds"].rstrip("/")
    meta = json.loads(
        _request(
            "GET",
            imds + "/metadata/instance/compute?api-version=2021-02-01",
            {"Metadata": "true"},
        )
    )
    resource = urllib.parse.quote(azure["resource"], safe="")
    token_url = f"{imds}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={resource}"
    group = "/".join(
        [
            azure["arm"].rstrip("/"),
            "subscriptions",
            meta["subscriptionId"],
            "resourceGroups",
            meta["resourceGroupName"],
        ]
    )
    vm = f"{group}/providers/Microsoft.Compute/virtualMachines/{meta['name']}"
    target = (
        f"{vm}?api-version={COMPUTE_API}"
        if azure.get("delete") == "vm"
        else f"{group}?api-version={RESOURCES_API}"
    )
    waits = list(azure.get("retry_waits", RETRY_WAITS))
    while True:
        # a fresh token each time: one taken before the role assignment arrived lacks it
        token = json.loads(_request("GET", token_url, {"Metadata": "true"}))["access_token"]
        auth = {"Authorization": "Bearer " + token}
        try:
            _request("DELETE", target, auth)
            return
        except Exception:
            if not waits:
                break
            time.sleep(waits.pop(0))
    # deallocating still ends the compute bill
    _request("POST", f"{vm}/deallocate?api-version={COMPUTE_API}", auth)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in ("watch", "destroy"):
        sys.stderr.write("usage: iacrun-guard CONFIG watch | destroy REASON\n")
        return 2
    cfg = load(argv[0])
    if argv[1] == "destroy":
        return destroy(cfg, " ".join(argv[2:]) or "requested")
    reason = due(cfg, time.time())
    return destroy(cfg, reason) if reason else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
