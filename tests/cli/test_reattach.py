"""Attaching again after the attached CLI was killed: every line once, none lost.

The attached CLI saves the log offset it reached after each chunk it hands on (api.ATTACH_OFFSET
in the run folder), so a CLI killed with SIGKILL repeats at most the chunk it was writing when it
died, and nothing when it was killed between chunks.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from iacrun.orchestrator.api import ATTACH_OFFSET
from tests.conftest import Cli, write_task
from tests.orchestrator.host.test_e2e import numbers, record, wait_for


def gated_counter(gate: Path, first: int = 50, total: int = 100) -> str:
    """A job that prints 1..first, waits for `gate` to exist, then prints the rest."""
    return f"""
type: task
commands:
  - for i in $(seq 1 {first}); do echo $i; done
  - while [ ! -e {gate} ]; do sleep 0.05; done
  - for i in $(seq {first + 1} {total}); do echo $i; done
"""


def read_lines_until(proc: subprocess.Popen[bytes], last: int) -> bytes:
    assert proc.stdout is not None
    seen = b""
    while b"\n%d\n" % last not in b"\n" + seen:
        chunk = os.read(proc.stdout.fileno(), 65536)
        assert chunk, f"the CLI ended before printing {last}"
        seen += chunk
    return seen


def saved_offset(cli: Cli, name: str) -> int | None:
    try:
        return int((Path(record(cli, name)["local_dir"]) / ATTACH_OFFSET).read_text())
    except (OSError, ValueError):
        return None


def kill_between_chunks_then_attach_again(cli: Cli, name: str, gate: Path) -> None:
    """kill -9 an `attach` once it saved the offset of all it printed; attach again."""
    first = cli.popen("attach", name)
    seen = read_lines_until(first, 50)
    # everything printed was handed on and its offset saved: the CLI sits between two chunks
    wait_for(
        lambda: saved_offset(cli, name) == len(seen),
        timeout=30,
        what=f"the attach offset saved as {len(seen)} (it is {saved_offset(cli, name)})",
    )
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.stdout is not None
    seen += first.stdout.read()
    gate.touch()
    again = cli("attach", name, timeout=120)
    assert again.returncode == 0, again.stderr
    assert numbers(seen.decode()) + numbers(again.stdout) == list(range(1, 101))


def test_attach_after_kill_9_gives_every_line_once(cli: Cli, project: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    write_task(project, gated_counter(gate))
    assert cli("up", "-y", "-d", "-n", "counted", "task.dstack.yml").returncode == 0
    kill_between_chunks_then_attach_again(cli, "counted", gate)


def test_up_killed_at_any_moment_loses_no_line(cli: Cli, project: Path) -> None:
    """A kill at an arbitrary moment may repeat the chunk being written, never lose a line."""
    write_task(
        project,
        """
        commands:
          - for i in $(seq 1 3000); do echo $i; [ $((i % 100)) != 0 ] || sleep 0.05; done
        """,
    )
    first = cli.popen("up", "-y", "-n", "busy", "task.dstack.yml")
    seen = read_lines_until(first, 1000)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.stdout is not None
    seen += first.stdout.read()
    again = cli("attach", "busy", timeout=120)
    assert again.returncode == 0, again.stderr
    before, after = numbers(seen.decode()), numbers(again.stdout)
    assert before == list(range(1, len(before) + 1))
    assert after == list(range(after[0], 3001)) and after[0] <= len(before) + 1  # none lost
    repeated = len(before) - after[0] + 1
    # at most the chunk the CLI was writing when it died (a chunk is one poll's worth of lines,
    # here well under the 100 lines the job writes between pauses); in practice none
    assert repeated < 1000, f"{repeated} lines repeated: the offset was not saved while attached"
