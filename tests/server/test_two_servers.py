"""Two servers on one database, one run: exactly one supervises it, and the other takes it over
when the first is killed (-9) and its lease expires. Two real `iacrun server` processes (the
`server_env` parameter: SQLite in a shared home, then a real PostgreSQL) on the local backend."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from iacrun.orchestrator.registry import RunRecord
from tests.server.conftest import Server, start_server, stop_server, wait_for
from tests.server.test_runs import spec_of


def test_one_server_supervises_a_run_and_the_other_takes_it_over(
    server: Server, server_env: dict[str, str], project: Path
) -> None:
    lease = float(server_env["IACRUN_SERVER_LEASE_SECONDS"])
    other = start_server(server.home, server_env)  # the same database (and runs folder)
    try:
        text = "commands:\n  - echo first half\n  - sleep 15\n  - echo second half\n"
        server.client().submit(spec_of(project, text, "shared"))
        registry = server.registry()

        def get() -> RunRecord:
            return registry.get("shared")

        wait_for(lambda: get().status == "running")
        holder = get().lease_owner
        assert holder is not None
        time.sleep(2 * lease)  # past a lease: the holder renews it, the other leaves it alone
        assert get().lease_owner == holder

        pid = int(holder.split(":")[1])  # host:pid:random
        killed, survivor = (server, other) if pid == server.proc.pid else (other, server)
        assert killed.proc.pid == pid
        os.kill(pid, signal.SIGKILL)  # no goodbye: its lease simply runs out
        killed.proc.wait(30)
        if killed is server:  # the fixture's teardown goes through the survivor
            server.proc, other.proc = other.proc, server.proc
            server.url, other.url = other.url, server.url
            server.output, other.output = other.output, server.output
            survivor = server
        wait_for(lambda: not get().active, timeout=90)

        done = get()
        assert (done.status, done.exit_code) == ("done", 0), done.reason
        log = (Path(done.local_dir) / "log").read_text()
        assert "first half" in log and "second half" in log  # the job lived through it
        events = (Path(done.local_dir) / "events").read_text().splitlines()
        owners = [line.split("supervised by ", 1)[1] for line in events if "supervised by" in line]
        assert len(owners) == 2 and owners[0] == holder  # one at a time, never two at once
        assert int(owners[1].split(":")[1]) == survivor.proc.pid
        assert sum("taking the run over" in line for line in events) == 1
        assert done.lease_owner is None  # released by the one that finished it
    finally:
        stop_server(other)
