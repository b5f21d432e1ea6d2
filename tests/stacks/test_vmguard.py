"""The VM's guard, run as a program (under Python 3.8 when it is installed, as old images ship).

The Azure self-delete talks to a stand-in of the instance metadata service and Resource Manager
on 127.0.0.1, which records the requests it gets.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

GUARD = Path(__file__).parents[2] / "stacks" / "vmguard.py"


def _oldest_python() -> str:
    """Python 3.8 when one works here (a pyenv shim may exist without the version), else this."""
    candidates = [shutil.which("python3.8"), "/usr/bin/python3.8"]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    for found in filter(None, candidates):
        try:
            done = subprocess.run([found, "-c", "import sys"], capture_output=True, check=False)
        except OSError:
            continue
        if done.returncode == 0:
            return found
    return sys.executable


OLDEST = _oldest_python()


def config(tmp_path: Path, **changes: Any) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "log").write_text("")
    cfg = {
        "run_dir": str(run_dir),
        "first_boot_file": str(tmp_path / "first-boot"),
        "deadline": None,
        "code_wait": 600,
        "linger": 300,
        "poweroff": [sys.executable, "-c", f"open({str(tmp_path / 'off')!r}, 'w').write('off')"],
        "cloud": "aws",
        "azure": {"self_delete": False, "imds": "", "arm": "", "resource": ""},
    }
    cfg.update(changes)
    path = tmp_path / "guard.json"
    path.write_text(json.dumps(cfg))
    return path


def guard(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OLDEST, str(GUARD), str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def booted(tmp_path: Path, seconds_ago: float) -> None:
    (tmp_path / "first-boot").write_text(f"{int(time.time() - seconds_ago)}\n")


def test_nothing_happens_while_the_run_is_young(tmp_path: Path) -> None:
    cfg = config(tmp_path, deadline=3600)
    booted(tmp_path, 60)
    assert guard(cfg, "watch").returncode == 0
    assert not (tmp_path / "off").exists()


def test_the_first_check_stamps_the_boot_when_cloud_init_did_not(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert guard(cfg, "watch").returncode == 0
    assert abs(int((tmp_path / "first-boot").read_text()) - time.time()) < 30
    assert not (tmp_path / "off").exists()


def test_the_deadline_counts_from_the_first_boot(tmp_path: Path) -> None:
    cfg = config(tmp_path, deadline=3600)
    booted(tmp_path, 3700)
    (tmp_path / "run" / "status").write_text("running\n")
    done = guard(cfg, "watch")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "off").exists()
    reason = (tmp_path / "run" / "self_destruct").read_text()
    assert reason.startswith("max duration exceeded")
    # the runner, stopped by the power-off, records why
    assert (tmp_path / "run" / "stop_request").read_text().startswith("self-destruct: max")
    assert "[iacrun] self-destruct: max duration exceeded" in (tmp_path / "run" / "log").read_text()


def test_a_job_started_by_hand_counts_as_started(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    booted(tmp_path, 5000)
    (tmp_path / "run" / "pid").write_text("1\n")
    guard(cfg, "watch")
    assert not (tmp_path / "off").exists()


def test_a_final_status_starts_the_linger(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    booted(tmp_path, 5000)
    status = tmp_path / "run" / "status"
    status.write_text("done\n")
    guard(cfg, "watch")
    assert not (tmp_path / "off").exists()
    old = time.time() - 400
    os.utime(status, (old, old))
    guard(cfg, "watch")
    assert (tmp_path / "off").exists()
    assert not (tmp_path / "run" / "stop_request").exists()  # nothing left to stop


# ---------------------------------------------------------------------------- Azure


class FakeAzure(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str, dict[str, str]]]] = []
    delete_status = 202

    def _record(self) -> None:
        FakeAzure.requests.append((self.command, self.path, dict(self.headers)))

    def _reply(self, status: int, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body or {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._record()
        if self.headers.get("Metadata") != "true":
            self._reply(400)
        elif self.path.startswith("/metadata/instance/compute"):
            self._reply(
                200, {"subscriptionId": "sub-1", "resourceGroupName": "iacrun-r-1", "name": "vm-1"}
            )
        elif self.path.startswith("/metadata/identity/oauth2/token"):
            self._reply(200, {"access_token": "token-of-the-vm"})
        else:
            self._reply(404)

    def do_DELETE(self) -> None:
        self._record()
        self._reply(FakeAzure.delete_status)

    def do_POST(self) -> None:
        self._record()
        self._reply(202)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def azure() -> Iterator[str]:
    FakeAzure.requests = []
    FakeAzure.delete_status = 202
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAzure)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def azure_config(tmp_path: Path, url: str) -> Path:
    return config(
        tmp_path,
        cloud="azure",
        azure={
            "self_delete": True,
            "imds": url,
            "arm": url,
            "resource": "https://management.azure.com/",
            "retry_waits": [0, 0],
        },
    )


GROUP_PATH = "/subscriptions/sub-1/resourceGroups/iacrun-r-1"
VM_PATH = (
    "/subscriptions/sub-1/resourceGroups/iacrun-r-1/providers/Microsoft.Compute/virtualMachines/"
    "vm-1"
)


def test_azure_deletes_its_resource_group_with_its_identity_then_powers_off(
    tmp_path: Path, azure: str
) -> None:
    done = guard(azure_config(tmp_path, azure), "destroy", "max duration exceeded")
    assert done.returncode == 0, done.stderr
    methods = [(m, p.split("?")[0]) for m, p, _ in FakeAzure.requests]
    assert methods == [
        ("GET", "/metadata/instance/compute"),
        ("GET", "/metadata/identity/oauth2/token"),
        ("DELETE", GROUP_PATH),  # the whole group: VM, disk, NIC, IP, network
    ]
    assert "api-version=2021-04-01" in FakeAzure.requests[2][1]
    token_path = FakeAzure.requests[1][1]
    assert "resource=https%3A%2F%2Fmanagement.azure.com%2F" in token_path
    assert FakeAzure.requests[2][2]["Authorization"] == "Bearer token-of-the-vm"
    assert (tmp_path / "off").exists()
    assert (
        "asked Azure to delete this run's resource group" in (tmp_path / "run" / "log").read_text()
    )


def test_azure_retries_a_refused_delete_then_deallocates(tmp_path: Path, azure: str) -> None:
    FakeAzure.delete_status = 403  # the role assignment has not reached Resource Manager
    guard(azure_config(tmp_path, azure), "destroy", "test")
    deletes = [p.split("?")[0] for m, p, _ in FakeAzure.requests if m == "DELETE"]
    assert deletes == [GROUP_PATH] * 3  # first try + one per retry wait
    tokens = [p for m, p, _ in FakeAzure.requests if "oauth2/token" in p]
    assert len(tokens) == 3  # a fresh token for each try
    assert FakeAzure.requests[-1][0] == "POST"
    assert FakeAzure.requests[-1][1].startswith(VM_PATH + "/deallocate?")
    assert (tmp_path / "off").exists()


def test_azure_powers_off_even_when_the_api_is_unreachable(tmp_path: Path) -> None:
    cfg = azure_config(tmp_path, "http://127.0.0.1:9")
    done = guard(cfg, "destroy", "test")
    assert done.returncode == 0
    assert (tmp_path / "off").exists()
    assert "which Azure still bills" in (tmp_path / "run" / "log").read_text()


def test_a_cluster_node_deletes_only_its_own_vm(tmp_path: Path, azure: str) -> None:
    """A machine of a multi-node run (`delete: vm`) ends itself, never its resource group: the
    other nodes keep running until iacrun stops them and destroys the stack."""
    cfg = azure_config(tmp_path, azure)
    settings = json.loads(cfg.read_text())
    settings["azure"]["delete"] = "vm"
    cfg.write_text(json.dumps(settings))
    done = guard(cfg, "destroy", "the job did not start")
    assert done.returncode == 0, done.stderr
    deletes = [p for m, p, _ in FakeAzure.requests if m == "DELETE"]
    assert [p.split("?")[0] for p in deletes] == [VM_PATH]
    assert "api-version=2024-07-01" in deletes[0]
    assert (tmp_path / "off").exists()
    assert "asked Azure to delete this VM" in (tmp_path / "run" / "log").read_text()


def test_a_cluster_nodes_own_timer_ends_it_when_its_job_never_started(
    tmp_path: Path, azure: str
) -> None:
    """Each node's guard watches its own run folder: a node whose job never came ends itself on
    its own code_wait, whatever the other nodes do."""
    cfg = azure_config(tmp_path, azure)
    settings = json.loads(cfg.read_text())
    settings["azure"]["delete"] = "vm"
    cfg.write_text(json.dumps(settings))
    booted(tmp_path, 700)  # code_wait is 600 in these settings
    done = guard(cfg, "watch")
    assert done.returncode == 0, done.stderr
    assert [p.split("?")[0] for m, p, _ in FakeAzure.requests if m == "DELETE"] == [VM_PATH]
    assert "did not start" in (tmp_path / "run" / "self_destruct").read_text()
