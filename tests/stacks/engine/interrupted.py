"""An update a test interrupts.

Run as `python -m tests.stacks.engine.interrupted HOME STACK DIR [SECONDS]`.

The program creates `marker` (a file in DIR), then `slow`, whose create writes DIR/started and
sleeps SECONDS (default 600). The test waits for that file, then kills everything with SIGKILL
(the stack stays locked, with a pending create, as after a crash) or sends SIGINT (Ctrl-C).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pulumi

from iacrun.stacks.engine import StackEngine
from tests.stacks.engine.resources import Marker, Slow
from tests.stacks.engine.support import OFFLINE_ENV


def main(home: str, stack: str, folder: str, seconds: str = "600") -> None:
    where = Path(folder)

    def program() -> None:
        marker = Marker("marker", str(where / "marker"), "created before the kill")
        Slow(
            "slow",
            str(where / "started"),
            float(seconds),
            opts=pulumi.ResourceOptions(depends_on=[marker]),
        )

    StackEngine(Path(home), env=OFFLINE_ENV).up(stack, program, timeout=900)


if __name__ == "__main__":
    main(*sys.argv[1:5])
