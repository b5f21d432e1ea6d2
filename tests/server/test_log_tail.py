"""A log's tail through the API's plain GET: `?tail=BYTES` answers the last bytes and says where
they start (`X-Log-Start`) and end (`X-Log-Offset`), read from the log's end; `offset`+`limit`
answers exactly that slice."""

from __future__ import annotations

from pathlib import Path

import httpx

from iacrun.orchestrator.models.runspec import Overrides, build_run_spec
from tests.conftest import write_task
from tests.server.conftest import Server, wait_for


def test_the_tail_of_a_log_is_its_last_bytes_with_where_they_start(
    server: Server, project: Path
) -> None:
    (project / "write.py").write_text("for i in range(1, 30001):\n    print(f'row {i:06d}')\n")
    write_task(project, "commands:\n  - python3 write.py\n")
    client = server.client()
    client.submit(build_run_spec(project / "task.dstack.yml", Overrides(name="rows")))
    wait_for(lambda: not client.get("rows").active, 60)
    whole = b"".join(client.follow("rows"))
    expected = b"".join(f"row {i:06d}\n".encode() for i in range(1, 30001))
    assert whole.startswith(expected)
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    url = f"{server.url}/api/v1/runs/rows/logs"

    tail = httpx.get(url, params={"tail": 1000}, headers=headers)
    assert tail.status_code == 200
    assert tail.headers["x-log-start"] == str(len(whole) - 1000)
    assert tail.headers["x-log-offset"] == str(len(whole))
    assert tail.content == whole[-1000:]
    assert tail.headers["x-run-status"] == "done"

    everything = httpx.get(url, params={"tail": 10 * len(whole)}, headers=headers)
    assert everything.headers["x-log-start"] == "0" and everything.content == whole

    part = httpx.get(url, params={"offset": 11, "limit": 22}, headers=headers)
    assert part.content == whole[11:33] == b"row 000002\nrow 000003\n"
    assert (part.headers["x-log-start"], part.headers["x-log-offset"]) == ("11", "33")

    for bad in ({"tail": 0}, {"tail": "x"}):
        refused = httpx.get(url, params=bad, headers=headers)
        assert refused.status_code == 422
