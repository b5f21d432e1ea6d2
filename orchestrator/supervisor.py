"""`python -m iacrun.orchestrator.supervisor RUN_ID`: the detached process that owns one run."""

from __future__ import annotations

import sys

from iacrun.orchestrator.api import Orchestrator


def main(argv: list[str]) -> int:
    orch = Orchestrator()
    if "--resume" in argv:
        orch.resume(int(argv[0]))
    else:
        orch.supervise(int(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
