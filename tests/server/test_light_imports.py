"""The server's and the client's heavy imports stay out of the embedded CLI: `iacrun --help`
and `iacrun ps` import no FastAPI, uvicorn, Starlette or httpx."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("fastapi", "uvicorn", "starlette", "httpx", "websockets")

CODE = """
import runpy, sys
sys.argv = ["iacrun", *{args!r}]
try:
    runpy.run_module("iacrun.cli.main", run_name="__main__")
except SystemExit:
    pass
heavy = sorted(
    m for m in sys.modules
    if m.split(".")[0] in {heavy!r} or m.startswith(("iacrun.server", "iacrun.client"))
)
print("LOADED", heavy, file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["ps"], ["ps", "-a"]])
def test_the_embedded_cli_imports_nothing_of_the_server(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CODE.format(args=args, heavy=HEAVY)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    loaded = [line for line in done.stderr.splitlines() if line.startswith("LOADED")]
    assert loaded == ["LOADED []"], done.stderr
